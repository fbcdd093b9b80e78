"""The model contract shared by every recommender, whatever way it learns.

A model is built from the data set, `Model(dataset=Interactions, **arch.args)`, and says:
- which batches it learns from: `train_batches(data)`, built from the pieces in
  base/batching.py (default: BPR pairs, one negative per positive); an empty iterable
  means it has nothing to train (a closed-form or counting model);
- how it fits in closed form, if it does: `fit(dataset)`, called once before training by train.py
  (never again on resume, never by test.py: the fitted weights are in the checkpoint);
- what one batch gives: `forward(batch) -> dict`, the tensors its loss reads; the loss is the
  config's `loss` function (model/loss/), or the model's own `loss(output, step)` when the config
  names none;
- how it ranks: `full_scores(users, history) -> (B, n_items)`, where `history` is what the
  evaluation ranks out (training items; training and validation items at test time);
- whether it trains in phases, each with its own optimizer: `phases()` (base/phases.py).
"""

from abc import ABC, abstractmethod

import torch.nn as nn

from base.batching import PairBatches
from utils.errors import ContractError


class BaseModel(nn.Module, ABC):
    """fit(dataset) -> None; train_batches(data) -> batches; forward(batch) -> dict;
    loss(output, step) -> scalar (optional); full_scores(users, history) -> (B, n_items)."""

    # arch.args the state from fit() depends on: test.py and a resume refuse a checkpoint whose
    # config gives them other values (the weights would not be what the config says).
    fitted_args = ()

    def fit(self, dataset):
        """Closed-form models compute their weights from `dataset` (an Interactions) here. Default: nothing."""

    def train_batches(self, data):
        """The batches this model learns from, over the data loader `data`. Default: BPR pairs
        {users (B,), pos_items (B,), neg_items (B,)}."""
        return PairBatches(data)

    def forward(self, batch):
        """One training batch (a dict of tensors from train_batches) -> the dict of tensors its loss reads."""
        raise ContractError(
            f"{type(self).__name__}.forward(batch) is not implemented: a model that trains returns the dict "
            "of tensors its loss reads (bpr_loss: pos_scores (B,), neg_scores (B,), l2)"
        )

    def loss(self, output, step):
        """The model's own training loss from forward's output and the optimizer step count. Used
        when the config has no `loss` section; a model trained by a config loss leaves it alone."""
        raise ContractError(f"{type(self).__name__} has no loss of its own: name one in the config's `loss` section")

    def phases(self):
        """[Phase(name, parameters, passes), ...] for a model that alternates what it updates (one
        optimizer each, stepped in turn every epoch); None (the default): one optimizer, one pass."""
        return None

    def begin_phase(self, name):
        """Called as each phase starts its passes: a model changes here what differs between them."""

    @classmethod
    def has_own_loss(cls):
        return cls.loss is not BaseModel.loss

    @abstractmethod
    def full_scores(self, users, history):
        """users: (B,) int64 tensor on the model's device; history: CSR (B, n_items) of the items the
        evaluation ranks out for them. Returns (B, n_items) scores of every item."""

    def on_device(self, device):
        """Called once the model is on its training device: a model checks there what it needs and
        picks a fallback when something is missing. Returns a line for the log, or None."""
        return None

    def n_trainable(self):
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def __str__(self):
        return f"{super().__str__()}\nTrainable parameters: {self.n_trainable():,}"
