"""Top-K ranking metrics, vectorised over a batch of users.

Each takes hits: (B, K) float, 1 where the item ranked r-th is held out for that user, and
n_relevant: (B,) the number of held-out items; it returns (B,) per-user values. The evaluation
(trainer/evaluation.py) computes one top-K for the largest K and slices it for the others.
"""

import torch

__all__ = ["recall", "precision", "hit", "ndcg", "mrr"]


def recall(hits, n_relevant):
    return hits.sum(dim=1) / n_relevant.clamp(min=1)


def precision(hits, n_relevant):
    return hits.sum(dim=1) / hits.shape[1]


def hit(hits, n_relevant):
    return (hits.sum(dim=1) > 0).to(hits.dtype)


def ndcg(hits, n_relevant):
    """DCG / IDCG with binary gains; IDCG = DCG of min(K, n_relevant) hits at the top."""
    k = hits.shape[1]
    discount = 1.0 / torch.log2(torch.arange(2, k + 2, device=hits.device, dtype=hits.dtype))  # (K,)
    dcg = (hits * discount).sum(dim=1)
    ideal = torch.cumsum(discount, dim=0)[(n_relevant.clamp(min=1, max=k) - 1).long()]
    return dcg / ideal


def mrr(hits, n_relevant):
    """1 / rank of the first hit within the top K, 0 without one."""
    ranks = torch.arange(1, hits.shape[1] + 1, device=hits.device, dtype=hits.dtype)
    return (hits / ranks).max(dim=1).values
