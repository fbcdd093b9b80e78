"""The same work written the straightforward way, as public reference implementations do it:
dict-of-keys adjacency, per-user Python sampling, a COO sparse tensor rebuilt for node dropout,
per-user ranking with a heap. Used only by the benchmark, to show what the fast paths save."""

import heapq
import math
import random

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F


def _read(dataset, data_dir):
    train = {}
    if dataset == "gowalla":
        with open(data_dir / "gowalla" / "train.txt") as f:
            for line in f:
                ids = [int(x) for x in line.split()]
                if ids:
                    train[ids[0]] = ids[1:]
    else:
        rows = {}
        with open(data_dir / "ml-100k" / "u.data") as f:
            for line in f:
                user, item, _, _ = line.split("\t")
                rows.setdefault(int(user) - 1, []).append(int(item) - 1)
        rng = random.Random(0)
        for user, items in rows.items():  # per-user 80/20 split in Python
            test = set(rng.sample(items, round(0.2 * len(items))))
            train[user] = [i for i in items if i not in test]
    return train


def prepare(dataset, data_dir):
    """Read, split, and build D^-1/2 A D^-1/2 through a dict-of-keys matrix (as the NGCF code does)."""
    train = _read(dataset, data_dir)
    n_users = max(train) + 1
    n_items = max(max(items) for items in train.values() if items) + 1
    r = sp.dok_matrix((n_users, n_items), dtype=np.float32)
    for user, items in train.items():
        for item in items:
            r[user, item] = 1.0
    adj = sp.dok_matrix((n_users + n_items, n_users + n_items), dtype=np.float32).tolil()
    r = r.tolil()
    adj[:n_users, n_users:] = r
    adj[n_users:, :n_users] = r.T
    adj = adj.todok()
    degree = np.array(adj.sum(1)).ravel()
    inv = np.power(degree, -0.5, where=degree > 0, out=np.zeros_like(degree))
    d = sp.diags(inv)
    return d.dot(adj).dot(d).tocsr()


def _sample(train_items, n_items, batch):
    users = [random.choice(list(train_items)) for _ in range(batch)]
    pos, neg = [], []
    for u in users:
        items = train_items[u]
        pos.append(items[np.random.randint(len(items))])
        while True:
            j = np.random.randint(n_items)
            if j not in items:
                neg.append(j)
                break
    return users, pos, neg


def step(model, name, train, optimizer, reg, cache={}):  # noqa: B006 - per-process cache of the COO parts
    """One training step the straightforward way, with the model's own weights."""
    if "items" not in cache:
        cache["items"] = {
            u: list(train.indices[train.indptr[u] : train.indptr[u + 1]])
            for u in range(train.shape[0])
            if train.indptr[u + 1] > train.indptr[u]
        }
        coo = sp.coo_matrix(
            (
                model.graph.values.numpy(),
                (
                    np.repeat(np.arange(model.graph.shape[0]), np.diff(model.graph.crow.numpy())),
                    model.graph.col.numpy(),
                ),
            ),
            shape=model.graph.shape,
        )
        cache["coo"] = torch.sparse_coo_tensor(
            np.vstack([coo.row, coo.col]), coo.data, coo.shape, check_invariants=False
        ).coalesce()
    users, pos, neg = _sample(cache["items"], train.shape[1], 1024)
    users, pos, neg = torch.tensor(users), torch.tensor(pos), torch.tensor(neg)
    adj = cache["coo"]
    if name == "NGCF":  # node dropout: a new sparse tensor every step
        keep = torch.floor(0.9 + torch.rand(adj._nnz())).bool()
        adj = torch.sparse_coo_tensor(
            adj._indices()[:, keep], adj._values()[keep] / 0.9, adj.shape, check_invariants=False
        )
    ego = model.embedding.weight
    layers = [ego]
    for layer in range(3):
        side = torch.sparse.mm(adj, ego)
        if name == "NGCF":
            summed = F.linear(side + ego, model.w1[layer].weight)
            bi = F.linear(side * ego, model.w2[layer].weight)
            ego = F.dropout(F.leaky_relu(summed + bi, 0.2), 0.1)
        else:
            ego = side
        layers.append(ego)
    final = torch.cat(layers, 1) if name == "NGCF" else torch.stack(layers).mean(0)
    u_all, i_all = final[: model.n_users], final[model.n_users :]
    u, p, n = u_all[users], i_all[pos], i_all[neg]
    loss = (
        F.softplus((u * n).sum(1) - (u * p).sum(1)).mean()
        + reg * (u.norm() ** 2 + p.norm() ** 2 + n.norm() ** 2) / 2 / 1024
    )
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


@torch.no_grad()
def evaluate(model, loader, users, k=20):
    """Per-user ranking in a Python loop with a heap over a dict of scores (NGCF's test_one_user)."""
    users_all, items_all = model._cache if model._cache is not None else model.propagate()
    all_items = set(range(loader.n_items))
    total = 0.0
    for start in range(0, len(users), 100):
        batch = users[start : start + 100]
        scores = (users_all[torch.from_numpy(batch)] @ items_all.T).numpy()
        for row, u in enumerate(batch):
            seen = set(loader.exclude.indices[loader.exclude.indptr[u] : loader.exclude.indptr[u + 1]])
            relevant = set(loader.heldout.indices[loader.heldout.indptr[u] : loader.heldout.indptr[u + 1]])
            candidates = list(all_items - seen)
            item_score = {i: scores[row, i] for i in candidates}
            top = heapq.nlargest(k, item_score, key=item_score.get)
            hits = [1.0 if i in relevant else 0.0 for i in top]
            dcg = sum(h / math.log2(r + 2) for r, h in enumerate(hits))
            idcg = sum(1 / math.log2(r + 2) for r in range(min(k, len(relevant))))
            total += sum(hits) / len(relevant) + dcg / idcg
    return total
