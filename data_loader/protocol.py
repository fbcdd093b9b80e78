"""The evaluation protocol, configured by the config's `evaluation` section, in one place.

It decides
- what is held out: `split` cuts the source's interactions into train / valid / test (test from
  everything, then valid from what is left for training, the same way);
- what is ranked out: everything the user is known to have before the evaluated part (training
  items at validation; training and validation items at test), and every interaction of the data
  set when recommendations are exported, so a list never names an item the user already has;
- which items are ranked: all of them, or each held-out item among N sampled negatives.

The metrics are the config's `metrics`; trainer/evaluation.py computes them from one top-K.

How much a split holds out, per user (`test`, `valid`): a count (an integer, e.g. 2) or a share (a
number below 1, e.g. 0.2) of the interactions still there to choose from (all of the user's for
test; what test left for valid; what `last` left for `random`). `last_random` takes {"last": ..,
"random": ..}, each a count or a share. A user always keeps at least one training interaction, so
a short history holds out less; how many users that touched is logged.
"""

import logging
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp

from base.interactions import to_csr
from utils import checks
from utils.errors import ConfigError

SPLITS = ("random", "temporal", "leave_one_out", "last_random", "global_time", "source", "none")
EXPORT_FORMATS = ("detailed", "submission")
logger = logging.getLogger("data")


def check_amount(key, value):
    """A per-user amount: a count (integer >= 0) or a share (a number in [0, 1))."""
    if checks.is_int(value) and value >= 0:
        return value
    if checks.is_number(value) and 0 <= value < 1:
        return value
    checks.fail(key, "a count (an integer >= 0) or a share of each user's interactions (a number in [0, 1))", value)


def per_user(amount, count):
    """(U,) how many of each user's `count` interactions an amount asks for."""
    if checks.is_int(amount):
        return np.full(len(count), amount, dtype=np.int64)
    return np.rint(amount * count).astype(np.int64)


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


def pick(users, eligible, key, amount):
    """(chosen, short): bool (N,), per user the `amount` eligible rows with the lowest `key`, always
    leaving at least one eligible row; and the users (array) who got fewer than asked."""
    rows = np.flatnonzero(eligible)
    chosen = np.zeros(len(users), dtype=bool)
    if len(rows) == 0 or amount == 0:
        return chosen, np.zeros(0, dtype=users.dtype)
    rank, count = rank_in_user(users[rows], key[rows])
    wanted = per_user(amount, count)
    allowed = np.minimum(wanted, count - 1)
    chosen[rows[rank < allowed]] = True
    return chosen, np.unique(users[rows][wanted > allowed])


class EvalBatch(NamedTuple):
    """users (B,) int64; heldout, exclude: CSR (B, n_items); candidates: CSR (B, n_items), the items
    to rank (sampled-negatives protocol), or None to rank every item."""

    users: np.ndarray
    heldout: sp.csr_matrix
    exclude: sp.csr_matrix
    candidates: sp.csr_matrix | None


class EvalLoader:
    """Batches of evaluation users, with the items to find and the items never to recommend.

    heldout: CSR (n_users, n_items), the items each user should find (valid or test split).
    exclude: CSR (n_users, n_items), items the user is known to have (ranked out, and the history
        that full_scores(users, history) receives).
    candidates: CSR (n_users, n_items) or None: with the sampled protocol, the held-out items plus
        the sampled negatives, the only items ranked; None ranks every item (full ranking).
    Users without held-out items are not evaluated; `n_skipped` counts them.
    """

    def __init__(self, heldout, exclude, batch_size, users=None, candidates=None):
        self.heldout, self.exclude, self.batch_size, self.candidates = heldout, exclude, batch_size, candidates
        has_heldout = np.diff(heldout.indptr) > 0
        self.users = np.flatnonzero(has_heldout) if users is None else users
        self.n_skipped = int((~has_heldout).sum())

    @property
    def n_items(self):
        return self.heldout.shape[1]

    def __len__(self):
        return -(-len(self.users) // self.batch_size)

    def __iter__(self):
        for start in range(0, len(self.users), self.batch_size):
            users = self.users[start : start + self.batch_size]
            candidates = None if self.candidates is None else self.candidates[users]
            yield EvalBatch(users, self.heldout[users], self.exclude[users], candidates)

    def shard(self, rank, world_size):
        """The share of the users that rank `rank` of `world_size` evaluates."""
        return EvalLoader(
            self.heldout, self.exclude, self.batch_size, users=self.users[rank::world_size], candidates=self.candidates
        )


def sampled_candidates(heldout, known, n_negatives, seed):
    """CSR (n_users, n_items): each user's held-out items plus `n_negatives` items drawn uniformly
    without replacement among those the user has no interaction with at all (fewer when fewer
    exist), as in the SASRec paper's protocol; the same draw for the same seed."""
    rng = np.random.default_rng(seed)
    n_users, n_items = heldout.shape
    counts = np.diff(heldout.indptr)
    rows, cols = [np.repeat(np.arange(n_users), counts)], [heldout.indices]
    take = min(n_negatives, n_items)
    evaluated = np.flatnonzero(counts > 0)
    for start in range(0, len(evaluated), 1024):  # (1024, n_items) random keys at a time
        users = evaluated[start : start + 1024]
        keys = rng.random((len(users), n_items))  # the lowest allowed keys are the items drawn
        known_rows = known[users].tocoo()
        keys[known_rows.row, known_rows.col] = np.inf
        chosen = np.argpartition(keys, take - 1, axis=1)[:, :take]
        allowed = np.isfinite(np.take_along_axis(keys, chosen, axis=1))
        rows.append(np.repeat(users, allowed.sum(axis=1)))
        cols.append(chosen[allowed])
    data = np.ones(sum(len(r) for r in rows), dtype=np.float32)
    candidates = sp.csr_matrix((data, (np.concatenate(rows), np.concatenate(cols))), shape=heldout.shape)
    candidates.sum_duplicates()
    candidates.data[:] = 1.0
    return candidates


class Protocol:
    """The config's `evaluation` section.

    split: random | temporal | leave_one_out | last_random | global_time | source | none
        random: per user, `test` of the interactions at random to test, then `valid` of the rest.
        temporal: per user, the latest `test` to test, then the latest `valid` of the rest.
        leave_one_out: temporal with test = 1 and valid = 1 (or 0: no validation).
        last_random: per user, the last `last` by time plus `random` drawn from the rest, for test
            and then the same way for valid: the hidden test of a competition that "removed each
            user's last few items and a few from the middle".
        global_time: one cut for everybody: the latest share `test` of all interactions, then the
            share `valid` of the rest just before it.
        source: the test the data source brings (the benchmark layout's test.txt; `test` is 0);
            `valid` at random from the rest.
        none: nothing held out: train on everything (then `test.py --topk-out` writes a submission).
    test, valid: how much is held out, per user (see the module's docstring); `last_random` takes
        {"last": N, "random": M} (or 0). global_time takes shares.
    seed: the split's and the sampled candidates' seed (apart from the config's `seed`, so every
        run is scored on the same held-out items).
    candidates: "all" ranks every item; N ranks each user's held-out items among N sampled items
        the user never interacted with (the sampled protocol some papers report).
    batch_size: users scored at once.
    export: what `test.py --topk-out` writes: "detailed" (user_id, rank, item_id, title, side
        information, score) or "submission" (user,item: a competition's format).
    """

    def __init__(
        self, split="random", test=0.2, valid=0.1, seed=2019, candidates="all", batch_size=1024, export="detailed"
    ):
        checks.one_of("evaluation.split", split, SPLITS)
        for name, value in (("test", test), ("valid", valid)):
            key = f"evaluation.{name}"
            if split == "last_random":
                if not (isinstance(value, dict) and set(value) == {"last", "random"}) and value != 0:
                    checks.fail(key, 'an object {"last": N, "random": M} (counts or shares), or 0', value)
                for part, amount in (value or {}).items():
                    check_amount(f"{key}.{part}", amount)
            elif split == "leave_one_out":
                checks.one_of(key, value, (0, 1))
            elif split == "global_time":
                checks.fraction(key, value)
            elif split == "source" and name == "test":
                if value != 0:
                    checks.fail(key, "0: the split 'source' keeps the data source's own test", value)
            elif split != "none":
                check_amount(key, value)
        checks.seed("evaluation.seed", seed)
        if candidates != "all":
            checks.integer("evaluation.candidates", candidates, low=1)
        checks.positive_int("evaluation.batch_size", batch_size)
        checks.one_of("evaluation.export", export, EXPORT_FORMATS)
        if split == "last_random":  # 0: nothing held out
            test, valid = (value or {"last": 0, "random": 0} for value in (test, valid))
        self.split_name, self.test, self.valid, self.seed = split, test, valid, seed
        self.candidates, self.batch_size, self.export = candidates, batch_size, export

    def describe(self):
        if self.split_name == "none":
            return "nothing held out (evaluation.split = none)"
        ranked = "full ranking" if self.candidates == "all" else f"{self.candidates} sampled negatives"
        return f"split {self.split_name} (test {self.test}, valid {self.valid}, seed {self.seed}), {ranked}"

    # -- what is held out -------------------------------------------------------------------

    def split(self, dataset):
        """The data set with its interactions cut into train / valid / test by this protocol."""
        if self.split_name == "source":
            if dataset.test.nnz == 0:
                raise ConfigError(
                    "evaluation.split = source: this data source has no held-out part of its own "
                    "(use random, temporal, leave_one_out, last_random or global_time)"
                )
        if self.split_name not in ("random", "source", "none") and not dataset.timed:
            raise ConfigError(
                f"evaluation.split = {self.split_name!r} needs the time of each interaction; this source has none "
                "(a CSV needs data_loader.args.time_col)"
            )
        known = dataset.known
        if self.split_name == "none":
            return dataset.with_parts(known, self._empty(dataset), self._empty(dataset))
        users, items, places, from_source_test = self._rows(dataset)
        part = self.parts(users, places, from_source_test)
        train, valid, test = (
            to_csr(users[part == p], items[part == p], dataset.n_users, dataset.n_items) for p in range(3)
        )
        split = dataset.with_parts(train, valid, test)
        no_test = int((np.diff(test.indptr) == 0).sum())
        if no_test:
            logger.info(
                f"{no_test} of {dataset.n_users} users have no test interaction: they are not evaluated on test"
            )
        return split

    @staticmethod
    def _empty(dataset):
        return sp.csr_matrix((dataset.n_users, dataset.n_items), dtype=np.float32)

    @staticmethod
    def _rows(dataset):
        """Every interaction as (users, items, places, whether the source held it out) (N,) each,
        in the source's order."""
        tagged = (dataset.known + dataset.test).tocsr()  # 1 for an interaction, 2 for the source's test
        tagged.sort_indices()
        rows = tagged.tocoo()
        if dataset.order is not None:  # the same entries as `tagged`, in the same CSR order
            order = dataset.order.tocsr()
            order.sort_indices()
            assert np.array_equal(order.indptr, tagged.indptr) and np.array_equal(order.indices, tagged.indices)
            places = order.data
        else:  # no order of its own: the matrix's
            places = np.arange(1, rows.nnz + 1)
        sort = np.argsort(places, kind="stable")
        users, items = rows.row[sort].astype(np.int64), rows.col[sort].astype(np.int64)
        return users, items, places[sort], rows.data[sort] > 1

    def parts(self, users, places, from_source_test=None):
        """(N,) int8: 0 train, 1 valid, 2 test for interactions given in the source's order
        (`users` (N,), `places` (N,) increasing with time)."""
        n = len(users)
        part = np.zeros(n, dtype=np.int8)
        if self.split_name == "global_time":
            latest = np.argsort(-np.asarray(places), kind="stable")
            n_test = int(round(self.test * n))
            n_valid = int(round(self.valid * (n - n_test)))
            part[latest[n_test : n_test + n_valid]] = 1
            part[latest[:n_test]] = 2
            return part
        random_key = np.random.default_rng(self.seed).random(n)
        recent_key = -np.asarray(places, dtype=np.int64)  # latest first
        eligible = np.ones(n, dtype=bool)
        if self.split_name == "source":
            part[from_source_test] = 2
            eligible &= ~from_source_test
        for code, amount in ((2, self.test), (1, self.valid)):
            if self.split_name == "source" and code == 2:
                continue
            chosen, short = self._choose(users, eligible, random_key, recent_key, amount)
            part[chosen] = code
            eligible &= ~chosen
            if len(short):
                name = "test" if code == 2 else "valid"
                logger.info(
                    f"{len(short)} users have too few interactions for evaluation.{name} = {amount}: they hold out "
                    "fewer (at least one interaction stays in training)"
                )
        return part

    def _choose(self, users, eligible, random_key, recent_key, amount):
        if self.split_name in ("random", "source"):
            return pick(users, eligible, random_key, amount)
        if self.split_name in ("temporal", "leave_one_out"):
            return pick(users, eligible, recent_key, amount)
        last, short_last = pick(users, eligible, recent_key, amount["last"])  # last_random
        drawn, short_drawn = pick(users, eligible & ~last, random_key, amount["random"])
        return last | drawn, np.union1d(short_last, short_drawn)

    # -- what is ranked out, and which items are ranked ---------------------------------------

    def loader(self, dataset, part):
        """The EvalLoader of `part` ('valid' or 'test'): its held-out items, ranked among every item
        (or the sampled candidates) with what the user had before ranked out."""
        if part == "valid":
            heldout, exclude, stream = dataset.valid, dataset.train, 1
        else:
            heldout, exclude, stream = dataset.test, (dataset.train + dataset.valid).tocsr(), 2
        candidates = None
        if self.candidates != "all":
            if self.candidates >= dataset.n_items:
                logger.warning(
                    f"evaluation.candidates = {self.candidates} is not below the {dataset.n_items} items: each "
                    "held-out item is ranked among every item the user has not interacted with"
                )
            candidates = sampled_candidates(heldout, dataset.known, self.candidates, [self.seed, stream])
        return EvalLoader(heldout, exclude, self.batch_size, candidates=candidates)

    @staticmethod
    def exported_history(dataset):
        """CSR (n_users, n_items): what an export ranks out (and gives the model as history): every
        interaction the data set has, whatever its part."""
        return dataset.known
