"""torch.distributed, when the script runs under torchrun; plain single-process otherwise.

torchrun sets WORLD_SIZE, RANK and LOCAL_RANK. Each process is one rank: NCCL on CUDA (one GPU
per rank, cuda:LOCAL_RANK), gloo on CPU.
"""

import logging
import os
import re
import sys

import torch
import torch.distributed as dist

from utils.device import resolve_device


def setup(device_spec):
    """Start the process group if launched by torchrun. Returns (rank, world_size, device)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    device = resolve_device(device_spec)
    if world_size == 1:
        return 0, 1, device
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size(), device


def is_distributed():
    return dist.is_available() and dist.is_initialized()


def rank():
    return dist.get_rank() if is_distributed() else 0


def world_size():
    return dist.get_world_size() if is_distributed() else 1


def all_reduce_sum(tensor):
    """Sum a tensor over ranks, in place; a no-op in a single process."""
    if is_distributed():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def gather(obj):
    """[obj of rank 0, obj of rank 1, ...] on every rank; [obj] in a single process."""
    if not is_distributed():
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def lost_peer(error):
    """Whether `error` is a collective failing because another process of the run stopped (killed,
    out of memory): NCCL raises DistBackendError; gloo a RuntimeError from its transport."""
    return is_distributed() and (isinstance(error, dist.DistError) or "gloo" in str(error))


def short_message(error):
    """A collective's error in a few words: gloo's first sentence without its source file."""
    text = re.sub(r"^\[[^\]]*\] ", "", str(error).strip().splitlines()[0] if str(error).strip() else repr(error))
    return text.split(". ")[0][:160]


def cleanup():
    if is_distributed():
        dist.destroy_process_group()


def exit_process(code):
    """End the process with this exit code; under torchrun, without the interpreter's teardown.

    Once DDP has used the process group, gloo's worker threads outlive destroy_process_group
    (the C++ reducer still holds the group). A worker that frees a finished collective after
    Python has begun shutting down tries to take the GIL, and the process aborts with
    "terminate called without an active exception" (about one exit in six under load, always
    after a run that succeeded). By the time this is called every checkpoint and log file is
    closed, so the logs and the standard streams are flushed and os._exit skips the teardown.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) == 1:
        sys.exit(code)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
