"""Bayesian Personalised Ranking (Rendle et al., 2009), as NGCF (eq. 11) and LightGCN train."""

import torch.nn.functional as F

from model.loss._contract import needs


def bpr_loss(output, step, reg=1e-5):
    """BPR: mean(-ln σ(ŷ_ui - ŷ_uj)) + reg * l2 / batch (NGCF eq. 11; l2 already holds the / 2).

    output: pos_scores (B,), neg_scores (B,) or (B, k) (k negatives per positive: each pair counts),
    l2: scalar.
    """
    needs(output, ("pos_scores", "neg_scores", "l2"), "bpr_loss")
    pos, neg = output["pos_scores"], output["neg_scores"]
    if neg.dim() == 2:
        pos = pos.unsqueeze(1)  # (B, 1) against (B, k)
    ranking = F.softplus(neg - pos).mean()  # -ln σ(x) = softplus(-x), stable for large |x|
    return ranking + reg * output["l2"] / output["pos_scores"].shape[0]
