"""LightGCN (He et al., SIGIR 2020): NGCF without W1, W2, the non-linearity and the self-loop.

    E^(l) = L E^(l-1)   (eq. 3)        e = mean(E^(0), ..., E^(L))   (eq. 4)        ŷ(u, i) = e_uᵀ e_i   (eq. 5)

with L = D^-1/2 A D^-1/2 (model/graph.py). Regularised on the layer-0 embeddings, as the
authors' code. This file is plain autograd; `impl` 'fused' hands the training step's propagation
to model/fast/lightgcn.py (the same values and gradients, tested), at one switch in forward().
"""

import torch
import torch.nn as nn

from base.base_graph_model import GraphModel
from model.fast import lightgcn as fast
from model.graph import SparseGraph, normalized_adjacency
from utils import checks


class LightGCN(GraphModel):
    """embed_dim: d. n_layers: propagation steps. init_std: std of the normal initialisation
    (0.1 in the authors' code). edge_dropout: share of L's non-zeros (edges) dropped per step
    (0 = off, the authors' default). impl: 'auto', 'reference' or 'fused'."""

    def __init__(self, dataset, embed_dim=64, n_layers=3, init_std=0.1, edge_dropout=0.0, impl="auto"):
        super().__init__(impl)
        checks.integer("arch.args.n_layers", n_layers, low=0)
        checks.fraction("arch.args.edge_dropout", edge_dropout)
        checks.positive_int("arch.args.embed_dim", embed_dim)
        checks.number("arch.args.init_std", init_std, low=0, low_open=True)
        self.n_users, self.n_items = dataset.n_users, dataset.n_items
        self.n_layers, self.edge_dropout = n_layers, edge_dropout
        self.embedding = nn.Embedding(self.n_users + self.n_items, embed_dim)  # E^(0): users, then items
        nn.init.normal_(self.embedding.weight, std=init_std)
        self.graph = SparseGraph(normalized_adjacency(dataset.train, "symmetric"))  # L, built once

    def mean_of_layers(self):
        """e = mean(E^(0), ..., E^(L)), (N, d), in plain autograd."""
        values = self.dropout(self.graph.values, self.edge_dropout)  # edge dropout (off by default)
        E = self.embedding.weight  # E^(0), (N, d)
        total = E
        for _ in range(self.n_layers):
            E = self.graph(E, values)  # E^(l) = L E^(l-1) (eq. 3)
            total = total + E
        return total / (self.n_layers + 1)  # eq. 4

    def propagate(self):
        """(n_users, d), (n_items, d)."""
        e = self.mean_of_layers()
        return e[: self.n_users], e[self.n_users :]

    def forward(self, batch):
        """BPR pairs {users, pos_items, neg_items}, each (B,) -> pos_scores (B,), neg_scores (B,), l2."""
        users = batch["users"]
        nodes = torch.cat([users, self.n_users + batch["pos_items"], self.n_users + batch["neg_items"]])  # (3B,)
        if self.fused:  # the kernel computes the same rows (impl, base/base_graph_model.py)
            e = fast.mean_at(self, nodes)
        else:
            e = torch.index_select(self.mean_of_layers(), 0, nodes)  # (3B, d)
        u, p, n = e.split(len(users))  # (B, d) each
        return {
            "pos_scores": (u * p).sum(dim=1),  # eq. 5
            "neg_scores": (u * n).sum(dim=1),
            "l2": torch.index_select(self.embedding.weight, 0, nodes).pow(2).sum() / 2,
        }
