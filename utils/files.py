"""Writing files so that a crash, a kill, a full disk or a planted link loses nothing.

- `write_atomic`: a fresh temporary file in the target's folder (created exclusively, so a link
  planted at a guessable name is never followed), flushed and synced, then renamed over the
  target: readers see the old file or the new one, never half of one.
- `append_line`: appends refuse to follow a symbolic link at the path.
- `deferred_signals`: Ctrl-C / SIGTERM / SIGHUP arriving during a write wait until it is done.
- `check_output_file`: an output path given on the command line is checked before any work: a
  writable file that is none of the command's inputs.
"""

import contextlib
import errno
import json
import logging
import os
import signal
import tempfile
import threading
from pathlib import Path

from utils.errors import ConfigError

logger = logging.getLogger("files")
_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


@contextlib.contextmanager
def deferred_signals():
    """Hold interrupt signals until the block ends, then deliver the first one (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []
    previous = {}
    for signum in _SIGNALS:
        try:
            previous[signum] = signal.signal(signum, lambda number, frame: received.append(number))
        except (ValueError, OSError):  # not settable here
            pass
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if received:  # deliver it now, to the handler it was meant for
            handler = previous.get(received[0])
            if callable(handler):
                handler(received[0], None)
            elif handler == signal.SIG_DFL:
                signal.raise_signal(received[0])


def process_umask():
    """The process's umask (read by setting it and putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomic(path, write, binary=True):
    """Call write(file) on a temporary file beside `path`, then rename it to `path`. On any error
    the temporary file is removed and the old `path` is left as it was; the error is re-raised."""
    path = Path(path)
    if path.exists() and not path.is_symlink() and not path.is_file() and not path.is_dir():
        # a device or pipe (--topk-out /dev/null): renaming over it would replace it, for root even /dev's
        raise OSError(errno.EINVAL, "not a regular file (a device, pipe or socket); refusing to replace it", str(path))
    with deferred_signals():
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            if hasattr(os, "fchmod"):  # mkstemp's 0600 would hide checkpoints from a team's shared save_dir
                os.fchmod(fd, 0o666 & ~process_umask())
            with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})) as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


def write_json(content, path):
    """Write JSON atomically, pretty-printed."""

    def dump(f):
        json.dump(content, f, indent=4)
        f.write("\n")

    write_atomic(path, dump, binary=False)


def append_line(path, line):
    """Append one line (no newline in it) and sync it; a symbolic link at `path` is refused."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
    if not hasattr(os, "O_NOFOLLOW") and Path(path).is_symlink():
        raise OSError(f"{path} is a symbolic link; refusing to append to it")
    with deferred_signals():
        fd = os.open(path, flags, 0o644)
        try:
            os.write(fd, (line + "\n").encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)


def read_jsonl(path):
    """The JSON objects of a file, one a line. A torn last line (a write cut short) is dropped with a
    warning; a bad line elsewhere is an error naming file:line."""
    path = Path(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as e:
            if number == len(lines):
                logger.warning(f"{path}:{number}: the last line is incomplete (a write was cut short); it is ignored")
                break
            raise ValueError(f"{path}:{number}: not a JSON object ({e.msg})") from None
    return records


def check_output_file(path, option, inputs=()):
    """A file that can be written: its folder exists and is writable, it is not a folder, and it is
    none of `inputs` (the checkpoint, the run's files, the data's files), which it would replace."""
    path = Path(path)
    if not str(path).strip():
        raise ConfigError(f"{option}: the path is empty")
    if path.is_dir():
        raise ConfigError(f"{option}: {path} is a folder; give a file name such as {path / 'recs.csv'}")
    if path.exists() and not path.is_file():
        raise ConfigError(f"{option}: {path} is not a regular file (a device, pipe or socket); give a file name")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise ConfigError(f"{option}: the folder {folder} does not exist")
    for existing in inputs:
        if Path(existing).exists() and path.exists() and path.resolve() == Path(existing).resolve():
            raise ConfigError(f"{option}: {path} is {existing}, which this command reads; give another file name")
    if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ConfigError(f"{option}: {path} cannot be written (permission denied)")
    return path
