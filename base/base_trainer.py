"""The epoch loop: monitoring, early stopping, checkpoints, resume, and where figures go.

Knows nothing about recommendation: a subclass implements `_train_epoch(epoch) -> dict`.
"""

import copy
import json
import math
from abc import ABC, abstractmethod

from logger.logger import get_logger
from utils import distributed
from utils.checkpoint import load_weights, rng_state, save_checkpoint, set_rng_state
from utils.errors import CheckpointError, ConfigError

TRAINER_KEYS = {"type", "epochs", "save_dir", "save_period", "keep_last", "eval_period", "monitor", "early_stop", "amp"}


class TrainingError(Exception):
    """Training cannot go on (e.g. the loss became NaN); the last good checkpoint is kept."""


class BaseTrainer(ABC):
    """Runs epochs start..epochs, evaluates every `eval_period`, keeps the best by `monitor`.

    config['trainer']: epochs, save_dir, save_period (checkpoint every N epochs), keep_last (how many
    epoch checkpoints to keep, 0 = all), eval_period, monitor ('max val_recall@20' | 'off'),
    early_stop (stop after this many epochs without improvement; 0 = never).
    """

    def __init__(
        self, model, criterion, metric_ftns, optimizer, config, device, lr_scheduler=None, writer=None, checkpoint=None
    ):
        self.config = config
        self.logger = get_logger("trainer")
        # model may be wrapped in DistributedDataParallel; `module` is the model itself.
        self.model, self.module = model, getattr(model, "module", model)
        self.criterion, self.metric_ftns = criterion, metric_ftns
        self.is_main = distributed.rank() == 0  # only rank 0 writes files
        self.optimizer, self.lr_scheduler, self.device, self.writer = optimizer, lr_scheduler, device, writer

        cfg = config["trainer"]
        unknown = sorted(set(cfg) - TRAINER_KEYS)
        if unknown:
            raise ConfigError(f"trainer: unknown key(s) {unknown} (accepted: {', '.join(sorted(TRAINER_KEYS))})")
        self.epochs, self.save_period = cfg["epochs"], cfg["save_period"]
        self.eval_period, self.early_stop = cfg["eval_period"], cfg["early_stop"]
        self.keep_last = cfg.get("keep_last", 0)
        self.mnt_mode, self.mnt_metric = ("off", None) if cfg["monitor"] == "off" else cfg["monitor"].split()
        self.mnt_best = -math.inf if self.mnt_mode == "max" else math.inf
        self.best_epoch = 0
        self.start_epoch = 1
        self.checkpoint_dir = config.save_dir
        self.metrics_path = self.checkpoint_dir / "metrics.jsonl"
        self.saved_epochs = []
        if self.mnt_mode == "off":
            self.logger.info("trainer.monitor is off: no model selection; model_best.pth will be the last epoch")
        # checkpoint: the state loaded from config.resume (train.py reads it once, for its config too).
        self.checkpoint = checkpoint

    @abstractmethod
    def _train_epoch(self, epoch):
        """Train one epoch; returns {'loss': ..., and 'val_<metric>': ... on evaluated epochs}."""

    def _extra_state(self):
        """What a subclass needs saved besides model/optimizer (e.g. the sampler's generator)."""
        return {}

    def _load_extra_state(self, state):
        pass

    def is_eval_epoch(self, epoch):
        return epoch % self.eval_period == 0 or epoch == self.epochs

    def disable_monitor(self, reason):
        """Turn off model selection and early stopping (e.g. no validation split)."""
        self.logger.info(f"{reason}: monitoring and early stopping are off; model_best.pth will be the last epoch")
        self.mnt_mode, self.mnt_metric = "off", None

    def train(self):
        """The full loop. Returns the list of per-epoch logs of this call."""
        if self.checkpoint is not None:
            self._resume_checkpoint(self.checkpoint, self.config.resume)
            self.checkpoint = None
        history = []
        epoch = self.start_epoch - 1
        # The state at the end of the last finished epoch, kept so that an interrupt can save it:
        # resuming from it is exactly as if the run had not been interrupted.
        self._finished = None
        try:
            for epoch in range(self.start_epoch, self.epochs + 1):
                if self._run_epoch(epoch, history):
                    break
        except KeyboardInterrupt:
            self._save_on_interrupt(epoch)
            raise
        if self.mnt_mode == "off" and epoch >= self.start_epoch:
            self._save_checkpoint(epoch, best=True)
        return history

    def _run_epoch(self, epoch, history):
        """Train, log, monitor and checkpoint one epoch. Returns True when early stopping ends the run."""
        result = self._train_epoch(epoch)
        log = {"epoch": epoch, **result}
        history.append(log)
        self.logger.info("    ".join(f"{k}: {v:.5f}" if isinstance(v, float) else f"{k}: {v}" for k, v in log.items()))
        if self.writer is not None:
            self.writer.log(log, step=epoch)

        improved = False
        if self.mnt_mode != "off" and self.mnt_metric in log:
            value = log[self.mnt_metric]
            improved = value > self.mnt_best if self.mnt_mode == "max" else value < self.mnt_best
            if improved:
                self.mnt_best, self.best_epoch = value, epoch
        if any(k.startswith("val_") for k in log) or self.mnt_metric == "loss":
            self._append_metrics(log)

        stop = (
            self.mnt_mode != "off"
            and self.early_stop > 0
            and self.mnt_metric in log
            and epoch - self.best_epoch >= self.early_stop
        )
        saved = epoch % self.save_period == 0 or epoch == self.epochs or stop
        if saved:
            self._save_checkpoint(epoch)
        if improved:
            self._save_checkpoint(epoch, best=True)
        self._finished = None if saved else copy.deepcopy(self._state(epoch))
        if stop:
            self.logger.info(
                f"No improvement of {self.mnt_metric} for {epoch - self.best_epoch} epochs "
                f"(early_stop = {self.early_stop}): stopping. Best epoch: {self.best_epoch}."
            )
        return stop

    def _save_on_interrupt(self, epoch):
        """Ctrl-C or SIGTERM during `epoch`: that epoch is abandoned; the last finished one is saved."""
        finished = epoch - 1
        path = self.checkpoint_dir / f"checkpoint-epoch{finished}.pth"
        if not self.is_main:
            return
        if self._finished is not None:
            save_checkpoint(self._finished, path)
        elif not path.is_file():
            self.logger.info(f"Interrupted during epoch {epoch}; no epoch has finished, nothing to save.")
            return
        self.logger.info(
            f"Interrupted during epoch {epoch}; epoch {finished} is saved. Resume with:\n    python train.py -r {path}"
        )

    def _append_metrics(self, log):
        if not self.is_main:
            return
        with open(self.metrics_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(log) + "\n")

    def _state(self, epoch):
        return {
            "arch": type(self.module).__name__,
            "epoch": epoch,
            "state_dict": self.module.state_dict(),
            "optimizer": None if self.optimizer is None else self.optimizer.state_dict(),
            "lr_scheduler": None if self.lr_scheduler is None else self.lr_scheduler.state_dict(),
            "monitor_best": self.mnt_best,
            "best_epoch": self.best_epoch,
            "config": self.config.config,
            "rng": distributed.gather(rng_state()),  # one per rank
            "wandb_run_id": None if self.writer is None else self.writer.run_id,
            **self._extra_state(),
        }

    def _save_checkpoint(self, epoch, best=False):
        state = self._state(epoch)  # on every rank: it gathers the ranks' random states
        if not self.is_main:
            return
        if best:
            path = self.checkpoint_dir / "model_best.pth"
            save_checkpoint(state, path)
            self.logger.info(f"Saving current best: {path}")
            return
        path = self.checkpoint_dir / f"checkpoint-epoch{epoch}.pth"
        save_checkpoint(state, path)
        self.logger.info(f"Saving checkpoint: {path}")
        self.saved_epochs.append(epoch)
        while self.keep_last and len(self.saved_epochs) > self.keep_last:
            old = self.saved_epochs.pop(0)
            (self.checkpoint_dir / f"checkpoint-epoch{old}.pth").unlink(missing_ok=True)

    def _resume_checkpoint(self, checkpoint, path):
        self.logger.info(f"Resuming from checkpoint: {path} ...")
        load_weights(self.module, checkpoint, path)
        if self.optimizer is not None and checkpoint.get("optimizer") is not None:
            try:
                self.optimizer.load_state_dict(checkpoint["optimizer"])
            except ValueError as e:
                raise CheckpointError(f"{path}: the optimizer state does not fit optimizer.type ({e})") from None
        if self.lr_scheduler is not None and checkpoint.get("lr_scheduler") is not None:
            self.lr_scheduler.load_state_dict(checkpoint["lr_scheduler"])
        self.start_epoch = checkpoint["epoch"] + 1
        self.mnt_best, self.best_epoch = checkpoint["monitor_best"], checkpoint["best_epoch"]
        set_rng_state(self._for_this_rank(checkpoint["rng"], "random state"))
        self._load_extra_state(checkpoint)
        self._truncate_metrics(checkpoint["epoch"])
        self.logger.info(f"Checkpoint loaded. Resuming training from epoch {self.start_epoch}")

    def _for_this_rank(self, states, what):
        """This rank's entry of a per-rank list saved in a checkpoint."""
        rank, world = distributed.rank(), distributed.world_size()
        if len(states) != world:
            self.logger.warning(
                f"the checkpoint holds the {what} of {len(states)} process(es), this run has "
                f"{world}: every rank continues from rank 0's (the run is not bit-identical)"
            )
            return states[0]
        return states[rank]

    def _truncate_metrics(self, last_epoch):
        """Forget figures of epochs after the checkpoint, so the history reads as one straight run."""
        if not self.is_main or not self.metrics_path.is_file():
            return
        lines = self.metrics_path.read_text(encoding="utf-8").splitlines()
        kept = [line for line in lines if line.strip() and json.loads(line)["epoch"] <= last_epoch]
        self.metrics_path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
