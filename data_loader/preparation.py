"""From a table of raw interactions to an `Interactions`: filter, de-duplicate, k-core, split.

Shared by every loader that reads (user, item[, rating][, time]) rows: MovieLens releases, any
CSV, and the benchmark files' validation share. Each step says in the log what it did, and a step
that leaves nothing is an error that names it. Every split is reproducible from `split_seed`.
"""

import logging

import numpy as np
import pandas as pd

from base.interactions import Interactions, order_matrix, to_csr
from utils import checks
from utils.errors import ConfigError, DataError

SPLITS = ("random", "leave_one_out", "temporal", "global_time")
logger = logging.getLogger("data")


def preparation_args(min_rating, k_core, split, test_fraction, valid_fraction, split_seed):
    """Check the preparation arguments before any file is read; return them as the dict that
    `prepare` takes (and the cache key includes)."""
    if min_rating is not None:
        checks.number("data_loader.args.min_rating", min_rating)
    checks.integer("data_loader.args.k_core", k_core, low=0)
    checks.one_of("data_loader.args.split", split, SPLITS)
    checks.fraction("data_loader.args.test_fraction", test_fraction)
    checks.fraction("data_loader.args.valid_fraction", valid_fraction)
    checks.seed("data_loader.args.split_seed", split_seed)
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


def rank_in_user(users, key):
    """(rank, count), each (N,): each row's position among its user's rows sorted by `key`
    (ascending), and the user's number of rows. users: (N,) ints."""
    order = np.lexsort((key, users))
    sorted_users = users[order]
    starts = np.flatnonzero(np.r_[True, sorted_users[1:] != sorted_users[:-1]])
    counts = np.diff(np.r_[starts, len(users)])
    rank, count = np.empty(len(users), dtype=np.int64), np.empty(len(users), dtype=np.int64)
    rank[order] = np.arange(len(users)) - np.repeat(starts, counts)
    count[order] = np.repeat(counts, counts)
    return rank, count


def split_parts(users, positions, split, test_fraction, valid_fraction, seed):
    """(N,) int8: 0 train, 1 valid, 2 test, by the chosen split.

    users: (N,) user index of each interaction. positions: (N,) each interaction's place in its
    user's time order (base/interactions.py: time_positions; equal times in input order), or None.
    random: per user, round(test_fraction * n) at random to test and round(valid_fraction * rest)
        of the rest to valid, always leaving one in train.
    leave_one_out: per user, the latest interaction to test, the one before to valid (when
        valid_fraction > 0); a user keeps at least one training interaction.
    temporal: per user, the latest test_fraction to test, the latest valid_fraction of the rest to valid.
    global_time: one cut for everybody: the latest test_fraction of all interactions (by time) to
        test, the valid_fraction of the rest just before it to valid (`positions` here ranks all
        interactions together).
    """
    users = np.asarray(users)
    part = np.zeros(len(users), dtype=np.int8)
    if split != "random" and positions is None:
        raise ConfigError(f"data_loader.args.split = {split!r} needs a time column; this source has none")
    if split == "global_time":
        order = np.argsort(-np.asarray(positions), kind="stable")  # latest first
        n_test = int(round(test_fraction * len(users)))
        n_valid = int(round(valid_fraction * (len(users) - n_test)))
        part[order[n_test : n_test + n_valid]] = 1
        part[order[:n_test]] = 2
        return part
    if split == "random":  # a random order within each user, fixed by the seed
        key = np.random.default_rng(seed).random(len(users))
    else:  # latest first
        key = -np.asarray(positions, dtype=np.int64)
    rank, count = rank_in_user(users, key)
    if split == "leave_one_out":
        n_test = np.minimum(1, count - 1)
        n_valid = np.minimum(1 if valid_fraction > 0 else 0, count - n_test - 1)
    else:  # random, temporal
        n_test = np.minimum(np.rint(test_fraction * count), count - 1).clip(min=0)
        n_valid = np.minimum(np.rint(valid_fraction * (count - n_test)), count - n_test - 1).clip(min=0)
    part[rank < n_test + n_valid] = 1
    part[rank < n_test] = 2
    return part


def integral_ids(values):
    """A column of ids as it should be kept: integers when every id is an integer written as a
    number ('1' and '1.0' are then one user; exact up to 18 digits, which float64 is not above
    2^53), else the strings as they are."""
    if values.dtype != object:
        return values
    text = pd.Series(values, dtype=str).str.strip()
    if text.str.fullmatch(r"[+-]?\d{1,18}(\.0*)?").all():
        return text.str.replace(r"\.0*$", "", regex=True).astype(np.int64).to_numpy()
    return values


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
    Returns an Interactions with contiguous indices (in sorted order of the raw ids), the raw ids
    kept, and each user's time order when the frame has time.
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
    order, positions = None, None
    if "time" in frame:  # the rows are in time order (equal times in input order)
        positions = rank_in_user(users, np.arange(len(users)))[0] + 1  # 1-based, within each user
        order = order_matrix(users, items, positions, n_users, n_items)
        if split == "global_time":
            positions = np.arange(len(users))  # one order for everybody
    part = split_parts(users, positions, split, test_fraction, valid_fraction, split_seed)
    train, valid, test = (to_csr(users[part == p], items[part == p], n_users, n_items) for p in (0, 1, 2))
    item_titles = np.array([titles.get(i, "") for i in item_ids], dtype=object) if titles else None
    item_genres = np.array([genres.get(i, "") for i in item_ids], dtype=object) if genres else None
    no_test = int((np.diff(test.indptr) == 0).sum())
    if no_test:
        logger.info(
            f"{no_test} of {n_users} users have no test interaction after the split; they are not evaluated on test"
        )
    return Interactions(n_users, n_items, train, valid, test, user_ids, item_ids, item_titles, item_genres, order)
