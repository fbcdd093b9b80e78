"""Devices: what `-d` names, and the settings a device gets before training on it (CPU threads,
the allocator)."""

import ctypes
import os
from pathlib import Path

import torch

from utils.errors import ConfigError


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


def configure_device(device):
    """On CUDA, TF32 for the training products (Ampere and newer: float32 range, 10-bit mantissa,
    several times the fp32 speed); evaluation scores in full fp32 (trainer/evaluation.py)."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


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
