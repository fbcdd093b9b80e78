"""A skeleton for a new data loader: copy it to data_loader/<your_source>.py and fill it in.

Files starting with `_` are not loaded; your copy is found by its class name
(`"data_loader": {"type": "MyDataLoader", "args": {...}}`).
"""

from pathlib import Path

import numpy as np

from base.base_data_loader import BaseDataLoader
from base.interactions import Interactions, to_csr
from data_loader.tables import read_table
from utils.split import split_per_user


class MyDataLoader(BaseDataLoader):
    """data_dir: where the file is. Every argument here must appear in its config."""

    def __init__(
        self,
        data_dir,
        test_fraction=0.2,
        valid_fraction=0.1,
        split_seed=2019,
        batch_size=1024,
        sampling="user",
        eval_batch_size=1024,
        seed=0,
    ):
        self.data_dir = Path(data_dir)
        self.test_fraction, self.valid_fraction, self.split_seed = test_fraction, valid_fraction, split_seed
        super().__init__(batch_size, sampling, eval_batch_size, seed)  # calls load_dataset()

    def load_dataset(self):
        frame = read_table(self.data_dir / "interactions.csv", ",", ("user", "item"), header=True)
        user_ids, users = np.unique(frame["user"].to_numpy(), return_inverse=True)
        item_ids, items = np.unique(frame["item"].to_numpy(), return_inverse=True)
        part = split_per_user(users, self.test_fraction, self.valid_fraction, self.split_seed)  # 0/1/2
        n_users, n_items = len(user_ids), len(item_ids)
        train, valid, test = (to_csr(users[part == p], items[part == p], n_users, n_items) for p in (0, 1, 2))
        return Interactions(n_users, n_items, train, valid, test, user_ids, item_ids)
