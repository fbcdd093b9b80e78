"""RecVAE: the composite prior, the per-user β, and training in phases (base/phases.py): the encoder's
optimizer for its passes, then the decoder's, each stepping only its own part; resume is exact."""

import json
import math

import numpy as np
import torch
from conftest import (
    data_of,
    one_line_error,
    run,
    shipped_config,
    small_dataset,
    straight_and_resumed,
    tiny_config,
)

from model.recvae import PRIOR_WEIGHTS, WIDE_LOGVAR, RecVAE


def gaussian(z, mu, logvar):
    return math.exp(-0.5 * (z - mu) ** 2 / math.exp(logvar)) / math.sqrt(2 * math.pi * math.exp(logvar))


def test_the_loss_is_the_negative_elbo_with_the_composite_prior_and_a_beta_per_user():
    ds = small_dataset(n_users=10, n_items=8, empty_user=False, empty_item=False)
    torch.manual_seed(0)
    model = RecVAE(ds, hidden=6, latent=3, gamma=0.1)
    torch.nn.init.normal_(model.previous.mu.weight)  # a previous posterior other than the encoder's
    rows = torch.from_numpy(ds.train[:4].toarray())
    out = model({"users": torch.arange(4), "rows": rows})
    mu_old, logvar_old = model.previous(rows, 0.0)
    expected = []
    for u in range(4):  # one user, one dimension at a time, densities written out
        likelihood = float((rows[u] * torch.log_softmax(out["logits"][u], dim=0)).sum().detach())
        kl = 0.0
        for d in range(3):
            z, mu, lv = (float(t[u, d].detach()) for t in (out["z"], out["mu"], out["logvar"]))
            prior = (
                PRIOR_WEIGHTS[0] * gaussian(z, 0.0, 0.0)
                + PRIOR_WEIGHTS[1] * gaussian(z, float(mu_old[u, d]), float(logvar_old[u, d]))
                + PRIOR_WEIGHTS[2] * gaussian(z, 0.0, WIDE_LOGVAR)
            )
            kl += math.log(gaussian(z, mu, lv)) - math.log(prior)
        expected.append(-likelihood + 0.1 * float(rows[u].sum()) * kl)  # β_u = γ |x_u|
    assert abs(float(model.loss(out, step=0).detach()) - np.mean(expected)) < 1e-4


def test_an_epoch_is_the_encoders_passes_then_the_decoders_each_stepping_its_own(tmp_path, tiny_data):
    import train
    from trainer.trainer import Trainer
    from utils.runs import RunFolder

    config = tiny_config(tiny_data, tmp_path / "saved")
    config["arch"] = {"type": "RecVAE", "args": {"hidden": 8, "latent": 4, "encoder_passes": 2}}
    config.update(loss=None, lr_scheduler=None)
    from utils.parse_config import ConfigParser

    parsed = ConfigParser(config)
    data = data_of(config)
    torch.manual_seed(0)
    model = RecVAE(data.dataset, hidden=8, latent=4, encoder_passes=2)
    optimizer = train.build_optimizer(parsed, model, [p for p in model.parameters() if p.requires_grad])
    trainer = Trainer(model, model.loss, {}, optimizer, parsed, torch.device("cpu"), data_loader=data)
    trainer.set_output(RunFolder(tmp_path, "t", "r"))
    stepped, changed = [], []
    for number, inner in enumerate(optimizer.optimizers):
        original = inner.step

        def step(original=original, number=number):
            encoder, decoder = model.encoder.mu.weight.clone(), model.decoder.weight.clone()
            original()
            stepped.append(number)
            changed.append(
                (not torch.equal(encoder, model.encoder.mu.weight), not torch.equal(decoder, model.decoder.weight))
            )

        inner.step = step
    starts = []
    model.begin_phase = lambda name, begin=model.begin_phase: (starts.append(name), begin(name))
    trainer._train_epoch(1)
    n = len(trainer.batches)
    assert stepped == [0] * (2 * n) + [1] * n and starts == ["encoder", "decoder"]
    assert changed == [(True, False)] * (2 * n) + [(False, True)] * n
    torch.testing.assert_close(model.previous.mu.weight, model.encoder.mu.weight)  # the prior took the encoder
    assert model.input_dropout == 0.0  # the decoder's phase trains without dropout


def test_resume_is_exact_and_a_scheduler_is_refused_with_phases(tmp_path, tiny_data):
    config = shipped_config("recvae_ml100k", tiny_data)
    config["batches"]["batch_size"] = 16
    config["arch"]["args"].update(hidden=16, latent=8)
    runs, straight, _ = straight_and_resumed(tmp_path, config)
    assert len(straight["optimizer"]["phases"]) == 2  # both optimizers' state, Adam moments and all
    assert run("test.py", "-r", runs / "straight" / "model_best.pth", "--topk-out", tmp_path / "r.csv").returncode == 0
    config["lr_scheduler"] = {"type": "StepLR", "args": {"step_size": 10}}
    path = tmp_path / "s.json"
    path.write_text(json.dumps(config))
    assert "RecVAE trains in phases" in one_line_error(run("train.py", "-c", path))


def test_the_encoder_on_sparse_rows_is_the_densely_connected_encoder_of_the_paper():
    """On the CPU the first layer takes the rows as a sparse matrix, dropout drawn for their non-zeros:
    μ, log σ² and every gradient as the dense five-layer encoder (each layer fed the sum of the
    earlier ones) under the mask those draws make."""
    import torch.nn.functional as F

    ds = small_dataset()
    torch.manual_seed(0)
    encoder = RecVAE(ds, hidden=8, latent=4).encoder.train()
    rows = torch.from_numpy(ds.train.toarray()).float()
    torch.manual_seed(1)
    keep = F.dropout(torch.ones(int((rows != 0).sum())), 0.5, True)  # the draws, in CSR order
    mask = torch.zeros_like(rows)
    mask[rows != 0] = keep

    def dense():
        h, earlier = F.normalize(rows, dim=1) * mask, 0
        for linear, norm in zip(encoder.linears, encoder.norms):
            h = norm(F.silu(linear(h) + earlier))
            earlier = earlier + h
        return encoder.mu(h), encoder.logvar(h)

    runs = []
    for encode in (dense, lambda: encoder(rows, 0.5)):
        torch.manual_seed(1)
        encoder.zero_grad()
        mu, logvar = encode()
        (mu.pow(2).sum() + logvar.sum()).backward()
        runs.append((mu, logvar, *(p.grad.clone() for p in encoder.parameters())))
    for dense_value, sparse_value in zip(*runs):
        torch.testing.assert_close(sparse_value, dense_value)
