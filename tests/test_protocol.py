"""The evaluation protocol (data_loader/protocol.py): what is held out, what is ranked out, and the
competition's pieces built on it: the last-N + random-M split, nrecall, side files, a submission
from a model trained on everything."""

import json
import logging
import os
import re
import stat

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import ROOT, one_line_error, prepared, run, train_ok, write_config

from data_loader.csv_loader import CSVDataLoader
from data_loader.protocol import Protocol
from utils.errors import ConfigError
from utils.files import read_jsonl


def histories(lengths, seed=0):
    """(users, places) (N,) for users with the given numbers of interactions, rows in time order."""
    users = np.repeat(np.arange(len(lengths)), lengths)
    order = np.random.default_rng(seed).permutation(len(users))  # users interleaved in time
    return users[order], np.arange(1, len(users) + 1)


def test_last_random_holds_out_the_last_n_by_time_and_m_drawn_from_the_rest():
    users, places = histories([30] * 40)
    protocol = Protocol("last_random", {"last": 2, "random": 3}, {"last": 1, "random": 2}, seed=5)
    part = protocol.parts(users, places)
    drawn_positions = []
    for u in range(40):
        mine = part[users == u]  # in time order
        assert list(mine[-2:]) == [2, 2]  # the last two by time: test
        assert (mine == 2).sum() == 5 and (mine == 1).sum() == 3
        assert mine[mine != 2][-1] == 1  # valid's last item: the latest one test left
        drawn_positions += list(np.flatnonzero(mine[:-2] == 2))
    # the random three come from anywhere in the rest of the history, not only its end
    assert min(drawn_positions) < 10 and max(drawn_positions) > 17
    np.testing.assert_array_equal(part, protocol.parts(users, places))  # the same seed, the same split
    other = Protocol("last_random", {"last": 2, "random": 3}, {"last": 1, "random": 2}, seed=6).parts(users, places)
    assert (other != part).any()
    assert all(list(other[users == u][-2:]) == [2, 2] for u in range(40))  # the last ones do not depend on it


def test_last_random_as_shares_of_each_history():
    users, places = histories([10, 40])
    part = Protocol("last_random", {"last": 0.1, "random": 0.2}, 0, seed=0).parts(users, places)
    assert [(part[users == u] == 2).sum() for u in (0, 1)] == [1 + 2, 4 + 7]  # random: 0.2 of what last left
    assert (part == 1).sum() == 0


def test_a_history_too_short_for_the_split_holds_out_less_and_is_reported(caplog):
    users, places = histories([1, 3, 6, 30])
    caplog.set_level(logging.INFO, logger="data")
    part = Protocol("last_random", {"last": 2, "random": 3}, {"last": 2, "random": 3}, seed=0).parts(users, places)
    held = [(part[users == u] != 0).sum() for u in range(4)]
    assert held == [0, 2, 5, 10]  # at least one interaction stays in training
    assert all((part[users == u] == 0).sum() >= 1 for u in range(4))
    assert [(part[users == u] == 2).sum() for u in range(4)] == [0, 2, 5, 5]
    assert "2 users have too few interactions for evaluation.test" in caplog.text
    assert "3 users have too few interactions for evaluation.valid" in caplog.text


@pytest.mark.parametrize(
    "split,test,valid,message",
    [
        ("leave_one_out", 0.2, 1, "evaluation.test: expected one of 0, 1, got 0.2"),
        ("last_random", 2, 0, 'evaluation.test: expected an object {"last": N, "random": M}'),
        ("last_random", {"last": 2}, 0, 'evaluation.test: expected an object {"last": N, "random": M}'),
        ("last_random", {"last": -1, "random": 1}, 0, "evaluation.test.last: expected a count"),
        ("random", 1.5, 0.1, "evaluation.test: expected a count"),
        ("source", 0.2, 0.1, "evaluation.test: expected 0: the split 'source' keeps the data source's own test"),
        ("global_time", 3, 0.1, "evaluation.test: expected a number in [0, 1)"),
    ],
)
def test_a_split_that_cannot_mean_what_it_says_is_refused(split, test, valid, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        Protocol(split, test, valid)


def test_counts_and_shares_hold_out_per_user():
    users, places = histories([10, 20])
    part = Protocol("temporal", 3, 2).parts(users, places)
    assert [(part[users == u] == 2).sum() for u in (0, 1)] == [3, 3]
    part = Protocol("random", 0.2, 0).parts(users, places)
    assert [(part[users == u] == 2).sum() for u in (0, 1)] == [2, 4]


def write_competition(folder, n_users=60, n_items=40, seed=0):
    """A small train_ratings.csv with side files as a competition gives them (string-like ids kept)."""
    rng = np.random.default_rng(seed)
    rows = [(u, i, 1_000 + t) for u in range(n_users) for t, i in enumerate(rng.choice(n_items, 15, replace=False))]
    ratings = pd.DataFrame(rows, columns=["user", "item", "time"])
    ratings["user"] = "u" + ratings["user"].astype(str).str.zfill(3)
    ratings["item"] = ratings["item"] + 1000
    folder.mkdir(parents=True, exist_ok=True)
    ratings.to_csv(folder / "train_ratings.csv", index=False)
    items = np.arange(1000, 1000 + n_items)
    (folder / "titles.tsv").write_text("item\ttitle\n" + "".join(f'{i}\tFilm {i}, "quoted"\n' for i in items))
    (folder / "years.tsv").write_text("item\tyear\n" + "".join(f"{i}\t{1950 + i % 60}\n" for i in items))
    genres = "".join(f"{i}\tDrama\n{i}\t{'Comedy' if i % 2 else 'War'}\n" for i in items)
    (folder / "genres.tsv").write_text("item\tgenre\n" + genres)
    (folder / "directors.csv").write_text("item,director\n" + "".join(f"{i},nm{i % 7}\n" for i in items))
    return ratings


SIDE = {"title": "titles.tsv", "year": "years.tsv", "genre": "genres.tsv", "director": "directors.csv"}


def test_side_files_become_titles_multi_hot_attributes_and_numbers(tmp_path, caplog):
    write_competition(tmp_path)
    loader = CSVDataLoader(str(tmp_path), "train_ratings.csv", time_col="time", item_files=SIDE)
    ds = prepared(loader).dataset
    first = int(np.flatnonzero(ds.item_ids == "1001")[0])  # ids kept as the files write them
    assert ds.item_titles[first] == 'Film 1001, "quoted"'
    assert ds.item_numbers["year"][first] == 1950 + 1001 % 60
    genre = ds.item_attributes["genre"]
    assert list(genre.values) == ["Comedy", "Drama", "War"] and genre.matrix.shape == (40, 3)
    assert genre.joined([first])[0] == "Comedy|Drama"  # several rows per item: multi-hot
    assert ds.item_attributes["director"].matrix.sum(axis=1).max() == 1
    # the cache keys on the side files: a changed one is read again
    caplog.set_level(logging.INFO, logger="data")
    prepared(CSVDataLoader(str(tmp_path), "train_ratings.csv", time_col="time", item_files=SIDE))
    assert "loaded from" in caplog.text
    caplog.clear()
    (tmp_path / "genres.tsv").write_text("item\tgenre\n1001\tHorror\n")
    again = prepared(CSVDataLoader(str(tmp_path), "train_ratings.csv", time_col="time", item_files=SIDE)).dataset
    assert "cached in" in caplog.text and list(again.item_attributes["genre"].values) == ["Horror"]
    with pytest.raises(Exception, match="item_files: .*writers.tsv not found"):
        prepared(CSVDataLoader(str(tmp_path), "train_ratings.csv", time_col="time", item_files={"w": "writers.tsv"}))


def competition_config(tmp_path, model="ease", **evaluation):
    config = json.loads((ROOT / "configs" / "competition" / f"{model}.json").read_text())
    config["data_loader"]["args"].update(data_dir=str(tmp_path / "data"), item_files=SIDE)
    config["evaluation"].update(evaluation)
    config["trainer"].update(save_dir=str(tmp_path / "saved"), epochs=min(config["trainer"]["epochs"], 2))
    config["wandb"]["mode"] = "disabled"
    return write_config(tmp_path / f"{model}.json", config), config["name"]


def test_a_submission_from_all_the_data_names_k_unseen_items_for_every_user(tmp_path):
    ratings = write_competition(tmp_path / "data")
    path, name = competition_config(tmp_path, "multvae")
    runs = tmp_path / "saved" / "models" / name
    assert run("train.py", "-c", path, "--run-id", "valid").returncode == 0
    best = json.loads((runs / "valid" / "config.json").read_text())
    assert best["evaluation"]["split"] == "last_random"
    assert "val_nrecall@10" in read_jsonl(runs / "valid" / "metrics.jsonl")[0]
    best_epoch = torch.load(runs / "valid" / "model_best.pth", weights_only=False)["epoch"]

    # everything, for the best epoch of the run above
    result = run("train.py", "-c", path, "--set", "evaluation.split=none", "--epochs", "best-of", runs / "valid")
    assert result.returncode == 0, result.stderr
    (everything,) = [p for p in runs.iterdir() if p.name != "valid"]
    saved = torch.load(everything / "model_best.pth", weights_only=False)
    assert saved["epoch"] == best_epoch and saved["config"]["trainer"]["epochs"] == best_epoch
    assert not (everything / "metrics.jsonl").exists()  # nothing held out, nothing evaluated

    out = tmp_path / "submission.csv"
    result = run("test.py", "-r", everything / "model_best.pth", "--topk-out", out, "--k", "10")
    assert result.returncode == 0, result.stderr
    assert "nothing to evaluate, recommendations exported only" in result.stdout
    submission = pd.read_csv(out, dtype=str)
    assert list(submission.columns) == ["user", "item"]
    assert set(submission["user"]) == set(ratings["user"])  # raw ids, leading zeros kept: u007
    assert (submission.groupby("user").size() == 10).all() and not submission.duplicated().any()
    known = ratings.astype(str)[["user", "item"]]
    assert len(submission.merge(known, on=["user", "item"])) == 0  # none already known
    # without --topk-out there is nothing to do, and it is said
    line = one_line_error(run("test.py", "-r", everything / "model_best.pth"))
    assert "nothing to evaluate" in line and "--topk-out FILE exports recommendations" in line


@pytest.mark.parametrize("config", sorted(p.stem for p in (ROOT / "configs" / "competition").glob("*.json")))
def test_every_competition_config_trains_and_writes_a_submission(tmp_path, config):
    ratings = write_competition(tmp_path / "data")
    path, name = competition_config(tmp_path, config)
    result = run("train.py", "-c", path, "--run-id", "c", "--epochs", "1")
    assert result.returncode == 0, result.stderr[-2000:]
    out = tmp_path / "submission.csv"
    result = run("test.py", "-r", tmp_path / "saved" / "models" / name / "c" / "model_best.pth", "--topk-out", out)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "nrecall@10" in result.stdout  # the local test figures
    submission = pd.read_csv(out, dtype=str)
    assert (submission.groupby("user").size() == 10).all() and len(submission) == 10 * ratings["user"].nunique()


def test_the_detailed_export_ranks_out_test_items_and_shows_side_information(tmp_path):
    ratings = write_competition(tmp_path / "data")
    path, name = competition_config(tmp_path, "ease", export="detailed")
    assert run("train.py", "-c", path, "--run-id", "e").returncode == 0
    out = tmp_path / "recs.csv"
    result = run("test.py", "-r", tmp_path / "saved" / "models" / name / "e" / "model_best.pth", "--topk-out", out)
    assert result.returncode == 0, result.stderr
    recs = pd.read_csv(out, dtype=str)
    assert list(recs.columns) == ["user_id", "rank", "item_id", "title", "genre", "director", "year", "score"]
    assert recs["title"].str.startswith("Film ").all() and recs["genre"].str.contains("Drama").all()
    known = ratings.astype(str).rename(columns={"user": "user_id", "item": "item_id"})[["user_id", "item_id"]]
    assert len(recs.merge(known, on=["user_id", "item_id"])) == 0  # test items are known too

    # K above what users have left: each gets the rest, ranked 1, 2, … (the ranks were misaligned)
    result = run(
        "test.py", "-r", tmp_path / "saved" / "models" / name / "e" / "model_best.pth", "--topk-out", out, "--k", "1000"
    )
    assert result.returncode == 0 and "they get fewer than" in result.stderr + result.stdout, result.stderr
    recs = pd.read_csv(out, dtype={"user_id": str})
    n_items = ratings["item"].nunique()
    for user, rows in recs.groupby("user_id"):
        left = n_items - (ratings["user"].astype(str) == user).sum()
        assert list(rows["rank"]) == list(range(1, left + 1)), user


def test_an_export_never_replaces_the_checkpoint_a_run_file_or_the_data(tmp_path):
    write_competition(tmp_path / "data")
    path, name = competition_config(tmp_path, "ease")
    assert run("train.py", "-c", path, "--run-id", "e").returncode == 0
    folder = tmp_path / "saved" / "models" / name / "e"
    best = folder / "model_best.pth"
    for target in (
        best,
        folder / "config.json",
        tmp_path / "data" / "train_ratings.csv",
        tmp_path / "data" / "genres.tsv",
    ):
        before = target.read_bytes()
        line = one_line_error(run("test.py", "-r", best, "--topk-out", target))
        assert f"--topk-out: {target} is" in line and "which this command reads" in line
        assert target.read_bytes() == before
    if hasattr(os, "mkfifo"):  # a device or pipe (for root, /dev/null) was replaced by a regular file
        os.mkfifo(tmp_path / "pipe")
        line = one_line_error(run("test.py", "-r", best, "--topk-out", tmp_path / "pipe"))
        assert "is not a regular file (a device, pipe or socket)" in line
        assert stat.S_ISFIFO((tmp_path / "pipe").lstat().st_mode)


def test_best_of_a_run_without_a_best_checkpoint_is_one_line(tmp_path):
    write_competition(tmp_path / "data")
    path, _ = competition_config(tmp_path, "ease")
    line = one_line_error(run("train.py", "-c", path, "--epochs", "best-of", tmp_path / "nowhere"))
    assert "--epochs best-of" in line and "model_best.pth not found" in line
    line = one_line_error(run("train.py", "-c", path, "--epochs", "many"))
    assert "--epochs: expected N or 'best-of RUN'" in line


def test_a_config_of_the_old_shape_says_where_each_key_went(tmp_path):
    config = json.loads((ROOT / "config.json").read_text())
    config["data_loader"]["args"]["valid_fraction"] = 0.1
    line = one_line_error(run("train.py", "-c", write_config(tmp_path / "old.json", config)))
    assert "data_loader.args.valid_fraction is now evaluation.valid" in line


@pytest.mark.slow
def test_the_competition_section_of_the_readme_runs_as_written(tmp_path):
    from conftest import copy_tracked
    from test_readme import code_blocks, readme_section, shell

    project = copy_tracked(tmp_path / "project")
    ((_, commands),) = [block for block in code_blocks(readme_section("A competition, start to finish"))]
    for line in commands:
        command = line.split("  #")[0].strip()
        result = shell(command, project)
        assert result.returncode == 0, (command, result.stdout[-2000:], result.stderr[-2000:])
    assert "valid (10 unseen items for every user)" in result.stdout or "nrecall@10" in result.stdout
    data = project / "data" / "competition"
    ratings = pd.read_csv(data / "train_ratings.csv", dtype=str)
    submission = pd.read_csv(project / "submission.csv", dtype=str)
    assert list(submission.columns) == ["user", "item"]
    assert (submission.groupby("user").size() == 10).all() and set(submission["user"]) == set(ratings["user"])
    assert len(submission.merge(ratings[["user", "item"]], on=["user", "item"])) == 0
    runs = project / "saved" / "models"
    assert (runs / "MultVAE_competition" / "valid" / "model_best.pth").is_file()
    assert not (runs / "EASE_competition" / "all" / "metrics.jsonl").exists()


def test_nothing_to_evaluate_is_said(tmp_path):
    pd.DataFrame({"user": ["a", "b"], "item": ["x", "y"]}).to_csv(tmp_path / "one.csv", index=False)
    config = json.loads((ROOT / "configs" / "mf_ml100k.json").read_text())
    config["data_loader"] = {
        "type": "CSVDataLoader",
        "args": {"data_dir": str(tmp_path), "path": "one.csv", "cache": False},
    }
    config["evaluation"]["valid"] = 0
    config["trainer"].update(save_dir=str(tmp_path / "saved"), epochs=1, monitor="off")
    config["wandb"]["mode"] = "disabled"
    train_ok("-c", write_config(tmp_path / "c.json", config), "--run-id", "n")
    line = one_line_error(run("test.py", "-r", tmp_path / "saved" / "models" / config["name"] / "n" / "model_best.pth"))
    assert (
        "nothing to evaluate: the split (split random (test 0.2, valid 0" in line and "holds out no test items" in line
    )
