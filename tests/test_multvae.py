"""MultVAE: user-row batches, the annealed multinomial ELBO, and a step counter that survives resume."""

import math

import numpy as np
import torch
import torch.nn.functional as F
from conftest import run, shipped_config, small_dataset, straight_and_resumed

from model.multvae import MultVAE


def test_loss_is_the_annealed_negative_elbo():
    ds = small_dataset(n_users=10, n_items=8, empty_user=False, empty_item=False)
    torch.manual_seed(0)
    model = MultVAE(ds, hidden=[5], latent=3, dropout=0.0, beta_max=0.4, anneal_steps=100).eval()
    rows = torch.from_numpy(ds.train[:4].toarray())
    out = model({"users": torch.arange(4), "rows": rows})
    mu, logvar = out["mu"], out["logvar"]
    manual = []
    for u in range(4):  # one user at a time, written out
        log_pi = torch.log(torch.softmax(out["logits"][u], dim=0))
        likelihood = float((rows[u] * log_pi).sum().detach())
        kl = sum(
            0.5 * (math.exp(lv) + m**2 - 1 - lv) for m, lv in zip(mu[u].tolist(), logvar[u].tolist())
        )  # KL(N(m, e^lv) || N(0, 1)), per dimension
        manual.append((likelihood, kl))
    for step, beta in ((0, 0.0), (50, 0.2), (100, 0.4), (500, 0.4)):  # linear to beta_max, then flat
        assert model.beta(step) == beta
        expected = np.mean([-ll + beta * kl for ll, kl in manual])
        assert abs(float(model.loss(out, step).detach()) - expected) < 1e-5


def test_scores_come_from_the_history_given():
    ds = small_dataset(n_users=10, n_items=8, empty_user=False, empty_item=False)
    torch.manual_seed(0)
    model = MultVAE(ds, hidden=[5], latent=3).eval()
    users = torch.tensor([0, 1])
    first = model.full_scores(users, ds.train[[0, 1]])
    assert first.shape == (2, 8)
    assert not torch.equal(first, model.full_scores(users, ds.train[[2, 3]]))  # another history, other scores
    torch.testing.assert_close(first, model.full_scores(users, ds.train[[0, 1]]))  # no sampling at evaluation


def test_every_user_once_an_epoch_and_resume_is_exact(tmp_path, tiny_data):
    config = shipped_config("multvae_ml100k", tiny_data)
    config["batches"]["batch_size"] = 16
    config["arch"]["args"].update(hidden=[16], latent=8, anneal_steps=5)
    runs, straight, resumed = straight_and_resumed(tmp_path, config)
    half = torch.load(runs / "part" / "checkpoint-epoch2.pth", weights_only=True)
    assert half["step"] == 2 * 4  # 60 users in batches of 16: 4 steps an epoch, counted across epochs
    assert straight["step"] == resumed["step"] == 16  # annealing continues where it stopped
    assert run("test.py", "-r", runs / "straight" / "model_best.pth", "--topk-out", tmp_path / "r.csv").returncode == 0


def test_scoring_a_sparse_history_equals_the_dense_encoder():
    """full_scores takes the history's first layer as a sparse product; encode() on the dense rows,
    normalised and all, gives the same scores (an empty history too)."""
    ds = small_dataset()
    torch.manual_seed(0)
    model = MultVAE(ds, hidden=[8, 6], latent=4).eval()
    users = torch.arange(ds.n_users)
    history = ds.train[users.numpy()]
    assert (np.diff(history.indptr) == 0).any()  # small_dataset has a user without items
    dense, _ = model.encode(torch.from_numpy(history.toarray()).float())
    torch.testing.assert_close(model.full_scores(users, history), model.decode(dense))


def test_training_on_sparse_rows_gives_the_dense_encoders_values_and_gradients():
    """On the CPU encode() takes the rows as a sparse matrix, with dropout drawn for their non-zeros:
    the same μ, log σ² and first-layer gradients as the paper's dense g(dropout(x / ‖x‖)) under the
    mask those draws make."""
    ds = small_dataset()
    torch.manual_seed(0)
    model = MultVAE(ds, hidden=[8, 6], latent=4, dropout=0.5).train()
    rows = torch.from_numpy(ds.train.toarray()).float()
    torch.manual_seed(1)
    keep = F.dropout(torch.ones(int((rows != 0).sum())), 0.5, True)  # the draws, in CSR order
    mask = torch.zeros_like(rows)
    mask[rows != 0] = keep
    first = model.encoder[0]
    runs = []
    for encode in (
        lambda: model.encode_after_first(first(F.normalize(rows, dim=1) * mask)),
        lambda: model.encode(rows),
    ):
        torch.manual_seed(1)
        model.zero_grad()
        mu, logvar = encode()
        (mu.pow(2).sum() + logvar.sum()).backward()
        runs.append((mu, logvar, first.weight.grad.clone(), first.bias.grad.clone()))
    assert 0 < int(keep.count_nonzero()) < len(keep)
    for dense, sparse in zip(*runs):
        torch.testing.assert_close(sparse, dense)


def test_the_sparse_input_layer_warns_nothing():
    """torch says once per process that sparse CSR tensors are in beta; a run must not pass that on
    (a fresh process, so no earlier test has used the warning up)."""
    import subprocess
    import sys

    from conftest import ROOT

    code = (
        "import torch; from model.graph import first_layer; "
        "first_layer(torch.nn.Linear(5, 3), torch.eye(5)[:2], 0.5, True).sum().backward()"
    )
    result = subprocess.run([sys.executable, "-W", "error", "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0 and not result.stderr, result.stderr[-2000:]
