"""The BPR recommender trainer: sampled triples per step, full-ranking validation per eval epoch."""
import math

import torch
from tqdm import tqdm

from base.base_trainer import BaseTrainer, TrainingError
from trainer.evaluation import evaluate


class Trainer(BaseTrainer):
    """One epoch = len(data_loader) BPR steps; validation on `valid_data_loader` every eval_period.

    A model without trainable parameters (e.g. a popularity ranking) is evaluated, never stepped.
    """

    def __init__(self, model, criterion, metric_ftns, optimizer, config, device, data_loader,
                 valid_data_loader=None, lr_scheduler=None, writer=None, checkpoint=None):
        super().__init__(model, criterion, metric_ftns, optimizer, config, device, lr_scheduler, writer, checkpoint)
        self.data_loader, self.valid_data_loader = data_loader, valid_data_loader
        if valid_data_loader is None:
            self.disable_monitor("No validation split (valid_fraction = 0)")
        self.trainable = optimizer is not None and any(p.requires_grad for p in model.parameters())

    def _train_epoch(self, epoch):
        self.model.train()
        total, steps = 0.0, 0
        if self.trainable:
            bar = tqdm(self.data_loader, desc=f"epoch {epoch}", leave=False, dynamic_ncols=True, mininterval=0.5)
            for batch, (users, positives, negatives) in enumerate(bar):
                users, positives, negatives = (t.to(self.device, non_blocking=True) for t in (users, positives, negatives))
                loss = self.criterion(self.model(users, positives, negatives))
                value = loss.item()
                if not math.isfinite(value):
                    raise TrainingError(f"epoch {epoch}, batch {batch}: the loss is {value}; stopped without "
                                        "saving (the last good checkpoint is kept). Try a lower learning rate.")
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
            figures = evaluate(self.model, self.valid_data_loader, self.metric_ftns, self.device)
            log.update({f"val_{name}": value for name, value in figures.items()})
        return log

    def _extra_state(self):
        return {"data_loader": self.data_loader.state_dict()}

    def _load_extra_state(self, state):
        if state.get("data_loader") is not None:
            self.data_loader.load_state_dict(state["data_loader"])
