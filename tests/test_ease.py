"""EASE: the closed form of the paper, fitted once; the checkpoint is what test.py scores with."""

import json

import numpy as np
import pytest
import torch
from conftest import one_line_error, run, shipped_config, small_dataset, straight_and_resumed

from model.ease import EASE
from utils.files import read_jsonl


def test_fit_is_the_papers_closed_form():
    """B = I - P diag(1/diag(P)) with P = (XᵀX + λI)^-1 minimises ‖X - XB‖² + λ‖B‖² under diag(B) = 0:
    the gradient of that objective vanishes off the diagonal (eq. 8's derivation)."""
    ds = small_dataset(n_users=40, n_items=12, empty_user=False, empty_item=False)
    model = EASE(ds, l2=3.0)
    model.fit(ds)
    B = model.B.double().numpy()
    X = ds.train.toarray().astype(np.float64)
    assert np.allclose(np.diag(B), 0.0)
    P = np.linalg.inv(X.T @ X + 3.0 * np.eye(12))
    np.testing.assert_allclose(B, np.eye(12) - P / np.diag(P), atol=1e-5)  # eq. 8 literally
    gradient = -2 * X.T @ (X - X @ B) + 2 * 3.0 * B  # of the objective; the diagonal is held at 0
    off_diagonal = ~np.eye(12, dtype=bool)
    assert np.abs(gradient[off_diagonal]).max() < 1e-3


def test_scores_are_the_history_times_b():
    ds = small_dataset(n_users=20, n_items=10, empty_user=False, empty_item=False)
    model = EASE(ds, l2=1.0)
    model.fit(ds)
    users = np.array([0, 3, 7])
    scores = model.full_scores(torch.from_numpy(users), ds.train[users])
    torch.testing.assert_close(scores, torch.from_numpy(ds.train[users].toarray()) @ model.B)
    # the history it is given decides the scores: another history, other scores
    other = model.full_scores(torch.from_numpy(users), ds.train[users[::-1].copy()])
    assert not torch.equal(scores, other)


def test_trains_nothing_resumes_and_tests_with_the_fitted_b(tmp_path, tiny_data):
    config = shipped_config("ease_ml100k", tiny_data)
    config["arch"]["args"]["l2"] = 50.0
    runs, straight, resumed = straight_and_resumed(tmp_path, config, epochs=2)
    assert straight["state_dict"]["B"].any()  # fitted once, before epoch 1; the resume loaded it, not refitted
    assert "loss" not in read_jsonl(runs / "straight" / "metrics.jsonl")[0]  # nothing was trained

    # test.py scores with the checkpoint's B (not a new fit): its validation figures are training's
    assert run("test.py", "-r", runs / "straight" / "model_best.pth", "--split", "valid").returncode == 0
    valid = json.loads((runs / "straight" / "valid_metrics.json").read_text())
    assert valid["recall@20"] == pytest.approx(read_jsonl(runs / "straight" / "metrics.jsonl")[-1]["val_recall@20"])
    # another λ at test time is refused: the B in the checkpoint was solved for 50
    line = one_line_error(run("test.py", "-r", runs / "straight" / "model_best.pth", "--set", "arch.args.l2=100.0"))
    assert "arch.args.l2" in line and "fitted with l2 = 50.0, not 100.0" in line
    result = run("test.py", "-r", runs / "straight" / "model_best.pth", "--topk-out", tmp_path / "r.csv", "--k", "3")
    assert result.returncode == 0, result.stderr
