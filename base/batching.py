"""Training batches: the reusable pieces a model's `train_batches(data)` picks from.

Each piece turns the data loader's `Interactions` into an epoch of batches, each a dict of CPU
tensors (the trainer moves them to the training device):

- PairBatches: a user, one of their training items, and k items they have not interacted with
  (pairwise losses such as BPR with k = 1, pointwise ones such as BCE with k sampled negatives);
- UserRowBatches: whole rows of the training matrix, each user once an epoch (MultVAE);
- SequenceBatches: each user's latest training items in time order, with the next item as the
  target of every position (SASRec).
- MaskedSequenceBatches: the same sequences with random items hidden behind a mask token, the
  hidden items the targets (BERT4Rec's cloze task); it extends SequenceBatches, as a model's own
  piece would, overriding only `batch(users)`.

All random draws come from the data loader's one generator (`data.rng`, saved in every
checkpoint), so resuming repeats them exactly. The pieces that visit every user once an epoch
shuffle with a generator made from (seed, epoch), as torch's DistributedSampler does, so every
rank of a torchrun job agrees on the epoch's order and takes its own share of it.
"""

import math

import numpy as np
import torch

from utils.errors import DataError

# Up to this many (user, item) cells, membership is looked up in a dense (n_users, n_items) table
# of booleans (MovieLens-1M: 22 MB): one indexing instead of a binary search over the sorted keys.
DENSE_TABLE_CELLS = 2**25


class NegativeSampler:
    """Uniform draws among the items a user has not interacted with in training (rejection sampling,
    redrawn only where a draw hit a positive). train: binary CSR (n_users, n_items)."""

    def __init__(self, train):
        self.n_users, self.n_items = train.shape
        self.indptr = train.indptr.astype(np.int64)
        self.indices = train.indices.astype(np.int64)
        degree = np.diff(self.indptr)
        self.row_of = np.repeat(np.arange(self.n_users, dtype=np.int64), degree)
        # Sorted keys user * n_items + item: membership by binary search, or in a dense table.
        self.keys = self.row_of * self.n_items + self.indices
        self.table = None
        if self.n_users * self.n_items <= DENSE_TABLE_CELLS:
            self.table = np.zeros(self.n_users * self.n_items, dtype=bool)
            self.table[self.keys] = True
        # Users who interacted with every item have no negative to draw.
        self.has_negative = degree < self.n_items

    def is_positive(self, users, items):
        """Whether each (users[j], items[j]) is a training interaction; arrays of one shape."""
        query = users * self.n_items + items
        if self.table is not None:
            return self.table[query]
        found = np.searchsorted(self.keys, query).clip(max=max(len(self.keys) - 1, 0))
        return self.keys[found] == query if len(self.keys) else np.zeros(query.shape, dtype=bool)

    def draw(self, rng, users):
        """One negative item for each of `users` (1-D int64 array, every one with has_negative)."""
        negatives = rng.integers(self.n_items, size=len(users))
        todo = np.flatnonzero(self.is_positive(users, negatives))
        while len(todo):
            negatives[todo] = rng.integers(self.n_items, size=len(todo))
            todo = todo[self.is_positive(users[todo], negatives[todo])]
        return negatives


class Batches:
    """An epoch of training batches over `data` (a BaseDataLoader): `len()` batches on this
    process, `set_epoch(epoch)` before each epoch (the trainer calls it)."""

    def __init__(self, data):
        self.data, self.epoch = data, 1

    def set_epoch(self, epoch):
        self.epoch = epoch

    def epoch_order(self, units):
        """This rank's share of `units` in the epoch's shuffled order, the same permutation on every
        rank (padded by wrapping around, as DistributedSampler does, so every rank takes as many)."""
        order = np.random.default_rng([self.data.seed, self.epoch]).permutation(units)
        world, rank = self.data.world_size, self.data.rank
        per_rank = math.ceil(len(order) / world)
        order = np.resize(order, per_rank * world)  # wraps around
        return order[rank::world]

    def per_rank(self, units):
        return math.ceil(units / self.data.world_size)


class PairBatches(Batches):
    """(user, positive, negatives) batches: users (B,), pos_items (B,), neg_items (B,), or (B, k)
    with negatives = k > 1; B = batches.batch_size.

    batches.sampling 'user' (as both NGCF and LightGCN reference codes): a user uniformly
    among users with training items, then one of their items; 'interaction': a training
    interaction uniformly (weights active users more). As the references, an epoch is
    n_train // B + 1 batches, shared out over the ranks of a torchrun job.
    """

    def __init__(self, data, negatives=1):
        super().__init__(data)
        if not isinstance(negatives, int) or isinstance(negatives, bool) or negatives < 1:
            raise DataError(f"PairBatches: negatives must be an integer >= 1, got {negatives!r}")
        train = data.dataset.train
        self.negatives = negatives
        self.sampler = NegativeSampler(train)
        degree = np.diff(self.sampler.indptr)
        self.active_users = np.flatnonzero((degree > 0) & self.sampler.has_negative)
        if len(self.active_users) == 0:
            raise DataError(
                f"no user can be sampled for training: every user with training items has interacted with "
                f"all {train.shape[1]} items, so there is no negative item to draw (a data set needs unseen items)"
            )
        keep = np.isin(self.sampler.row_of, self.active_users)
        self.interaction_rows = self.sampler.row_of[keep]
        self.interaction_ids = np.flatnonzero(keep)

    @property
    def n_interactions(self):
        return len(self.interaction_ids)

    def __len__(self):
        return self.per_rank(self.n_interactions // self.data.batch_size + 1)

    def sample(self, batch_size):
        """users (B,), positives (B,), negatives (B,) or (B, k): int64 arrays."""
        rng, sampler = self.data.rng, self.sampler
        if self.data.sampling == "user":
            users = self.active_users[rng.integers(len(self.active_users), size=batch_size)]
            start, degree = sampler.indptr[users], sampler.indptr[users + 1] - sampler.indptr[users]
            positions = start + (rng.random(batch_size) * degree).astype(np.int64)
        else:
            drawn = rng.integers(len(self.interaction_ids), size=batch_size)
            users, positions = self.interaction_rows[drawn], self.interaction_ids[drawn]
        positives = sampler.indices[positions]
        negatives = sampler.draw(rng, np.repeat(users, self.negatives))
        if self.negatives > 1:
            negatives = negatives.reshape(batch_size, self.negatives)
        return users, positives, negatives

    def __iter__(self):
        for _ in range(len(self)):
            users, positives, negatives = self.sample(self.data.batch_size)
            yield {
                "users": torch.from_numpy(users),
                "pos_items": torch.from_numpy(positives),
                "neg_items": torch.from_numpy(negatives),
            }


class UserRowBatches(Batches):
    """Whole training rows, every user with training items once an epoch, shuffled:
    users (B,) and rows (B, n_items) float32 0/1; B = batches.batch_size users."""

    def __init__(self, data):
        super().__init__(data)
        self.train = data.dataset.train
        self.users = np.flatnonzero(np.diff(self.train.indptr) > 0)

    def __len__(self):
        return math.ceil(self.per_rank(len(self.users)) / self.data.batch_size)

    def __iter__(self):
        order, size = self.epoch_order(self.users), self.data.batch_size
        for start in range(0, len(order), size):
            users = order[start : start + size]
            rows = self.train[users].toarray().astype(np.float32, copy=False)
            yield {"users": torch.from_numpy(users), "rows": torch.from_numpy(rows)}


class SequenceBatches(Batches):
    """Each user's last `max_len` training items in time order, with the item that follows each one.

    items (B, L): the inputs, left-padded; targets (B, L): the next item at each position;
    negatives (B, L): per position an item the user has not interacted with in training (with
    negatives = 1; none with negatives = 0, for a full softmax). Items are given as index + 1,
    0 being the padding, at the same positions in all three. Every user with at least two
    training items once an epoch, shuffled; B = batches.batch_size users.
    """

    def __init__(self, data, max_len, negatives=1):
        super().__init__(data)
        dataset = data.dataset
        if dataset.order is None:
            raise DataError(
                "sequence batches need each user's interactions in time order; this data set has no time "
                "(MovieLens has it; a CSV needs data_loader.args.time_col)"
            )
        if negatives not in (0, 1):
            raise DataError(f"SequenceBatches: negatives must be 0 (full softmax) or 1, got {negatives!r}")
        self.max_len, self.negatives = max_len, negatives
        self.indptr, self.items = dataset.in_time_order(dataset.train)  # (n_users + 1,), (nnz,)
        self.users = np.flatnonzero(np.diff(self.indptr) >= 2)
        self.sampler = NegativeSampler(dataset.train) if negatives else None

    def __len__(self):
        return math.ceil(self.per_rank(len(self.users)) / self.data.batch_size)

    def last_items(self, users, length):
        """(B, length): each user's last `length` training items in time order as index + 1,
        left-padded with 0."""
        start, end = self.indptr[users], self.indptr[users + 1]
        index = end[:, None] - length + np.arange(length)[None, :]  # column j: index end_b - length + j
        valid = index >= start[:, None]
        return np.where(valid, self.items[np.where(valid, index, 0)] + 1, 0)

    def batch(self, users):
        """The dict for these users (int64 array)."""
        window = self.last_items(users, self.max_len + 1)  # (B, L + 1)
        items = window[:, :-1]  # the inputs: up to the second-to-last item
        valid = items > 0
        targets = np.where(valid, window[:, 1:], 0)  # the item after each input
        out = {"users": users, "items": items, "targets": targets}
        if self.sampler is not None:
            rows = np.repeat(users, valid.sum(axis=1))  # one draw per real position, row by row
            negatives = np.zeros_like(items)
            negatives[valid] = self.sampler.draw(self.data.rng, rows) + 1
            out["negatives"] = negatives
        return {key: torch.from_numpy(np.ascontiguousarray(value)) for key, value in out.items()}

    def __iter__(self):
        order, size = self.epoch_order(self.users), self.data.batch_size
        for start in range(0, len(order), size):
            yield self.batch(order[start : start + size])


class MaskedSequenceBatches(SequenceBatches):
    """The cloze task of BERT4Rec: each user's last `max_len` training items, some of them hidden.

    items (B, L): the sequence, left-padded with 0, each real item replaced by `mask_token` with
    probability `mask_prob` (at least one per user), or, for a share `mask_last` of the users, only
    the last item hidden (the task of recommending, sec. 3.6); targets (B, L): the hidden item at
    each masked position, 0 elsewhere. Items are index + 1, as in SequenceBatches.
    """

    def __init__(self, data, max_len, mask_prob, mask_token, mask_last=0.0):
        super().__init__(data, max_len, negatives=0)
        self.mask_prob, self.mask_token, self.mask_last = mask_prob, mask_token, mask_last

    def batch(self, users):
        items = self.last_items(users, self.max_len)  # (B, L), the last item at column L - 1
        real = items > 0
        masked = real & (self.data.rng.random(items.shape) < self.mask_prob)
        if self.mask_last:
            last_only = self.data.rng.random(len(users)) < self.mask_last
            masked[last_only] = False
            masked[last_only, -1] = True
        masked[~masked.any(axis=1), -1] = True  # a user with nothing drawn has their last item hidden
        out = {
            "users": users,
            "items": np.where(masked, self.mask_token, items),
            "targets": np.where(masked, items, 0),
        }
        return {key: torch.from_numpy(np.ascontiguousarray(value)) for key, value in out.items()}
