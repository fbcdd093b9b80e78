"""LightGCN (He et al., SIGIR 2020): NGCF without W1, W2, the non-linearity and the self-loop.

    E^(l) = L E^(l-1),    e* = mean(e^(0), ..., e^(L)),    ŷ(u, i) = e_u*ᵀ e_i*

with L = D^-1/2 A D^-1/2. Regularised on the layer-0 embeddings, as the authors' code.
"""

import torch
import torch.nn as nn

from model.graph import PropagationModel, SparseGraph, batch_rows, normalized_adjacency
from utils.errors import ConfigError


class LightGCN(PropagationModel):
    """embed_dim: d. n_layers: propagation steps. init_std: std of the normal initialisation
    (0.1 in the authors' code). edge_dropout: share of L's non-zeros dropped per step (0 = off,
    the authors' default)."""

    def __init__(self, dataset, embed_dim=64, n_layers=3, init_std=0.1, edge_dropout=0.0):
        super().__init__()
        if not isinstance(n_layers, int) or n_layers < 0:
            raise ConfigError(f"arch.args.n_layers: expected an integer >= 0, got {n_layers!r}")
        if not 0 <= edge_dropout < 1:
            raise ConfigError(f"arch.args.edge_dropout: expected a number in [0, 1), got {edge_dropout!r}")
        self.n_users, self.n_items = dataset.n_users, dataset.n_items
        self.n_layers, self.edge_dropout = n_layers, edge_dropout
        self.embedding = nn.Embedding(self.n_users + self.n_items, embed_dim)  # users, then items
        nn.init.normal_(self.embedding.weight, std=init_std)
        self.graph = SparseGraph(normalized_adjacency(dataset.train, "symmetric"))

    def final_embeddings(self, nodes=None):
        """The mean of the layer embeddings: (N, d), N = n_users + n_items; or only at the rows
        `nodes`, (len(nodes), d), with the last layer computed at those rows alone when they are
        few (model/graph.py: batch_rows)."""
        weights = None
        if self.training and self.edge_dropout > 0:
            weights = self.graph.dropout(self.edge_dropout)
        ego = self.embedding.weight  # (N, d)
        # the batch's distinct rows, for the last layer (none to restrict without layers)
        rows, inverse, few = (None, None, False) if nodes is None or self.n_layers == 0 else batch_rows(nodes, len(ego))

        def at_nodes(layer):
            return layer if nodes is None else torch.index_select(layer, 0, nodes)

        total = at_nodes(ego)
        for layer in range(self.n_layers):
            if few and layer == self.n_layers - 1:  # E^(L) = L[rows] E^(L-1) at the R rows
                last = self.graph.rows_product(ego, self.graph.row_block(rows, weights))  # (R, d)
                total = total + torch.index_select(last, 0, inverse)
            else:
                ego = self.graph(ego, weights)  # E^(l) = L E^(l-1)
                total = total + at_nodes(ego)
        return total / (self.n_layers + 1)  # (N, d) or (len(nodes), d)

    def propagate(self):
        """(n_users, d), (n_items, d)."""
        final = self.final_embeddings()
        return final[: self.n_users], final[self.n_users :]

    def forward(self, users, pos_items, neg_items):
        nodes = torch.cat([users, self.n_users + pos_items, self.n_users + neg_items])  # (3B,)
        u, p, n = self.final_embeddings(nodes).split(len(users))  # (B, d) each
        return {
            "pos_scores": (u * p).sum(dim=1),
            "neg_scores": (u * n).sum(dim=1),
            "l2": torch.index_select(self.embedding.weight, 0, nodes).pow(2).sum() / 2,
        }
