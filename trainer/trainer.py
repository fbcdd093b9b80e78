"""The recommender trainer: one training step for every way a model learns, full-ranking validation."""

import contextlib

import numpy as np
import torch

from base.base_trainer import BaseTrainer, TrainingError
from logger.progress import Progress
from trainer.evaluation import evaluate
from utils import checks, distributed
from utils.errors import ConfigError, ContractError


class Trainer(BaseTrainer):
    """An epoch is the batches the model asks for (`model.train_batches(data_loader)`), each one
    `_train_step`; validation on `valid_data_loader` every eval_period epochs. A model with no
    batches (closed-form, counting) is evaluated, never stepped.

    Its options are its constructor's keyword arguments, given in trainer.args (the one channel:
    a new option is a new argument here).
    amp: 'off' or 'bf16' (bf16 autocast, on CUDA only: on the CPU it is slower than float32 for
    these shapes).
    sync_every: steps between reads of the loss on the host, which the NaN check
    and the progress bar need; 'auto' reads every step on the CPU (where a read costs nothing, and
    a NaN stops the run before its optimizer step) and every 50 on an accelerator (where a read
    waits for the device to finish).
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
        amp="off",
        sync_every="auto",
    ):
        super().__init__(model, criterion, metric_ftns, optimizer, config, device, lr_scheduler, writer)
        self.data_loader, self.valid_data_loader = data_loader, valid_data_loader
        self.data_fingerprint = data_loader.fingerprint() if data_loader is not None else None
        self.batches = self.module.train_batches(data_loader) if data_loader is not None else ()
        if valid_data_loader is None:
            self.disable_monitor("Nothing is held out for validation")
        if sync_every != "auto" and not (checks.is_int(sync_every) and sync_every >= 1):
            checks.fail("trainer.args.sync_every", "'auto' or a positive integer", sync_every)
        device_type = getattr(device, "type", "cpu")
        self.sync_every = (1 if device_type == "cpu" else 50) if sync_every == "auto" else sync_every
        checks.one_of("trainer.args.amp", amp, ("off", "bf16"))
        self.amp = amp == "bf16" and device_type == "cuda"
        if amp == "bf16" and not self.amp:
            self.logger.info("trainer.args.amp = bf16 applies on CUDA only; training in float32 on " + device_type)
        self.pin = device_type == "cuda"  # page-locked batches copy to the GPU asynchronously
        self.trainable = len(self.batches) > 0
        if self.trainable and optimizer is None:
            raise ConfigError(
                f"optimizer: {type(self.module).__name__} trains on batches and needs an optimizer "
                '(e.g. "optimizer": {"type": "Adam", "args": {"lr": 0.001}})'
            )
        if self.trainable and criterion is None:
            raise ConfigError(f"loss: {type(self.module).__name__} trains on batches and needs a loss")

    def _to_device(self, batch):
        if not isinstance(batch, dict):
            raise ContractError(
                f"{type(self.module).__name__}.train_batches must yield dicts of tensors; got a {type(batch).__name__}"
            )
        if self.pin:
            return {k: v.pin_memory().to(self.device, non_blocking=True) for k, v in batch.items()}
        return {k: v.to(self.device) for k, v in batch.items()}

    def _loss(self, batch):
        """The model's output for one batch and its loss, both checked against the contract."""
        with torch.autocast(self.device.type, dtype=torch.bfloat16) if self.amp else contextlib.nullcontext():
            try:
                output = self.model(batch)
                loss = self.criterion(output, self.step)
            except ContractError as e:
                raise ContractError(f"{type(self.module).__name__}: {e}") from None
        if not (isinstance(loss, torch.Tensor) and loss.dim() == 0):
            name = getattr(self.criterion, "__name__", "the loss")
            raise ContractError(
                f"{type(self.module).__name__}: {name} returned {type(loss).__name__}"
                f"{tuple(loss.shape) if isinstance(loss, torch.Tensor) else ''}; expected a scalar tensor"
            )
        return loss

    def _train_step(self, batch, unread, check=None):
        """One optimizer step on one batch, the same for every paradigm: the batch to the device,
        the model's output and loss under autocast (checked against the contract), the loss added
        to `unread` (a device tensor: no wait for the device), then — when `check` = (epoch, first
        batch, this batch) says a read is due — the unread losses all-reduced over the ranks and
        read on the host, and a loss that is not finite stopping the run before this batch's
        update; then backward and the optimizer's step. Returns the mean of the losses read, else None."""
        loss = self._loss(self._to_device(batch))
        unread += self._stats(loss)
        mean = None if check is None else self._read_losses(unread, *check)
        self._backward_and_step(loss)
        return mean

    def _train_epoch(self, epoch):
        self.model.train()
        log = {}
        if self.trainable:
            log["loss"] = self._train_batches(epoch)
            if self.lr_scheduler is not None:
                self.lr_scheduler.step()
        if self.valid_data_loader is not None and self.is_eval_epoch(epoch):
            figures = evaluate(self.module, self.valid_data_loader, self.metric_ftns, self.device)
            log.update({f"val_{name}": value for name, value in figures.items()})
        return log

    def _train_batches(self, epoch):
        """Every batch of the epoch; returns the mean loss over the steps of every rank."""
        batches, n = self.epoch_batches(epoch)
        bar = Progress(batches, n, f"epoch {epoch}", enabled=self.is_main, logger=self.logger)
        total, steps, first = 0.0, 0, 0
        # [sum of the losses since the last read, how many of them were not finite], kept on the
        # device: read every sync_every steps (every step on the CPU, so a NaN never reaches the
        # weights there).
        unread = torch.zeros(2, dtype=torch.float64, device=self.device)
        for index, batch in enumerate(bar):
            due = (index + 1) % self.sync_every == 0 or index == n - 1
            mean = self._train_step(batch, unread, (epoch, first, index) if due else None)
            if due:
                total += mean * (index - first + 1)
                steps += index - first + 1
                bar.note(f"loss {mean:.4f}")
                unread.zero_()
                first = index + 1
        return total / steps if steps else 0.0

    def epoch_batches(self, epoch):
        """(the epoch's batches, how many): one pass over the model's batches; for a model that
        trains in phases, each phase's passes in turn, its optimizer the one that steps (base/phases.py)."""
        self.batches.set_epoch(epoch)
        phases = self.module.phases()
        n = len(self.batches) * (sum(phase.passes for phase in phases) if phases else 1)
        return self._phase_batches(phases), n

    def _phase_batches(self, phases):
        if not phases:
            yield from self.batches
            return
        for number, phase in enumerate(phases):
            self.optimizer.active = number
            self.module.begin_phase(phase.name)
            for _ in range(phase.passes):
                yield from self.batches

    @staticmethod
    def _stats(loss):
        value = loss.detach().double()
        return torch.stack([value, (~torch.isfinite(value)).double()])

    def _backward_and_step(self, loss):
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.step += 1

    def _read_losses(self, unread, epoch, first, last):
        """The mean of the unread losses (batches first..last) over the ranks; a TrainingError when
        one was not finite."""
        loss_sum, bad = distributed.all_reduce_sum(unread.clone()).tolist()  # one wait for the device
        if bad:
            where = f"batch {first}" if first == last else f"batches {first}-{last}"
            before = " before its optimizer step" if first == last else ""
            if first == last and self.step == 0:  # no update yet: the learning rate cannot be the cause
                hint = "It was so before any update: check the loss's and the model's arguments (a huge reg)."
            else:
                hint = "Try a lower learning rate, or smaller weights on the loss's terms (reg)."
            raise TrainingError(
                f"epoch {epoch}, {where}: the loss is {'nan' if loss_sum != loss_sum else loss_sum}{before}; stopped "
                f"without saving (the last good checkpoint is kept). {hint}"
            )
        return loss_sum / distributed.world_size() / (last - first + 1)

    def _extra_state(self):
        return {
            "data_loader": distributed.gather(self.data_loader.state_dict()),  # one per rank
            "data_fingerprint": self.data_fingerprint,
        }

    def _load_extra_state(self, state):
        states = state.get("data_loader")
        if states is None:
            return
        self.data_loader.load_state_dict(self._for_this_rank(states, "batch generator state"))
        if len(states) != distributed.world_size() and distributed.rank() > 0:
            rng = self.data_loader.rng  # rank r > 0: its own stream, derived from the checkpoint's
            derived = np.random.default_rng([int(rng.integers(2**62)), distributed.rank()])
            rng.bit_generator.state = derived.bit_generator.state
