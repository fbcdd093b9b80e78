"""LightGCN's mean of layers with the explicit-transpose product, and in a training step the last
layer computed at the batch's distinct rows alone when they are few: the 'fused' implementation
of model/lightgcn.py, chosen on the CPU."""

import torch

from model.fast.masks import keep_mask
from model.fast.sparse import batch_rows, product, row_block, rows_product


def fused_mean_of_layers(graph, ego, n_layers, values=None, nodes=None):
    """mean(E^(0), ..., E^(L)), E^(l) = L E^(l-1): (N, d), or at the rows `nodes`, (len(nodes), d)."""
    # the batch's distinct rows, for the last layer (none to restrict without layers)
    rows, inverse, rows_are_few = (None, None, False) if nodes is None or n_layers == 0 else batch_rows(nodes, len(ego))

    def at_nodes(layer):
        return layer if nodes is None else torch.index_select(layer, 0, nodes)

    total = at_nodes(ego)
    for layer in range(n_layers):
        if rows_are_few and layer == n_layers - 1:  # E^(L) = L[rows] E^(L-1) at the R rows
            last = rows_product(ego, row_block(graph, rows, values))  # (R, d)
            total = total + torch.index_select(last, 0, inverse)
        else:
            ego = product(graph, ego, values)  # E^(l) = L E^(l-1)
            total = total + at_nodes(ego)
    return total / (n_layers + 1)


def mean_at(model, nodes):
    """LightGCN's e (model/lightgcn.py) at the rows `nodes`, (len(nodes), d), edge dropout's mask
    from masks.py (or the model's mask_source)."""
    values = model.dropout(model.graph.values, model.edge_dropout, keep_mask)
    return fused_mean_of_layers(model.graph, model.embedding.weight, model.n_layers, values, nodes)
