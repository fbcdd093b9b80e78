"""The data source contract: a data loader reads its files into one `Interactions`, nothing else.

The template then splits it by the evaluation protocol (data_loader/protocol.py, the config's
`evaluation` section) and cuts training batches from it (base/batching.py, the config's
`batches` section); the generator every batch is drawn from lives here, so a checkpoint keeps it.
"""

from abc import ABC, abstractmethod

import numpy as np

from utils import checks
from utils.errors import CheckpointError

SAMPLING_MODES = ("user", "interaction")


class BaseDataLoader(ABC):
    """A data source. Subclasses take their own arguments (data_loader.args) and implement
    `load_dataset()`; `prepare(...)` loads it once, splits it and sets up the batches.

    After prepare:
    dataset: the split Interactions; protocol: what evaluates it.
    batch_size: training batch size, read by the batching pieces (pairs, user rows, sequences).
    sampling: how pair batches pick users ('user' or 'interaction'; see base/batching.py).
    seed: the generator of the training batches (the config's `seed`; one stream per rank).
    """

    dataset = None

    @abstractmethod
    def load_dataset(self):
        """Read the source and return an `Interactions` with every interaction in `train` (a source
        with a held-out file of its own puts that in `test`)."""

    def input_files(self):
        """The files this source reads (an export must never replace one of them)."""
        return []

    def prepare(self, protocol, batch_size=1024, sampling="user", seed=0):
        """Load the data set, split it by `protocol` and seed the batches' generator."""
        checks.positive_int("batches.batch_size", batch_size)
        checks.one_of("batches.sampling", sampling, SAMPLING_MODES)
        self.batch_size, self.sampling, self.seed = batch_size, sampling, seed
        self.rank, self.world_size = 0, 1
        self.rng = np.random.default_rng(seed)
        self.protocol = protocol
        self.dataset = protocol.split(self.load_dataset())
        return self

    def evaluation(self, part):
        """The evaluation batches of 'valid' or 'test', or None when the split holds out nothing for it."""
        heldout = self.dataset.valid if part == "valid" else self.dataset.test
        return self.protocol.loader(self.dataset, part) if heldout.nnz else None

    def distribute(self, rank, world_size, seed):
        """This process is rank `rank` of `world_size`: its own share of each epoch's batches, drawn
        from its own stream of the generator (seeded `seed + rank`)."""
        self.rank, self.world_size = rank, world_size
        self.rng.bit_generator.state = np.random.default_rng(seed + rank).bit_generator.state

    def fingerprint(self):
        return self.dataset.fingerprint()

    def state_dict(self):
        return {"bit_generator": self.rng.bit_generator.state}

    def load_state_dict(self, state):
        try:
            self.rng.bit_generator.state = state["bit_generator"]
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"the checkpoint's batch generator state cannot be restored ({e})") from None
