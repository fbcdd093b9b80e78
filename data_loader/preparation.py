"""From a table of raw interactions to an `Interactions`: filter, de-duplicate, k-core, index.

Shared by every source that reads (user, item[, rating][, time]) rows: MovieLens releases and any
CSV. Each step says in the log what it did, and a step that leaves nothing is an error that names
it. What is held out for evaluation is the protocol's business (data_loader/protocol.py).
"""

import logging

import numpy as np
import pandas as pd

from base.interactions import Interactions, ItemAttribute, order_matrix, to_csr
from utils import checks
from utils.errors import DataError

logger = logging.getLogger("data")


def preparation_args(min_rating, k_core):
    """Check the preparation arguments before any file is read; return them as the dict that
    `prepare` takes (and the cache key includes)."""
    if min_rating is not None:
        checks.number("data_loader.args.min_rating", min_rating)
    checks.integer("data_loader.args.k_core", k_core, low=0)
    return {"min_rating": min_rating, "k_core": k_core}


def k_core_filter(frame, k):
    """Keep users and items with at least k interactions, repeated until nothing changes."""
    rounds = 0
    while True:
        user_counts = frame["user"].map(frame["user"].value_counts())
        item_counts = frame["item"].map(frame["item"].value_counts())
        keep = (user_counts >= k) & (item_counts >= k)
        if keep.all():
            return frame, rounds
        frame = frame[keep.to_numpy()]
        rounds += 1


ID_KINDS = ("text", "integers")


def read_ids(values, kind, where):
    """A column of ids as the config says to keep them: "text" exactly as the file writes them
    ('007' and '7' are two items), or "integers" ('7', '07' and '7.0' are one; exact up to 18 digits,
    which float64 is not above 2^53, and anything else is an error naming the line)."""
    if kind == "text" or values.dtype != object:
        return values
    text = pd.Series(values, dtype=str).str.strip()
    integral = text.str.fullmatch(r"[+-]?\d{1,18}(\.0*)?").to_numpy()
    if not integral.all():
        row = int(np.flatnonzero(~integral)[0])
        raise DataError(
            f'{where}:{row + 2}: {text.iloc[row]!r} is not an integer id (data_loader.args.ids: "text" keeps any id)'
        )
    return text.str.replace(r"\.0*$", "", regex=True).astype(np.int64).to_numpy()


def side_information(item_ids, tables):
    """(titles, attributes, numbers) for the items `item_ids` from {name: DataFrame(item, value)}.

    A table named "title" gives the titles; a table with one number per item gives numbers
    (years); any other becomes a multi-hot ItemAttribute (several rows per item where an item has
    several values). Items the tables do not name get '' / no value / NaN; rows about items
    without interactions are ignored.
    """
    titles, attributes, numbers = None, {}, {}
    index = pd.Index(item_ids)
    for name, table in tables.items():
        rows = index.get_indexer(table["item"])
        table, rows = table[rows >= 0], rows[rows >= 0]
        values = table["value"]
        if name == "title":
            titles = np.full(len(item_ids), "", dtype=object)
            titles[rows] = values.astype(str).to_numpy()
            continue
        as_numbers = pd.to_numeric(values, errors="coerce")
        if len(values) and as_numbers.notna().all() and not pd.Series(rows).duplicated().any():
            numbers[name] = np.full(len(item_ids), np.nan)
            numbers[name][rows] = as_numbers.to_numpy(dtype=np.float64)
            continue
        codes, uniques = pd.factorize(values.astype(str), sort=True)
        matrix = to_csr(rows, codes, len(item_ids), len(uniques))
        attributes[name] = ItemAttribute(np.asarray(uniques, dtype=object), matrix)
    return titles, attributes, numbers


def prepare(frame, source, min_rating=None, k_core=0, side=None):
    """frame: columns user, item, and optionally rating, time (raw ids of any type).

    source: a name for messages (the file). side: {name: DataFrame(item, value)}, the items' side
    information (see side_information), or None.
    Returns an Interactions holding every interaction in `train` (the evaluation protocol splits
    it), with contiguous indices (in sorted order of the raw ids), the raw ids kept, and the
    interactions' order: by time when the frame has time (equal times in input order), else the
    input order.
    """
    n_read = len(frame)
    if n_read == 0:
        raise DataError(f"{source}: no interactions")
    if min_rating is not None and "rating" in frame:
        frame = frame[frame["rating"] >= min_rating]
        if frame.empty:
            raise DataError(f"{source}: no rating is >= data_loader.args.min_rating = {min_rating}")
    # Repeated (user, item) pairs count once; the latest is the one kept. After this, the rows are
    # in time order, equal times in input order.
    if "time" in frame:
        frame = frame.sort_values("time", kind="stable")
    before = len(frame)
    frame = frame.drop_duplicates(["user", "item"], keep="last")
    duplicates = before - len(frame)
    rounds = 0
    if k_core > 1:
        frame, rounds = k_core_filter(frame, k_core)
        if frame.empty:
            raise DataError(
                f"{source}: nothing is left after the {k_core}-core filter "
                f"(data_loader.args.k_core); lower it or use 0 to turn it off"
            )
    logger.info(
        f"{source}: {n_read} rows read, {n_read - before} below min_rating, {duplicates} repeated pairs "
        f"dropped, k-core {k_core} removed {before - duplicates - len(frame)} in {rounds} rounds"
    )

    users, user_ids = pd.factorize(frame["user"], sort=True)  # indices in sorted order of the raw ids
    items, item_ids = pd.factorize(frame["item"], sort=True)
    user_ids, item_ids = np.asarray(user_ids), np.asarray(item_ids)
    n_users, n_items = len(user_ids), len(item_ids)
    titles, attributes, numbers = side_information(item_ids, side or {})
    return Interactions(
        n_users,
        n_items,
        to_csr(users, items, n_users, n_items),
        to_csr([], [], n_users, n_items),
        to_csr([], [], n_users, n_items),
        user_ids,
        item_ids,
        order=order_matrix(users, items, n_users, n_items),
        timed="time" in frame,
        item_titles=titles,
        item_attributes=attributes,
        item_numbers=numbers,
    )
