"""The epoch loop: monitoring, early stopping, checkpoints, resume, and where figures go.

Knows nothing about recommendation: a subclass implements `_train_epoch(epoch) -> dict`.
"""

import logging
import math
from abc import ABC, abstractmethod

import numpy as np
import torch

from base.checkpointer import NOTHING_SAVED, Checkpointer
from utils import distributed
from utils.checkpoint import load_weights, rng_state, set_rng_state
from utils.errors import CheckpointError, RunFolderError
from utils.validation import parse_monitor


class TrainingError(Exception):
    """Training cannot go on (e.g. the loss became NaN); the last good checkpoint is kept."""


class BaseTrainer(ABC):
    """Runs epochs start..epochs, evaluates every `eval_period`, keeps the best by `monitor`.

    config['trainer']: epochs, save_dir, save_period (checkpoint every N epochs), keep_last (how many
    epoch checkpoints to keep, 0 = all), eval_period, monitor ('max val_recall@20' | 'off'),
    early_stop (stop after this many epochs without improvement; 0 = never).
    `self.step` counts optimizer steps over the whole run (resumed with the checkpoint).
    """

    def __init__(self, model, criterion, metric_ftns, optimizer, config, device, lr_scheduler=None, writer=None):
        self.config = config
        self.logger = logging.getLogger("trainer")
        # model may be wrapped in DistributedDataParallel; `module` is the model itself.
        self.model, self.module = model, getattr(model, "module", model)
        self.criterion, self.metric_ftns = criterion, metric_ftns
        self.is_main = distributed.rank() == 0  # only rank 0 writes files
        self.optimizer, self.lr_scheduler, self.device, self.writer = optimizer, lr_scheduler, device, writer

        cfg = config["trainer"]
        self.epochs, self.save_period = cfg["epochs"], cfg["save_period"]
        self.eval_period, self.early_stop = cfg["eval_period"], cfg["early_stop"]
        self.keep_last = cfg.get("keep_last", 0)
        self.monitor_mode, self.monitor_metric = parse_monitor(cfg["monitor"])
        self.best_score = -math.inf if self.monitor_mode == "max" else math.inf
        self.best_epoch = 0
        self.start_epoch = 1
        self.step = 0
        self.checkpointer = None  # base/checkpointer.py, given by set_output once the run folder exists
        self.resumed_from = None  # the checkpoint's epoch when this run continues one
        if self.monitor_mode == "off":
            self.logger.info("trainer.monitor is off: no model selection; model_best.pth will be the last epoch")

    @abstractmethod
    def _train_epoch(self, epoch):
        """Train one epoch; returns {'loss': ..., and 'val_<metric>': ... on evaluated epochs}."""

    def _extra_state(self):
        """What a subclass needs saved besides model/optimizer (e.g. the batches' generator)."""
        return {}

    def _load_extra_state(self, state):
        pass

    def set_output(self, run, writer=None, continuing=False):
        """Where checkpoints and metrics go (`run`, the RunFolder, now created) and the experiment
        writer. continuing: the folder is the resumed checkpoint's own (base/checkpointer.py)."""
        self.writer = writer
        continuing_from = self.resumed_from if continuing else None
        self.checkpointer = Checkpointer(run, self.keep_last, self.is_main, self.logger, continuing_from)

    @property
    def saved_note(self):
        """What a failure message says was kept."""
        return NOTHING_SAVED if self.checkpointer is None else self.checkpointer.note

    def saved_anything(self):
        """Whether this run has written a checkpoint or a line of metrics (else its folder is empty)."""
        return self.checkpointer is not None and self.checkpointer.saved_any

    def is_eval_epoch(self, epoch):
        return epoch % self.eval_period == 0 or epoch == self.epochs

    def disable_monitor(self, reason):
        """Turn off model selection and early stopping (e.g. no validation split)."""
        self.logger.info(f"{reason}: monitoring and early stopping are off; model_best.pth will be the last epoch")
        self.monitor_mode, self.monitor_metric = "off", None

    def train(self):
        """The full loop. Returns the list of per-epoch logs of this call."""
        if self.checkpointer is None:
            raise RunFolderError("the trainer has no run folder: call set_output(run_dir) before train()")
        history = []
        epoch = self.start_epoch - 1
        try:
            for epoch in range(self.start_epoch, self.epochs + 1):
                if self._run_epoch(epoch, history):
                    break
        except KeyboardInterrupt:
            self.checkpointer.save_interrupted(epoch)
            raise
        except (OSError, CheckpointError) as e:  # a full disk or a vanished folder: keep what can be kept
            self.checkpointer.save_after_failure(f"Writing failed ({e})")
            if isinstance(e, CheckpointError):
                raise CheckpointError(f"{e}; {self.saved_note}") from None
            raise
        except RuntimeError as e:
            if not distributed.lost_peer(e):
                raise
            cause = f"another process of the run stopped ({distributed.short_message(e)})"
            self.checkpointer.save_after_failure(cause)
            raise TrainingError(f"{cause}; {self.saved_note}" if self.is_main else cause) from None
        if self.monitor_mode == "off" and epoch >= self.start_epoch:
            self.checkpointer.save(self.state_dict(epoch), epoch, best=True)
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
        if self.monitor_mode != "off" and self.monitor_metric in log:
            value = log[self.monitor_metric]
            improved = value > self.best_score if self.monitor_mode == "max" else value < self.best_score
            if improved:
                self.best_score, self.best_epoch = value, epoch
        stop = (
            self.monitor_mode != "off"
            and self.early_stop > 0
            and self.monitor_metric in log
            and epoch - self.best_epoch >= self.early_stop
        )
        recorded = any(k.startswith("val_") for k in log) or self.monitor_metric == "loss"
        periodic = epoch % self.save_period == 0 or epoch == self.epochs or stop
        state = self.state_dict(epoch)  # on every rank: it gathers the ranks' random states
        self.checkpointer.end_of_epoch(epoch, state, log if recorded else None, periodic, improved)
        if stop:
            self.logger.info(
                f"No improvement of {self.monitor_metric} for {epoch - self.best_epoch} epochs "
                f"(early_stop = {self.early_stop}): stopping. Best epoch: {self.best_epoch}."
            )
        return stop

    def state_dict(self, epoch):
        """Everything a checkpoint holds to continue after `epoch` exactly; the tensors are the live ones."""
        return {
            "arch": type(self.module).__name__,
            "epoch": epoch,
            "step": self.step,
            "state_dict": self.module.state_dict(),
            "optimizer": None if self.optimizer is None else self.optimizer.state_dict(),
            "lr_scheduler": None if self.lr_scheduler is None else self.lr_scheduler.state_dict(),
            "monitor_best": self.best_score,
            "best_epoch": self.best_epoch,
            "config": self.config.config,
            "rng": distributed.gather(rng_state()),  # one per rank
            "wandb_run_id": None if self.writer is None else self.writer.run_id,
            **self._extra_state(),
        }

    def _check_optimizer_shapes(self, path):
        """Refuse a loaded optimizer state whose per-parameter tensors do not have their parameter's
        shape: torch loads it without a check, and its fused kernels then write out of bounds."""
        factored = getattr(torch.optim, "Adafactor", ())  # keeps row/column statistics by design
        if isinstance(self.optimizer, factored):
            return
        for group_number, group in enumerate(self.optimizer.param_groups):
            for number, param in enumerate(group["params"]):
                for name, value in self.optimizer.state.get(param, {}).items():
                    if torch.is_tensor(value) and value.dim() and value.shape != param.shape:
                        raise CheckpointError(
                            f"{path}: the optimizer's {name!r} for parameter {number} of group {group_number} "
                            f"has shape {tuple(value.shape)}, the parameter {tuple(param.shape)}"
                        )

    def load_state_dict(self, checkpoint, path, fine_tune=False):
        """Resume: load a checkpoint's state (read from `path`) into the model, optimizer, scheduler,
        counters and generators; called after construction, before set_output. fine_tune (-c beside
        -r): the optimizer keeps its configured settings (lr and the rest), only its state is loaded.
        Reads only: nothing is written, so a checkpoint that does not fit leaves every file as it was."""
        self.logger.info(f"Resuming from checkpoint: {path} ...")
        load_weights(self.module, checkpoint, path)
        if self.optimizer is not None and checkpoint.get("optimizer") is not None:
            configured = [{k: v for k, v in group.items() if k != "params"} for group in self.optimizer.param_groups]
            try:
                self.optimizer.load_state_dict(checkpoint["optimizer"])
            except (ValueError, KeyError, TypeError) as e:
                raise CheckpointError(f"{path}: the optimizer state does not fit optimizer.type ({e})") from None
            self._check_optimizer_shapes(path)
            if fine_tune:
                for group, settings in zip(self.optimizer.param_groups, configured):
                    group.update(settings)
        if self.lr_scheduler is not None and checkpoint.get("lr_scheduler") is not None:
            try:
                self.lr_scheduler.load_state_dict(checkpoint["lr_scheduler"])
            except (ValueError, KeyError, TypeError) as e:
                raise CheckpointError(f"{path}: the lr_scheduler state does not fit lr_scheduler.type ({e})") from None
        if checkpoint.get("rng") is None:
            raise CheckpointError(f"{path}: holds no random state ('rng'), so training cannot continue from it exactly")
        self.resumed_from = checkpoint["epoch"]
        self.start_epoch = checkpoint["epoch"] + 1
        self.step = checkpoint.get("step", 0)
        saved_best = checkpoint.get("monitor_best", self.best_score)
        if saved_best != saved_best:  # NaN: nothing would ever beat it, and model_best.pth would never be written
            self.logger.warning(f"{path}: its best monitored figure is NaN; the next evaluated epoch becomes the best")
        else:
            self.best_score = saved_best
        self.best_epoch = checkpoint.get("best_epoch", 0)
        states = checkpoint["rng"]
        set_rng_state(self._for_this_rank(states, "random state"))
        if len(states) != distributed.world_size():
            self._derive_rank_streams()
        self._load_extra_state(checkpoint)
        self.logger.info(f"Checkpoint loaded. Resuming training from epoch {self.start_epoch}")

    def _for_this_rank(self, states, what):
        """This rank's entry of a per-rank list saved in a checkpoint; with another number of
        processes, rank 0's (and _derive_rank_streams gives the other ranks their own streams)."""
        rank, world = distributed.rank(), distributed.world_size()
        if len(states) != world:
            if rank == 0:
                self.logger.warning(
                    f"the checkpoint holds the {what} of {len(states)} process(es), this run has {world}: "
                    "each rank continues on a stream derived from the checkpoint's (the run is not bit-identical)"
                )
            return states[0]
        return states[rank]

    def _derive_rank_streams(self):
        """After loading rank 0's random state on every rank, give rank r > 0 a stream of its own."""
        rank = distributed.rank()
        if rank == 0:
            return
        base = int(torch.randint(0, 2**62, (1,)))  # the same on every rank: drawn from rank 0's state
        derived = int(np.random.default_rng([base, rank]).integers(2**62))
        torch.manual_seed(derived)
        np.random.seed(derived % 2**32)
        __import__("random").seed(derived)
