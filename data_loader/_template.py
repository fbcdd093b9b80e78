"""A skeleton for a new data loader: copy it to data_loader/<your_source>.py and fill it in.

Files starting with `_` are not loaded; your copy is found by its class name
(`"data_loader": {"type": "MyDataLoader", "args": {...}}`). A data loader only reads its source
into an `Interactions`; the `evaluation` section splits it and base/batching.py cuts the
batches of whatever model trains.
"""

from pathlib import Path

import pandas as pd

from base.base_data_loader import BaseDataLoader
from data_loader.preparation import preparation_args, prepare


class MyDataLoader(BaseDataLoader):
    """data_dir: where the file is. Every argument here must appear in its config."""

    def __init__(self, data_dir, min_rating=None, k_core=0):
        self.data_dir = Path(data_dir)
        self.preparation = preparation_args(min_rating, k_core)

    def load_dataset(self):
        frame = pd.read_csv(self.data_dir / "interactions.csv")  # columns: user, item (time, rating optional)
        return prepare(frame, str(self.data_dir / "interactions.csv"), **self.preparation)
