"""The sparse products of the CPU kernels: y = M x with an explicit transpose for the backward, the
rows of the graph that one training batch reads, and a sparse history times a dense item-item matrix."""

import torch

from model.graph import csr_tensor


def spmm(matrix, x):
    """CSR (n, N) @ dense (N, d) -> (n, d), written into a fresh tensor. On the CPU addmm with
    beta=0 skips the zero-fill and the accumulation torch.sparse.mm does."""
    out = x.new_empty(matrix.shape[0], x.shape[1])
    return torch.addmm(out, matrix, x, beta=0, out=out)


# A sparse row times a dense matrix reads one whole row of the matrix per non-zero; in column blocks
# of this width the rows a batch of histories reads stay in the CPU's cache (bench/RESULTS.md).
COLUMN_BLOCK = 256


def sparse_times_dense(x, dense):
    """CSR (n, N) @ dense (N, M) -> (n, M), no gradient: on the CPU one block of `dense`'s columns
    at a time, elsewhere one product."""
    if dense.device.type != "cpu":
        return x @ dense
    out = dense.new_empty(x.shape[0], dense.shape[1])
    for start in range(0, dense.shape[1], COLUMN_BLOCK):
        block = dense[:, start : start + COLUMN_BLOCK].contiguous()  # (N, w): read again for each row of x
        out[:, start : start + COLUMN_BLOCK] = spmm(x, block)
    return out


class SpMM(torch.autograd.Function):
    """y = M x for a CSR matrix M given with its transpose (also CSR), which the backward uses:
    autograd would transpose M on every call. For the whole graph Mᵀ has M's sparsity with the
    values permuted (SparseGraph.perm_t), so node dropout needs no new index arrays."""

    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda", cast_inputs=torch.float32)  # sparse products in float32
    def forward(ctx, x, matrix, transposed):
        ctx.save_for_backward(transposed)
        return spmm(matrix, x)

    @staticmethod
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx, grad):
        (transposed,) = ctx.saved_tensors
        return spmm(transposed, grad.contiguous()), None, None


def matrices(graph, values=None):
    """L and Lᵀ as CSR tensors with these values of L (None: L itself)."""
    values = graph.values if values is None else values
    values_t = graph.transposed_values(values)
    return csr_tensor(graph.crow, graph.col, values, graph.shape), csr_tensor(
        graph.crow_t, graph.col_t, values_t, graph.shape
    )


def product(graph, x, values=None):
    """L x, (N, d), with the explicit-transpose backward."""
    return SpMM.apply(x, *matrices(graph, values))


# Cutting A[rows] and its transpose out of A costs a few sparse passes a step: worth it when a
# batch's distinct rows are at most this share of the nodes (bench/RESULTS.md has the figures).
BATCH_ROWS_SHARE = 0.25


def batch_rows(nodes, n):
    """(rows, inverse, rows_are_few) for a batch's `nodes` among n: rows the sorted distinct nodes
    (R,), nodes = rows[inverse], and whether R is at most BATCH_ROWS_SHARE of n.

    A training step reads the last layer only at these rows: when they are few, that layer is
    computed with A[rows] (row_block); else with the whole product, taking its rows."""
    rows, inverse = torch.unique(nodes, return_inverse=True)
    return rows, inverse, len(rows) <= BATCH_ROWS_SHARE * n


def row_block(graph, rows, values=None):
    """A[rows] (R, N) and its transpose (N, R) as CSR tensors, for sorted distinct `rows` (R,), with
    these values of A (None: A itself)."""
    values = graph.values if values is None else values
    crow_all, col_all = graph.crow, graph.col
    n, r, index = graph.shape[0], len(rows), dict(dtype=crow_all.dtype, device=rows.device)
    counts = crow_all[rows + 1] - crow_all[rows]  # entries per selected row, (R,)
    crow = torch.zeros(r + 1, **index)
    torch.cumsum(counts, 0, out=crow[1:])
    nnz = int(crow[-1])
    # Entry j of the block, in row k, is entry crow_all[rows[k]] + (j - crow[k]) of A.
    position = torch.repeat_interleave(crow_all[rows] - crow[:-1], counts, output_size=nnz)
    position += torch.arange(nnz, **index)
    col, block_values = torch.index_select(col_all, 0, position), torch.index_select(values, 0, position)
    # The transpose: the same entries ordered by column (stable, so rows stay sorted within one).
    order = torch.argsort(col, stable=True)
    crow_t = torch.zeros(n + 1, **index)
    torch.cumsum(torch.bincount(col, minlength=n), 0, out=crow_t[1:])
    row_of_entry = torch.repeat_interleave(torch.arange(r, **index), counts, output_size=nnz)
    block = csr_tensor(crow, col, block_values, (r, n))
    col_t, values_t = torch.index_select(row_of_entry, 0, order), torch.index_select(block_values, 0, order)
    return block, csr_tensor(crow_t, col_t, values_t, (n, r))


def rows_product(x, block):
    """A[rows] x, (R, d), for block = row_block(...); differentiable in x (A[rows]ᵀ in the backward)."""
    return SpMM.apply(x, *block)
