"""The data loader contract: BPR training batches and full-ranking evaluation batches."""

from abc import ABC, abstractmethod

import numpy as np
import torch

from utils.errors import ConfigError
from utils.sampler import SAMPLING_MODES, BPRSampler


class EvalLoader:
    """Batches of evaluation users, with the items to find and the items never to recommend.

    heldout: CSR (n_users, n_items), the items each user should find (valid or test split).
    exclude: CSR (n_users, n_items), items the user is known to have (ranked out of the list).
    Users without held-out items are not evaluated; `n_skipped` counts them.
    Yields (users: (B,) int64 array, heldout rows: CSR (B, n_items), exclude rows: CSR (B, n_items)).
    """

    def __init__(self, heldout, exclude, batch_size, users=None):
        self.heldout, self.exclude, self.batch_size = heldout, exclude, batch_size
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
            yield users, self.heldout[users], self.exclude[users]

    def shard(self, rank, world_size):
        """The share of the users that rank `rank` of `world_size` evaluates."""
        return EvalLoader(self.heldout, self.exclude, self.batch_size, users=self.users[rank::world_size])


class BaseDataLoader(ABC):
    """Loads one `Interactions` data set and iterates BPR training batches over it.

    Subclasses store their own arguments, then call `super().__init__`, which calls
    `load_dataset()` once. One iteration is one epoch of `len(self)` batches of
    (users, positives, negatives), each a LongTensor of shape (batch_size,).
    """

    def __init__(self, batch_size, sampling, eval_batch_size, seed):
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"data_loader.args.batch_size: expected a positive integer, got {batch_size!r}")
        if not isinstance(eval_batch_size, int) or eval_batch_size < 1:
            raise ConfigError(f"data_loader.args.eval_batch_size: expected a positive integer, got {eval_batch_size!r}")
        if sampling not in SAMPLING_MODES:
            raise ConfigError(f"data_loader.args.sampling: expected one of {SAMPLING_MODES}, got {sampling!r}")
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.world_size = 1
        self.dataset = self.load_dataset()
        self.sampler = BPRSampler(self.dataset.train, sampling, seed)

    @abstractmethod
    def load_dataset(self):
        """Read the source and return an `Interactions` with its splits."""

    def __len__(self):
        # As both reference codes: n_train // batch + 1 batches an epoch, shared out over the ranks.
        return -(-(self.sampler.n_interactions // self.batch_size + 1) // self.world_size)

    def distribute(self, rank, world_size, seed):
        """This process is rank `rank` of `world_size`: its own share of each epoch's batches,
        drawn from its own generator (seeded `seed + rank`)."""
        self.world_size = world_size
        self.sampler.rng = np.random.default_rng(seed + rank)

    def __iter__(self):
        for _ in range(len(self)):
            users, positives, negatives = self.sampler.sample(self.batch_size)
            yield torch.from_numpy(users), torch.from_numpy(positives), torch.from_numpy(negatives)

    def split_validation(self):
        """Evaluation loader over the validation split (training items excluded), or None."""
        if self.dataset.valid.nnz == 0:
            return None
        return EvalLoader(self.dataset.valid, self.dataset.train, self.eval_batch_size)

    def split_test(self):
        """Evaluation loader over the test split; training and validation items are excluded."""
        return EvalLoader(self.dataset.test, self.dataset.train + self.dataset.valid, self.eval_batch_size)

    def state_dict(self):
        return self.sampler.state_dict()

    def load_state_dict(self, state):
        self.sampler.load_state_dict(state)
