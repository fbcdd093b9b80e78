"""SASRec: Self-Attentive Sequential Recommendation (Kang & McAuley, ICDM 2018).

A user is their latest training items in time order, s = (s_1, ..., s_L), left-padded to
L = max_len. At every position t the model predicts the item that comes next, s_{t+1}:

    E^(0) = √d · M[s] + P                          embedding, M (items) and P (positions) learned (III-A)
    E^(b) = E' + FFN(LN(E')),  E' = E^(b-1) + Attention(LN(E^(b-1)))     one block, b = 1..n_blocks (III-B, C, D)
    r_{i,t} = LN(E^(n_blocks))_t · M_i             the score of item i after the first t items (III-E)

Attention is causal, t attends to positions 1..t only, and never to padding; dropout follows
the embedding, the attention and the feed-forward layers. Training minimises binary
cross-entropy of the next item against one sampled item the user has not had, at every real
position (III-F), or, with negatives = 0, a full softmax over the items.
At evaluation the scores are r_{·,t} at the last position of the user's history — training items,
and at test time validation items too — in time order.
"""

import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from base.base_model import BaseModel
from base.batching import SequenceBatches
from model._sequence import check_transformer
from utils import checks


class Block(nn.Module):
    """One self-attention block: causal multi-head attention, then a point-wise feed-forward
    network, each after a layer norm and added back to its input (dropout on both)."""

    def __init__(self, d, heads, dropout):
        super().__init__()
        self.attention_norm, self.ffn_norm = nn.LayerNorm(d, eps=1e-8), nn.LayerNorm(d, eps=1e-8)
        self.attention = nn.MultiheadAttention(d, heads, dropout=dropout, batch_first=True)
        self.ffn = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Dropout(dropout), nn.Linear(d, d), nn.Dropout(dropout))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x, blocked, last=False):
        """x: (B, L, d); blocked: (B * heads, L, L), True where a query may not attend to a key.
        -> (B, L, d), or with `last` (B, 1, d): the last position's output alone (scoring reads no other)."""
        q = self.attention_norm(x)
        if last:
            x, query, blocked = x[:, -1:], q[:, -1:], blocked[:, -1:]
        else:
            query = q
        attended, _ = self.attention(query, q, q, attn_mask=blocked, need_weights=False)
        x = x + self.dropout(attended)
        return x + self.ffn(self.ffn_norm(x))


class SASRec(BaseModel):
    """embed_dim: d (50 in the paper). n_blocks: self-attention blocks (2). heads: attention heads
    (1). max_len: the latest items of a history it reads (200 for ML-1M; 50 in this template's
    ML-100K config, where a user has 106 items on average). dropout: 0.2 (ML-1M).
    negatives: 1 (the paper's BCE against one sampled item per position) or 0 (full softmax)."""

    def __init__(self, dataset, embed_dim=50, n_blocks=2, heads=1, max_len=50, dropout=0.2, negatives=1):
        super().__init__()
        check_transformer("SASRec", dataset, embed_dim, n_blocks, heads, dropout)
        self.max_len = checks.positive_int("arch.args.max_len", max_len)
        self.negatives = checks.one_of("arch.args.negatives", negatives, (0, 1))
        self.heads, self.dataset = heads, dataset  # the dataset's time order sorts a history
        self.items = nn.Embedding(dataset.n_items + 1, embed_dim, padding_idx=0)  # M; index 0 is padding
        self.positions = nn.Embedding(max_len, embed_dim)  # P
        self.embedding_dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(embed_dim, heads, dropout) for _ in range(n_blocks))
        self.final_norm = nn.LayerNorm(embed_dim, eps=1e-8)
        for parameter in self.parameters():  # Xavier as the reference code; the norms keep 1 and 0
            if parameter.dim() > 1:
                nn.init.xavier_normal_(parameter)
        with torch.no_grad():
            self.items.weight[0].zero_()

    def train_batches(self, data):
        return SequenceBatches(data, self.max_len, self.negatives)

    def encode(self, items, last=False):
        """items: (B, L) item index + 1, 0 for padding -> (B, L, d), the output at every position; with
        `last`, (B, 1, d) at the last position alone, which the last block then computes alone."""
        length = items.shape[1]
        real = (items > 0).unsqueeze(-1)  # (B, L, 1)
        positions = torch.arange(length, device=items.device)
        x = self.items(items) * math.sqrt(self.items.embedding_dim) + self.positions(positions)  # III-A
        x = self.embedding_dropout(x) * real  # padding stays zero
        # a query may not attend to a later position (causality) nor to padding; each may attend to
        # itself, so a padded row is never all blocked
        causal = torch.triu(torch.ones(length, length, dtype=torch.bool, device=items.device), diagonal=1)
        blocked = causal | ~real.squeeze(-1).unsqueeze(1)  # (B, L, L)
        blocked &= ~torch.eye(length, dtype=torch.bool, device=items.device)
        blocked = blocked.repeat_interleave(self.heads, dim=0)  # (B * heads, L, L)
        for i, block in enumerate(self.blocks):
            at_last = last and i == len(self.blocks) - 1
            x = block(x, blocked, at_last) * (real[:, -1:] if at_last else real)
        return self.final_norm(x)

    def forward(self, batch):
        """{items, targets, negatives}, each (B, L) -> the next item's scores at every position."""
        h = self.encode(batch["items"])  # (B, L, d)
        targets = batch["targets"]
        out = {"mask": targets > 0, "targets": targets}
        if self.negatives:
            out["pos_scores"] = (h * self.items(targets)).sum(-1)  # (B, L)
            out["neg_scores"] = (h * self.items(batch["negatives"])).sum(-1)
        else:
            out["logits"] = h @ self.items.weight[1:].T  # (B, L, n_items)
        return out

    def loss(self, output, step):
        """Binary cross-entropy of the next item against the sampled one (or the full softmax),
        averaged over the real positions (the model's own loss: no `loss` section in its config)."""
        mask = output["mask"]
        if self.negatives:
            pos, neg = output["pos_scores"][mask], output["neg_scores"][mask]
            return F.softplus(-pos).mean() + F.softplus(neg).mean()  # -log σ(r_pos) - log(1 - σ(r_neg))
        return F.cross_entropy(output["logits"][mask], output["targets"][mask] - 1)

    def sequences(self, users, history):
        """The last max_len items of each user's history in time order, left-padded: (B, L) index + 1."""
        indptr, ordered = self.dataset.in_time_order(history, users)
        index = indptr[1:, None] - self.max_len + np.arange(self.max_len)[None, :]  # the last L entries
        real = index >= indptr[:-1, None]
        if not len(ordered):
            return torch.zeros(index.shape, dtype=torch.int64)
        return torch.from_numpy(np.where(real, ordered[np.where(real, index, 0)] + 1, 0))

    def full_scores(self, users, history):
        """r_{·,t} at the last position of each user's history (B, n_items)."""
        items = self.sequences(users.cpu().numpy(), history).to(users.device)
        h = self.encode(items, last=True)[:, -1]  # (B, d): the output after the whole history
        return h @ self.items.weight[1:].T
