"""RP3beta: random walks of three steps on the user-item graph, the walk's end re-ranked by
popularity (Paudel et al., "Updatable, accurate, diverse, and scalable recommendations for
interactive applications", ACM TiiS 2017), as Dacrema et al. (RecSys 2019) ran it.

From each item a walk goes to a user who has it, then to one of that user's items, each step
drawn uniformly; the step probabilities are raised to the power α, and the probability of
ending on item j is divided by j's popularity to the power β, so that popular items do not win by
being everywhere:

    P_ui = x_ui / |I_u|,   P_iu = x_ui / |U_i|                  (one step: user -> item, item -> user)
    W_ij = Σ_u P_iu^α P_uj^α / pop_j^β,   W_jj = 0                (item -> user -> item, re-ranked)
    B = W with, in each row i, all but the k largest W_ij set to 0

ŷ_uj = Σ_i x_ui B_ij. α = 1, β = 0 is the plain three-step walk P³ (Cooper et al. 2014).
"""

import numpy as np
import scipy.sparse as sp
import torch

from model._item_item import ItemItemModel, keep_top_k
from utils import checks


class RP3beta(ItemItemModel):
    """alpha: α, the power of each step's probability; beta: β, the popularity penalty;
    neighbours: k, the items each item's row keeps."""

    fitted_args = ("alpha", "beta", "neighbours")

    def __init__(self, dataset, alpha=1.0, beta=0.5, neighbours=100):
        super().__init__(dataset)
        self.alpha = checks.number("arch.args.alpha", alpha, low=0)
        self.beta = checks.number("arch.args.beta", beta, low=0)
        self.neighbours = checks.positive_int("arch.args.neighbours", neighbours)

    def fit(self, dataset):
        X = sp.csr_matrix(dataset.train, dtype=np.float64)  # (n_users, n_items) 0/1
        user_degree = np.maximum(np.asarray(X.sum(axis=1)).ravel(), 1)  # |I_u|
        item_degree = np.maximum(np.asarray(X.sum(axis=0)).ravel(), 1)  # |U_i|, the popularity
        P_ui = sp.diags(1 / user_degree) @ X  # (n_users, n_items): user -> item
        P_iu = sp.diags(1 / item_degree) @ X.T.tocsr()  # (n_items, n_users): item -> user
        P_ui.data **= self.alpha
        P_iu.data **= self.alpha
        W = (P_iu @ P_ui).toarray() / item_degree[None, :] ** self.beta  # (n_items, n_items)
        np.fill_diagonal(W, 0.0)  # the walk back to the same item recommends nothing
        self.B.copy_(keep_top_k(torch.from_numpy(W.astype(np.float32)), self.neighbours, dim=1))
