"""Dropout masks. On the CPU a mask is cut from random 64-bit words (four 16-bit uniforms a word):
a generator costs about the same per number whatever its width. Elsewhere one Bernoulli kernel."""

import math

import numpy as np
import torch

from base.base_graph_model import bernoulli_keep_mask


def random_words(count, device=None):
    """`count` uniformly random int64 words, decided by torch's generator (torch.manual_seed and
    the RNG state a checkpoint stores). On the CPU they come from numpy's SFC64 seeded with one
    torch draw: torch.randint over the full int64 range spends most of its time reducing the range."""
    if torch.device(device or "cpu").type != "cpu":
        return torch.randint(-(2**63), 2**63 - 1, (count,), dtype=torch.int64, device=device)
    seed = int(torch.randint(0, 2**62, (1,)))
    return torch.from_numpy(np.random.SFC64(seed).random_raw(count).view(np.int64))


def keep_mask(shape, p, device=None, dtype=torch.bool):
    """A mask of `shape` with each entry kept (True, or 1.0 for a float dtype) with probability
    1 - p, the rest 0: x * keep_mask(...) / (1 - p) is dropout. On the CPU p is rounded to a
    multiple of 1/65536; a float mask there costs less to make and to multiply by than a bool one."""
    device = torch.device(device or "cpu")
    if device.type != "cpu":
        return bernoulli_keep_mask(shape, p, device, dtype)
    numel = math.prod(shape)
    words = random_words(-(-numel // 4), device)
    uniform16 = words.view(torch.int16)[:numel].view(shape)  # uniform on [-32768, 32767]
    threshold = round(p * 65536) - 32768
    if dtype == torch.bool:
        return uniform16 >= threshold
    return torch.ge(uniform16, threshold, out=torch.empty(shape, dtype=dtype, device=device))
