"""EDLAE, ItemKNN and RP3beta: each closed form against its formula written out the slow way, on a
small random data set (with an item nobody has and a user with nothing)."""

import numpy as np
import pytest
import torch
from conftest import one_line_error, run, shipped_config, small_dataset, straight_and_resumed

from model.ease import EASE
from model.edlae import EDLAE
from model.itemknn import ItemKNN
from model.rp3beta import RP3beta
from utils.files import read_jsonl


def fitted(cls, ds, **args):
    model = cls(ds, **args)
    model.fit(ds)
    return model.B.double().numpy()


def test_edlae_is_ease_with_a_dropout_penalty_growing_with_popularity():
    ds = small_dataset(n_users=40, n_items=12, empty_user=False, empty_item=False)
    X = ds.train.toarray().astype(np.float64)
    G = X.T @ X
    p, lam = 0.25, 3.0
    P = np.linalg.inv(G + np.diag(p / (1 - p) * np.diag(G) + lam))  # Λ = p/(1−p) diag(G) + λ
    expected = np.eye(12) - P / np.diag(P)
    np.testing.assert_allclose(fitted(EDLAE, ds, l2=lam, dropout=p), expected, atol=1e-5)
    np.testing.assert_allclose(fitted(EDLAE, ds, l2=lam, dropout=0.0), fitted(EASE, ds, l2=lam), atol=1e-6)
    assert not np.allclose(fitted(EDLAE, ds, l2=lam, dropout=p), fitted(EASE, ds, l2=lam), atol=1e-3)


def test_itemknn_keeps_each_items_k_most_similar_by_shrunk_cosine():
    ds = small_dataset(n_users=30, n_items=10)
    X = ds.train.toarray().astype(np.float64)
    shrink, k = 2.0, 3
    cosine = np.zeros((10, 10))
    for i in range(10):
        for j in range(10):
            if i != j:
                cosine[i, j] = X[:, i] @ X[:, j] / (np.linalg.norm(X[:, i]) * np.linalg.norm(X[:, j]) + shrink)
    np.testing.assert_allclose(fitted(ItemKNN, ds, neighbours=10, shrink=shrink), cosine, atol=1e-6)
    B = fitted(ItemKNN, ds, neighbours=k, shrink=shrink)
    for j in range(10):  # column j holds j's k neighbours: the k largest similarities, nothing else
        kept = np.flatnonzero(B[:, j])
        assert len(kept) <= k and np.all(cosine[kept, j] >= np.sort(cosine[:, j])[-k] - 1e-9)
        np.testing.assert_allclose(B[kept, j], cosine[kept, j], atol=1e-6)
    assert np.all(np.diag(B) == 0) and not B[:, -1].any()  # the item nobody has is nobody's neighbour


def test_rp3beta_is_the_three_step_walk_reranked_by_popularity():
    ds = small_dataset(n_users=30, n_items=10)
    X = ds.train.toarray().astype(np.float64)
    alpha, beta = 0.8, 0.4
    users_of, items_of = X.sum(0), X.sum(1)
    walk = np.zeros((10, 10))
    for i in range(10):  # item i -> a user who has it -> item j, each step uniform, to the power α
        for j in range(10):
            for u in range(30):
                if X[u, i] and X[u, j] and i != j:
                    walk[i, j] += (1 / users_of[i]) ** alpha * (1 / items_of[u]) ** alpha
            walk[i, j] /= max(users_of[j], 1) ** beta
    np.testing.assert_allclose(fitted(RP3beta, ds, alpha=alpha, beta=beta, neighbours=10), walk, atol=1e-6)
    B = fitted(RP3beta, ds, alpha=alpha, beta=beta, neighbours=2)
    assert all(np.count_nonzero(row) <= 2 for row in B)
    for i in range(10):  # row i keeps its 2 most likely ends
        kept = np.flatnonzero(B[i])
        assert np.all(walk[i, kept] >= np.sort(walk[i])[-2] - 1e-9)


def test_scores_are_the_history_times_b():
    ds = small_dataset(n_users=20, n_items=10)
    users = np.array([0, 3, 7])
    for model in (EDLAE(ds), ItemKNN(ds, neighbours=4), RP3beta(ds, neighbours=4)):
        model.fit(ds)
        scores = model.full_scores(torch.from_numpy(users), ds.train[users])
        torch.testing.assert_close(scores, torch.from_numpy(ds.train[users].toarray()) @ model.B)


@pytest.mark.parametrize(
    "name,change,message",
    [
        ("edlae", "arch.args.dropout=1.0", "arch.args.dropout: expected a number in [0, 1), got 1.0"),
        ("itemknn", "arch.args.neighbours=0", "arch.args.neighbours: expected an integer >= 1, got 0"),
        ("rp3beta", "arch.args.beta=-1", "arch.args.beta: expected a number >= 0, got -1"),
    ],
)
def test_each_config_fits_once_resumes_and_refuses_other_fitted_args(tmp_path, tiny_data, name, change, message):
    config = shipped_config(f"{name}_ml100k", tiny_data)
    runs, straight, _ = straight_and_resumed(tmp_path, config, epochs=2)
    assert straight["state_dict"]["B"].any() and "loss" not in read_jsonl(runs / "straight" / "metrics.jsonl")[0]
    key = change.split("=")[0]
    line = one_line_error(run("test.py", "-r", runs / "straight" / "model_best.pth", "--set", change))
    assert key in line  # B was fitted with the config's value, not this one
    line = one_line_error(run("train.py", "-c", tmp_path / "resumed.json", "--set", change))
    assert message in line
