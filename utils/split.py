"""Reproducible per-user random splits, vectorised (no loop over users)."""

import numpy as np


def split_per_user(users, test_fraction, valid_fraction, seed):
    """Assign each interaction to train (0), valid (1) or test (2), per user.

    users: (N,) user index of each interaction. For a user with n interactions,
    round(test_fraction * n) go to test and round(valid_fraction * rest) of the rest to
    valid, always leaving at least one in train. Which ones is random, fixed by `seed`.
    Returns (N,) int8 array of 0 / 1 / 2.
    """
    users = np.asarray(users)
    rng = np.random.default_rng(seed)
    # Shuffle within each user: sort by user, then by a random key.
    order = np.lexsort((rng.random(len(users)), users))
    sorted_users = users[order]
    starts = np.flatnonzero(np.r_[True, sorted_users[1:] != sorted_users[:-1]])
    counts = np.diff(np.r_[starts, len(users)])
    rank = np.arange(len(users)) - np.repeat(starts, counts)  # position within the user's shuffle

    n_test = np.minimum(np.rint(test_fraction * counts), counts - 1).clip(min=0)
    n_valid = np.minimum(np.rint(valid_fraction * (counts - n_test)), counts - n_test - 1).clip(min=0)
    n_test, n_valid = np.repeat(n_test, counts), np.repeat(n_valid, counts)

    part_sorted = np.zeros(len(users), dtype=np.int8)
    part_sorted[rank < n_test + n_valid] = 1
    part_sorted[rank < n_test] = 2
    part = np.empty_like(part_sorted)
    part[order] = part_sorted
    return part
