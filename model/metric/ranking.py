"""The usual top-K ranking metrics, vectorised over a batch of users (see model/metric/__init__.py)."""

import torch


def recall(hits, n_relevant):
    """Recall@K: hits in the top K / held-out items."""
    return hits.sum(dim=1) / n_relevant.clamp(min=1)


def nrecall(hits, n_relevant):
    """Normalized Recall@K: hits in the top K / min(K, held-out items), 1 when every place the
    user could fill is a hit (the MultVAE paper's recall, and the competition's metric)."""
    return hits.sum(dim=1) / n_relevant.clamp(min=1, max=hits.shape[1])


def precision(hits, n_relevant):
    """Precision@K: hits in the top K / K."""
    return hits.sum(dim=1) / hits.shape[1]


def hit(hits, n_relevant):
    """Hit@K (HR@K): 1 when any held-out item is in the top K."""
    return (hits.sum(dim=1) > 0).to(hits.dtype)


def ndcg(hits, n_relevant):
    """NDCG@K: DCG / IDCG with binary gains; IDCG = DCG of min(K, n_relevant) hits at the top."""
    k = hits.shape[1]
    discount = 1.0 / torch.log2(torch.arange(2, k + 2, device=hits.device, dtype=hits.dtype))  # (K,)
    dcg = (hits * discount).sum(dim=1)
    ideal = torch.cumsum(discount, dim=0)[(n_relevant.clamp(min=1, max=k) - 1).long()]
    return dcg / ideal


def mrr(hits, n_relevant):
    """MRR@K: 1 / rank of the first hit within the top K, 0 without one."""
    ranks = torch.arange(1, hits.shape[1] + 1, device=hits.device, dtype=hits.dtype)
    return (hits / ranks).max(dim=1).values
