"""BPR matrix factorisation (Rendle et al., 2009): a user and an item embedding, scored by dot product."""

import torch.nn as nn

from base.base_model import BaseModel
from utils import checks


class MF(BaseModel):
    """embed_dim: d. init_std: std of the normal initialisation."""

    def __init__(self, dataset, embed_dim=64, init_std=0.1):
        super().__init__()
        checks.positive_int("arch.args.embed_dim", embed_dim)
        checks.number("arch.args.init_std", init_std, low=0, low_open=True)
        self.user_embedding = nn.Embedding(dataset.n_users, embed_dim)
        self.item_embedding = nn.Embedding(dataset.n_items, embed_dim)
        nn.init.normal_(self.user_embedding.weight, std=init_std)
        nn.init.normal_(self.item_embedding.weight, std=init_std)

    def forward(self, batch):
        """BPR pairs {users, pos_items, neg_items}, each (B,) -> pos_scores (B,), neg_scores (B,), l2."""
        u = self.user_embedding(batch["users"])  # (B, d)
        p, n = self.item_embedding(batch["pos_items"]), self.item_embedding(batch["neg_items"])  # (B, d)
        return {
            "pos_scores": (u * p).sum(dim=1),
            "neg_scores": (u * n).sum(dim=1),
            "l2": (u.pow(2).sum() + p.pow(2).sum() + n.pow(2).sum()) / 2,
        }

    def full_scores(self, users, history):
        return self.user_embedding(users) @ self.item_embedding.weight.T  # (B, n_items)
