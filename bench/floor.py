"""The bare tensor operations a training step and an evaluation need, on the real shapes.

Whatever the template adds on top of these (sampling, element-wise work, autograd, Adam, masking)
is overhead; the benchmark reports the ratio.
"""

import torch

from model.graph import _csr, _spmm


def step_ops(model, name):
    """A function doing only what a training step must compute, on inputs made beforehand.

    NGCF, per layer: A x forward and A^T g backward, the layer product forward (N, 2d) x (2d, d)
    and its two backward products. LightGCN: the sparse products only.
    """
    graph = model.graph
    a = _csr(graph.crow, graph.col, graph.values, graph.shape)
    a_t = _csr(graph.crow_t, graph.col_t, graph.values, graph.shape)
    n = graph.shape[0]
    d = model.embedding.weight.shape[1]
    x = torch.randn(n, d)
    inputs = torch.randn(n, 2 * d)  # [first | second]
    weight = torch.randn(d, 2 * d)  # [W1; W2]
    grad_out = torch.randn(n, d)

    @torch.no_grad()
    def run():
        for _ in range(3):
            _spmm(a, x)  # forward propagation (the same product the model uses)
            _spmm(a_t, x)  # its backward
            if name == "NGCF":
                inputs @ weight.T  # forward (N, d)
                grad_out @ weight  # grad of the inputs (N, 2d)
                grad_out.T @ inputs  # grad of the weights (d, 2d)

    return run


@torch.no_grad()
def evaluation(model, loader, k=20):
    """Score GEMM and top-K for all evaluated users, embeddings computed beforehand."""
    users_all, items_all = model._cache if model._cache is not None else model.propagate()
    users = torch.from_numpy(loader.users)
    for start in range(0, len(users), loader.batch_size):
        scores = users_all[users[start : start + loader.batch_size]] @ items_all.T
        scores.topk(k, dim=1)
