"""NGCF: Neural Graph Collaborative Filtering (Wang et al., SIGIR 2019).

E^(l), (N, d_l), holds every node's embedding after l layers, users first, then items
(N = n_users + n_items); L = D^-1/2 A D^-1/2 is the normalised adjacency of the user-item graph
(model/graph.py). Eq. 5-6 pass messages along each edge; stacked for all nodes they are eq. 7:

    E^(l) = LeakyReLU( (L + I) E^(l-1) W1 + (L E^(l-1) ⊙ E^(l-1)) W2 )

The final representation concatenates every layer, e* = e^(0) || ... || e^(L) (eq. 9); the score
of (u, i) is e_u*ᵀ e_i* (eq. 10); training minimises the BPR loss (eq. 11, model/loss/bpr.py).
Two dropouts: message dropout on each layer's output, and node dropout, which drops entries of L
(edges, as both reference codes do) and rescales the rest by 1/(1 - p).

The defaults follow the paper; the options below switch to what the authors' public code does
instead (docs/ngcf.md). This file is plain autograd throughout; `impl` 'fused' hands the training
step to the CPU kernel of model/fast/ngcf.py (the same values and gradients, tests/test_fast.py),
at one switch in forward().
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

from base.base_graph_model import GraphModel
from model.fast import ngcf as fast
from model.graph import ADJACENCY_MODES, SparseGraph, normalized_adjacency
from utils import checks

ACTIVATIONS = ("sum", "separate")
L2_TARGETS = ("embedding", "final")


class NGCF(GraphModel):
    """NGCF sized from the data set.

    embed_dim: d of the layer-0 embeddings. layers: output size of each propagation layer.
    node_dropout: share of L's non-zeros (the graph's edges) dropped each training step.
    message_dropout: dropout on each layer's output. leaky_slope: LeakyReLU negative slope.
    adjacency: 'symmetric' (paper: L = D^-1/2 A D^-1/2, plus I in the first term) or 'mean'
        (public code: D^-1 (A + I) for both terms).
    activation: 'sum' (eq. 7: one LeakyReLU on the sum) or 'separate' (public TF code: one on each term).
    normalize_layers: L2-normalise each layer's output before the concatenation (public code).
    bias: add a bias after W1 and W2 (public code).
    l2_on: 'embedding' (paper: regularise e^(0) of the batch) or 'final' (public code: e*).
    impl: 'auto', 'reference' or 'fused' (base/base_graph_model.py).
    """

    def __init__(
        self,
        dataset,
        embed_dim=64,
        layers=(64, 64, 64),
        node_dropout=0.1,
        message_dropout=0.1,
        leaky_slope=0.2,
        adjacency="symmetric",
        activation="sum",
        normalize_layers=False,
        bias=False,
        l2_on="embedding",
        impl="auto",
    ):
        super().__init__(impl)
        checks.one_of("arch.args.adjacency", adjacency, ADJACENCY_MODES)
        checks.one_of("arch.args.activation", activation, ACTIVATIONS)
        checks.one_of("arch.args.l2_on", l2_on, L2_TARGETS)
        checks.fraction("arch.args.node_dropout", node_dropout)
        checks.fraction("arch.args.message_dropout", message_dropout)
        checks.positive_int("arch.args.embed_dim", embed_dim)
        if not isinstance(layers, (list, tuple)) or not all(checks.is_int(n) and n > 0 for n in layers):
            checks.fail("arch.args.layers", "a list of positive integers, e.g. [64, 64, 64]", layers)
        self.n_users, self.n_items = dataset.n_users, dataset.n_items
        self.adjacency, self.activation = adjacency, activation
        self.normalize_layers, self.l2_on = normalize_layers, l2_on
        self.node_dropout, self.message_dropout, self.leaky_slope = node_dropout, message_dropout, leaky_slope

        self.embedding = nn.Embedding(self.n_users + self.n_items, embed_dim)  # E^(0): users, then items
        dims = [embed_dim, *layers]
        self.w1 = nn.ModuleList(nn.Linear(d_in, d_out, bias=bias) for d_in, d_out in zip(dims, dims[1:]))  # W1^(l)
        self.w2 = nn.ModuleList(nn.Linear(d_in, d_out, bias=bias) for d_in, d_out in zip(dims, dims[1:]))  # W2^(l)
        self.graph = SparseGraph(normalized_adjacency(dataset.train, adjacency))  # L, built once
        self.reset_parameters()

    def reset_parameters(self):
        # Xavier, with users and items as two tables, as the reference code initialises them.
        with torch.no_grad():
            nn.init.xavier_uniform_(self.embedding.weight[: self.n_users])
            nn.init.xavier_uniform_(self.embedding.weight[self.n_users :])
        for linear in (*self.w1, *self.w2):
            nn.init.xavier_uniform_(linear.weight)
            if linear.bias is not None:
                nn.init.zeros_(linear.bias)

    def embeddings(self):
        """[E^(0), E^(1), ..., E^(L)], each (N, d_l): eq. 7 layer by layer, in plain autograd."""
        values = self.dropout(self.graph.values, self.node_dropout)  # node dropout: drop edges of L
        E = self.embedding.weight  # E^(0), (N, d0)
        layers = [E]
        for w1, w2 in zip(self.w1, self.w2):
            side = self.graph(E, values)  # L E: each node's sum over its neighbours (eq. 5), (N, d)
            first = side + E if self.adjacency == "symmetric" else side  # (L + I) E; 'mean' has the I in L
            if self.activation == "sum":
                E = F.leaky_relu(w1(first) + w2(side * E), self.leaky_slope)  # eq. 7, (N, d_out)
            else:  # the public TensorFlow code: one LeakyReLU on each term, then the sum
                E = F.leaky_relu(w1(first), self.leaky_slope) + F.leaky_relu(w2(side * E), self.leaky_slope)
            E = self.dropout(E, self.message_dropout)  # message dropout
            layers.append(E)
        return layers

    def fused_unavailable(self):
        if self.activation != "sum":
            return "the fused kernel computes eq. 7 ('sum' activation) only"
        return super().fused_unavailable()

    def final_parts(self, layers):
        """The parts of e* (eq. 9): the layers, each L2-normalised first with normalize_layers."""
        if self.normalize_layers:
            layers = layers[:1] + [F.normalize(layer, dim=1) for layer in layers[1:]]
        return layers

    def propagate(self):
        """e* of every user and item: (n_users, D), (n_items, D), D = d0 + Σ d_l."""
        e = torch.cat(self.final_parts(self.embeddings()), dim=1)  # e* = e^(0) || ... || e^(L) (eq. 9)
        return e[: self.n_users], e[self.n_users :]

    def forward(self, batch):
        """BPR pairs {users, pos_items, neg_items}, each (B,) -> pos_scores (B,), neg_scores (B,), l2."""
        users, pos_items, neg_items = batch["users"], batch["pos_items"], batch["neg_items"]
        nodes = torch.cat([users, self.n_users + pos_items, self.n_users + neg_items])  # (3B,) rows of e*
        if self.fused:  # the kernel computes the same parts and scores (impl, base/base_graph_model.py)
            parts, (pos_scores, neg_scores) = fast.bpr_step(self, nodes, len(users))
        else:
            parts = self.final_parts([torch.index_select(layer, 0, nodes) for layer in self.embeddings()])  # (3B, d_l)
            u, p, n = torch.cat(parts, dim=1).split(len(users))  # e*: (B, D) each
            pos_scores, neg_scores = (u * p).sum(dim=1), (u * n).sum(dim=1)  # ŷ = e_u*ᵀ e_i* (eq. 10)
        regularised = parts[:1] if self.l2_on == "embedding" else parts  # the paper: e^(0) of the batch
        l2 = sum(part.pow(2).sum() for part in regularised) / 2
        return {"pos_scores": pos_scores, "neg_scores": neg_scores, "l2": l2}
