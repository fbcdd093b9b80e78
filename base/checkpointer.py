"""Where a run's checkpoints and metrics go, and what an interrupt or a failed write can still save."""

import copy
import json
import shutil

from utils.checkpoint import save_checkpoint
from utils.errors import CheckpointError
from utils.files import append_line, deferred_signals, read_jsonl, write_atomic

NOTHING_SAVED = "nothing of this run could be saved"


class Checkpointer:
    """Writes a trainer's states (its `state_dict(epoch)`) into the run folder (utils/runs.py:
    RunFolder): `checkpoint-epoch<N>.pth`, keeping the newest `keep_last` (0 = all), `model_best.pth`
    and `metrics.jsonl`. Only the main process writes.

    The last finished epoch can always be saved: when it was written (its checkpoint or
    model_best.pth) the file is where it is; only an epoch that is neither is held in memory, one
    copy of its state, until the next epoch ends.

    continuing_from: the epoch of the checkpoint a run continues in its own folder: the folder's
    history after it is cut, and its earlier epoch checkpoints count towards keep_last.
    """

    def __init__(self, run, keep_last=0, is_main=True, logger=None, continuing_from=None):
        self.run, self.keep_last, self.is_main, self.logger = run, keep_last, is_main, logger
        self.saved_epochs = []
        self.saved_any = False  # whether a checkpoint or a metrics line was written (else the folder is empty)
        self.note = NOTHING_SAVED  # what a failure message says was kept
        self.finished = None  # (epoch, the file holding its state or None, its state when held in memory)
        if continuing_from is not None:
            self._truncate_metrics(continuing_from)
            self.saved_epochs = [epoch for epoch in run.epoch_checkpoints() if epoch <= continuing_from]

    def end_of_epoch(self, epoch, state, log, periodic, best):
        """Record a finished epoch: its metrics line (when `log` is given), its checkpoint when
        `periodic`, model_best.pth when `best`. `state` holds the live tensors and is written as it is."""
        # Held before anything is written: if a write fails, this epoch can still be saved. A copy
        # only where nothing will be written; the other processes never write.
        written = periodic or best or not self.is_main
        self.finished = (epoch, None, state if written else copy.deepcopy(state))
        if log is not None and self.is_main:
            append_line(self.run.metrics, json.dumps(log))
            self.saved_any = True
        if periodic:
            self.save(state, epoch)
            self.saved_epochs.append(epoch)
            while self.keep_last and len(self.saved_epochs) > self.keep_last:
                self.run.checkpoint(self.saved_epochs.pop(0)).unlink(missing_ok=True)
        if best:
            self.save(state, epoch, best=True)
        if periodic or best:  # on disk now: the next steps change the live tensors `state` holds
            self.finished = (epoch, self.run.checkpoint(epoch) if periodic else self.run.best, None)

    def save(self, state, epoch, best=False):
        """Write `state` as epoch `epoch`'s checkpoint, or as model_best.pth."""
        if self.is_main:
            path = self.run.best if best else self.run.checkpoint(epoch)
            save_checkpoint(state, path)
            self.saved_any = True
            self.logger.info(f"Saving {'current best' if best else 'checkpoint'}: {path}")

    def save_interrupted(self, epoch):
        """Ctrl-C or SIGTERM during `epoch`: that epoch is abandoned; the last finished one is saved."""
        if not self.is_main:
            return
        with deferred_signals():  # a second signal waits until the save is said, not only written
            finished, path = self._save_last_finished(epoch - 1)
            if path is None or not path.is_file():
                self.logger.info(f"Interrupted during epoch {epoch}; no epoch has finished, nothing to save.")
                return
            resume = f"python train.py -r {path}"
            self.logger.info(f"Interrupted during epoch {epoch}; epoch {finished} is saved. Resume with:\n    {resume}")

    def save_after_failure(self, cause):
        """A write failed (a full disk) or another process stopped: try to save the last finished epoch."""
        if not self.is_main or self.finished is None:
            return
        epoch = self.finished[0]
        # torchrun's SIGTERM often follows a lost peer within the save: it waits until the save is said
        with deferred_signals():
            try:
                _, path = self._save_last_finished(epoch)
                self.note = f"epoch {epoch} is saved; resume with: python train.py -r {path}"
                self.logger.error(f"{cause}; epoch {epoch} is saved in {path}")
            except (OSError, CheckpointError) as again:
                self.logger.error(f"{cause} and epoch {epoch} could not be saved ({again})")

    def _save_last_finished(self, default_epoch):
        """Make checkpoint-epoch<N>.pth of the last finished epoch N: (N, its path)."""
        if self.finished is None:
            return default_epoch, self.run.checkpoint(default_epoch) if default_epoch > 0 else None
        epoch, on_disk, state = self.finished
        path = self.run.checkpoint(epoch)
        if state is not None:
            save_checkpoint(state, path)
        elif on_disk != path:  # only in model_best.pth: the same state, copied
            with open(on_disk, "rb") as source:
                write_atomic(path, lambda f: shutil.copyfileobj(source, f))
        self.saved_any = True
        return epoch, path

    def _truncate_metrics(self, last_epoch):
        """Forget figures of epochs after the checkpoint, so the history reads as one straight run."""
        if not self.is_main or not self.run.metrics.is_file():
            return
        kept = [record for record in read_jsonl(self.run.metrics) if record.get("epoch", 0) <= last_epoch]
        write_atomic(self.run.metrics, lambda f: f.write("".join(json.dumps(r) + "\n" for r in kept)), binary=False)
