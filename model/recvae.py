"""RecVAE: a new variational autoencoder for top-N recommendations with implicit feedback
(Shenbin, Alekseev, Tutubalina, Malykh & Nikolenko, WSDM 2020).

Mult-VAE (model/multvae.py) with four changes, each named below where it happens:
1. a deeper encoder: five dense layers, each fed the sum of all earlier ones, with swish and layer
   normalisation (sec. 3.2);
2. a composite prior: a mixture of N(0, I), the posterior of the encoder of the previous epoch
   (frozen), and a wide N(0, e^10 I), weights 3/20, 3/4, 1/10 (eq. 6);
3. β rescaled per user, β_u = γ · |x_u| (sec. 3.4), so users with long histories are regularised more:

       L(x_u) = Σ_i x_ui log π_i(z_u)  −  γ |x_u| · E_q[ log q(z_u | x_u) − log p(z_u | φ_old, x_u) ]

   (the KL term estimated with the one sample z_u = μ_u + σ_u ⊙ ε, as the paper's code does);
4. alternating updates (sec. 3.5): each epoch the encoder is trained for `encoder_passes` passes
   over the users with input dropout, then the prior takes a copy of the encoder, then the decoder
   is trained for one pass without dropout. These are the model's two phases (base/phases.py),
   each with its own optimizer built from the config's `optimizer` section.

At evaluation z_u = μ_u, the encoder's mean, from the user's history; the scores are the decoder's.
"""

import copy
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from base.base_model import BaseModel
from base.batching import UserRowBatches
from base.phases import Phase
from model.graph import first_layer
from utils import checks

PRIOR_WEIGHTS = (3 / 20, 3 / 4, 1 / 10)  # standard, previous posterior, wide (eq. 6)
WIDE_LOGVAR = 10.0  # log σ² of the wide component


def log_normal(z, mu, logvar):
    """log N(z | μ, diag σ²), per dimension (B, latent)."""
    return -0.5 * (logvar + math.log(2 * math.pi) + (z - mu).pow(2) / logvar.exp())


class Encoder(nn.Module):
    """q(z | x): the L2-normalised row, input dropout, five densely connected layers (change 1)."""

    def __init__(self, n_items, hidden, latent, layers=5):
        super().__init__()
        self.linears = nn.ModuleList(nn.Linear(n_items if i == 0 else hidden, hidden) for i in range(layers))
        self.norms = nn.ModuleList(nn.LayerNorm(hidden, eps=0.1) for _ in range(layers))  # the authors' eps
        self.mu = nn.Linear(hidden, latent)
        self.logvar = nn.Linear(hidden, latent)

    def forward(self, rows, dropout):
        h, earlier = None, None  # earlier: the sum of every earlier layer's output, added to each layer's
        for i, (linear, norm) in enumerate(zip(self.linears, self.norms)):
            # the first layer takes the row (B, n_items), normalised and dropped out; the others h (B, hidden)
            z = first_layer(linear, rows, dropout, self.training) if i == 0 else linear(h) + earlier
            h = norm(F.silu(z))  # swish(x) = x σ(x)
            earlier = h if earlier is None else earlier + h
        return self.mu(h), self.logvar(h)  # (B, latent) each


class RecVAE(BaseModel):
    """hidden: the encoder's width (600); latent: the size of z (200); gamma: γ, the KL weight per
    interaction of the user (0.005); dropout: on the input row in the encoder's phase (0.5);
    encoder_passes: the encoder's passes over the users each epoch (3)."""

    def __init__(self, dataset, hidden=600, latent=200, gamma=0.005, dropout=0.5, encoder_passes=3):
        super().__init__()
        checks.positive_int("arch.args.hidden", hidden)
        checks.positive_int("arch.args.latent", latent)
        self.gamma = checks.number("arch.args.gamma", gamma, low=0, low_open=True)
        self.dropout = checks.fraction("arch.args.dropout", dropout)
        self.encoder_passes = checks.positive_int("arch.args.encoder_passes", encoder_passes)
        self.encoder = Encoder(dataset.n_items, hidden, latent)
        self.previous = copy.deepcopy(self.encoder).requires_grad_(False)  # φ_old of the composite prior
        self.decoder = nn.Linear(latent, dataset.n_items)
        self.input_dropout = self.dropout  # the current phase's (change 4)

    def train_batches(self, data):
        return UserRowBatches(data)  # {users (B,), rows (B, n_items)}: each user once a pass

    def phases(self):
        return [
            Phase("encoder", self.encoder.parameters(), passes=self.encoder_passes),
            Phase("decoder", self.decoder.parameters()),
        ]

    def begin_phase(self, name):
        if name == "decoder":  # the prior takes the encoder as it is now; the decoder trains without dropout
            self.previous.load_state_dict(self.encoder.state_dict())
        self.input_dropout = self.dropout if name == "encoder" else 0.0

    def prior(self, rows, z):
        """log p(z | φ_old, x), the composite prior (change 2), per dimension (B, latent)."""
        mu_old, logvar_old = self.previous(rows, 0.0)
        zero = torch.zeros_like(z)
        parts = (
            log_normal(z, zero, zero),  # N(0, I)
            log_normal(z, mu_old, logvar_old),  # the previous epoch's posterior
            log_normal(z, zero, torch.full_like(z, WIDE_LOGVAR)),  # N(0, e^10 I)
        )
        return torch.logsumexp(torch.stack([p + math.log(w) for p, w in zip(parts, PRIOR_WEIGHTS)]), dim=0)

    def forward(self, batch):
        rows = batch["rows"]  # (B, n_items), x_u
        mu, logvar = self.encoder(rows, self.input_dropout)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu) if self.training else mu  # reparametrisation
        return {"logits": self.decoder(z), "rows": rows, "z": z, "mu": mu, "logvar": logvar}

    def loss(self, output, step):
        """−L averaged over the batch's users (the model's own loss: no `loss` section in its config)."""
        rows, z = output["rows"], output["z"]
        log_likelihood = (F.log_softmax(output["logits"], dim=1) * rows).sum(dim=1)  # multinomial, (B,)
        kl = (log_normal(z, output["mu"], output["logvar"]) - self.prior(rows, z)).sum(dim=1)  # one-sample, (B,)
        beta = self.gamma * rows.sum(dim=1)  # β_u = γ |x_u| (change 3)
        return (-log_likelihood + beta * kl).mean()

    def full_scores(self, users, history):
        """The decoder's logits at z = μ of the user's history (training items; + validation at test)."""
        rows = torch.from_numpy(history.toarray()).to(self.decoder.weight)  # (B, n_items)
        mu, _ = self.encoder(rows, 0.0)
        return self.decoder(mu)
