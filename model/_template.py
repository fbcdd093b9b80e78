"""A skeleton for a new model: copy it to model/<your_model>.py and fill it in.

Files starting with `_` are not loaded; your copy is found by its class name, so a config can say
`"arch": {"type": "MyModel", "args": {"embed_dim": 64}}` with nothing else to edit. Add a test
in tests/ and a config in configs/ (docs/adding-a-module.md).
"""

import torch.nn as nn

from base.base_model import BaseModel


class MyModel(BaseModel):
    """One line on what it is (paper, year). Every argument here must appear in its config."""

    def __init__(self, dataset, embed_dim=64):
        super().__init__()  # nn.Module's set-up: needed before any layer is assigned
        # dataset: base.interactions.Interactions; dataset.train is the (n_users, n_items) CSR matrix
        self.user_embedding = nn.Embedding(dataset.n_users, embed_dim)
        self.item_embedding = nn.Embedding(dataset.n_items, embed_dim)

    # train_batches(data) is inherited: BPR pairs {users, pos_items, neg_items}, each (B,).
    # Override it to learn from other batches (base/batching.py), e.g.
    #     return PairBatches(data, negatives=4)      # pointwise: neg_items (B, 4)

    def forward(self, batch):
        """One training batch -> the dict the config's loss reads (bpr_loss: pos_scores, neg_scores, l2)."""
        u = self.user_embedding(batch["users"])  # (B, d)
        p, n = self.item_embedding(batch["pos_items"]), self.item_embedding(batch["neg_items"])  # (B, d)
        return {
            "pos_scores": (u * p).sum(dim=1),  # (B,)
            "neg_scores": (u * n).sum(dim=1),  # (B,)
            "l2": (u.pow(2).sum() + p.pow(2).sum() + n.pow(2).sum()) / 2,  # scalar
        }

    def full_scores(self, users, history):
        """users: (B,) indices; history: CSR (B, n_items) of the items the evaluation ranks out.
        Returns (B, n_items) scores of every item."""
        return self.user_embedding(users) @ self.item_embedding.weight.T
