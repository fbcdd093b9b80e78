"""A skeleton for a new model: copy it to model/<your_model>.py and fill it in.

Files starting with `_` are not loaded; your copy is found by its class name, so a config can say
`"arch": {"type": "MyModel", "args": {"embed_dim": 64}}` with nothing else to edit. Add a test
in tests/ and a config in configs/.
"""

import torch.nn as nn

from base.base_model import BaseModel


class MyModel(BaseModel):
    """One line on what it is (paper, year). Every argument here must appear in its config."""

    def __init__(self, dataset, embed_dim=64):
        super().__init__()
        # dataset: base.interactions.Interactions; dataset.train is the (n_users, n_items) CSR matrix
        self.user_embedding = nn.Embedding(dataset.n_users, embed_dim)
        self.item_embedding = nn.Embedding(dataset.n_items, embed_dim)

    def forward(self, users, pos_items, neg_items):
        """users, pos_items, neg_items: (B,) int64 -> what the loss needs."""
        u = self.user_embedding(users)  # (B, d)
        p, n = self.item_embedding(pos_items), self.item_embedding(neg_items)
        return {
            "pos_scores": (u * p).sum(dim=1),  # (B,)
            "neg_scores": (u * n).sum(dim=1),  # (B,)
            "l2": (u.pow(2).sum() + p.pow(2).sum() + n.pow(2).sum()) / 2,
        }

    def full_scores(self, users):
        """users: (B,) -> (B, n_items) scores of every item."""
        return self.user_embedding(users) @ self.item_embedding.weight.T
