"""A model too large for the machine is refused at start, with the figures, instead of failing
(or being killed) minutes later inside the allocator."""

import os

import torch

from utils.errors import ConfigError

# The share of the available memory a model may plan to take for parameters, gradients and optimizer
# state (the rest: activations, evaluation scores, the data).
BUDGET = 0.8


def available_bytes(device):
    """Free memory on `device`: CUDA's own figure, else the system's MemAvailable (None when unknown)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def planned_bytes(cls, dataset, args):
    """Bytes of the model's parameters and buffers, built on the meta device (which allocates
    nothing), with a gradient and Adam's two moments for every trainable parameter."""
    with torch.device("meta"):
        probe = cls(dataset=dataset, **args)
    total = 0
    for parameter in probe.parameters():
        total += parameter.numel() * parameter.element_size() * (4 if parameter.requires_grad else 1)
    for buffer in probe.buffers():
        total += buffer.numel() * buffer.element_size()
    return total


def check_model_memory(config, models, dataset, device):
    """ConfigError when the model would take more than BUDGET of the free memory on `device`."""
    cls, args = config.check_obj("arch", models, dataset=dataset)
    args = {k: v for k, v in args.items() if k != "dataset"}
    try:
        need = planned_bytes(cls, dataset, args)
    except (NotImplementedError, RuntimeError, TypeError):  # a model that cannot be built on meta: no estimate
        return
    free = available_bytes(device)
    if free is not None and need > BUDGET * free:
        raise ConfigError(
            f"arch: {cls.__name__} needs about {need / 2**30:.1f} GB for its weights, gradients and optimizer "
            f"state, and {device.type} has {free / 2**30:.1f} GB free; make it smaller (arch.args) or use a "
            "larger machine"
        )
