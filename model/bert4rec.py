"""BERT4Rec: sequential recommendation with bidirectional encoder representations from transformer
(Sun et al., CIKM 2019).

A user is their latest training items in time order, s = (s_1, ..., s_L), left-padded to
L = max_len. Unlike SASRec (model/sasrec.py), every position attends to every other, before and
after it; the model learns by the cloze task (sec. 3.6): some items are replaced by a [mask]
token, and it predicts each hidden item from the rest; for a share of the users only the last item
is hidden, the task it is used for (base/batching.py MaskedSequenceBatches):

    H^(0) = E[s] + P                                        items and positions, learned (3.4)
    H^(l) = Trm(H^(l-1)),  l = 1..n_blocks                   multi-head attention over all positions,
                                                            a GELU feed-forward of width 4d, each
                                                            added back and layer-normed (3.3)
    P(v | t) = softmax( GELU(H_t W + b) Eᵀ + b' )_v         the output layer, E shared with the input (3.5)

The loss is the cross-entropy of the hidden items (eq. 5). At evaluation [mask] is appended after
the user's history (its last max_len − 1 items) and the scores are those of that position (3.6).
"""

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from base.base_model import BaseModel
from base.batching import MaskedSequenceBatches
from model._sequence import check_transformer
from utils import checks


class BERT4Rec(BaseModel):
    """embed_dim: d (64 in the paper). n_blocks: transformer layers (2). heads: attention heads (2).
    max_len: the latest items of a history it reads (200 for ML-1M; 50 in the ML-100K config).
    dropout: 0.1. mask_prob: the share of items hidden in training (0.2 for ML-1M). mask_last: the
    share of users given only their last item hidden (the paper does it, without a figure; 0: never)."""

    def __init__(
        self, dataset, embed_dim=64, n_blocks=2, heads=2, max_len=50, dropout=0.1, mask_prob=0.2, mask_last=0.0
    ):
        super().__init__()
        check_transformer("BERT4Rec", dataset, embed_dim, n_blocks, heads, dropout)
        self.max_len = checks.integer("arch.args.max_len", max_len, low=2)
        self.mask_prob = checks.number("arch.args.mask_prob", mask_prob, low=0, high=1, low_open=True)
        self.mask_last = checks.number("arch.args.mask_last", mask_last, low=0, high=1)
        self.dataset, self.n_items = dataset, dataset.n_items  # the dataset's time order sorts a history
        self.mask_token = dataset.n_items + 1  # items are index + 1; 0 is padding
        self.items = nn.Embedding(dataset.n_items + 2, embed_dim, padding_idx=0)  # E, with [mask] last
        self.positions = nn.Embedding(max_len, embed_dim)  # P
        self.input_norm, self.input_dropout = nn.LayerNorm(embed_dim), nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(
            embed_dim, heads, dim_feedforward=4 * embed_dim, dropout=dropout, activation="gelu", batch_first=True
        )
        self.blocks = nn.TransformerEncoder(layer, n_blocks, enable_nested_tensor=False)  # Trm, bidirectional
        self.output = nn.Sequential(nn.Linear(embed_dim, embed_dim), nn.GELU(), nn.LayerNorm(embed_dim))  # W, b
        self.output_bias = nn.Parameter(torch.zeros(dataset.n_items))  # b'
        for parameter in self.parameters():  # truncated normal, σ 0.02, as BERT; the norms keep 1 and 0
            if parameter.dim() > 1:
                nn.init.trunc_normal_(parameter, std=0.02, a=-0.04, b=0.04)
        with torch.no_grad():
            self.items.weight[0].zero_()

    def train_batches(self, data):
        return MaskedSequenceBatches(data, self.max_len, self.mask_prob, self.mask_token, self.mask_last)

    def encode(self, items, last=False):
        """items: (B, L) item index + 1, [mask] or 0 for padding -> (B, L, d), every position's output;
        with `last`, (B, 1, d) at the last position alone, which the last layer then computes alone."""
        positions = torch.arange(items.shape[1], device=items.device)
        h = self.input_dropout(self.input_norm(self.items(items) + self.positions(positions)))  # H^(0)
        padding = items == 0  # attended by nobody
        if not last:
            return self.blocks(h, src_key_padding_mask=padding)
        *below, top = self.blocks.layers
        for layer in below:
            h = layer(h, src_key_padding_mask=padding)
        # the top layer (post-norm, as nn.TransformerEncoderLayer) for the last position's query alone
        attended, _ = top.self_attn(h[:, -1:], h, h, key_padding_mask=padding, need_weights=False)
        h = top.norm1(h[:, -1:] + top.dropout1(attended))
        return top.norm2(h + top.dropout2(top.linear2(top.dropout(top.activation(top.linear1(h))))))

    def logits(self, h):
        """(..., d) -> (..., n_items): the output layer, against the items' input embeddings."""
        return self.output(h) @ self.items.weight[1 : self.n_items + 1].T + self.output_bias

    def forward(self, batch):
        """{items, targets}, each (B, L) -> the logits at the masked positions and their items."""
        masked = batch["targets"] > 0  # (B, L)
        h = self.encode(batch["items"])[masked]  # (M, d): only the hidden positions are predicted
        return {"logits": self.logits(h), "targets": batch["targets"][masked] - 1}

    def loss(self, output, step):
        """The cross-entropy of the hidden items (eq. 5; the model's own loss: no `loss` section)."""
        return F.cross_entropy(output["logits"], output["targets"])

    def sequences(self, users, history):
        """The last max_len − 1 items of each history in time order, then [mask]: (B, L) index + 1."""
        indptr, ordered = self.dataset.in_time_order(history, users)
        keep = self.max_len - 1
        index = indptr[1:, None] - keep + np.arange(keep)[None, :]
        real = index >= indptr[:-1, None]
        items = np.where(real, ordered[np.where(real, index, 0)] + 1, 0) if len(ordered) else np.zeros(index.shape)
        return torch.from_numpy(np.concatenate([items, np.full((len(users), 1), self.mask_token)], axis=1)).long()

    def full_scores(self, users, history):
        """The scores at the [mask] appended after each user's history (B, n_items)."""
        items = self.sequences(users.cpu().numpy(), history).to(users.device)
        return self.logits(self.encode(items, last=True)[:, -1])
