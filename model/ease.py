"""EASE: Embarrassingly Shallow Autoencoders for sparse data (Steck, WWW 2019).

An item-item weight matrix B, with a zero diagonal, solved in closed form from the training
matrix X (users x items) and an L2 penalty λ:

    P = (XᵀX + λI)⁻¹,    B = I − P · diag(1 / diag(P)),  i.e. B_ij = −P_ij / P_jj, B_jj = 0   (eq. 8)

and a user's scores are their history times B: ŷ_u = x_u B (model/_item_item.py).
"""

import numpy as np
import torch

from model._item_item import ItemItemModel
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
        X = dataset.train  # (n_users, n_items), CSR 0/1
        gram = (X.T @ X).toarray().astype(np.float64)  # XᵀX: co-occurrence counts, (n_items, n_items)
        gram[np.diag_indices_from(gram)] += self.penalty(gram)  # + λI
        P = np.linalg.inv(gram)
        B = P / -np.diag(P)  # B_ij = −P_ij / P_jj
        np.fill_diagonal(B, 0.0)  # B_jj = 0: no item may predict itself
        self.B.copy_(torch.from_numpy(B.astype(np.float32)))
