"""Popularity: every user gets the items with the most training interactions. Nothing to train."""

import numpy as np
import torch

from base.base_model import BaseModel


class Pop(BaseModel):
    """Scores an item by its number of training interactions (the same list for every user)."""

    def __init__(self, dataset):
        super().__init__()
        counts = np.asarray(dataset.train.sum(axis=0)).ravel().astype(np.float32)
        self.register_buffer("popularity", torch.from_numpy(counts))  # (n_items,)

    def forward(self, users, pos_items, neg_items):
        zero = self.popularity.new_zeros(())
        return {"pos_scores": self.popularity[pos_items], "neg_scores": self.popularity[neg_items], "l2": zero}

    def full_scores(self, users):
        return self.popularity.expand(len(users), -1).clone()  # (B, n_items)
