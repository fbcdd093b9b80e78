"""Run folders: where a run writes, created exclusively, and locked while a process trains in it.

    <save_dir>/models/<name>/<run_id>/   config.json, checkpoints, metrics.jsonl (and .lock)
    <save_dir>/log/<name>/<run_id>/      info.log, wandb/

A new run makes its folder with one exclusive mkdir (a taken --run-id is an error; the default id,
a timestamp and a random suffix, is drawn again). A resumed run continues in its checkpoint's
folder only when that is a run folder and no live process holds its lock.
"""

import contextlib
import os
import secrets
import shutil
from datetime import datetime
from pathlib import Path

from utils.errors import CheckpointError, RunFolderError

LOCK_NAME = ".lock"
RUN_FILE_SUFFIXES = (".pth", ".json", ".jsonl", ".png", ".log")  # what a run and test.py write in its folder


class RunLock:
    """An exclusive lock on a run folder, held by an open file (released when the process ends,
    however it ends). flock on POSIX, msvcrt.locking on Windows."""

    def __init__(self, folder, name=LOCK_NAME):
        self.path = Path(folder) / name
        self.fd = None

    def acquire(self):
        """Take the lock; False when another process holds it."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
        try:
            if os.name == "nt":
                import msvcrt

                msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            else:
                import fcntl

                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd
        return True

    def holder(self):
        with contextlib.suppress(OSError, ValueError):
            return int(self.path.read_text().strip())
        return None

    def release(self):
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.fd)  # closing the file drops the lock
            self.fd = None


def is_live(folder):
    """Whether a live process holds the run folder's lock."""
    if not (Path(folder) / LOCK_NAME).is_file():
        return False
    lock = RunLock(folder)
    try:
        taken = lock.acquire()
    except OSError:  # a lock that cannot be opened (a link planted there): not a folder to train in
        return True
    if taken:
        lock.release()
        return False
    return True


def default_run_id():
    """A timestamp and a random suffix: two runs started in the same second get different folders."""
    return f"{datetime.now().strftime('%m%d_%H%M%S')}_{secrets.token_hex(3)}"


class RunFolder:
    """The two folders of one run, every file name in them, and its lock once taken. Everyone asks
    it for a run file's path (checkpoint(epoch), best, metrics, curves, config)."""

    CHECKPOINT_PREFIX = "checkpoint-epoch"

    def __init__(self, save_dir, name, run_id):
        self.save_dir, self.name, self.run_id = Path(save_dir), name, run_id
        self.path = self.save_dir / "models" / name / run_id
        self.log_dir = self.save_dir / "log" / name / run_id
        self.lock = None
        self.created = False
        self.made = []  # the folders this run created above its own two, innermost first

    @classmethod
    def at(cls, path):
        """The run folder `path` (<save_dir>/models/<name>/<run_id>), whatever its parents are called."""
        path = Path(path)
        return cls(path.parent.parent.parent, path.parent.name, path.name)

    def checkpoint(self, epoch):
        return self.path / f"{self.CHECKPOINT_PREFIX}{epoch}.pth"

    @property
    def best(self):
        return self.path / "model_best.pth"

    @property
    def metrics(self):
        return self.path / "metrics.jsonl"

    @property
    def curves(self):
        return self.path / "curves.png"

    @property
    def config(self):
        return self.path / "config.json"

    @classmethod
    def epoch_of(cls, path):
        """The epoch of a checkpoint-epoch<N>.pth path, or None for any other file."""
        path = Path(path)
        epoch = path.stem.removeprefix(cls.CHECKPOINT_PREFIX)
        is_epoch = path.suffix == ".pth" and path.stem.startswith(cls.CHECKPOINT_PREFIX) and epoch.isdigit()
        return int(epoch) if is_epoch else None

    def epoch_checkpoints(self):
        """{epoch: path} of the epoch checkpoints in the folder, by epoch."""
        found = {self.epoch_of(p): p for p in self.path.glob(f"{self.CHECKPOINT_PREFIX}*.pth")}
        return dict(sorted((epoch, path) for epoch, path in found.items() if epoch is not None))

    def create(self, fixed_id):
        """Make the folder exclusively and lock it. fixed_id: the user chose run_id (--run-id), so an
        existing folder is an error; otherwise a fresh default id is drawn until one is free."""
        self.made = [p for p in (self.path.parent, *self.path.parent.parents) if not p.exists()]
        self.made += [p for p in (self.log_dir.parent, *self.log_dir.parent.parents) if not p.exists()]
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise self._unwritable(e) from None
        for _ in range(100):
            try:
                os.mkdir(self.path)
                break
            except FileExistsError:
                if fixed_id:
                    raise RunFolderError(
                        f"--run-id {self.run_id}: the run folder {self.path} already exists; resume it with "
                        f"-r {self.path}/<checkpoint>.pth, or choose another --run-id"
                    ) from None
                self.run_id = default_run_id()
                self.path, self.log_dir = self.path.parent / self.run_id, self.log_dir.parent / self.run_id
            except OSError as e:
                raise self._unwritable(e) from None
        self.created = True
        self._lock()
        self._make_log_dir()
        return self

    def _unwritable(self, error):
        return RunFolderError(
            f"trainer.save_dir: cannot write the run folder {self.path} ({error.strerror or error}); "
            "choose a writable folder"
        )

    def reopen(self):
        """Lock the existing folder of a resumed run; an error when a live process holds it."""
        self._lock()
        self._make_log_dir()
        return self

    def _lock(self):
        lock = RunLock(self.path)
        try:
            taken = lock.acquire()
        except OSError as e:
            raise RunFolderError(f"cannot lock the run folder {self.path} ({e.strerror or e})") from None
        if not taken:
            pid = lock.holder()
            raise RunFolderError(
                f"{self.path} is in use by another training process{f' (pid {pid})' if pid else ''}; "
                "wait for it to end, or resume into a new folder with --run-id NEW"
            )
        self.lock = lock

    def _make_log_dir(self):
        try:
            self.log_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise RunFolderError(f"cannot create the log folder {self.log_dir} ({e.strerror or e})") from None

    def release(self):
        if self.lock is not None:
            self.lock.release()
            self.lock = None
            with contextlib.suppress(OSError):
                (self.path / LOCK_NAME).unlink()

    def remove_if_empty(self, keep_log):
        """For a run that ended before its first epoch: remove what it made (its folder, holding only
        config.json, and its log folder unless keep_log). Anything else in them is left alone."""
        if not self.created:
            return False
        self.release()
        leftovers = (
            [p for p in self.path.iterdir() if p.name not in (self.config.name, LOCK_NAME)]
            if self.path.is_dir()
            else []
        )
        if leftovers:
            return False
        shutil.rmtree(self.path, ignore_errors=True)
        if not keep_log:
            shutil.rmtree(self.log_dir, ignore_errors=True)
        for folder in sorted(self.made, key=lambda p: len(p.parts), reverse=True):  # those left empty
            with contextlib.suppress(OSError):
                folder.rmdir()
        return True


def run_folder_of(checkpoint):
    """(save_dir, name, run_id) when `checkpoint` sits in a run folder <save_dir>/models/<name>/<run_id>/, else None."""
    path = Path(checkpoint).resolve()
    run = path.parent
    if run.parent.parent.name != "models" or not run.name or not run.parent.name:
        return None
    return run.parent.parent.parent, run.parent.name, run.name


def find_latest_checkpoint(save_dir, name):
    """The newest checkpoint-epoch<N>.pth under save_dir/models/name/*/ (by the files' own times),
    leaving out run folders that a live process is training in (for `-r latest`)."""
    runs_dir = Path(save_dir) / "models" / name
    candidates, live = [], []
    for folder in sorted(p for p in runs_dir.glob("*") if p.is_dir()):
        checkpoints = RunFolder(save_dir, name, folder.name).epoch_checkpoints()
        if checkpoints and is_live(folder):
            live.append(folder.name)
            continue
        candidates += [(path.stat().st_mtime, epoch, str(path), path) for epoch, path in checkpoints.items()]
    if not candidates:
        busy = f" ({', '.join(sorted(set(live)))} in use by a live run)" if live else ""
        raise CheckpointError(
            f"-r latest: no checkpoint-epoch<N>.pth under {runs_dir}/*/{busy} "
            "(the config's trainer.save_dir and name say where runs are)"
        )
    return max(candidates)[3]
