"""EDLAE, full rank: the emphasized denoising linear autoencoder (Steck, "Autoencoders that don't
overfit towards the Identity", NeurIPS 2020, sec. 3).

Training a linear autoencoder B on inputs whose entries are dropped with probability p, and
emphasising the reconstruction of the dropped ones, has the closed form of EASE (model/ease.py)
with a penalty that grows with each item's popularity instead of one λ for all:

    Λ = p / (1 − p) · diag(XᵀX) + λI                                       (dropout as a penalty)
    P = (XᵀX + Λ)⁻¹,    B = I − P · diag(1 / diag(P)),  B_jj = 0           (the full-rank solution)

p = 0 is EASE with the same λ. ŷ_u = x_u B.
"""

import numpy as np

from model.ease import EASE
from utils import checks


class EDLAE(EASE):
    """l2: λ; dropout: p, the share of each input row dropped in training (the paper: 0.1–0.5)."""

    fitted_args = ("l2", "dropout")

    def __init__(self, dataset, l2=10.0, dropout=0.25):
        super().__init__(dataset, l2=l2)
        self.dropout = checks.fraction("arch.args.dropout", dropout)

    def penalty(self, gram):
        """Λ's diagonal: p / (1 − p) times each item's count, plus λ."""
        return self.dropout / (1 - self.dropout) * np.diag(gram) + self.l2
