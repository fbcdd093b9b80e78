"""Popularity: every user gets the items with the most training interactions. Nothing to train."""

import numpy as np
import torch

from base.base_model import BaseModel


class Pop(BaseModel):
    """Scores an item by its number of training interactions (the same list for every user)."""

    def __init__(self, dataset):
        super().__init__()
        self.register_buffer("popularity", torch.zeros(dataset.n_items))  # (n_items,), counted by fit

    def train_batches(self, data):
        return ()  # counting is all there is

    def fit(self, dataset):
        counts = np.asarray(dataset.train.sum(axis=0)).ravel().astype(np.float32)
        self.popularity.copy_(torch.from_numpy(counts))

    def full_scores(self, users, history):
        return self.popularity.expand(len(users), -1).clone()  # (B, n_items)
