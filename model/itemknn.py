"""ItemKNN: item-based collaborative filtering with cosine similarity (Sarwar et al., WWW 2001), in
the form that "Are we really making much progress?" (Dacrema et al., RecSys 2019) found hard to beat.

Two items are similar when the same users have them: the cosine of their columns of the training
matrix X (users x items), shrunk towards 0 when few users back it, and each item keeps only its k
most similar items as neighbours:

    S_ij = (XᵀX)_ij / (‖x_i‖ ‖x_j‖ + shrink),   S_jj = 0
    B = S with, in each column j, all but the k largest S_ij set to 0       (j's k neighbours)

ŷ_uj = Σ_i x_ui B_ij: the similarity of item j to the user's items, over j's neighbours.
"""

import numpy as np
import torch

from model._item_item import ItemItemModel, gram_matrix, keep_top_k
from utils import checks


class ItemKNN(ItemItemModel):
    """neighbours: k, the similar items each item keeps; shrink: the constant added to the cosine's
    denominator (0: the plain cosine)."""

    fitted_args = ("neighbours", "shrink")

    def __init__(self, dataset, neighbours=100, shrink=10.0):
        super().__init__(dataset)
        self.neighbours = checks.positive_int("arch.args.neighbours", neighbours)
        self.shrink = checks.number("arch.args.shrink", shrink, low=0)

    def fit(self, dataset):
        gram = torch.from_numpy(gram_matrix(dataset.train, np.float32))  # (n_items, n_items) co-occurrences
        norms = gram.diagonal().sqrt()  # ‖x_i‖: the square root of each item's count
        S = gram / (norms[:, None] * norms[None, :] + self.shrink + 1e-12)  # the shrunk cosine
        S.fill_diagonal_(0.0)  # an item is not its own neighbour
        self.B.copy_(keep_top_k(S, self.neighbours, dim=0))  # column j keeps j's k neighbours
