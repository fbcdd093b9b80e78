"""The BPR recommender trainer: sampled triples per step, full-ranking validation per eval epoch."""

import math

import torch
from tqdm import tqdm

from base.base_trainer import BaseTrainer, TrainingError
from trainer.evaluation import evaluate
from utils import distributed
from utils.errors import ConfigError


class Trainer(BaseTrainer):
    """One epoch = len(data_loader) BPR steps; validation on `valid_data_loader` every eval_period.

    A model without trainable parameters (e.g. a popularity ranking) is evaluated, never stepped.
    """

    def __init__(
        self,
        model,
        criterion,
        metric_ftns,
        optimizer,
        config,
        device,
        data_loader,
        valid_data_loader=None,
        lr_scheduler=None,
        writer=None,
        checkpoint=None,
    ):
        super().__init__(model, criterion, metric_ftns, optimizer, config, device, lr_scheduler, writer, checkpoint)
        self.data_loader, self.valid_data_loader = data_loader, valid_data_loader
        if valid_data_loader is None:
            self.disable_monitor("No validation split (valid_fraction = 0)")
        amp = config["trainer"].get("amp", "off")
        if amp not in ("off", "bf16"):
            raise ConfigError(f"trainer.amp: expected 'off' or 'bf16', got {amp!r}")
        # bf16 autocast on CUDA only: on the CPU it is slower than float32 for these shapes.
        self.amp = amp == "bf16" and device.type == "cuda"
        if amp == "bf16" and not self.amp:
            self.logger.info("trainer.amp = bf16 applies on CUDA only; training in float32 on " + device.type)
        self.trainable = optimizer is not None and any(p.requires_grad for p in self.module.parameters())

    def _train_epoch(self, epoch):
        self.model.train()
        total, steps = 0.0, 0
        if self.trainable:
            bar = tqdm(
                self.data_loader,
                desc=f"epoch {epoch}",
                leave=False,
                dynamic_ncols=True,
                mininterval=0.5,
                disable=None if self.is_main else True,
            )
            for batch, (users, positives, negatives) in enumerate(bar):
                users, positives, negatives = (
                    t.to(self.device, non_blocking=True) for t in (users, positives, negatives)
                )
                with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
                    loss = self.criterion(self.model(users, positives, negatives))
                value = loss.item()
                if distributed.is_distributed():  # every rank must stop together, not hang in all-reduce
                    value = (
                        distributed.all_reduce_sum(torch.tensor([value], dtype=torch.float64)).item()
                        / distributed.world_size()
                    )
                if not math.isfinite(value):
                    raise TrainingError(
                        f"epoch {epoch}, batch {batch}: the loss is {value}; stopped without "
                        "saving (the last good checkpoint is kept). Try a lower learning rate."
                    )
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                total += value
                steps += 1
                bar.set_postfix(loss=f"{value:.4f}", refresh=False)
            if self.lr_scheduler is not None:
                self.lr_scheduler.step()
        log = {"loss": total / steps if steps else 0.0}
        if self.valid_data_loader is not None and self.is_eval_epoch(epoch):
            figures = evaluate(self.module, self.valid_data_loader, self.metric_ftns, self.device)
            log.update({f"val_{name}": value for name, value in figures.items()})
        return log

    def _extra_state(self):
        return {"data_loader": distributed.gather(self.data_loader.state_dict())}  # one per rank

    def _load_extra_state(self, state):
        if state.get("data_loader") is not None:
            self.data_loader.load_state_dict(self._for_this_rank(state["data_loader"], "sampler state"))
