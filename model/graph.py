"""The user-item graph: its normalised adjacency, and that matrix on the model's device.

Shared by the graph models (NGCF, LightGCN). Nodes are numbered users first, then items:
node u is user u, node n_users + i is item i.
"""

import contextlib
import warnings

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn as nn
import torch.nn.functional as F

ADJACENCY_MODES = ("symmetric", "mean")

# Where a device has no sparse CSR products (Apple MPS), a graph up to this size is kept as a
# dense (N, N) matrix on the device; a larger one stays on the CPU for its products.
DENSE_FALLBACK_BYTES = 2**29


def bipartite_adjacency(train):
    """A = [[0, R], [R^T, 0]] from the (n_users, n_items) train matrix R; CSR (N, N), N = users + items."""
    return sp.bmat([[None, train], [train.T, None]], format="csr", dtype=np.float32)


def normalized_adjacency(train, mode="symmetric"):
    """The propagation matrix, CSR (N, N) float32 with sorted indices.

    symmetric: L = D^-1/2 A D^-1/2, entry (u, i) = 1 / sqrt(|N_u| |N_i|) (NGCF paper, LightGCN).
    mean:      D^-1 (A + I), row-normalised with self-loops (the NGCF public code's default).
    Nodes of degree 0 get an empty row, not a division by zero.
    """
    if mode not in ADJACENCY_MODES:
        raise ValueError(f"adjacency mode {mode!r} (accepted: {ADJACENCY_MODES})")
    adjacency = bipartite_adjacency(train)
    if mode == "mean":
        adjacency = adjacency + sp.identity(adjacency.shape[0], dtype=np.float32, format="csr")
    degree = np.asarray(adjacency.sum(axis=1)).ravel()
    with np.errstate(divide="ignore"):
        inv = np.where(degree > 0, 1.0 / degree, 0.0) if mode == "mean" else np.where(degree > 0, degree**-0.5, 0.0)
    matrix = sp.diags(inv) @ adjacency if mode == "mean" else sp.diags(inv) @ adjacency @ sp.diags(inv)
    matrix = matrix.tocsr().astype(np.float32)
    matrix.sort_indices()
    return matrix


@contextlib.contextmanager
def sparse_csr_quietly():
    """torch warns that its sparse CSR tensors are in beta the first time one is made: not the user's concern."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        yield


def csr_tensor(crow, col, values, shape):
    """A torch CSR tensor over index arrays we built and checked ourselves (no per-call validation)."""
    with sparse_csr_quietly():
        return torch.sparse_csr_tensor(crow, col, values, shape, check_invariants=False)


def csr_products_work(device):
    """Whether `device` multiplies a sparse CSR matrix by a dense one (CPU and CUDA do; MPS does not)."""
    try:
        index = torch.tensor([0, 1], device=device)
        one = csr_tensor(index, index[:1], torch.ones(1, device=device), (1, 1))
        torch.mm(one, torch.ones(1, 1, device=device))
        return True
    except (RuntimeError, NotImplementedError, TypeError, ValueError):
        return False


def history_rows(history, device):
    """A batch of histories, scipy CSR (B, n_items), on `device`: as a torch CSR tensor where the
    device multiplies one by a dense matrix (a history is a few items of thousands), else dense."""
    if not csr_products_work(device):
        return torch.from_numpy(history.toarray()).to(device)
    arrays = (torch.from_numpy(a) for a in (history.indptr, history.indices, history.data))
    return csr_tensor(*arrays, history.shape).to(device)


def first_layer(linear, rows, dropout, training):
    """linear(dropout(x / ‖x‖)) of user rows x (B, n_items): an autoencoder's input layer. On the CPU
    the rows go in as a sparse matrix (a row has a few items of thousands), and dropout draws for
    their non-zeros alone: a zero entry stays zero either way, so the values are dropout's."""
    x = F.normalize(rows, dim=1)
    if x.device.type != "cpu":
        return linear(F.dropout(x, dropout, training))
    with sparse_csr_quietly():
        x = x.to_sparse_csr()
    x = csr_tensor(x.crow_indices(), x.col_indices(), F.dropout(x.values(), dropout, training), x.shape)
    return torch.addmm(linear.bias, x, linear.weight.T)


class SparseGraph(nn.Module):
    """A fixed (N, N) sparse matrix L, kept on the model's device but not in its state_dict.

    forward(x: (N, d), values=None) -> L x, (N, d), differentiable in x by plain autograd.
    `values` are L's non-zeros with some dropped (node dropout); None is L itself.

    storage: 'csr' (the default), 'dense' (an (N, N) matrix, where the device has no sparse CSR
    products and the graph is small) or 'host' (the products run on the CPU, the rest on the
    device); `place(device)` picks it. The index arrays of Lᵀ (crow_t, col_t, and perm_t, the
    position of each of Lᵀ's entries among L's values) serve the CPU kernels in model/fast/.
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
        self.storage = "csr"
        # 32-bit indices where they fit: MKL's CPU product converts 64-bit ones on every call.
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

    def place(self, device):
        """Choose the storage for `device`; returns a line for the log when it is not 'csr'."""
        if csr_products_work(device):
            self.storage = "csr"
            return None
        dense_bytes = self.shape[0] * self.shape[1] * self.values.element_size()
        if dense_bytes <= DENSE_FALLBACK_BYTES:
            self.storage = "dense"
            # each entry's row, made once: repeat_interleave with tensor counts syncs with the host
            counts = np.diff(self.crow.cpu().numpy())
            rows = torch.from_numpy(np.repeat(np.arange(self.shape[0]), counts))
            self.register_buffer("row", rows.to(self.col.device), persistent=False)
            return (
                f"{torch.device(device).type} has no sparse CSR products: the {self.shape[0]} x {self.shape[1]} "
                f"graph is kept dense on it ({dense_bytes / 2**20:.0f} MB)"
            )
        self.storage = "host"
        return (
            f"{torch.device(device).type} has no sparse CSR products and the graph is too large to keep dense "
            f"({dense_bytes / 2**30:.1f} GB): its products run on the CPU"
        )

    def matrix(self, values=None):
        """L with these values (None: L itself), as the storage keeps it."""
        values = self.values if values is None else values
        if self.storage == "dense":
            return values.new_zeros(self.shape).index_put_((self.row, self.col.long()), values)
        if self.storage == "host":
            return csr_tensor(self.crow.cpu(), self.col.cpu(), values.cpu(), self.shape)
        return csr_tensor(self.crow, self.col, values, self.shape)

    def forward(self, x, values=None):
        matrix = self.matrix(values)
        # the product in the matrix's precision, float32, also under bf16 autocast (which would cast
        # a sparse operand too); the dense products around it keep autocast's precision
        autocast = torch.amp.is_autocast_available(x.device.type) and torch.is_autocast_enabled(x.device.type)
        with torch.autocast(x.device.type, enabled=False) if autocast else contextlib.nullcontext():
            if self.storage == "host":
                return torch.mm(matrix, x.to("cpu", matrix.dtype)).to(x.device)
            return torch.mm(matrix, x.to(matrix.dtype))

    def transposed_values(self, values):
        """The values of Lᵀ in its CSR order, for L with these values."""
        if values is self.values and self.symmetric:
            return values
        return torch.index_select(values, 0, self.perm_t)

    def to_dense(self, values=None):
        values = self.values if values is None else values
        return csr_tensor(self.crow.cpu(), self.col.cpu(), values.cpu(), self.shape).to_dense().to(values.device)
