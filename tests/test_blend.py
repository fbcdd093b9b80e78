"""Score files (test.py --scores-out) and their blend (scripts/blend.py)."""

import importlib.util

import numpy as np
import pandas as pd
from conftest import ROOT, run, tiny_config, write_config


def blend_module():
    spec = importlib.util.spec_from_file_location("blend", ROOT / "scripts" / "blend.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def scores_of(tmp_path, tiny_data, arch, name, split="valid", **evaluation):
    config = tiny_config(tiny_data, tmp_path / "saved", trainer__epochs=3)
    config["arch"], config["name"] = arch, name
    config["evaluation"].update(evaluation)
    if arch["type"] == "EASE":
        config.update(loss=None, optimizer=None)
    result = run("train.py", "-c", write_config(tmp_path / f"{name}.json", config), "--run-id", "r")
    assert result.returncode == 0, result.stderr[-2000:]
    out = tmp_path / f"{name}_{split}.npz"
    best = tmp_path / "saved" / "models" / name / "r" / "model_best.pth"
    result = run("test.py", "-r", best, "--split", split, "--scores-out", out, "--n", "30")
    assert result.returncode == 0, result.stderr[-2000:]
    return out


def test_a_blend_tuned_on_validation_scores_at_least_its_best_model_there(tmp_path, tiny_data, capsys):
    blend = blend_module()
    ease = {"type": "EASE", "args": {"l2": 50.0}}
    mf = {"type": "MF", "args": {"embed_dim": 16, "init_std": 0.1}}
    valid = [scores_of(tmp_path, tiny_data, arch, name) for arch, name in ((ease, "e"), (mf, "m"))]
    files = blend.read_group(valid, "--valid")
    alone = [blend.figures(files, blend.blended_top(files, w, "rank", 10), 10)["nrecall@10"] for w in ((1, 0), (0, 1))]
    # a model alone, through the blend, is the model: its saved top-N ranked as test.py ranks it
    saved = np.load(valid[0])
    np.testing.assert_array_equal(blend.blended_top(files[:1], (1.0,), "minmax", 10), saved["items"][:, :10])
    assert blend.main(["--valid", *map(str, valid), "--step", "0.25"]) == 0
    printed = capsys.readouterr().out
    best = float(printed.split("nrecall@10 ")[-1].split(",")[0])
    assert best >= max(alone) and printed.count("weights ") == 6  # 5 on the grid, then the best


def test_a_blended_submission_names_k_unseen_items_for_every_user(tmp_path, tiny_data):
    blend = blend_module()
    ease = {"type": "EASE", "args": {"l2": 50.0}}
    mf = {"type": "MF", "args": {"embed_dim": 16, "init_std": 0.1}}
    valid = [scores_of(tmp_path, tiny_data, arch, name) for arch, name in ((ease, "e"), (mf, "m"))]
    submissions = []
    for arch, name in ((ease, "ea"), (mf, "ma")):
        config = tiny_config(tiny_data, tmp_path / "saved", trainer__epochs=2)
        config["arch"], config["name"] = arch, name
        config["evaluation"]["split"] = "none"
        if arch["type"] == "EASE":
            config.update(loss=None, optimizer=None)
        assert run("train.py", "-c", write_config(tmp_path / f"{name}.json", config), "--run-id", "r").returncode == 0
        out = tmp_path / f"{name}.npz"
        best = tmp_path / "saved" / "models" / name / "r" / "model_best.pth"
        assert run("test.py", "-r", best, "--scores-out", out, "--n", "20").returncode == 0
        submissions.append(out)
    csv = tmp_path / "submission.csv"
    assert blend.main(["--valid", *map(str, valid), "--submission", *map(str, submissions), "--out", str(csv)]) == 0
    table = pd.read_csv(csv, dtype=str)
    ratings = pd.read_csv(tiny_data / "ml-100k" / "u.data", sep="\t", names=["user", "item", "r", "t"], dtype=str)
    assert (table.groupby("user").size() == 10).all() and table["user"].nunique() == ratings["user"].nunique()
    assert len(table.merge(ratings[["user", "item"]], on=["user", "item"])) == 0
    assert list(table.columns) == ["user", "item"]


def test_the_blends_bad_inputs_are_one_line_and_nothing_is_overwritten(tmp_path, tiny_data, capsys):
    """Each ended on a traceback, or wrote the submission over an input or from the wrong ranking."""
    import pytest

    blend = blend_module()
    valid = scores_of(tmp_path, tiny_data, {"type": "EASE", "args": {"l2": 50.0}}, "e")
    test = scores_of(tmp_path, tiny_data, {"type": "EASE", "args": {"l2": 50.0}}, "e2", split="test")
    (tmp_path / "junk.npz").write_text("junk")
    before = valid.read_bytes()
    cases = [
        (["--valid", valid, tmp_path / "none.npz"], "none.npz: not found"),
        (["--valid", valid, tmp_path / "junk.npz"], "junk.npz: not a score file of test.py --scores-out"),
        (["--valid", valid, valid, "--step", "0"], "--step: expected 1 / N"),
        (["--valid", valid, valid, "--k", "0"], "--k: expected an integer >= 1"),
        (["--valid", valid, "--submission", test, "--out", tmp_path / "s.csv"], "ranks the test split; expected"),
        (["--valid", valid, "--submission", test, "--out", valid], "which this command reads"),
    ]
    for argv, message in cases:
        with pytest.raises(SystemExit) as exit:
            blend.main(list(map(str, argv)))
        said = str(exit.value.code) if isinstance(exit.value.code, str) else capsys.readouterr().err
        assert exit.value.code != 0 and message in said, (argv, said)
    assert valid.read_bytes() == before and not (tmp_path / "s.csv").exists()


def test_the_competition_scripts_bad_inputs_are_one_line(tmp_path):
    import subprocess
    import sys

    script = [sys.executable, str(ROOT / "scripts" / "competition.py")]
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "train_ratings.csv").write_text("user,item,time\nmine,1,1\n")
    cases = [
        (["score", tmp_path / "none.csv", tmp_path / "none.csv"], "none.csv: not found"),
        (["score", tmp_path / "real" / "train_ratings.csv", tmp_path / "real"], "not a readable CSV"),
        (["synthetic", tmp_path / "real"], "already holds train_ratings.csv; give a new folder"),
        (["synthetic", tmp_path / "x", "--users", "0"], "--users: expected an integer >= 1"),
    ]
    for argv, message in cases:
        result = subprocess.run([*script, *map(str, argv)], capture_output=True, text=True)
        assert result.returncode != 0 and "Traceback" not in result.stderr and message in result.stderr, result.stderr
    assert (tmp_path / "real" / "train_ratings.csv").read_text() == "user,item,time\nmine,1,1\n"
