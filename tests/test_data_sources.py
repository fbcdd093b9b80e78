"""Every MovieLens layout, any CSV, k-core, the splits, the cache, and bad input."""

import dataclasses
import hashlib
import json
import logging
import os
import re

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT, prepared, run, tiny_config, write_config
from test_download import make_zip, server  # noqa: F401 - the fixture

from data_loader import movielens
from data_loader.csv_loader import CSVDataLoader
from data_loader.movielens import MovieLensDataLoader
from data_loader.preparation import k_core_filter
from data_loader.protocol import Protocol
from utils.errors import ConfigError, DataError
from utils.files import read_jsonl


def fake_ratings(n_users=40, n_items=60, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(1, n_users + 1):
        for item in rng.choice(np.arange(1, n_items + 1), size=int(rng.integers(8, 20)), replace=False):
            rows.append((user, int(item), int(rng.integers(1, 6)), 900_000_000 + int(rng.integers(0, 10**6))))
    return pd.DataFrame(rows, columns=["user", "item", "rating", "time"])


def write_release(data_dir, release, ratings):
    """Write `ratings` in the file layout of a MovieLens release."""
    spec = movielens.RELEASES[release]
    folder = data_dir / release
    folder.mkdir(parents=True)
    titles = {i: f"Movie: part {i} (1999)" for i in ratings["item"].unique()}
    if spec.layout == "colons":
        lines = [f"{u}::{i}::{r}::{t}" for u, i, r, t in ratings.itertuples(index=False)]
        (folder / spec.ratings).write_text("\n".join(lines) + "\n")
        (folder / spec.items).write_bytes(
            "\n".join(f"{i}::{t}::Drama|Comedy" for i, t in titles.items()).encode("latin-1")
        )
    elif spec.layout == "csv":
        ratings.rename(columns={"user": "userId", "item": "movieId", "time": "timestamp"}).to_csv(
            folder / spec.ratings, index=False
        )
        pd.DataFrame({"movieId": list(titles), "title": list(titles.values()), "genres": "Drama|Comedy"}).to_csv(
            folder / spec.items, index=False
        )
    else:
        ratings.to_csv(folder / spec.ratings, sep="\t", header=False, index=False)
        lines = [f"{i}|{t}|01-Jan-1995||http://x|0" for i, t in titles.items()]
        (folder / spec.items).write_bytes("\n".join(lines).encode("latin-1"))
    return folder


@pytest.mark.parametrize("release", ["ml-1m", "ml-10m", "ml-20m", "ml-25m", "ml-32m", "ml-latest-small"])
def test_every_release_layout_reads_the_same_interactions(tmp_path, release):
    ratings = fake_ratings()
    write_release(tmp_path, release, ratings)
    ds = prepared(MovieLensDataLoader(str(tmp_path), release=release, download=False, cache=False)).dataset
    assert (ds.n_users, ds.n_items) == (ratings["user"].nunique(), ratings["item"].nunique())
    assert ds.train.nnz + ds.valid.nnz + ds.test.nnz == len(ratings)
    item = int(ds.item_ids[0])
    assert ds.item_titles[0] == f"Movie: part {item} (1999)"  # titles with ':' survive the '::' layout
    assert ds.item_attributes["genre"].joined([0])[0] == "Comedy|Drama"  # the values, sorted
    assert ds.item_numbers["year"][0] == 1999


def test_download_of_a_release_whose_zip_folder_has_another_name(tmp_path, server, monkeypatch):  # noqa: F811
    routes, base = server
    source = write_release(tmp_path / "src", "ml-1m", fake_ratings())
    archive = make_zip(source, folder_name="ml-10M100K")
    routes["/ml-10m.zip"] = archive
    monkeypatch.setitem(
        movielens.RELEASES,
        "ml-10m",
        dataclasses.replace(
            movielens.RELEASES["ml-10m"], url=f"{base}/ml-10m.zip", md5=hashlib.md5(archive).hexdigest()
        ),
    )
    loader = prepared(MovieLensDataLoader(str(tmp_path / "data"), release="ml-10m", download=True))
    assert loader.dataset.n_users == 40
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["ml-10m"]


def test_truncated_archive_is_rejected_and_removed(tmp_path, server, monkeypatch):  # noqa: F811
    routes, base = server
    archive = make_zip(write_release(tmp_path / "src", "ml-1m", fake_ratings()))
    routes["/ml-1m.zip"] = archive[: len(archive) * 2 // 3]  # whole as served, but cut
    monkeypatch.setitem(
        movielens.RELEASES, "ml-1m", dataclasses.replace(movielens.RELEASES["ml-1m"], url=f"{base}/ml-1m.zip", md5=None)
    )
    with pytest.raises(DataError, match="not a readable zip|corrupt"):
        prepared(MovieLensDataLoader(str(tmp_path / "data"), release="ml-1m", download=True))
    assert not (tmp_path / "data").exists()  # the data folder was made for the download: removed with it


def naive_k_core(pairs, k):
    pairs = set(pairs)
    while True:
        users = pd.Series([u for u, _ in pairs]).value_counts()
        items = pd.Series([i for _, i in pairs]).value_counts()
        kept = {(u, i) for u, i in pairs if users[u] >= k and items[i] >= k}
        if kept == pairs:
            return kept
        pairs = kept


def test_k_core_reaches_its_fixed_point():
    # a 6 x 6 block survives a 5-core; a chain hanging off it falls one link per round
    pairs = [(u, i) for u in range(6) for i in range(6)]
    pairs += [(100, i) for i in (0, 1, 2, 3, 200)]  # user 100: 5 items, one of them item 200
    pairs += [(u, i) for u in (101, 102, 103, 104) for i in (200, 0, 1, 2)]  # 4 items each: they go first
    frame = pd.DataFrame(pairs, columns=["user", "item"])
    kept, rounds = k_core_filter(frame, 5)
    assert rounds == 3  # users 101-104, then item 200, then user 100
    assert set(map(tuple, kept.to_numpy())) == {(u, i) for u in range(6) for i in range(6)}
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"user": rng.integers(0, 60, 1500), "item": rng.zipf(1.3, 1500) % 150}).drop_duplicates()
    kept, _ = k_core_filter(frame, 5)
    assert set(map(tuple, kept.to_numpy())) == naive_k_core(map(tuple, frame.to_numpy()), 5)
    assert kept["user"].value_counts().min() >= 5 and kept["item"].value_counts().min() >= 5


def split_of(split, test_fraction=0.2, valid_fraction=0.1, seed=0):
    ratings = fake_ratings(seed=seed)
    users = ratings["user"].to_numpy()
    if split == "leave_one_out":
        test_fraction, valid_fraction = 1, 1
    part = Protocol(split, test_fraction, valid_fraction, seed).parts(users, ratings["time"].to_numpy())
    return ratings.assign(part=part)


@pytest.mark.parametrize("split", ["random", "leave_one_out", "temporal", "global_time"])
def test_splits_are_complete_disjoint_and_reproducible(split):
    a, b = split_of(split), split_of(split)
    assert set(a["part"]) <= {0, 1, 2} and len(a) == len(fake_ratings())  # each row in exactly one split
    np.testing.assert_array_equal(a["part"], b["part"])


def test_leave_one_out_picks_the_latest():
    frame = split_of("leave_one_out")
    for _, rows in frame.groupby("user"):
        rows = rows.sort_values("time")
        assert list(rows["part"].iloc[-2:]) == [1, 2] and (rows["part"].iloc[:-2] == 0).all()


def test_temporal_fractions_per_user_and_global_cut():
    frame = split_of("temporal")
    for _, rows in frame.groupby("user"):
        n = len(rows)
        n_test = min(round(0.2 * n), n - 1)
        assert (rows["part"] == 2).sum() == n_test
        assert abs((rows["part"] == 1).sum() - 0.1 * (n - n_test)) <= 1
        latest_first = rows.sort_values("time", ascending=False)["part"].to_numpy()
        assert (np.diff(latest_first) <= 0).all()  # test, then valid, then train, going back in time
    frame = split_of("global_time")
    assert frame.loc[frame["part"] == 2, "time"].min() >= frame.loc[frame["part"] != 2, "time"].max()
    assert frame.loc[frame["part"] == 1, "time"].min() >= frame.loc[frame["part"] == 0, "time"].max()
    assert abs((frame["part"] == 2).mean() - 0.2) < 0.01


def test_cache_is_reused_and_rebuilt_on_any_change(tmp_path, caplog):
    ratings = fake_ratings()
    folder = write_release(tmp_path, "ml-100k", ratings)
    caplog.set_level(logging.INFO, logger="data")
    first = prepared(MovieLensDataLoader(str(tmp_path), download=False)).dataset
    assert "cached in" in caplog.text
    caplog.clear()
    second = prepared(MovieLensDataLoader(str(tmp_path), download=False)).dataset
    assert "loaded from" in caplog.text
    for name in ("train", "valid", "test"):
        assert (getattr(first, name) != getattr(second, name)).nnz == 0
    np.testing.assert_array_equal(first.item_ids, second.item_ids)
    assert list(first.item_titles) == list(second.item_titles)
    caplog.clear()
    prepared(MovieLensDataLoader(str(tmp_path), download=False, min_rating=2))  # another preparation
    assert "cached in" in caplog.text
    caplog.clear()
    ratings.iloc[:-1].to_csv(folder / "u.data", sep="\t", header=False, index=False)  # the raw file changed
    changed = prepared(MovieLensDataLoader(str(tmp_path), download=False)).dataset
    assert "cached in" in caplog.text
    assert changed.train.nnz + changed.valid.nnz + changed.test.nnz == len(ratings) - 1


def write_csv(path, text):
    path.write_text(text)
    return path


def test_csv_with_string_ids_trains_and_exports(tmp_path):
    rng = np.random.default_rng(0)
    rows = [
        (f"u{u}", f"item-{i}", 1_600_000_000 + int(rng.integers(0, 10**6)))
        for u in range(30)
        for i in rng.choice(50, 12, replace=False)
    ]
    path = tmp_path / "train_ratings.csv"
    pd.DataFrame(rows, columns=["user", "item", "time"]).to_csv(path, index=False)
    config = tiny_config(tmp_path, tmp_path / "saved", trainer__epochs=1)
    config["data_loader"] = {
        "type": "CSVDataLoader",
        "args": {
            "data_dir": str(tmp_path),
            "path": "train_ratings.csv",
            "sep": ",",
            "user_col": "user",
            "item_col": "item",
            "rating_col": None,
            "time_col": "time",
            "min_rating": None,
            "k_core": 0,
            "item_files": None,
            "cache": True,
            "encoding": "utf-8",
        },
    }
    config["batches"]["batch_size"] = 64
    config["evaluation"].update(split="leave_one_out", test=1, valid=1, seed=1)
    result = run("train.py", "-c", write_config(tmp_path / "c.json", config), "--run-id", "csv")
    assert result.returncode == 0, result.stderr[-2000:]
    folder = tmp_path / "saved" / "models" / config["name"] / "csv"
    assert read_jsonl(folder / "metrics.jsonl")[0]["val_hit@20"] > 0
    result = run("test.py", "-r", folder / "model_best.pth", "--topk-out", tmp_path / "r.csv", "--k", "3")
    assert result.returncode == 0, result.stderr[-2000:]
    recs = pd.read_csv(tmp_path / "r.csv")
    assert recs["user_id"].str.startswith("u").all() and recs["item_id"].str.startswith("item-").all()


def test_csv_bad_input(tmp_path):
    good = "user,item,rating\na,x,5\nb,y,4\n"
    path = write_csv(tmp_path / "a.csv", good)
    with pytest.raises(ConfigError, match=r"item_col: .* has no column 'movie' \(its header: user, item, rating"):
        prepared(CSVDataLoader(str(tmp_path), str(path), item_col="movie"))
    path = write_csv(tmp_path / "b.csv", good + "c,z,lots\n")
    with pytest.raises(DataError, match=r"b\.csv:4: rating must be a number, got 'lots'"):
        prepared(CSVDataLoader(str(tmp_path), str(path), rating_col="rating", cache=False))
    path = write_csv(tmp_path / "c.csv", good + "c,z,3,extra\n")
    with pytest.raises(DataError, match=r"c\.csv.*line 4"):
        prepared(CSVDataLoader(str(tmp_path), str(path), rating_col="rating", cache=False))
    with pytest.raises(DataError, match="nothing is left after the 5-core filter"):
        prepared(CSVDataLoader(str(tmp_path), str(write_csv(tmp_path / "d.csv", good)), k_core=5, cache=False))
    with pytest.raises(DataError, match="no rating is >= data_loader.args.min_rating = 6"):
        e_csv = write_csv(tmp_path / "e.csv", good)
        prepared(CSVDataLoader(str(tmp_path), str(e_csv), rating_col="rating", min_rating=6, cache=False))
    with pytest.raises(ConfigError, match="needs the time of each interaction.*data_loader.args.time_col"):
        prepared(CSVDataLoader(str(tmp_path), "a.csv", cache=False), split="temporal")
    with pytest.raises(DataError, match="nowhere.csv not found"):
        prepared(CSVDataLoader(str(tmp_path), str(tmp_path / "nowhere.csv")))


def test_users_without_test_items_are_counted_not_averaged(tmp_path):
    # user 'solo' has one interaction: leave-one-out keeps it for training, so it has no test item
    rows = [("solo", "x", 1)] + [(f"u{u}", f"i{i}", t) for u in range(5) for t, i in enumerate(range(4))]
    path = tmp_path / "f.csv"
    pd.DataFrame(rows, columns=["user", "item", "time"]).to_csv(path, index=False)
    loader = prepared(CSVDataLoader(str(tmp_path), str(path), time_col="time", cache=False), "leave_one_out", 1, 0)
    test = loader.evaluation("test")
    assert test.n_skipped == 1 and len(test.users) == 5


def test_shipped_configs_spell_out_every_loader_argument():
    import inspect

    for path in [ROOT / "config.json", *sorted((ROOT / "configs").glob("*.json"))]:
        config = json.loads(path.read_text())
        if "data_loader" not in config:
            continue
        from data_loader import DATA_LOADERS

        cls = DATA_LOADERS[config["data_loader"]["type"]]
        assert set(inspect.signature(cls).parameters) == set(config["data_loader"]["args"]), path.name
        assert set(inspect.signature(Protocol).parameters) == set(config["evaluation"]), path.name
        batch_settings = set(inspect.signature(cls.prepare).parameters) - {"self", "protocol", "seed"}
        assert batch_settings == set(config["batches"]), path.name


@pytest.mark.parametrize(
    "train,message",
    [
        ("0 1 2\n1 123456789012345678901\n", "train.txt:2: ids are indices from 0 to 2147483647, got '1234"),
        ("0 1 2\n1 1e10\n", "train.txt:2: ids are indices from 0 to 2147483647, got '1e10'"),
        ("0 1 2\n1 \xe9\n", "train.txt:2: not utf-8 text (byte 0xe9)"),
        ("0 1 2\n1 2000000000\n", "the largest, 2000000000, is far above the 4 distinct ids"),
    ],
)
def test_bad_benchmark_files_name_file_and_line(tmp_path, train, message):
    from data_loader.benchmark import BenchmarkDataLoader

    (tmp_path / "train.txt").write_bytes(train.encode("latin-1"))
    (tmp_path / "test.txt").write_text("0 1 2\n1 2 3\n")
    with pytest.raises(DataError, match=re.escape(message)):
        prepared(BenchmarkDataLoader(str(tmp_path)))


def test_a_user_without_items_is_kept_out_and_other_bad_sources_are_one_error(tmp_path):
    from data_loader.benchmark import BenchmarkDataLoader

    (tmp_path / "train.txt").write_text("0 1 2\n5\n1 3\n")  # user 5: no items
    (tmp_path / "test.txt").write_text("0 3\n1 2\n")
    assert prepared(BenchmarkDataLoader(str(tmp_path))).dataset.train.nnz == 3
    (tmp_path / "a.csv").write_text("user,item\na,x\n")
    with pytest.raises(ConfigError, match="data_loader.args.sep: '' cannot split"):
        prepared(CSVDataLoader(str(tmp_path), "a.csv", sep=""))
    with pytest.raises(DataError, match="not utf-16 text"):
        prepared(CSVDataLoader(str(tmp_path), "a.csv", encoding="utf-16"))
    folder = write_release(tmp_path / "ml", "ml-100k", fake_ratings())
    (folder / "u.item").write_bytes(b'1|a|"unclosed\n2|b\n')
    with pytest.raises(DataError, match="u.item: not the u.item layout"):
        prepared(MovieLensDataLoader(str(tmp_path / "ml"), download=False, cache=False))


@pytest.mark.parametrize("damage", ["empty", "truncated", "another data set", "short arrays"])
def test_a_damaged_cache_is_removed_and_rebuilt(tmp_path, tiny_data, damage, caplog):
    first = prepared(MovieLensDataLoader(str(tiny_data), download=False)).dataset
    (cache,) = (tiny_data / "ml-100k" / ".prepared").glob("*.npz")
    if damage == "empty":
        cache.write_bytes(b"")
    elif damage == "truncated":
        cache.write_bytes(cache.read_bytes()[:200])
    elif damage == "another data set":
        prepared(MovieLensDataLoader(str(tiny_data), download=False, min_rating=4))
        other = max((tiny_data / "ml-100k" / ".prepared").glob("*.npz"), key=os.path.getmtime)
        cache.write_bytes(other.read_bytes())
    else:
        with np.load(cache) as z:
            arrays = dict(z)
        arrays["train_indptr"] = arrays["train_indptr"][:5]
        np.savez(cache, **arrays)
    caplog.set_level("INFO", logger="data")
    again = prepared(MovieLensDataLoader(str(tiny_data), download=False)).dataset
    assert "is damaged" in caplog.text and "cached in" in caplog.text
    assert (again.train != first.train).nnz == 0 and (again.test != first.test).nnz == 0
    assert not list((tiny_data / "ml-100k" / ".prepared").glob("*.tmp"))


def test_csv_ids_1_and_1_0_are_one_user_and_big_ids_stay_exact(tmp_path, tiny_data):
    (tmp_path / "a.csv").write_text("user,item\n1,10\n1.0,11\n2,10\n2,12\n")
    ds = prepared(CSVDataLoader(str(tmp_path), "a.csv", cache=False, ids="integers"), test=0.0, valid=0.0).dataset
    assert list(ds.user_ids) == [1, 2] and ds.user_ids.dtype == np.int64
    # by default ids are text, exactly as the file writes them: 000242 stays 000242, 0007 and 7 are two
    (tmp_path / "b.csv").write_text("user,item\n000242,0007\n000242,07\n1,7\n")
    ds = prepared(CSVDataLoader(str(tmp_path), "b.csv", cache=False), test=0.0, valid=0.0).dataset
    assert list(ds.user_ids) == ["000242", "1"] and list(ds.item_ids) == ["0007", "07", "7"]
    with pytest.raises(Exception, match=r"b.csv:4: '1x' is not an integer id"):
        (tmp_path / "b.csv").write_text("user,item\n1,2\n2,3\n1x,4\n")
        prepared(CSVDataLoader(str(tmp_path), "b.csv", cache=False, ids="integers"), test=0.0, valid=0.0)
    big = 2**53 + 1  # float64 would merge it with 2^53
    lines = (tiny_data / "ml-100k" / "u.data").read_text().splitlines()
    lines += [f"{big}\t1\t5\t881250949", f"{big - 1}\t2\t5\t881250949", f"{big - 1}\t3\t5\t881250950"]
    (tiny_data / "ml-100k" / "u.data").write_text("\n".join(lines) + "\n")
    ds = prepared(MovieLensDataLoader(str(tiny_data), download=False, cache=False)).dataset
    assert {big, big - 1} <= set(ds.user_ids.tolist()) and ds.n_users == 62


def test_a_data_dir_that_is_not_there_is_not_created(tmp_path):
    config = tiny_config(tmp_path / "nowhere", tmp_path / "saved")  # download is off in the tiny config
    result = run("train.py", "-c", write_config(tmp_path / "c.json", config))
    assert result.returncode == 2 and "not found and data_loader.args.download is false" in result.stderr
    assert not (tmp_path / "nowhere").exists() and not (tmp_path / "saved").exists()


@pytest.mark.parametrize("blank", ["", "  "])
def test_an_empty_id_names_its_line(tmp_path, blank):
    from data_loader.csv_loader import read_interactions

    path = write_csv(tmp_path / "r.csv", f"user,item,time\nu1,i1,1\nu2,i1,2\nu1,{blank},3\n{blank},i2,4\n")
    with pytest.raises(DataError, match=r"r.csv:5: empty 'user'"):
        read_interactions(path, ",", "user", "item", None, "time")
    path = write_csv(tmp_path / "r.csv", f"user,item,time\nu1,i1,1\nu2,i1,2\nu1,{blank},3\n")
    with pytest.raises(DataError, match=r"r.csv:4: empty 'item'"):
        read_interactions(path, ",", "user", "item", None, "time")


def test_csv_numbers_are_parsed_by_the_reader_and_bad_ones_still_name_their_line(tmp_path):
    """Numbers are parsed while reading: integer times stay exact (nanoseconds, past float64's 2^53),
    a fractional time or rating is read as text and converted, and a cell that is no number is an
    error naming its line."""
    from data_loader.csv_loader import read_interactions

    def read(name, body):
        path = write_csv(tmp_path / name, "user,item,rating,time\n" + body)
        return read_interactions(path, ",", "user", "item", "rating", "time")

    frame = read("a.csv", "a,x,5,1600000000000000001\nb,y,4.5,1600000000000000000\n")
    assert frame["time"].tolist() == [1600000000000000001, 1600000000000000000]
    assert frame["rating"].tolist() == [5.0, 4.5]
    assert read("b.csv", "a,x,5,1.5\nb,y,4,2\n")["time"].tolist() == [1.5, 2.0]
    with pytest.raises(DataError, match=r"c\.csv:3: time must be a number, got ''"):
        read("c.csv", "a,x,5,1\nb,y,4,\n")
    with pytest.raises(DataError, match=r"d\.csv:2: rating must be a number, got 'nan'"):
        read("d.csv", "a,x,nan,1\n")
