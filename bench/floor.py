"""The bare tensor operations a training step and an evaluation need, on the real shapes.

Whatever the template adds on top of these (sampling, element-wise work, autograd, Adam, masking)
is overhead; the benchmark reports the ratio.
"""

import torch

from model.fast.sparse import batch_rows, matrices, row_block, spmm


def step_ops(model, name, nodes):
    """A function doing only what a training step must compute, on inputs made beforehand.

    The step reads the last layer only at the batch's R distinct rows of `nodes` (3B,), so: per
    layer, A x forward and A^T g backward over all N nodes, except in the last layer when the rows
    are few (model/fast/sparse.py: batch_rows): there A[rows] x and A[rows]^T g. NGCF adds each layer's
    product [first | second] (n, 2d) x (2d, d) and its two backward products, n = N, or R in the
    last layer. LightGCN: the sparse products only.
    """
    graph = model.graph
    a, a_t = matrices(graph)
    d = model.embedding.weight.shape[1]
    device = model.embedding.weight.device
    weight = torch.randn(d, 2 * d, device=device)  # [W1 | W2]
    n_layers = len(model.w1) if name == "NGCF" else model.n_layers
    rows, _, restricted = batch_rows(nodes, graph.shape[0])  # whether the last layer is cut to the rows
    layers = []
    for layer in range(n_layers):
        last = layer == n_layers - 1
        matrix, transposed = row_block(graph, rows) if last and restricted else (a, a_t)
        n = len(rows) if last else graph.shape[0]  # rows of the dense products
        x, grad_side = torch.randn(graph.shape[0], d, device=device), torch.randn(matrix.shape[0], d, device=device)
        layers.append(
            (matrix, transposed, x, grad_side, torch.randn(n, 2 * d, device=device), torch.randn(n, d, device=device))
        )

    @torch.no_grad()
    def run():
        for matrix, transposed, x, grad_side, inputs, grad in layers:
            spmm(matrix, x)  # forward propagation (the same product the model uses)
            spmm(transposed, grad_side)  # its backward
            if name == "NGCF":
                inputs @ weight.T  # forward (n, d)
                grad @ weight  # grad of the inputs (n, 2d)
                grad.T @ inputs  # grad of the weights (d, 2d)

    return run


@torch.no_grad()
def evaluation(model, loader, k=20):
    """Score GEMM and top-K for all evaluated users, embeddings computed beforehand."""
    users_all, items_all = model._cache if model._cache is not None else model.propagate()
    users = torch.from_numpy(loader.users).to(users_all.device)
    for start in range(0, len(users), loader.batch_size):
        scores = users_all[users[start : start + loader.batch_size]] @ items_all.T
        scores.topk(k, dim=1)
