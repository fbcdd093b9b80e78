"""Ranking metrics and the full-ranking evaluation, against hand-computed and plain per-user results."""

import math
import re

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from model import METRICS
from trainer.evaluation import parse_metrics, ranking_hits
from utils.errors import ConfigError


def test_hand_computed_ranking():
    # one user, 3 relevant items; the top 5 has hits at ranks 1 and 3
    hits = torch.tensor([[1.0, 0.0, 1.0, 0.0, 0.0]])
    n_rel = torch.tensor([3.0])
    assert METRICS["recall"](hits, n_rel).item() == pytest.approx(2 / 3)
    assert METRICS["precision"](hits, n_rel).item() == pytest.approx(2 / 5)
    assert METRICS["hit"](hits, n_rel).item() == 1.0
    assert METRICS["mrr"](hits, n_rel).item() == 1.0
    dcg = 1 / math.log2(2) + 1 / math.log2(4)
    idcg = 1 / math.log2(2) + 1 / math.log2(3) + 1 / math.log2(4)
    assert METRICS["ndcg"](hits, n_rel).item() == pytest.approx(dcg / idcg)
    # more relevant items than K: IDCG is K hits at the top
    hits = torch.tensor([[0.0, 1.0]])
    assert METRICS["ndcg"](hits, torch.tensor([5.0])).item() == pytest.approx(
        (1 / math.log2(3)) / (1 + 1 / math.log2(3))
    )
    assert METRICS["mrr"](hits, torch.tensor([5.0])).item() == pytest.approx(0.5)


def test_ranking_excludes_seen_items_and_finds_heldout():
    scores = torch.tensor([[0.9, 0.8, 0.7, 0.6, 0.5], [0.1, 0.2, 0.3, 0.4, 0.5]])
    exclude = sp.csr_matrix(np.array([[1, 0, 0, 0, 0], [0, 0, 0, 0, 1]], dtype=np.float32))
    heldout = sp.csr_matrix(np.array([[0, 0, 1, 0, 0], [1, 0, 0, 0, 0]], dtype=np.float32))
    hits, n_rel = ranking_hits(scores.clone(), heldout, exclude, k=3)
    # user 0: item 0 is seen, so the list is 1, 2, 3 -> hit at rank 2
    # user 1: item 4 is seen, so the list is 3, 2, 1 -> item 0 is not in the top 3
    assert hits.tolist() == [[0, 1, 0], [0, 0, 0]]
    assert n_rel.tolist() == [1, 1]


def plain_metrics(scores, heldout, exclude, k):
    """One user at a time, the obvious way: sort, drop seen, cut at K."""
    out = {name: [] for name in ("recall", "precision", "hit", "ndcg", "mrr")}
    for u in range(scores.shape[0]):
        seen = set(exclude[u].indices)
        relevant = set(heldout[u].indices)
        ranked = [i for i in np.argsort(-scores[u], kind="stable") if i not in seen][:k]
        hits = [1.0 if i in relevant else 0.0 for i in ranked]
        n_hits = sum(hits)
        out["recall"].append(n_hits / len(relevant))
        out["precision"].append(n_hits / k)
        out["hit"].append(float(n_hits > 0))
        dcg = sum(h / math.log2(r + 2) for r, h in enumerate(hits))
        idcg = sum(1 / math.log2(r + 2) for r in range(min(k, len(relevant))))
        out["ndcg"].append(dcg / idcg)
        out["mrr"].append(next((1 / (r + 1) for r, h in enumerate(hits) if h), 0.0))
    return {name: np.array(values) for name, values in out.items()}


@pytest.mark.parametrize("item_major", [False, True])
@pytest.mark.parametrize("n_items", [50, 16037])
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("k", [1, 5, 20, 60])
def test_vectorised_equals_plain(k, ties, n_items, item_major):
    """Random scores, with and without ties (then only 4 distinct values), users with fewer and
    more than K relevant items, K beyond the number of candidates (60 > 50 items minus the seen).
    The plain version breaks ties by lower item index (a stable sort); so must the vectorised one.
    16,037 items take the chunked top-K (ending in a partial chunk); scores come in both layouts
    (rows of items, or a transposed item-major product as the graph models return them)."""
    rng = np.random.default_rng(k)
    n_users = 40
    if ties:
        scores = rng.integers(0, 4, size=(n_users, n_items)).astype(np.float32)
    else:
        scores = rng.permutation(n_users * n_items).reshape(n_users, n_items).astype(np.float32)
    mask = rng.random((n_users, n_items))
    exclude = sp.csr_matrix((mask < 0.2).astype(np.float32))
    heldout_dense = (mask > 0.2) & (mask < 0.2 + rng.random((n_users, 1)) * 0.5)
    heldout_dense[np.arange(n_users), np.argmax(mask, axis=1)] = True  # everybody has one
    heldout = sp.csr_matrix(heldout_dense.astype(np.float32))
    tensor = torch.from_numpy(scores.T.copy()).T if item_major else torch.from_numpy(scores.copy())
    hits, n_rel = ranking_hits(tensor, heldout, exclude, k)
    expected = plain_metrics(scores, heldout, exclude, k)
    for name, values in expected.items():
        np.testing.assert_allclose(METRICS[name](hits, n_rel).numpy(), values, rtol=1e-5, err_msg=name)


def test_metric_names_are_checked():
    assert [(n, k) for n, _, k in parse_metrics(["recall@20", "ndcg@5"], METRICS)] == [("recall@20", 20), ("ndcg@5", 5)]
    with pytest.raises(
        ConfigError, match=re.escape(f"unknown metric 'recal' in 'recal@20' (available: {', '.join(METRICS)}")
    ):
        parse_metrics(["recal@20"], METRICS)
    with pytest.raises(ConfigError, match="K >= 1"):
        parse_metrics(["recall@0"], METRICS)


def test_sampled_candidates_are_the_heldout_items_and_unseen_ones():
    from data_loader.protocol import sampled_candidates

    rng = np.random.default_rng(0)
    known = sp.csr_matrix((rng.random((30, 200)) < 0.1).astype(np.float32))
    heldout = sp.csr_matrix(known.multiply(rng.random((30, 200)) < 0.2))
    heldout.eliminate_zeros()
    candidates = sampled_candidates(heldout, known, 100, seed=[1, 2])
    for u in range(30):
        mine = set(candidates[u].indices)
        if heldout[u].nnz == 0:
            assert not mine  # not evaluated
            continue
        assert set(heldout[u].indices) <= mine
        negatives = mine - set(heldout[u].indices)
        assert len(negatives) == 100 and not negatives & set(known[u].indices)
    again = sampled_candidates(heldout, known, 100, seed=[1, 2])
    assert (again != candidates).nnz == 0  # the same protocol for every run
    assert (sampled_candidates(heldout, known, 100, seed=[1, 3]) != candidates).nnz > 0


def test_ranking_among_candidates_only():
    scores = torch.tensor([[0.9, 0.8, 0.7, 0.6, 0.5]])
    heldout = sp.csr_matrix(np.array([[0, 0, 0, 1, 0]], dtype=np.float32))
    exclude = sp.csr_matrix((1, 5), dtype=np.float32)
    candidates = sp.csr_matrix(np.array([[0, 0, 1, 1, 1]], dtype=np.float32))
    hits, _ = ranking_hits(scores.clone(), heldout, exclude, k=2, candidates=candidates)
    assert hits.tolist() == [[0.0, 1.0]]  # among items 2, 3, 4 the held-out item 3 ranks second
    hits, _ = ranking_hits(scores.clone(), heldout, exclude, k=2)
    assert hits.tolist() == [[0.0, 0.0]]  # among every item it ranks fourth
