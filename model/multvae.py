"""Mult-VAE: variational autoencoders for collaborative filtering (Liang et al., WWW 2018).

A user is their row x_u of the training matrix. The encoder g maps the L2-normalised row, with
dropout on its entries, to a Gaussian q(z_u | x_u) = N(μ_u, diag σ_u²); the decoder f maps a
sample z_u to π(z_u) = softmax(f(z_u)), a distribution over the items. Training maximises the
annealed evidence lower bound (eq. 6, with β for the KL term, section 2.2.2):

    L_β(x_u) = Σ_i x_ui log π_i(z_u)  −  β · KL( q(z_u | x_u) ‖ N(0, I) ),   z_u = μ_u + σ_u ⊙ ε

with the multinomial log-likelihood of eq. 2 and the reparametrisation trick. β grows linearly
from 0 to beta_max over anneal_steps optimizer steps; the step count is the trainer's, so it
continues on resume. At evaluation z_u = μ_u, the encoder's mean, from the user's history.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

from base.base_model import BaseModel
from base.batching import UserRowBatches
from model.graph import first_layer
from utils import checks


class MultVAE(BaseModel):
    """hidden: the encoder's hidden sizes ([600] in the paper; the decoder mirrors them).
    latent: the size of z (200). dropout: on the input row (0.5). beta_max: the KL weight's
    final value (0.2). anneal_steps: optimizer steps to reach it (0: beta_max from the start)."""

    def __init__(self, dataset, hidden=(600,), latent=200, dropout=0.5, beta_max=0.2, anneal_steps=20000):
        super().__init__()
        if not isinstance(hidden, (list, tuple)) or not all(checks.is_int(h) and h > 0 for h in hidden):
            checks.fail("arch.args.hidden", "a list of positive integers, e.g. [600]", hidden)
        checks.positive_int("arch.args.latent", latent)
        self.dropout = checks.fraction("arch.args.dropout", dropout)
        self.beta_max = checks.number("arch.args.beta_max", beta_max, low=0)
        self.anneal_steps = checks.integer("arch.args.anneal_steps", anneal_steps, low=0)
        dims = [dataset.n_items, *hidden]
        # the encoder ends in 2 * latent outputs: μ and log σ²
        self.encoder = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims, [*dims[1:], 2 * latent]))
        back = [latent, *reversed(dims)]  # latent -> hidden (reversed) -> n_items
        self.decoder = nn.ModuleList(nn.Linear(a, b) for a, b in zip(back, back[1:]))
        for linear in (*self.encoder, *self.decoder):  # as the authors' code: Xavier weights, small biases
            nn.init.xavier_uniform_(linear.weight)
            nn.init.normal_(linear.bias, std=0.001)

    def train_batches(self, data):
        return UserRowBatches(data)  # {users (B,), rows (B, n_items)}: each user once an epoch

    def encode(self, rows):
        """q(z | x): (μ, log σ²), each (B, latent), from rows (B, n_items)."""
        return self.encode_after_first(first_layer(self.encoder[0], rows, self.dropout, self.training))

    def encode_after_first(self, h):
        """The encoder from its first layer's output h (B, d_1) on: tanh between layers; (μ, log σ²)."""
        for linear in self.encoder[1:]:
            h = linear(torch.tanh(h))
        mu, logvar = h.chunk(2, dim=1)
        return mu, logvar

    def decode(self, z):
        """f(z): (B, n_items) logits; softmax over them is π(z)."""
        for i, linear in enumerate(self.decoder):
            z = linear(z)
            if i < len(self.decoder) - 1:
                z = torch.tanh(z)
        return z

    def forward(self, batch):
        rows = batch["rows"]  # (B, n_items), x_u
        mu, logvar = self.encode(rows)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu) if self.training else mu  # reparametrisation
        return {"logits": self.decode(z), "rows": rows, "mu": mu, "logvar": logvar}

    def beta(self, step):
        """The KL weight after `step` optimizer steps: linear from 0 to beta_max at anneal_steps, then
        beta_max (the authors' code writes it min(cap, step / total): total = anneal_steps / beta_max)."""
        return self.beta_max * (1.0 if self.anneal_steps == 0 else min(1.0, step / self.anneal_steps))

    def loss(self, output, step):
        """−L_β averaged over the batch's users (the model's own loss: no `loss` section in its config)."""
        log_likelihood = (F.log_softmax(output["logits"], dim=1) * output["rows"]).sum(dim=1)  # eq. 2
        mu, logvar = output["mu"], output["logvar"]
        kl = 0.5 * (torch.exp(logvar) + mu.pow(2) - 1 - logvar).sum(dim=1)  # KL(N(μ, σ²) ‖ N(0, I))
        return (-log_likelihood + self.beta(step) * kl).mean()

    def full_scores(self, users, history):
        """The decoder's logits at z = μ of the user's history (training items; + validation at test)."""
        rows = torch.from_numpy(history.toarray()).to(self.decoder[-1].weight)  # (B, n_items)
        mu, _ = self.encode(rows)  # the first layer takes them sparse on the CPU (model/graph.first_layer)
        return self.decode(mu)
