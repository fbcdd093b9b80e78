"""Small shared helpers: reading configs, seeding, threads, the allocator."""

import ctypes
import json
import os
import random
from pathlib import Path

import numpy as np
import torch

from utils.errors import ConfigError


def read_json(path):
    """Read a JSON file; a syntax error names the file, line and column."""
    path = Path(path)
    if not str(path).strip():
        raise ConfigError("the config path is empty (expected a JSON config file)")
    if not path.is_file():
        kind = "a folder, not a file" if path.is_dir() else "not found"
        raise ConfigError(f"{path}: {kind} (expected a JSON config file)")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise ConfigError(
            f"{path}:{line}: not UTF-8 text (byte 0x{raw[e.start]:02x}); save the config as UTF-8"
        ) from None
    try:
        return json.loads(text, object_pairs_hook=lambda pairs: no_repeated_keys(pairs, path))
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}:{e.lineno}:{e.colno}: malformed JSON: {e.msg}") from None
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply to be a config") from None


def no_repeated_keys(pairs, path):
    """A JSON object as a dict; a key given twice in one object is an error (which one wins is not
    something a config should leave to chance)."""
    seen = {}
    for key, value in pairs:
        if key in seen:
            raise ConfigError(f"{path}: the key {key!r} is given twice in one object; keep one")
        seen[key] = value
    return seen


def seed_everything(seed):
    """Seed Python, NumPy's global generator and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def available_cpus():
    """The CPUs this process may use: its affinity, capped by a container's CPU quota (cgroup v2)."""
    try:
        count = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        count = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            count = min(count, max(1, int(quota) // int(period)))
    except (OSError, ValueError):
        pass
    return count


def set_threads(threads):
    """torch's intra-op threads: `threads`, or with 'auto' the CPUs this process may use shared out
    over the processes of a torchrun job on this machine. Returns torch.get_num_threads()."""
    if threads == "auto":
        threads = max(1, available_cpus() // int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    torch.set_num_threads(threads)
    return torch.get_num_threads()


def keep_freed_memory():
    """On the CPU, ask glibc's malloc to reuse freed blocks instead of returning them to the system.

    A training step allocates and frees (nodes x d) arrays, tens of MB each on a large graph; by
    default glibc maps blocks over 32 MB with mmap and unmaps them on free, and trims the heap, so
    every reuse pays page faults again. The price: freed blocks stay with the process, so its peak
    resident memory is higher (bench/RESULTS.md). train.py calls it for CPU runs only. No-op off glibc.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_max = -1, -4
    ok = libc.mallopt(m_mmap_max, 0)  # every block from the heap, none mmapped (and unmapped on free)
    return bool(ok and libc.mallopt(m_trim_threshold, 1 << 30))
