"""Binary cross-entropy on sampled items: the pointwise loss of NCF / NeuMF (He et al., WWW 2017)."""

import torch.nn.functional as F

from model.loss._contract import needs


def bce_loss(output, step, reg=0.0):
    """Mean binary cross-entropy over the B positives (label 1) and their B x k sampled negatives
    (label 0), + reg * l2 / batch when the model gives an `l2`.

    output: pos_scores (B,) and neg_scores (B,) or (B, k), logits (before the sigmoid); l2 scalar (optional).
    """
    needs(output, ("pos_scores", "neg_scores"), "bce_loss")
    pos, neg = output["pos_scores"], output["neg_scores"]
    # -ln σ(x) = softplus(-x) for the positives, -ln(1 - σ(x)) = softplus(x) for the negatives
    loss = (F.softplus(-pos).sum() + F.softplus(neg).sum()) / (pos.numel() + neg.numel())
    if reg and "l2" in output:
        loss = loss + reg * output["l2"] / pos.shape[0]
    return loss
