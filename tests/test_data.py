"""Splits, the pair batches' sampler and the MovieLens loader."""

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import SHARED_DATA, prepared

from base import batching
from base.batching import PairBatches
from base.interactions import Interactions, to_csr
from data_loader.movielens import MovieLensDataLoader
from data_loader.protocol import Protocol
from utils.errors import ConfigError, DataError


def split_per_user(users, test_fraction, valid_fraction, seed):
    return Protocol("random", test_fraction, valid_fraction, seed).parts(users, np.arange(len(users)))


class Data:
    """A data loader's part that batching reads: the data set, the generator, the batch settings."""

    def __init__(self, train, sampling="user", seed=0, batch_size=64):
        n_users, n_items = train.shape
        empty = sp.csr_matrix((n_users, n_items), dtype=np.float32)
        self.dataset = Interactions(n_users, n_items, train, empty, empty, np.arange(n_users), np.arange(n_items))
        self.sampling, self.batch_size, self.seed, self.rank, self.world_size = sampling, batch_size, seed, 0, 1
        self.rng = np.random.default_rng(seed)


def BPRSampler(train, mode, seed):  # noqa: N802 - the pair batches, as the sampler they hold was called
    return PairBatches(Data(train, mode, seed))


def random_pairs(n_users=50, n_items=40, seed=0):
    rng = np.random.default_rng(seed)
    dense = rng.random((n_users, n_items)) < 0.3
    dense[np.arange(n_users), rng.integers(n_items, size=n_users)] = True  # nobody empty
    users, items = np.nonzero(dense)
    return users, items, n_users, n_items


def test_split_disjoint_complete_and_reproducible():
    users, items, n_users, n_items = random_pairs()
    part = split_per_user(users, 0.2, 0.1, seed=7)
    assert set(np.unique(part)) <= {0, 1, 2}
    # every interaction lands in exactly one split, so the three matrices add up to the original
    mats = [to_csr(users[part == p], items[part == p], n_users, n_items) for p in (0, 1, 2)]
    assert (sum(mats) != to_csr(users, items, n_users, n_items)).nnz == 0
    assert max(m.multiply(o).nnz for m in mats for o in mats if m is not o) == 0
    np.testing.assert_array_equal(part, split_per_user(users, 0.2, 0.1, seed=7))
    assert (part != split_per_user(users, 0.2, 0.1, seed=8)).any()


def test_split_fractions_per_user():
    users, items, n_users, _ = random_pairs(seed=1)
    part = split_per_user(users, 0.2, 0.1, seed=0)
    for u in range(n_users):
        mine = part[users == u]
        n = len(mine)
        n_test = min(round(0.2 * n), n - 1)
        assert (mine == 2).sum() == n_test
        assert (mine == 0).sum() >= 1  # a user always keeps a training item
        assert abs((mine == 1).sum() - 0.1 * (n - n_test)) <= 1


def test_sampler_negatives_are_never_training_positives():
    users, items, n_users, n_items = random_pairs(seed=2)
    train = to_csr(users, items, n_users, n_items)
    dense = train.toarray() > 0
    for mode in ("user", "interaction"):
        sampler = BPRSampler(train, mode, seed=3)
        for _ in range(20):
            u, p, n = sampler.sample(512)
            assert dense[u, p].all(), "a positive that is not a training interaction"
            assert not dense[u, n].any(), "a negative that is a training positive"


def test_sampler_dense_table_and_binary_search_draw_the_same_batches(monkeypatch):
    """Small data looks membership up in a dense table, large data by binary search over sorted
    keys (utils/sampler.py: DENSE_TABLE_CELLS): the same generator gives the same batches."""
    users, items, n_users, n_items = random_pairs(seed=6)
    train = to_csr(users, items, n_users, n_items)
    for mode in ("user", "interaction"):
        dense = BPRSampler(train, mode, seed=7)
        monkeypatch.setattr(batching, "DENSE_TABLE_CELLS", 0)
        searched = BPRSampler(train, mode, seed=7)
        monkeypatch.undo()
        assert dense.sampler.table is not None and searched.sampler.table is None
        for _ in range(5):
            for a, b in zip(dense.sample(256), searched.sample(256)):
                np.testing.assert_array_equal(a, b)


def test_sampler_distributions_match_the_plain_version():
    """'user' draws users uniformly; 'interaction' draws users in proportion to their degree;
    negatives are uniform over the user's non-interacted items (chi-square-style bounds)."""
    rng = np.random.default_rng(0)
    degrees = np.array([1, 2, 5, 10, 20])
    rows = np.repeat(np.arange(5), degrees)
    cols = np.concatenate([rng.choice(30, d, replace=False) for d in degrees])
    train = to_csr(rows, cols, 5, 30)
    draws = 200_000
    for mode, expected in (("user", np.full(5, 1 / 5)), ("interaction", degrees / degrees.sum())):
        u, _, n = BPRSampler(train, mode, seed=1).sample(draws)
        freq = np.bincount(u, minlength=5) / draws
        np.testing.assert_allclose(freq, expected, atol=4 * np.sqrt(expected / draws).max())
    # negatives of user 4 (20 positives): uniform over its 10 other items
    u, _, n = BPRSampler(train, "user", seed=2).sample(draws)
    counts = np.bincount(n[u == 4], minlength=30)
    allowed = np.setdiff1d(np.arange(30), cols[rows == 4])
    assert counts[cols[rows == 4]].sum() == 0
    share = counts[allowed] / counts.sum()
    np.testing.assert_allclose(share, 1 / len(allowed), atol=0.01)


def test_generator_state_round_trip_gives_the_same_batches(tiny_data):
    loader = prepared(MovieLensDataLoader(data_dir=str(tiny_data), download=False), batch_size=64)
    pairs = PairBatches(loader)
    pairs.sample(10)
    state = loader.state_dict()
    first = pairs.sample(64)
    loader.load_state_dict(state)
    for a, b in zip(first, pairs.sample(64)):
        np.testing.assert_array_equal(a, b)


def test_k_negatives_per_positive_are_never_training_positives():
    users, items, n_users, n_items = random_pairs(seed=8)
    train = to_csr(users, items, n_users, n_items)
    dense = train.toarray() > 0
    batch = next(iter(PairBatches(Data(train), negatives=4)))
    u, p, n = batch["users"].numpy(), batch["pos_items"].numpy(), batch["neg_items"].numpy()
    assert u.shape == p.shape == (64,) and n.shape == (64, 4)
    assert dense[u, p].all() and not dense[u[:, None], n].any()
    # k = 1 draws exactly what k > 1 draws first: the same stream, one item per positive
    one = PairBatches(Data(train, seed=3)).sample(64)[2]
    assert one.shape == (64,)


def test_no_possible_negative_is_a_clear_error():
    train = to_csr(np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1]), 2, 2)  # both users have every item
    with pytest.raises(DataError, match="no negative item to draw"):
        PairBatches(Data(train))


def test_movielens_loader_on_fixture(tiny_data):
    loader = prepared(MovieLensDataLoader(data_dir=str(tiny_data), download=False), batch_size=64)
    ds = loader.dataset
    assert ds.n_users == 60 and ds.item_titles[list(ds.item_ids).index(1)] == "Amélie (2001)"
    total = ds.train + ds.valid + ds.test
    assert total.max() == 1 and total.nnz == ds.train.nnz + ds.valid.nnz + ds.test.nnz
    pairs = PairBatches(loader)
    batch = next(iter(pairs))
    assert batch["users"].shape == batch["pos_items"].shape == batch["neg_items"].shape == (64,)
    assert len(pairs) == pairs.n_interactions // 64 + 1


def test_min_rating_filters(tiny_data):
    all_ratings = prepared(MovieLensDataLoader(data_dir=str(tiny_data), download=False)).dataset
    liked = prepared(MovieLensDataLoader(data_dir=str(tiny_data), download=False, min_rating=4)).dataset
    total = lambda d: d.train.nnz + d.valid.nnz + d.test.nnz  # noqa: E731
    ratings = np.loadtxt(tiny_data / "ml-100k" / "u.data", dtype=np.int64)
    assert total(all_ratings) == len(ratings)
    assert total(liked) == (ratings[:, 2] >= 4).sum()


def test_malformed_line_names_file_and_line(tiny_data):
    path = tiny_data / "ml-100k" / "u.data"
    lines = path.read_text().splitlines()
    lines[4] = "7\t12\tfive\t881250949"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"u\.data:5: rating must be a number, got 'five'"):
        prepared(MovieLensDataLoader(data_dir=str(tiny_data), download=False))
    lines[4] = "7\t12\t5"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"u\.data:5: expected 4 fields"):
        prepared(MovieLensDataLoader(data_dir=str(tiny_data), download=False))


def test_missing_data_without_download_says_where(tmp_path):
    with pytest.raises(DataError, match="download is false.*ml-100k.zip"):
        prepared(MovieLensDataLoader(data_dir=str(tmp_path), download=False))


@pytest.mark.parametrize(
    "key,value,where",
    [("test", 1.5, "evaluation.test"), ("valid", -0.1, "evaluation.valid"), ("sampling", "items", "batches.sampling")],
)
def test_bad_protocol_and_batch_arguments(tiny_data, key, value, where):
    with pytest.raises(ConfigError, match=where):
        prepared(MovieLensDataLoader(data_dir=str(tiny_data), download=False), **{key: value})


@pytest.mark.movielens
def test_real_movielens_100k():
    ds = prepared(MovieLensDataLoader(data_dir=str(SHARED_DATA), download=False)).dataset
    assert (ds.n_users, ds.n_items) == (943, 1682)
    assert ds.train.nnz + ds.valid.nnz + ds.test.nnz == 100_000
    assert ds.test.nnz == 20_000  # 0.2 of every user's ratings (all users have >= 20)
    assert ds.item_titles[np.flatnonzero(ds.item_ids == 1)[0]] == "Toy Story (1995)"
    toy_story = np.flatnonzero(ds.item_ids == 1)
    assert ds.item_attributes["genre"].joined(toy_story)[0] == "Animation|Children's|Comedy"
    assert ds.item_numbers["year"][toy_story[0]] == 1995
    assert isinstance(ds.train, sp.csr_matrix)
