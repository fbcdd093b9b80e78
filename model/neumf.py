"""NeuMF: Neural Collaborative Filtering (He et al., WWW 2017), a pointwise model.

Two towers over a user u and an item i, each with embeddings of its own: GMF, the element-wise
product of the user's and the item's embeddings (eq. 9), and an MLP over their concatenation
(eq. 10); NeuMF joins them in one output layer h (eq. 11):

    φ_GMF = p_u ⊙ q_i        φ_MLP = MLP([p'_u ; q'_i])        ŷ_ui = σ( hᵀ [φ_GMF ; φ_MLP] )

It learns pointwise: binary cross-entropy on each observed pair (label 1) and on `negatives`
unobserved items sampled per observed one (label 0; eq. 7, model/loss/bce.py), which
base/batching.py's PairBatches draws.
"""

import torch
import torch.nn as nn

from base.base_model import BaseModel
from base.batching import PairBatches
from utils import checks


class NeuMF(BaseModel):
    """embed_dim: the GMF embeddings' size. mlp_layers: the MLP's sizes, the first being its input
    ([p'_u ; q'_i], so each MLP embedding is half of it). negatives: sampled items per observed one
    (4 in the paper). init_std: std of the normal initialisation of the embeddings."""

    def __init__(self, dataset, embed_dim=32, mlp_layers=(64, 32, 16), negatives=4, init_std=0.01):
        super().__init__()
        checks.positive_int("arch.args.embed_dim", embed_dim)
        checks.number("arch.args.init_std", init_std, low=0, low_open=True)
        if not (isinstance(mlp_layers, (list, tuple)) and len(mlp_layers) >= 2) or not all(
            checks.is_int(n) and n > 0 for n in mlp_layers
        ):
            checks.fail(
                "arch.args.mlp_layers", "a list of at least two positive integers, e.g. [64, 32, 16]", mlp_layers
            )
        if mlp_layers[0] % 2:
            checks.fail("arch.args.mlp_layers", "an even first size (user and item halves)", mlp_layers)
        self.negatives = checks.positive_int("arch.args.negatives", negatives)
        self.gmf_user = nn.Embedding(dataset.n_users, embed_dim)  # p_u
        self.gmf_item = nn.Embedding(dataset.n_items, embed_dim)  # q_i
        self.mlp_user = nn.Embedding(dataset.n_users, mlp_layers[0] // 2)  # p'_u
        self.mlp_item = nn.Embedding(dataset.n_items, mlp_layers[0] // 2)  # q'_i
        self.mlp = nn.ModuleList(nn.Linear(a, b) for a, b in zip(mlp_layers, mlp_layers[1:]))
        self.output = nn.Linear(embed_dim + mlp_layers[-1], 1)  # h
        for table in (self.gmf_user, self.gmf_item, self.mlp_user, self.mlp_item):
            nn.init.normal_(table.weight, std=init_std)

    def train_batches(self, data):
        return PairBatches(data, negatives=self.negatives)  # neg_items (B, k)

    def tower(self, mlp):
        """The MLP's hidden layers from its first layer's pre-activation."""
        h = torch.relu(mlp)
        for linear in self.mlp[1:]:
            h = torch.relu(linear(h))
        return h

    def score(self, users, items):
        """Logits of ŷ (before the sigmoid, which the loss applies): users and items of one shape."""
        gmf = self.gmf_user(users) * self.gmf_item(items)  # eq. 9
        mlp = self.tower(self.mlp[0](torch.cat([self.mlp_user(users), self.mlp_item(items)], dim=-1)))  # eq. 10
        return self.output(torch.cat([gmf, mlp], dim=-1)).squeeze(-1)  # eq. 11

    def forward(self, batch):
        """{users (B,), pos_items (B,), neg_items (B, k)} -> pos_scores (B,), neg_scores (B, k)."""
        users, negatives = batch["users"], batch["neg_items"]
        return {
            "pos_scores": self.score(users, batch["pos_items"]),
            "neg_scores": self.score(users.unsqueeze(1).expand_as(negatives), negatives),
        }

    def full_scores(self, users, history, pairs=None):
        """(B, n_items): score() of every (user, item), with the same values in fewer operations.
        Eq. 11's output splits into its two towers, hᵀ[φ_GMF ; φ_MLP] = h_Gᵀ(p_u ⊙ q_i) + h_Mᵀ φ_MLP, so
        the GMF part is one product (p_u ⊙ h_G) Qᵀ; and the MLP's first layer into its user and item
        halves, W [p' ; q'] = W_u p' + W_i q', each computed once instead of once per pair. Only the
        rest of the MLP runs per pair, a few users at a time: on the CPU as many as keep a block of
        (users, items, h1) in cache, elsewhere large blocks (`pairs` per block sets it)."""
        d, half = self.gmf_user.embedding_dim, self.mlp_user.embedding_dim
        h = self.output.weight[0]  # [h_G ; h_M]
        first = self.mlp[0]
        gmf = (self.gmf_user(users) * h[:d]) @ self.gmf_item.weight.T + self.output.bias  # (B, n_items)
        user_part = self.mlp_user(users) @ first.weight[:, :half].T + first.bias  # (B, h1)
        item_part = self.mlp_item.weight @ first.weight[:, half:].T  # (n_items, h1)
        pairs = pairs or (2**14 if users.device.type == "cpu" else 2**22)
        chunk = max(1, pairs // len(item_part))
        mlp = [
            self.tower(user_part[start : start + chunk].unsqueeze(1) + item_part) @ h[d:]  # (b, n_items)
            for start in range(0, len(users), chunk)
        ]
        return gmf + torch.cat(mlp)
