"""BPR training triples (user, positive item, negative item), drawn in whole batches."""

import numpy as np

SAMPLING_MODES = ("user", "interaction")

# Up to this many (user, item) cells, membership is looked up in a dense (n_users, n_items) table
# of booleans (MovieLens-1M: 22 MB): one indexing instead of a binary search over the sorted keys.
DENSE_TABLE_CELLS = 2**25


class BPRSampler:
    """Draws (user, positive, negative) index arrays from a binary CSR train matrix.

    mode 'user' (as both reference codes): a user uniformly among users with training items,
    then one of their items; mode 'interaction': a training interaction uniformly. The negative
    is uniform over the items the user has not interacted with in training (rejection sampling,
    redrawn only where a draw hit a positive).
    """

    def __init__(self, train, mode, seed):
        assert mode in SAMPLING_MODES, mode
        self.mode = mode
        self.n_items = train.shape[1]
        self.indptr = train.indptr.astype(np.int64)
        self.indices = train.indices.astype(np.int64)
        degree = np.diff(self.indptr)
        # Users who interacted with every item have no negative to draw; they are not sampled.
        self.active_users = np.flatnonzero((degree > 0) & (degree < self.n_items))
        row_of = np.repeat(np.arange(train.shape[0], dtype=np.int64), degree)
        keep = np.isin(row_of, self.active_users)
        self.interaction_rows = row_of[keep]
        self.interaction_ids = np.flatnonzero(keep)
        # Sorted keys user * n_items + item: membership test by binary search, or in a dense table.
        self.keys = row_of * self.n_items + self.indices
        self.table = None
        if train.shape[0] * self.n_items <= DENSE_TABLE_CELLS:
            self.table = np.zeros(train.shape[0] * self.n_items, dtype=bool)
            self.table[self.keys] = True
        self.rng = np.random.default_rng(seed)

    @property
    def n_interactions(self):
        return len(self.interaction_ids)

    def sample(self, batch_size):
        """Returns users, positives, negatives: three int64 arrays of shape (batch_size,)."""
        rng = self.rng
        if self.mode == "user":
            users = self.active_users[rng.integers(len(self.active_users), size=batch_size)]
            start, degree = self.indptr[users], self.indptr[users + 1] - self.indptr[users]
            positions = start + (rng.random(batch_size) * degree).astype(np.int64)
        else:
            drawn = rng.integers(len(self.interaction_ids), size=batch_size)
            users, positions = self.interaction_rows[drawn], self.interaction_ids[drawn]
        positives = self.indices[positions]
        negatives = rng.integers(self.n_items, size=batch_size)
        todo = np.flatnonzero(self._is_positive(users, negatives))
        while len(todo):
            negatives[todo] = rng.integers(self.n_items, size=len(todo))
            todo = todo[self._is_positive(users[todo], negatives[todo])]
        return users, positives, negatives

    def _is_positive(self, users, items):
        query = users * self.n_items + items
        if self.table is not None:
            return self.table[query]
        found = np.searchsorted(self.keys, query).clip(max=len(self.keys) - 1)
        return self.keys[found] == query

    def state_dict(self):
        return {"bit_generator": self.rng.bit_generator.state}

    def load_state_dict(self, state):
        self.rng.bit_generator.state = state["bit_generator"]
