"""From a table of raw interactions to an `Interactions`: filter, de-duplicate, k-core, split.

Shared by every loader that reads (user, item[, rating][, time]) rows: MovieLens releases and
any CSV. Each step says in the log what it did, and a step that leaves nothing is an error that
names it. Every split is reproducible from `split_seed`.
"""

import logging

import numpy as np
import pandas as pd

from base.interactions import Interactions, to_csr
from utils.errors import ConfigError, DataError
from utils.split import split_per_user

SPLITS = ("random", "leave_one_out", "temporal", "global_time")
logger = logging.getLogger("data")


def check_fraction(key, value):
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value < 1:
        raise ConfigError(f"data_loader.args.{key}: expected a number in [0, 1), got {value!r}")


def preparation_args(min_rating, k_core, split, test_fraction, valid_fraction, split_seed):
    """Check the preparation arguments before any file is read; return them as the dict that
    `prepare` takes (and the cache key includes)."""
    if min_rating is not None and (not isinstance(min_rating, (int, float)) or isinstance(min_rating, bool)):
        raise ConfigError(f"data_loader.args.min_rating: expected a number or null, got {min_rating!r}")
    if not isinstance(k_core, int) or isinstance(k_core, bool) or k_core < 0:
        raise ConfigError(f"data_loader.args.k_core: expected an integer >= 0 (0 = off), got {k_core!r}")
    if split not in SPLITS:
        raise ConfigError(f"data_loader.args.split: expected one of {', '.join(SPLITS)}, got {split!r}")
    check_fraction("test_fraction", test_fraction)
    check_fraction("valid_fraction", valid_fraction)
    return {
        "min_rating": min_rating,
        "k_core": k_core,
        "split": split,
        "test_fraction": test_fraction,
        "valid_fraction": valid_fraction,
        "split_seed": split_seed,
    }


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


def _rank_in_user(users, keys):
    """Position of each row within its user when the user's rows are sorted by `keys` (descending),
    and the user's row count. users: (N,) ints, keys: (N,) sortable."""
    order = np.lexsort((-np.asarray(keys, dtype=np.float64), users))
    sorted_users = users[order]
    starts = np.flatnonzero(np.r_[True, sorted_users[1:] != sorted_users[:-1]])
    counts = np.diff(np.r_[starts, len(users)])
    rank = np.empty(len(users), dtype=np.int64)
    rank[order] = np.arange(len(users)) - np.repeat(starts, counts)
    count = np.empty(len(users), dtype=np.int64)
    count[order] = np.repeat(counts, counts)
    return rank, count


def split_parts(users, times, split, test_fraction, valid_fraction, seed):
    """(N,) int8: 0 train, 1 valid, 2 test, by the chosen split.

    random: per user, a random test_fraction to test and valid_fraction of the rest to valid.
    leave_one_out: per user, the latest interaction to test, the one before to valid (when
        valid_fraction > 0); a user keeps at least one training interaction.
    temporal: per user, the latest test_fraction to test, the latest valid_fraction of the rest to valid.
    global_time: one cut for everybody: the latest test_fraction of all interactions (by time) to
        test, the valid_fraction of the rest just before it to valid.
    """
    if split == "random":
        return split_per_user(users, test_fraction, valid_fraction, seed)
    if times is None:
        raise ConfigError(f"data_loader.args.split = {split!r} needs a time column; this source has none")
    # Ties in time are broken at random (seeded), so equal timestamps give a reproducible order.
    jitter = np.random.default_rng(seed).random(len(users)) * 1e-3
    key = np.asarray(times, dtype=np.float64) + jitter
    part = np.zeros(len(users), dtype=np.int8)
    if split == "global_time":
        order = np.argsort(-key, kind="stable")
        n_test = int(round(test_fraction * len(users)))
        n_valid = int(round(valid_fraction * (len(users) - n_test)))
        part[order[n_test : n_test + n_valid]] = 1
        part[order[:n_test]] = 2
        return part
    rank, count = _rank_in_user(np.asarray(users), key)  # rank 0 = latest
    if split == "leave_one_out":
        n_test = np.minimum(1, count - 1)
        n_valid = np.minimum(1 if valid_fraction > 0 else 0, count - n_test - 1)
    else:  # temporal
        n_test = np.minimum(np.rint(test_fraction * count), count - 1)
        n_valid = np.minimum(np.rint(valid_fraction * (count - n_test)), count - n_test - 1)
    part[rank < n_test + n_valid] = 1
    part[rank < n_test] = 2
    return part


def prepare(
    frame,
    source,
    min_rating=None,
    k_core=0,
    split="random",
    test_fraction=0.2,
    valid_fraction=0.1,
    split_seed=2019,
    titles=None,
    genres=None,
):
    """frame: columns user, item, and optionally rating, time (raw ids of any type).

    source: a name for messages (the file). titles, genres: {raw item id: text} or None.
    Returns an Interactions with contiguous indices and the raw ids kept.
    """
    n_read = len(frame)
    if n_read == 0:
        raise DataError(f"{source}: no interactions")
    if min_rating is not None and "rating" in frame:
        frame = frame[frame["rating"] >= min_rating]
        if frame.empty:
            raise DataError(f"{source}: no rating is >= data_loader.args.min_rating = {min_rating}")
    # Repeated (user, item) pairs count once; the latest is the one kept.
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

    user_ids, users = np.unique(frame["user"].to_numpy(), return_inverse=True)
    item_ids, items = np.unique(frame["item"].to_numpy(), return_inverse=True)
    times = frame["time"].to_numpy() if "time" in frame else None
    part = split_parts(users, times, split, test_fraction, valid_fraction, split_seed)
    n_users, n_items = len(user_ids), len(item_ids)
    train, valid, test = (to_csr(users[part == p], items[part == p], n_users, n_items) for p in (0, 1, 2))
    item_titles = np.array([titles.get(i, "") for i in item_ids], dtype=object) if titles else None
    item_genres = np.array([genres.get(i, "") for i in item_ids], dtype=object) if genres else None
    no_test = int((np.diff(test.indptr) == 0).sum())
    if no_test:
        logger.info(
            f"{no_test} of {n_users} users have no test interaction after the split; they are not evaluated on test"
        )
    return Interactions(n_users, n_items, train, valid, test, user_ids, item_ids, item_titles, item_genres)


def frame_from_columns(**columns):
    """A DataFrame from the columns given (None ones left out)."""
    return pd.DataFrame({name: values for name, values in columns.items() if values is not None})
