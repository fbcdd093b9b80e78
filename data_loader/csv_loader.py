"""Any CSV/TSV of interactions with a header row, e.g. a competition's train_ratings.csv (user,item,time)."""

from pathlib import Path

import numpy as np
import pandas as pd

from base.base_data_loader import BaseDataLoader
from data_loader.cache import cached_dataset
from data_loader.preparation import integral_ids, preparation_args, prepare
from utils.errors import ConfigError, DataError


def _not_text(path, encoding):
    """The DataError for a file that is not `encoding` text, naming the line of the first bad byte."""
    raw = path.read_bytes()
    try:
        raw.decode(encoding)
        where, byte = "", ""
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        where, byte = f":{line}", f" (byte 0x{raw[e.start]:02x})"
    return DataError(
        f"{path}{where}: not {encoding} text{byte}; give the file's encoding as data_loader.args.encoding "
        '(e.g. "latin-1")'
    )


def read_interactions(path, sep, user_col, item_col, rating_col, time_col, encoding="utf-8"):
    """DataFrame with columns user, item[, rating][, time]. Ids stay as the file writes them:
    integers when every id of a column is one, strings otherwise."""
    if not path.is_file():
        raise DataError(f"data_loader.args.path: {path} not found")
    try:
        header = pd.read_csv(path, sep=sep, nrows=0, encoding=encoding).columns.tolist()
    except UnicodeDecodeError:
        raise _not_text(path, encoding) from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise DataError(f"{path}: cannot read a header row ({e})") from None
    except LookupError:
        raise DataError(f"data_loader.args.encoding: unknown encoding {encoding!r} (e.g. utf-8, latin-1)") from None
    wanted = {"user": user_col, "item": item_col, "rating": rating_col, "time": time_col}
    for role, column in wanted.items():
        if column is not None and column not in header:
            raise ConfigError(
                f"data_loader.args.{role}_col: {path} has no column {column!r} "
                f"(its header: {', '.join(map(str, header))}; sep = {sep!r})"
            )
    columns = {role: column for role, column in wanted.items() if column is not None}
    try:
        # every column is read (not usecols): then a line with too many fields is an error, not misread
        frame = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, index_col=False, encoding=encoding)
    except UnicodeDecodeError:
        raise _not_text(path, encoding) from None
    except pd.errors.ParserError as e:
        raise DataError(f"{path}: {e}") from None
    frame = frame.rename(columns={column: role for role, column in columns.items()})[list(columns)]
    for role in ("user", "item"):
        empty = (frame[role].str.strip() == "").to_numpy()
        if empty.any():
            raise DataError(f"{path}:{int(np.flatnonzero(empty)[0]) + 2}: empty {columns[role]!r}")
        frame[role] = integral_ids(frame[role].to_numpy(dtype=object))
    for role in ("rating", "time"):
        if role in frame:
            values = pd.to_numeric(frame[role], errors="coerce")
            bad = values.isna().to_numpy()
            if bad.any():
                row = int(np.flatnonzero(bad)[0])
                raise DataError(f"{path}:{row + 2}: {columns[role]} must be a number, got {frame[role].iloc[row]!r}")
            frame[role] = values
    return frame


class CSVDataLoader(BaseDataLoader):
    """data_dir: the folder; path: the file in it (or an absolute path); a header row is expected.
    sep: the separator. user_col, item_col: the id columns (any strings); rating_col, time_col:
    optional (null). encoding: the file's text encoding. The rest as MovieLensDataLoader."""

    def __init__(
        self,
        data_dir,
        path,
        sep=",",
        user_col="user",
        item_col="item",
        rating_col=None,
        time_col=None,
        encoding="utf-8",
        min_rating=None,
        k_core=0,
        split="random",
        test_fraction=0.2,
        valid_fraction=0.1,
        split_seed=2019,
        cache=True,
        batch_size=1024,
        sampling="user",
        eval_batch_size=1024,
        eval_negatives=0,
        seed=0,
    ):
        self.preparation = preparation_args(min_rating, k_core, split, test_fraction, valid_fraction, split_seed)
        if split != "random" and time_col is None:
            raise ConfigError(f"data_loader.args.split = {split!r} needs data_loader.args.time_col")
        if min_rating is not None and rating_col is None:
            raise ConfigError("data_loader.args.min_rating needs data_loader.args.rating_col (or min_rating: null)")
        self.path, self.sep = Path(data_dir) / path, sep  # an absolute `path` stays as it is
        self.columns = (user_col, item_col, rating_col, time_col)
        self.encoding, self.cache = encoding, cache
        super().__init__(batch_size, sampling, eval_batch_size, seed, eval_negatives, protocol_seed=split_seed)

    def load_dataset(self):
        def build():
            frame = read_interactions(self.path, self.sep, *self.columns, encoding=self.encoding)
            return prepare(frame, str(self.path), **self.preparation)

        key = {**self.preparation, "sep": self.sep, "columns": self.columns, "encoding": self.encoding}
        return cached_dataset([self.path], key, build, enabled=self.cache)
