"""EASE: Embarrassingly Shallow Autoencoders for sparse data (Steck, WWW 2019).

An item-item weight matrix B, with a zero diagonal, solved in closed form from the training
matrix X (users x items) and an L2 penalty λ:

    P = (XᵀX + λI)⁻¹,    B = I − P · diag(1 / diag(P)),  i.e. B_ij = −P_ij / P_jj, B_jj = 0   (eq. 8)

and a user's scores are their history times B: ŷ_u = x_u B. Nothing is trained by gradients:
`fit` solves for B once (train.py), the checkpoint keeps it, and test.py uses it as it is.
"""

import numpy as np
import torch

from base.base_model import BaseModel
from model.graph import csr_products_work, csr_tensor
from utils import checks


class EASE(BaseModel):
    """l2: λ, the penalty on B's entries (the paper tunes it on validation; hundreds for MovieLens)."""

    fitted_args = ("l2",)  # B is solved for this λ: a checkpoint of another λ is refused, not re-fitted

    def __init__(self, dataset, l2=500.0):
        super().__init__()
        self.l2 = checks.number("arch.args.l2", l2, low=0, low_open=True)
        self.register_buffer("B", torch.zeros(dataset.n_items, dataset.n_items))  # (n_items, n_items)
        self._sparse = None  # whether B's device multiplies a sparse history, decided at first use

    def train_batches(self, data):
        return ()  # closed form: nothing to train

    def fit(self, dataset):
        X = dataset.train  # (n_users, n_items), CSR 0/1
        gram = (X.T @ X).toarray().astype(np.float64)  # XᵀX: co-occurrence counts, (n_items, n_items)
        gram[np.diag_indices_from(gram)] += self.l2  # + λI
        P = np.linalg.inv(gram)
        B = P / -np.diag(P)  # B_ij = −P_ij / P_jj
        np.fill_diagonal(B, 0.0)  # B_jj = 0: no item may predict itself
        self.B.copy_(torch.from_numpy(B.astype(np.float32)))

    def full_scores(self, users, history):
        """ŷ = x_u B for each user, with x_u their history row (B, n_items)."""
        if self._sparse is None:  # MPS has no sparse products: dense rows there
            self._sparse = csr_products_work(self.B.device)
        if self._sparse:  # a history is a few items of thousands: a sparse row times B costs that much less
            x = csr_tensor(
                *(torch.from_numpy(a) for a in (history.indptr, history.indices, history.data)), history.shape
            )
            return x.to(self.B.device) @ self.B
        x = torch.from_numpy(history.toarray()).to(self.B)
        return x @ self.B
