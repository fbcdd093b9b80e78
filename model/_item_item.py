"""What every item-item model shares (EASE, EDLAE, ItemKNN, RP3beta): a weight matrix B fitted in
closed form from the training matrix, and a user's scores as their history times B, ŷ_u = x_u B.

Nothing is trained by gradients: `fit` sets B once (train.py), the checkpoint keeps it, and
test.py scores with it as it is. A subclass writes only `fit`, the formula of its paper.
"""

import numpy as np
import torch

from base.base_model import BaseModel
from model.fast.sparse import sparse_times_dense
from model.graph import history_rows


class ItemItemModel(BaseModel):
    """B: (n_items, n_items), B_ij the weight of having item i on the score of item j."""

    def __init__(self, dataset):
        super().__init__()
        self.register_buffer("B", torch.zeros(dataset.n_items, dataset.n_items))  # (n_items, n_items)

    def train_batches(self, data):
        return ()  # closed form: nothing to train

    def full_scores(self, users, history):
        """ŷ = x_u B for each user, with x_u their history row (B, n_items)."""
        x = history_rows(history, self.B.device).to(self.B.dtype)
        if x.layout == torch.strided:  # a device without sparse products (MPS)
            return x @ self.B
        return sparse_times_dense(x, self.B)  # x @ B, in cache-sized blocks on the CPU


def keep_top_k(weights, k, dim):
    """`weights` (a dense tensor) with all but the k largest entries along `dim` set to 0."""
    if k >= weights.shape[dim]:
        return weights
    kept = torch.zeros_like(weights)
    top = torch.topk(weights, k, dim=dim)
    return kept.scatter_(dim, top.indices, top.values)


def gram_matrix(X, dtype):
    """XᵀX (n_items, n_items), the co-occurrence counts of a sparse (users, items) matrix, as a dense
    `dtype` array made a block of columns at a time: the sparse product of all of it at once holds
    up to n_items² non-zeros beside the result."""
    n = X.shape[1]
    gram, X_T, X = np.empty((n, n), dtype=dtype), X.T.tocsr(), X.tocsc()
    width = max(1, 2**26 // (gram.itemsize * n))  # 64 MB of the result a block
    for start in range(0, n, width):
        gram[:, start : start + width] = (X_T @ X[:, start : start + width]).toarray()
    return gram
