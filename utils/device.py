"""Devices: what `-d` names, and the settings a device gets before training on it."""

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
