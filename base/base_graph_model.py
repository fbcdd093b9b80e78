"""The base of the models whose embeddings propagate over the user-item graph (NGCF, LightGCN)."""

import torch

from base.base_model import BaseModel
from utils import checks
from utils.errors import ConfigError

IMPLS = ("auto", "reference", "fused")


def bernoulli_keep_mask(shape, p, device=None, dtype=torch.bool):
    """A mask of `shape` with each entry kept (True, or 1.0 for a float dtype) with probability 1 - p."""
    keep = torch.empty(shape, device=device, dtype=torch.float32 if dtype == torch.bool else dtype)
    keep.bernoulli_(1 - p)
    return keep.bool() if dtype == torch.bool else keep


class GraphModel(BaseModel):
    """A subclass builds `self.graph` (model/graph.py: SparseGraph) and implements `propagate()` ->
    (users (n_users, D), items (n_items, D)), their final representations, and `forward(batch)`.

    impl: who computes a training step. 'reference' is the model file's own plain-autograd code,
    the paper's equations line by line; 'fused' the CPU kernels of model/fast/ (same values and
    gradients, tested), which the model's forward() switches to in one place; 'auto' takes the
    fused ones on the CPU and the reference code elsewhere (the kernels are tuned for a CPU: they
    sync with the host to cut a batch's rows out of the graph, and on a GPU the plain products are
    the ones its libraries optimise). Evaluation always propagates with the model's own code: in
    eval mode one propagation serves every evaluation batch; it is recomputed after any
    train()/eval() switch or load_state_dict.
    """

    # Where the masks of both dropouts come from when set: tests put fixed masks here. Otherwise the
    # reference code draws torch's Bernoulli masks and the kernels model/fast's (masks.py).
    mask_source = None

    def __init__(self, impl="auto"):
        super().__init__()
        self.impl = checks.one_of("arch.args.impl", impl, IMPLS)
        self._cache = None
        self._fused = None  # decided on the model's device, at on_device() or first use

    def fused_unavailable(self):
        """Why the fused kernels cannot compute this configuration, or None."""
        if self.graph.storage != "csr":
            return f"the graph is not stored as sparse CSR on this device ({self.graph.storage})"
        return None

    def _choose_impl(self, device):
        """(use the fused kernels?, the choice in words)."""
        reason = self.fused_unavailable()
        if self.impl == "fused":
            if reason:
                raise ConfigError(f"arch.args.impl: 'fused' cannot run here: {reason} (use 'auto' or 'reference')")
            return True, "fused (as configured)"
        if self.impl == "reference":
            return False, "reference (as configured)"
        if reason:
            return False, f"reference ({reason})"
        if device.type == "cpu":
            return True, "fused (the CPU kernels of model/fast/)"
        return False, f"reference (plain autograd on {device.type}; the fused kernels are tuned for the CPU)"

    @property
    def fused(self):
        if self._fused is None:
            self._fused, _ = self._choose_impl(self.graph.values.device)
        return self._fused

    def on_device(self, device):
        placed = self.graph.place(device)
        self._fused, choice = self._choose_impl(torch.device(device))
        return "; ".join(line for line in (placed, f"{type(self).__name__}: impl {self.impl} -> {choice}") if line)

    def dropout(self, x, p, draw=bernoulli_keep_mask):
        """Standard dropout while training: x ⊙ keep / (1 - p), each entry kept with probability 1 - p;
        `draw(shape, p, device, dtype)` makes the mask (unless mask_source is set)."""
        if not self.training or p == 0:
            return x
        draw = self.mask_source or draw
        return x * draw(x.shape, p, x.device, x.dtype) * (1.0 / (1.0 - p))

    def full_scores(self, users, history):
        """(B, n_items): e_uᵀ e_i for every item; graph models rank from the embeddings alone."""
        if self.training:
            user_all, item_all = self.propagate()
        else:
            if self._cache is None:
                self._cache = self.propagate()
            user_all, item_all = self._cache
        user_rows = torch.index_select(user_all, 0, users)  # (B, D)
        if user_rows.device.type == "cpu":
            # The (B, n_items) scores as a view of the item-major product (n_items, B): MKL writes
            # that one faster, and the ranking (trainer/evaluation.py) reads either layout.
            return torch.mm(item_all, user_rows.T).T
        return user_rows @ item_all.T

    def train(self, mode=True):
        self._cache = None
        return super().train(mode)

    def load_state_dict(self, state_dict, strict=True, assign=False):
        self._cache = None
        return super().load_state_dict(state_dict, strict=strict, assign=assign)
