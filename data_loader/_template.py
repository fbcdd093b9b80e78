"""A skeleton for a new data loader: copy it to data_loader/<your_source>.py and fill it in.

Files starting with `_` are not loaded; your copy is found by its class name
(`"data_loader": {"type": "MyDataLoader", "args": {...}}`). A data loader only reads its source
into an `Interactions`; batches are cut by data_loader/batching.py for whatever model trains.
"""

from pathlib import Path

import pandas as pd

from base.base_data_loader import BaseDataLoader
from data_loader.preparation import preparation_args, prepare


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
        eval_negatives=0,
        seed=0,
    ):
        self.data_dir = Path(data_dir)
        self.preparation = preparation_args(None, 0, "random", test_fraction, valid_fraction, split_seed)
        super().__init__(batch_size, sampling, eval_batch_size, seed, eval_negatives, protocol_seed=split_seed)

    def load_dataset(self):
        frame = pd.read_csv(self.data_dir / "interactions.csv")  # columns: user, item (time, rating optional)
        return prepare(frame, str(self.data_dir / "interactions.csv"), **self.preparation)
