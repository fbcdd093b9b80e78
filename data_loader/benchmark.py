"""The NGCF / LightGCN benchmark layout (Gowalla, Yelp2018, Amazon-book): train.txt and test.txt.

Each line is `user item item ...`, ids from 0. The files' own split is kept; a validation share
can be carved from each user's training items (valid_fraction = 0 is the papers' protocol).
"""

from pathlib import Path

import numpy as np

from base.base_data_loader import BaseDataLoader
from base.interactions import Interactions, to_csr
from data_loader.preparation import split_parts
from utils import checks
from utils.errors import DataError


def read_user_lines(path):
    """(users, items) int64 arrays from a `user item item ...` file; bad lines name file:line."""
    if not path.is_file():
        raise DataError(f"{path}: file not found (data_loader.args.data_dir must hold train.txt and test.txt)")
    users, items = [], []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            fields = line.split()
            if not fields:
                continue
            try:
                ids = np.array(fields, dtype=np.int64)
            except ValueError:
                bad = next(x for x in fields if not x.lstrip("-").isdigit())
                raise DataError(f"{path}:{number}: ids must be integers, got {bad!r}") from None
            if (ids < 0).any():
                raise DataError(f"{path}:{number}: ids must be >= 0")
            users.append(np.full(len(ids) - 1, ids[0]))
            items.append(ids[1:])
    if not users:
        raise DataError(f"{path}: no interactions")
    return np.concatenate(users), np.concatenate(items)


class BenchmarkDataLoader(BaseDataLoader):
    """data_dir: folder with train.txt and test.txt. valid_fraction: share of each user's training
    items held out for validation (seeded by split_seed); 0 = no validation, as in the papers."""

    def __init__(
        self,
        data_dir,
        valid_fraction=0.1,
        split_seed=2019,
        batch_size=1024,
        sampling="user",
        eval_batch_size=1024,
        eval_negatives=0,
        seed=0,
    ):
        checks.fraction("data_loader.args.valid_fraction", valid_fraction)
        checks.seed("data_loader.args.split_seed", split_seed)
        self.data_dir, self.valid_fraction, self.split_seed = Path(data_dir), valid_fraction, split_seed
        if not self.data_dir.is_dir():
            raise DataError(f"data_loader.args.data_dir: {self.data_dir} is not a folder")
        super().__init__(batch_size, sampling, eval_batch_size, seed, eval_negatives, protocol_seed=split_seed)

    def load_dataset(self):
        train_users, train_items = read_user_lines(self.data_dir / "train.txt")
        test_users, test_items = read_user_lines(self.data_dir / "test.txt")
        n_users = int(max(train_users.max(), test_users.max())) + 1
        n_items = int(max(train_items.max(), test_items.max())) + 1
        part = split_parts(train_users, None, "random", 0.0, self.valid_fraction, self.split_seed)
        train = to_csr(train_users[part == 0], train_items[part == 0], n_users, n_items)
        valid = to_csr(train_users[part == 1], train_items[part == 1], n_users, n_items)
        test = to_csr(test_users, test_items, n_users, n_items)
        test = test - test.multiply(train + valid)  # an item in both files counts as training
        test.eliminate_zeros()
        return Interactions(
            n_users, n_items, train.tocsr(), valid, test.tocsr(), np.arange(n_users), np.arange(n_items)
        )
