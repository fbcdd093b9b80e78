"""EASE: Embarrassingly Shallow Autoencoders for sparse data (Steck, WWW 2019).

An item-item weight matrix B, with a zero diagonal, solved in closed form from the training
matrix X (users x items) and an L2 penalty λ:

    P = (XᵀX + λI)⁻¹,    B = I − P · diag(1 / diag(P)),  i.e. B_ij = −P_ij / P_jj, B_jj = 0   (eq. 8)

and a user's scores are their history times B: ŷ_u = x_u B (model/_item_item.py).
"""

import numpy as np
import scipy.linalg
import torch

from model._item_item import ItemItemModel, gram_matrix
from utils import checks


class EASE(ItemItemModel):
    """l2: λ, the penalty on B's entries (the paper tunes it on validation; hundreds for MovieLens)."""

    fitted_args = ("l2",)  # B is solved for this λ: a checkpoint of another λ is refused, not re-fitted

    def __init__(self, dataset, l2=500.0):
        super().__init__(dataset)
        self.l2 = checks.number("arch.args.l2", l2, low=0, low_open=True)

    def penalty(self, gram):
        """The diagonal added to XᵀX: λ for every item."""
        return np.full(len(gram), self.l2)

    def fit(self, dataset):
        # Every step writes into the one (n_items, n_items) float64 matrix, so the fit's memory is
        # about that matrix (the Gram matrix's size) beside B.
        P = gram_matrix(dataset.train, np.float64)  # XᵀX: co-occurrence counts, (n_items, n_items)
        P[np.diag_indices_from(P)] += self.penalty(P)  # + λI
        # (XᵀX + λI)⁻¹ over itself: the matrix is symmetric, so its transpose is the same matrix in
        # the column order LAPACK inverts in place
        P = scipy.linalg.inv(P.T, overwrite_a=True, check_finite=False).T
        P /= -np.diag(P).copy()  # B_ij = −P_ij / P_jj
        np.fill_diagonal(P, 0.0)  # B_jj = 0: no item may predict itself
        self.B.copy_(torch.from_numpy(P))
