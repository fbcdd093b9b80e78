"""The NGCF / LightGCN benchmark layout (Gowalla, Yelp2018, Amazon-book): train.txt and test.txt.

Each line is `user item item ...`, ids from 0. The files' own split is the source's test
(evaluation.split "source"); a validation share can be carved from each user's training items
(evaluation.valid = 0 is the papers' protocol).
"""

from pathlib import Path

import numpy as np

from base.base_data_loader import BaseDataLoader
from base.interactions import Interactions, order_matrix, to_csr
from utils.errors import DataError

# The layout's ids are indices from 0: one above this is a mistake (a dense index would not fit).
MAX_ID = 2**31 - 1


def read_user_lines(path):
    """(users, items) int64 arrays from a `user item item ...` file; bad lines name file:line."""
    if not path.is_file():
        raise DataError(f"{path}: file not found (data_loader.args.data_dir must hold train.txt and test.txt)")
    users, items = [], []
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                fields = raw.decode("utf-8").split()
            except UnicodeDecodeError as e:
                raise DataError(f"{path}:{number}: not utf-8 text (byte 0x{raw[e.start]:02x})") from None
            if not fields:
                continue
            bad = next((x for x in fields if not (x.isdigit() and int(x) <= MAX_ID)), None)
            if bad is not None:
                raise DataError(f"{path}:{number}: ids are indices from 0 to {MAX_ID}, got {bad!r}")
            ids = np.array(fields, dtype=np.int64)
            users.append(np.full(len(ids) - 1, ids[0]))
            items.append(ids[1:])
    if not users or not sum(len(i) for i in items):
        raise DataError(f"{path}: no interactions")
    return np.concatenate(users), np.concatenate(items)


class BenchmarkDataLoader(BaseDataLoader):
    """data_dir: folder with train.txt and test.txt. test.txt is the source's own held-out part
    (evaluation.split "source" keeps it; the validation share is carved from train.txt)."""

    def __init__(self, data_dir):
        self.data_dir = Path(data_dir)
        if not self.data_dir.is_dir():
            raise DataError(f"data_loader.args.data_dir: {self.data_dir} is not a folder")

    def input_files(self):
        return [self.data_dir / "train.txt", self.data_dir / "test.txt"]

    def load_dataset(self):
        train_users, train_items = read_user_lines(self.data_dir / "train.txt")
        test_users, test_items = read_user_lines(self.data_dir / "test.txt")
        n_users = int(max(train_users.max(), test_users.max())) + 1
        n_items = int(max(train_items.max(), test_items.max())) + 1
        for kind, count, ids in (
            ("user", n_users, (train_users, test_users)),
            ("item", n_items, (train_items, test_items)),
        ):
            distinct = len(np.unique(np.concatenate(ids)))
            if count > 10 * distinct + 1000:  # indices from 0 leave few gaps; this is another layout
                raise DataError(
                    f"{self.data_dir}: the {kind} ids are indices from 0, but the largest, {count - 1}, is far above "
                    f"the {distinct} distinct ids (is this the benchmark layout?)"
                )
        train = to_csr(train_users, train_items, n_users, n_items)
        test = to_csr(test_users, test_items, n_users, n_items)
        test = test - test.multiply(train)  # an item in both files counts as training
        test.eliminate_zeros()
        # The files' order: train.txt's lines, then test.txt's (an interaction in both: its train place).
        users, items = np.concatenate([train_users, test_users]), np.concatenate([train_items, test_items])
        first = np.unique(users * n_items + items, return_index=True)[1]
        first.sort()
        order = order_matrix(users[first], items[first], n_users, n_items)
        return Interactions(
            n_users,
            n_items,
            train,
            to_csr([], [], n_users, n_items),
            test.tocsr(),
            np.arange(n_users),
            np.arange(n_items),
            order=order,
        )
