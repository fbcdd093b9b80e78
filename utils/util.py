"""Small shared helpers: JSON files, seeding, devices."""

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
    if not path.is_file():
        kind = "a folder, not a file" if path.is_dir() else "not found"
        raise ConfigError(f"{path}: {kind} (expected a JSON config file)")
    text = path.read_text(encoding="utf-8")
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}:{e.lineno}:{e.colno}: malformed JSON: {e.msg}") from None


def write_json(content, path):
    """Write JSON atomically (temporary file + rename), pretty-printed."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(content, f, indent=4)
        f.write("\n")
    os.replace(tmp, path)


def seed_everything(seed):
    """Seed Python, NumPy's global generator and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(spec):
    """Turn 'auto' | 'cpu' | 'cuda' | 'cuda:N' | 'mps' into a torch.device that exists here."""
    spec = str(spec).strip().lower()
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(spec)
    except (RuntimeError, ValueError):
        raise ConfigError(f"device '{spec}' is not a device name (accepted: auto, cpu, cuda, cuda:N, mps)") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ConfigError(f"device '{spec}': CUDA is not available on this machine (use auto or cpu)")
        if device.index is not None and device.index >= count:
            raise ConfigError(f"device '{spec}': this machine has {count} CUDA device(s) (cuda:0..cuda:{count - 1})")
    elif device.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ConfigError(f"device '{spec}': Apple MPS is not available on this machine (use auto or cpu)")
    elif device.type != "cpu":
        raise ConfigError(f"device '{spec}' is not supported (accepted: auto, cpu, cuda, cuda:N, mps)")
    return device


def keep_freed_memory():
    """Ask glibc's malloc to reuse freed blocks instead of returning them to the system.

    Training allocates and frees tensors of (nodes x d) floats every step, tens of MB each on a
    large graph, and evaluation blocks of scores of 100+ MB; by default glibc maps blocks over
    128 KB (at most 32 MB) with mmap and unmaps them on free, and trims the heap, so the next use
    pays a page fault for every 4 KB again. Here nothing is mmapped and nothing trimmed. Measured
    on Gowalla, one core: NGCF step 0.56 -> 0.45 s (keeping blocks up to 32 MB), then -0.03 s
    and evaluation -2 s (no mmap at all). Freed blocks stay with the process: LightGCN's peak
    RSS on Gowalla went from 1.2 to 1.8 GB. No-op off glibc.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_max = -1, -4
    ok = libc.mallopt(m_mmap_max, 0)  # every block from the heap, none mmapped (and unmapped on free)
    return bool(ok and libc.mallopt(m_trim_threshold, 1 << 30))
