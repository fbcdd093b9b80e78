"""The user-item graph as a sparse matrix, and a fast sparse x dense product on it.

Shared by the graph models (NGCF, LightGCN). Nodes are numbered users first, then items:
node u is user u, node n_users + i is item i.
"""

import math
import warnings
from abc import abstractmethod

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn as nn

from base.base_model import BaseModel

ADJACENCY_MODES = ("symmetric", "mean")


def bipartite_adjacency(train):
    """A = [[0, R], [R^T, 0]] from the (n_users, n_items) train matrix R; CSR (N, N), N = users + items."""
    return sp.bmat([[None, train], [train.T, None]], format="csr", dtype=np.float32)


def normalized_adjacency(train, mode="symmetric"):
    """The propagation matrix, CSR (N, N) float32 with sorted indices.

    symmetric: L = D^-1/2 A D^-1/2, entry (u, i) = 1 / sqrt(|N_u| |N_i|) (NGCF paper, LightGCN).
    mean:      D^-1 (A + I), row-normalised with self-loops (the NGCF public code's default).
    Nodes of degree 0 get an empty row, not a division by zero.
    """
    adjacency = bipartite_adjacency(train)
    if mode == "mean":
        adjacency = adjacency + sp.identity(adjacency.shape[0], dtype=np.float32, format="csr")
    degree = np.asarray(adjacency.sum(axis=1)).ravel()
    with np.errstate(divide="ignore"):
        inv = np.where(degree > 0, 1.0 / degree, 0.0) if mode == "mean" else np.where(degree > 0, degree**-0.5, 0.0)
    if mode == "mean":
        matrix = sp.diags(inv) @ adjacency
    elif mode == "symmetric":
        matrix = sp.diags(inv) @ adjacency @ sp.diags(inv)
    else:
        raise ValueError(f"adjacency mode {mode!r} (accepted: {ADJACENCY_MODES})")
    matrix = matrix.tocsr().astype(np.float32)
    matrix.sort_indices()
    return matrix


def _csr(crow, col, values, shape):
    """A torch CSR tensor over arrays we built and checked ourselves (no per-call validation)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(crow, col, values, shape, check_invariants=False)


def random_words(count, device=None):
    """`count` uniformly random int64 words from torch's generator: torch.manual_seed and the RNG
    state a checkpoint stores decide them. On the CPU, torch.randint over the full int64 range
    spends most of its ~4 ns a word reducing the range; numpy's SFC64, seeded with one torch draw,
    fills the same words in ~1.7 ns (the dropout masks were 4 % of a Gowalla step)."""
    if torch.device(device or "cpu").type != "cpu":
        return torch.randint(-(2**63), 2**63 - 1, (count,), dtype=torch.int64, device=device)
    seed = int(torch.randint(0, 2**62, (1,)))
    return torch.from_numpy(np.random.SFC64(seed).random_raw(count).view(np.int64))


def keep_mask(shape, p, device=None, dtype=torch.bool):
    """Mask with each entry kept (True, or 1.0 for a float dtype) with probability 1 - p (p in steps of 1/65536).

    A random generator costs about the same per number whatever its width, so one 64-bit word
    gives four 16-bit uniforms: about 3x cheaper than torch.rand for a dropout mask.
    A float mask costs less to make and to multiply by than a bool one (no conversion on the way).
    """
    numel = math.prod(shape)
    words = random_words(-(-numel // 4), device)
    uniform16 = words.view(torch.int16)[:numel].view(shape)  # uniform on [-32768, 32767]
    threshold = round(p * 65536) - 32768
    if dtype == torch.bool:
        return uniform16 >= threshold
    return torch.ge(uniform16, threshold, out=torch.empty(shape, dtype=dtype, device=device))


def _spmm(a, x):
    """CSR (N, N) @ dense (N, d). addmm with beta=0 into a fresh tensor: on the CPU, twice as fast as
    torch.sparse.mm, which also zero-fills and accumulates. Given as both input and out, the fresh
    tensor is not first copied into the result."""
    out = x.new_empty(a.shape[0], x.shape[1])
    return torch.addmm(out, a, x, beta=0, out=out)


# Cutting A[rows] and its transpose out of A (SparseGraph.row_block) costs a few ms a step; it is
# done when a batch's distinct rows are at most this share of the nodes. On Gowalla (4 % of the
# nodes) it saved 30 % of an NGCF step, on ML-100K (64 %) it cost 2-4 ms more than it saved.
BATCH_ROWS_SHARE = 0.25


def batch_rows(nodes, n):
    """(rows, inverse, few) for a batch's `nodes` among n: rows the sorted distinct nodes (R,),
    nodes = rows[inverse], and few whether R is at most BATCH_ROWS_SHARE of n.

    A training step reads the last layer only at these rows: when they are few, it computes that
    layer with A[rows] (SparseGraph.row_block); else with the whole product, taking its rows."""
    rows, inverse = torch.unique(nodes, return_inverse=True)
    return rows, inverse, len(rows) <= BATCH_ROWS_SHARE * n


class _PairScores(torch.autograd.Function):
    """BPR's two scores from the batch's rows of every layer, without concatenating the layers.

    Each layer is (3B, d_l): its rows at [users | positives | negatives]. With u_l, p_l, n_l its
    three (B, d_l) blocks, the scores of e* = e^(0) || ... || e^(L) are
        pos = Σ_l rowwise u_l · p_l (B,)        neg = Σ_l rowwise u_l · n_l (B,)
    and each layer's gradient is one (3B, d_l) block, [g_pos p_l + g_neg n_l | g_pos u_l | g_neg u_l]:
    what the propagation's backward scatters to the graph's rows as it is. Autograd on
    cat + split + products made a (3B, D) concatenation forward, another one for the split's
    gradient and a contiguous copy of every layer's slice of it backward (NGCF, ML-100K:
    0.85 ms of a 13.5 ms step at 2 threads).
    """

    @staticmethod
    def forward(ctx, batch, *layers):
        ctx.batch = batch
        ctx.save_for_backward(*layers)
        scores = None
        for layer in layers:
            u, pn = layer.reshape(3, batch, -1)[0], layer.reshape(3, batch, -1)[1:]  # (B, d), (2, B, d)
            layer_scores = torch.mul(pn, u).sum(dim=2)  # (2, B): u·p, u·n
            scores = layer_scores if scores is None else scores.add_(layer_scores)
        return scores[0], scores[1]

    @staticmethod
    def backward(ctx, g_pos, g_neg):
        batch = ctx.batch
        g = torch.stack([g_pos, g_neg]).unsqueeze(2)  # (2, B, 1)
        grads = []
        for layer in ctx.saved_tensors:
            u, p, n = layer.reshape(3, batch, -1)  # (B, d) each
            grad = layer.new_empty(3, batch, layer.shape[1])
            torch.mul(p, g[0], out=grad[0]).addcmul_(n, g[1])  # ∂u = g_pos p + g_neg n
            torch.mul(u, g, out=grad[1:])  # ∂p = g_pos u, ∂n = g_neg u
            grads.append(grad.view(layer.shape))
        return (None, *grads)


def pair_scores(batch, layers):
    """(pos, neg), each (B,): e_u*ᵀ e_p* and e_u*ᵀ e_n*, where e* concatenates `layers`, each (3B, d_l)
    and holding the rows of users, positives and negatives in that order (B = batch)."""
    return _PairScores.apply(batch, *layers)


class _SpMM(torch.autograd.Function):
    """y = M x for a CSR matrix M given with its transpose (also CSR), which the backward uses.

    For the whole graph M = A, and A^T has A's sparsity with its values permuted (A^T values =
    A values[perm]), so node dropout, which changes the values only, needs no new index arrays.
    """

    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda", cast_inputs=torch.float32)  # sparse products in float32
    def forward(ctx, x, matrix, transposed):
        ctx.transposed = transposed
        return _spmm(matrix, x)

    @staticmethod
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx, grad):
        return _spmm(ctx.transposed, grad.contiguous()), None, None


class SparseGraph(nn.Module):
    """A fixed (N, N) sparse matrix, kept on the model's device, not in its state_dict.

    forward(x: (N, d), weights=None) -> (N, d) = A x. `weights` comes from `dropout(p)`: the
    matrix's values with some dropped (node dropout), the structure untouched; None = A itself.
    """

    def __init__(self, matrix):
        super().__init__()
        matrix = matrix.tocsr()
        matrix.sort_indices()
        # Position of each entry of A^T in A's value array: transpose an array of positions.
        positions = sp.csr_matrix(
            (np.arange(matrix.nnz, dtype=np.float64), matrix.indices, matrix.indptr), shape=matrix.shape
        )
        transposed = positions.T.tocsr()
        transposed.sort_indices()
        self.shape = matrix.shape
        # 32-bit indices where they fit: MKL's CPU product takes them as they are and converts 64-bit
        # ones on every call, single-threaded (ML-100K, 2 threads: 0.49 instead of 0.5-0.76 ms a product).
        index_dtype = np.int32 if max(matrix.nnz, *matrix.shape) < 2**31 else np.int64
        for name, array in (
            ("crow", matrix.indptr),
            ("col", matrix.indices),
            ("crow_t", transposed.indptr),
            ("col_t", transposed.indices),
            ("perm_t", transposed.data),
        ):
            self.register_buffer(name, torch.from_numpy(np.asarray(array, dtype=index_dtype)), persistent=False)
        self.register_buffer("values", torch.from_numpy(matrix.data.astype(np.float32)), persistent=False)
        # A symmetric A (the normalised Laplacian) is its own transpose: no permutation needed.
        self.symmetric = bool(np.array_equal(matrix.data[transposed.data.astype(np.int64)], matrix.data))

    @property
    def nnz(self):
        return self.values.numel()

    def dropout_values(self, p):
        """Values with a fraction p of the entries zeroed and the rest scaled by 1 / (1 - p)."""
        keep = keep_mask((self.nnz,), p, self.values.device, self.values.dtype)
        return keep.mul_(self.values).mul_(1.0 / (1.0 - p))

    def dropout(self, p):
        """(values, values of A^T) for one training step, with a share p of the entries dropped
        (p = 0: A itself). Computed once per step and shared by every layer."""
        values = self.dropout_values(p) if p > 0 else self.values
        return values, self.transposed_values(values)

    def transposed_values(self, values):
        """The values of A^T in its CSR order, for A with these values."""
        if values is self.values and self.symmetric:
            return values
        return torch.index_select(values, 0, self.perm_t)

    def matrices(self, weights=None):
        """A and A^T as CSR tensors, with the values `weights` from dropout(p) (None: A itself)."""
        values, values_t = self.dropout(0.0) if weights is None else weights
        return _csr(self.crow, self.col, values, self.shape), _csr(self.crow_t, self.col_t, values_t, self.shape)

    def row_block(self, rows, weights=None):
        """A[rows] (R, N) and its transpose (N, R) as CSR tensors, for sorted unique `rows` (R,), with
        the values `weights` from dropout(p) (None: A itself). A training step reads its last layer
        only at the batch's rows and, when they are few (batch_rows), computes it with these."""
        values = self.values if weights is None else weights[0]
        n, r, index = self.shape[0], len(rows), dict(dtype=self.crow.dtype, device=rows.device)
        counts = self.crow[rows + 1] - self.crow[rows]  # entries per selected row, (R,)
        crow = torch.zeros(r + 1, **index)
        torch.cumsum(counts, 0, out=crow[1:])
        nnz = int(crow[-1])
        # Entry j of the block, in row k, is entry self.crow[rows[k]] + (j - crow[k]) of A.
        position = torch.repeat_interleave(self.crow[rows] - crow[:-1], counts, output_size=nnz)
        position += torch.arange(nnz, **index)
        col, block_values = torch.index_select(self.col, 0, position), torch.index_select(values, 0, position)
        # The transpose: the same entries ordered by column (stable, so rows stay sorted within one).
        order = torch.argsort(col, stable=True)
        crow_t = torch.zeros(n + 1, **index)
        torch.cumsum(torch.bincount(col, minlength=n), 0, out=crow_t[1:])
        row_of_entry = torch.repeat_interleave(torch.arange(r, **index), counts, output_size=nnz)
        block = _csr(crow, col, block_values, (r, n))
        col_t, values_t = torch.index_select(row_of_entry, 0, order), torch.index_select(block_values, 0, order)
        return block, _csr(crow_t, col_t, values_t, (n, r))

    def forward(self, x, weights=None):
        return _SpMM.apply(x, *self.matrices(weights))

    def rows_product(self, x, block):
        """A[rows] x, (R, d), for block = row_block(rows, weights); differentiable in x (A[rows]ᵀ backward)."""
        return _SpMM.apply(x, *block)

    def to_dense(self, values=None):
        values = self.values if values is None else values
        return _csr(self.crow, self.col, values, self.shape).to_dense()


class PropagationModel(BaseModel):
    """A model whose scores come from one propagation over the whole graph: subclasses implement
    `propagate() -> (user_all (n_users, D), item_all (n_items, D))` and `forward`.

    In eval mode one propagation serves every evaluation batch; it is recomputed after any
    train()/eval() switch or load_state_dict.
    """

    _cache = None

    @abstractmethod
    def propagate(self):
        """All users' and items' final representations."""

    def full_scores(self, users):
        if self.training:
            user_all, item_all = self.propagate()
        else:
            if self._cache is None:
                self._cache = self.propagate()
            user_all, item_all = self._cache
        # The (B, n_items) scores as a view of the item-major product (n_items, B): on the CPU MKL
        # writes that one about 30 % faster, and the ranking (trainer/evaluation.py) reads both layouts.
        return torch.mm(item_all, torch.index_select(user_all, 0, users).T).T  # (B, n_items)

    def train(self, mode=True):
        self._cache = None
        return super().train(mode)

    def load_state_dict(self, state_dict, strict=True, assign=False):
        self._cache = None
        return super().load_state_dict(state_dict, strict=strict, assign=assign)
