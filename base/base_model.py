"""The model contract shared by every recommender."""

from abc import ABC, abstractmethod

import torch.nn as nn


class BaseModel(nn.Module, ABC):
    """A recommender built from the data set: `Model(dataset=Interactions, **arch.args)`.

    forward(users, pos_items, neg_items), each (B,) int64 -> dict for the loss, at least
        pos_scores: (B,), neg_scores: (B,), l2: scalar (the squared norms the paper regularises, / 2).
    full_scores(users: (B,)) -> (B, n_items) scores of every item, for full ranking.
    """

    @abstractmethod
    def forward(self, users, pos_items, neg_items):
        """Scores and regulariser for a batch of BPR triples."""

    @abstractmethod
    def full_scores(self, users):
        """(B,) user indices -> (B, n_items) scores."""

    def n_trainable(self):
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def __str__(self):
        return f"{super().__str__()}\nTrainable parameters: {self.n_trainable():,}"
