"""Any CSV/TSV of interactions with a header row, e.g. a competition's train_ratings.csv (user,item,time)."""

import collections
from pathlib import Path

import numpy as np
import pandas as pd

from base.base_data_loader import BaseDataLoader
from data_loader.cache import cached_dataset
from data_loader.preparation import ID_KINDS, preparation_args, prepare, read_ids
from utils import checks
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


def read_interactions(path, sep, user_col, item_col, rating_col, time_col, encoding="utf-8", ids="text"):
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
    except UnicodeError as e:  # e.g. utf-16 given for a file without its byte-order mark
        raise DataError(
            f"{path}: not {encoding} text ({e}); give the file's encoding as data_loader.args.encoding"
        ) from None
    except ValueError as e:  # an empty or impossible separator
        raise ConfigError(f"data_loader.args.sep: {sep!r} cannot split {path} ({e})") from None
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

    def read(dtype):
        try:
            # every column is read (not usecols): then a line with too many fields is an error, not misread
            return pd.read_csv(path, sep=sep, dtype=dtype, keep_default_na=False, index_col=False, encoding=encoding)
        except UnicodeDecodeError:
            raise _not_text(path, encoding) from None
        except pd.errors.ParserError as e:
            raise DataError(f"{path}: {e}") from None

    # The reader parses numbers several times faster than text is converted afterwards. A cell it
    # cannot parse sends the file to the text read, whose check below names the line; so does a time
    # that is not an integer (read as text, to_numeric keeps it exact).
    numbers = {columns[role]: kind for role, kind in (("rating", "float64"), ("time", "int64")) if role in columns}
    try:
        frame = read(collections.defaultdict(lambda: str, numbers))  # every other column as text
    except ValueError:
        frame = read(str)
    frame = frame.rename(columns={column: role for role, column in columns.items()})[list(columns)]
    for role in ("user", "item"):
        values = frame[role].to_numpy(dtype=object)
        codes, distinct = pd.factorize(values)  # each distinct id checked once, not every row
        blank = np.flatnonzero(pd.Series(distinct, dtype=str).str.strip() == "")
        if len(blank):
            row = int(np.flatnonzero(np.isin(codes, blank))[0])
            raise DataError(f"{path}:{row + 2}: empty {columns[role]!r}")
        frame[role] = read_ids(values, ids, path)
    for role in ("rating", "time"):
        if role in frame:
            values = pd.to_numeric(frame[role], errors="coerce")
            bad = values.isna().to_numpy()
            if bad.any():
                row = int(np.flatnonzero(bad)[0])
                raise DataError(f"{path}:{row + 2}: {columns[role]} must be a number, got {frame[role].iloc[row]!r}")
            frame[role] = values
    return frame


def read_side_file(path, encoding="utf-8", ids="text"):
    """DataFrame(item, value) from a side file: a header row, the item id in the first column and
    one value in the second; several rows per item where an item has several values. Tab-separated
    when the name ends in .tsv, else comma-separated."""
    if not path.is_file():
        raise DataError(f"data_loader.args.item_files: {path} not found")
    sep = "\t" if path.suffix.lower() == ".tsv" else ","
    try:
        frame = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, encoding=encoding, quoting=3)
    except UnicodeDecodeError:
        raise _not_text(path, encoding) from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise DataError(f"{path}: {e}") from None
    if frame.shape[1] < 2:
        raise DataError(
            f"{path}: expected two columns (item id, value) separated by {sep!r}, got {list(frame.columns)}"
        )
    frame = frame.iloc[:, :2].set_axis(["item", "value"], axis=1)
    frame["item"] = read_ids(frame["item"].to_numpy(dtype=object), ids, path)
    return frame


class CSVDataLoader(BaseDataLoader):
    """Interactions from a CSV/TSV with a header row, and the items' side information.

    data_dir: the folder; path: the file in it (or an absolute path). sep: the separator.
    user_col, item_col: the id columns (any strings); rating_col, time_col: optional (null).
    encoding: the files' text encoding. ids: "text" keeps every id exactly as the file writes it
        ('007' and '7' are two users); "integers" reads them as numbers ('7', '07', '7.0' are one).
    min_rating, k_core, cache: as MovieLensDataLoader.
    item_files: {attribute: file in data_dir}, e.g. {"title": "titles.tsv", "genre": "genres.tsv",
        "year": "years.tsv"}: each file has a header row, the item id first and one value second
        (tab-separated for .tsv, else comma); "title" gives the titles, a file with one number per
        item gives numbers, any other a multi-hot attribute (see base/interactions.py).
    """

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
        ids="text",
        min_rating=None,
        k_core=0,
        item_files=None,
        cache=True,
    ):
        self.preparation = preparation_args(min_rating, k_core)
        self.ids = checks.one_of("data_loader.args.ids", ids, ID_KINDS)
        if min_rating is not None and rating_col is None:
            raise ConfigError("data_loader.args.min_rating needs data_loader.args.rating_col (or min_rating: null)")
        if item_files is not None and not (
            isinstance(item_files, dict) and all(isinstance(v, str) and v for v in item_files.values())
        ):
            checks.fail("data_loader.args.item_files", "an object {attribute: file name}, or null", item_files)
        self.data_dir = Path(data_dir)
        self.path, self.sep = self.data_dir / path, sep  # an absolute `path` stays as it is
        self.item_files = {name: Path(data_dir) / file for name, file in (item_files or {}).items()}
        self.columns = (user_col, item_col, rating_col, time_col)
        self.encoding, self.cache = encoding, cache

    def input_files(self):
        return [self.path, *self.item_files.values()]

    def load_dataset(self):
        def build():
            frame = read_interactions(self.path, self.sep, *self.columns, encoding=self.encoding, ids=self.ids)
            side = {name: read_side_file(path, self.encoding, self.ids) for name, path in self.item_files.items()}
            return prepare(frame, str(self.path), side=side, **self.preparation)

        names = sorted(self.item_files)
        key = {**self.preparation, "sep": self.sep, "columns": self.columns, "encoding": self.encoding, "ids": self.ids}
        key["side"] = names
        files = [self.path] + [self.item_files[name] for name in names]
        return cached_dataset(files, key, build, enabled=self.cache, data_dir=self.data_dir)
