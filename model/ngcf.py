"""NGCF: Neural Graph Collaborative Filtering (Wang et al., SIGIR 2019).

Each layer, for all nodes at once (eq. 7, with L the normalised Laplacian):

    E^(l) = LeakyReLU( (L + I) E^(l-1) W1 + (L E^(l-1)) ⊙ E^(l-1) W2 )

The final representation concatenates every layer, e* = e^(0) || ... || e^(L), and the score
of (u, i) is e_u*ᵀ e_i*. The defaults follow the paper; the options named below switch to
what the authors' public code does instead (see ../shared/NGCF.md, and README.md).
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

from model.graph import ADJACENCY_MODES, PropagationModel, SparseGraph, keep_mask, normalized_adjacency
from utils.errors import ConfigError

ACTIVATIONS = ("sum", "separate")
L2_TARGETS = ("embedding", "final")


class NGCF(PropagationModel):
    """NGCF sized from the data set.

    embed_dim: d of the layer-0 embeddings. layers: output size of each propagation layer.
    node_dropout: share of the Laplacian's non-zeros dropped each training step.
    message_dropout: dropout on each layer's output. leaky_slope: LeakyReLU negative slope.
    adjacency: 'symmetric' (paper: L = D^-1/2 A D^-1/2, plus I in the first term) or 'mean'
        (public code: D^-1 (A + I) for both terms).
    activation: 'sum' (eq. 7: one LeakyReLU on the sum) or 'separate' (public TF code: one on each term).
    normalize_layers: L2-normalise each layer's output before the concatenation (public code).
    bias: add a bias after W1 and W2 (public code).
    l2_on: 'embedding' (paper: regularise e^(0) of the batch) or 'final' (public code: e*).
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
    ):
        super().__init__()
        for key, value, accepted in (
            ("adjacency", adjacency, ADJACENCY_MODES),
            ("activation", activation, ACTIVATIONS),
            ("l2_on", l2_on, L2_TARGETS),
        ):
            if value not in accepted:
                raise ConfigError(f"arch.args.{key}: expected one of {accepted}, got {value!r}")
        for key, value in (("node_dropout", node_dropout), ("message_dropout", message_dropout)):
            if not isinstance(value, (int, float)) or not 0 <= value < 1:
                raise ConfigError(f"arch.args.{key}: expected a number in [0, 1), got {value!r}")
        if not isinstance(embed_dim, int) or embed_dim < 1 or not all(isinstance(n, int) and n > 0 for n in layers):
            raise ConfigError(f"arch.args.embed_dim/layers: need positive integers, got {embed_dim!r} and {layers!r}")
        self.n_users, self.n_items = dataset.n_users, dataset.n_items
        self.adjacency, self.activation = adjacency, activation
        self.normalize_layers, self.l2_on = normalize_layers, l2_on
        self.node_dropout, self.leaky_slope = node_dropout, leaky_slope

        self.embedding = nn.Embedding(self.n_users + self.n_items, embed_dim)  # E^(0): users, then items
        dims = [embed_dim, *layers]
        self.w1 = nn.ModuleList(nn.Linear(d_in, d_out, bias=bias) for d_in, d_out in zip(dims, dims[1:]))
        self.w2 = nn.ModuleList(nn.Linear(d_in, d_out, bias=bias) for d_in, d_out in zip(dims, dims[1:]))
        self.message_dropout = message_dropout
        self.graph = SparseGraph(normalized_adjacency(dataset.train, adjacency))  # built once
        self.reset_parameters()

    def reset_parameters(self):
        # Users and items as two tables, as the reference code initialises them (fan = rows + d).
        with torch.no_grad():
            nn.init.xavier_uniform_(self.embedding.weight[: self.n_users])
            nn.init.xavier_uniform_(self.embedding.weight[self.n_users :])
        for linear in (*self.w1, *self.w2):
            nn.init.xavier_uniform_(linear.weight)
            if linear.bias is not None:
                nn.init.zeros_(linear.bias)

    def layers(self):
        """[E^(0), E^(1), ..., E^(L)], each (N, d_l), N = n_users + n_items (eq. 7 per layer)."""
        ego = self.embedding.weight  # (N, d0)
        weights = None  # node dropout: one draw per step, shared by the layers
        if self.training and self.node_dropout > 0:
            weights = self.graph.dropout(self.node_dropout)
        outputs = [ego]
        for w1, w2 in zip(self.w1, self.w2):
            side = self.graph(ego, weights)  # (N, d) = L E
            first = side + ego if self.adjacency == "symmetric" else side  # (L + I) E; 'mean' has I inside
            second = side * ego  # (L E) ⊙ E
            dropout = self.message_dropout if self.training else 0.0
            if self.activation == "sum":
                # eq. 7: first W1 + second W2, the second product accumulated into the first (addmm).
                # Message dropout's 1/(1-p) rides on the product (LeakyReLU(s z) = s LeakyReLU(z), s > 0),
                # so dropping is one masking pass.
                scale = 1.0 / (1.0 - dropout)
                summed = F.linear(first, w1.weight, None if w1.bias is None else w1.bias + w2.bias)
                summed = torch.addmm(summed, second, w2.weight.T, beta=scale, alpha=scale)  # (N, d_out)
                ego = F.leaky_relu(summed, self.leaky_slope, inplace=True)
                if dropout > 0:
                    ego = torch.where(keep_mask(ego.shape, dropout, ego.device), ego, 0.0)
            else:
                ego = F.leaky_relu(w1(first), self.leaky_slope) + F.leaky_relu(w2(second), self.leaky_slope)
                ego = self._message_dropout(ego)  # (N, d_out)
            outputs.append(F.normalize(ego, dim=1) if self.normalize_layers else ego)
        return outputs

    def propagate(self):
        """All nodes' final representations e* = e^(0) || ... || e^(L): (n_users, D), (n_items, D)."""
        final = torch.cat(self.layers(), dim=1)  # (N, D)
        return final[: self.n_users], final[self.n_users :]

    def _message_dropout(self, x):
        """Standard (inverted) dropout, with a mask from `keep_mask` (cheaper than bernoulli_ on CPU)."""
        if not self.training or self.message_dropout == 0:
            return x
        keep = keep_mask(x.shape, self.message_dropout, x.device)
        scale = keep.to(x.dtype).mul_(1.0 / (1.0 - self.message_dropout))
        return x * scale  # one product forward, one backward

    def forward(self, users, pos_items, neg_items):
        # Only the batch's rows of e* are needed: gather them from each layer with one index, so the
        # backward scatters into (N, d_l) once per layer instead of building dense (N, D) gradients.
        nodes = torch.cat([users, self.n_users + pos_items, self.n_users + neg_items])  # (3B,)
        layers = self.layers()
        rows = torch.cat([torch.index_select(layer, 0, nodes) for layer in layers], dim=1)  # (3B, D)
        u, p, n = rows.split(len(users))  # (B, D) each
        # the paper regularises e^(0) of the batch, which is the first d0 columns of the rows
        reg = rows[:, : layers[0].shape[1]] if self.l2_on == "embedding" else rows
        return {
            "pos_scores": (u * p).sum(dim=1),  # (B,)
            "neg_scores": (u * n).sum(dim=1),  # (B,)
            "l2": reg.pow(2).sum() / 2,
        }
