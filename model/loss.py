"""Losses. Each takes the model's output dict and returns a scalar tensor."""

import torch.nn.functional as F

__all__ = ["bpr_loss"]


def bpr_loss(output, reg=1e-5):
    """BPR: mean(-ln σ(ŷ_ui - ŷ_uj)) + reg * l2 / batch (NGCF eq. 11; l2 already holds the / 2).

    output: pos_scores (B,), neg_scores (B,), l2 (scalar).
    """
    pos, neg = output["pos_scores"], output["neg_scores"]
    ranking = F.softplus(neg - pos).mean()  # -ln σ(x) = softplus(-x), stable for large |x|
    return ranking + reg * output["l2"] / pos.shape[0]
