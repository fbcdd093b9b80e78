"""The data source contract: a data loader reads its files into one `Interactions` and owns the
generator every training batch is drawn from; evaluation batches come from `split_validation` /
`split_test`. How a model's training batches are cut is not its business (data_loader/batching.py).
"""

import hashlib
from abc import ABC, abstractmethod
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp

from utils import checks

SAMPLING_MODES = ("user", "interaction")


class EvalBatch(NamedTuple):
    """users (B,) int64; heldout, exclude: CSR (B, n_items); candidates: CSR (B, n_items), the items
    to rank (sampled-negatives protocol), or None to rank every item."""

    users: np.ndarray
    heldout: sp.csr_matrix
    exclude: sp.csr_matrix
    candidates: sp.csr_matrix | None


class EvalLoader:
    """Batches of evaluation users, with the items to find and the items never to recommend.

    heldout: CSR (n_users, n_items), the items each user should find (valid or test split).
    exclude: CSR (n_users, n_items), items the user is known to have (ranked out, and the history
        that full_scores(users, history) receives).
    candidates: CSR (n_users, n_items) or None: with the sampled protocol, the held-out items plus
        the sampled negatives, the only items ranked; None ranks every item (full ranking).
    Users without held-out items are not evaluated; `n_skipped` counts them.
    """

    def __init__(self, heldout, exclude, batch_size, users=None, candidates=None):
        self.heldout, self.exclude, self.batch_size, self.candidates = heldout, exclude, batch_size, candidates
        has_heldout = np.diff(heldout.indptr) > 0
        self.users = np.flatnonzero(has_heldout) if users is None else users
        self.n_skipped = int((~has_heldout).sum())

    @property
    def n_items(self):
        return self.heldout.shape[1]

    def __len__(self):
        return -(-len(self.users) // self.batch_size)

    def __iter__(self):
        for start in range(0, len(self.users), self.batch_size):
            users = self.users[start : start + self.batch_size]
            candidates = None if self.candidates is None else self.candidates[users]
            yield EvalBatch(users, self.heldout[users], self.exclude[users], candidates)

    def shard(self, rank, world_size):
        """The share of the users that rank `rank` of `world_size` evaluates."""
        return EvalLoader(
            self.heldout, self.exclude, self.batch_size, users=self.users[rank::world_size], candidates=self.candidates
        )


def sampled_candidates(heldout, known, n_negatives, seed):
    """CSR (n_users, n_items): each user's held-out items plus `n_negatives` items drawn uniformly
    without replacement among those the user has no interaction with at all (fewer when fewer
    exist), as in the SASRec paper's protocol; the same draw for the same seed."""
    rng = np.random.default_rng(seed)
    n_users, n_items = heldout.shape
    counts = np.diff(heldout.indptr)
    rows, cols = [np.repeat(np.arange(n_users), counts)], [heldout.indices]
    take = min(n_negatives, n_items)
    evaluated = np.flatnonzero(counts > 0)
    for start in range(0, len(evaluated), 1024):  # (1024, n_items) random keys at a time
        users = evaluated[start : start + 1024]
        keys = rng.random((len(users), n_items))  # the lowest allowed keys are the items drawn
        known_rows = known[users].tocoo()
        keys[known_rows.row, known_rows.col] = np.inf
        chosen = np.argpartition(keys, take - 1, axis=1)[:, :take]
        allowed = np.isfinite(np.take_along_axis(keys, chosen, axis=1))
        rows.append(np.repeat(users, allowed.sum(axis=1)))
        cols.append(chosen[allowed])
    data = np.ones(sum(len(r) for r in rows), dtype=np.float32)
    candidates = sp.csr_matrix((data, (np.concatenate(rows), np.concatenate(cols))), shape=heldout.shape)
    candidates.sum_duplicates()
    candidates.data[:] = 1.0
    return candidates


class BaseDataLoader(ABC):
    """Loads one `Interactions` data set; owns the generator training batches are drawn from.

    Subclasses store their own arguments, then call `super().__init__`, which calls
    `load_dataset()` once.

    batch_size: training batch size, read by the batching pieces (pairs, user rows, sequences).
    sampling: how pair batches pick users ('user' or 'interaction'; see data_loader/batching.py).
    eval_batch_size: users scored at once in evaluation.
    eval_negatives: 0 ranks every item (full ranking); N ranks each held-out item among N sampled
        items the user never interacted with (the sampled protocol some papers report).
    seed: the generator of the training batches (the config's `seed`; one stream per rank).
    protocol_seed: the sampled negatives' seed, kept apart from `seed` so every run is scored
        against the same candidates.
    """

    def __init__(self, batch_size, sampling, eval_batch_size, seed, eval_negatives=0, protocol_seed=0):
        checks.positive_int("data_loader.args.batch_size", batch_size)
        checks.positive_int("data_loader.args.eval_batch_size", eval_batch_size)
        checks.one_of("data_loader.args.sampling", sampling, SAMPLING_MODES)
        checks.integer("data_loader.args.eval_negatives", eval_negatives, low=0)
        self.batch_size, self.sampling, self.eval_batch_size = batch_size, sampling, eval_batch_size
        self.eval_negatives, self.protocol_seed = eval_negatives, protocol_seed
        self.seed, self.rank, self.world_size = seed, 0, 1
        self.rng = np.random.default_rng(seed)
        self.dataset = self.load_dataset()

    @abstractmethod
    def load_dataset(self):
        """Read the source and return an `Interactions` with its splits."""

    def distribute(self, rank, world_size, seed):
        """This process is rank `rank` of `world_size`: its own share of each epoch's batches, drawn
        from its own stream of the generator (seeded `seed + rank`)."""
        self.rank, self.world_size = rank, world_size
        self.rng.bit_generator.state = np.random.default_rng(seed + rank).bit_generator.state

    def _eval_loader(self, heldout, exclude, split):
        candidates = None
        if self.eval_negatives:
            ds = self.dataset
            known = (ds.train + ds.valid + ds.test).tocsr()
            candidates = sampled_candidates(heldout, known, self.eval_negatives, [self.protocol_seed, split])
        return EvalLoader(heldout, exclude, self.eval_batch_size, candidates=candidates)

    def split_validation(self):
        """Evaluation loader over the validation split (training items excluded), or None."""
        if self.dataset.valid.nnz == 0:
            return None
        return self._eval_loader(self.dataset.valid, self.dataset.train, 1)

    def split_test(self):
        """Evaluation loader over the test split; training and validation items are excluded."""
        return self._eval_loader(self.dataset.test, (self.dataset.train + self.dataset.valid).tocsr(), 2)

    def fingerprint(self):
        """A digest of the prepared data set: its sizes and the three splits' interactions. A
        checkpoint keeps it, so that resuming or testing on other data is noticed."""
        ds = self.dataset
        digest = hashlib.sha256(f"{ds.n_users} {ds.n_items}".encode())
        for matrix in (ds.train, ds.valid, ds.test):
            digest.update(np.ascontiguousarray(matrix.indptr, dtype=np.int64).tobytes())
            digest.update(np.ascontiguousarray(matrix.indices, dtype=np.int64).tobytes())
        return digest.hexdigest()[:16]

    def state_dict(self):
        return {"bit_generator": self.rng.bit_generator.state}

    def load_state_dict(self, state):
        from utils.errors import CheckpointError

        try:
            self.rng.bit_generator.state = state["bit_generator"]
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"the checkpoint's batch generator state cannot be restored ({e})") from None
