"""test.py: evaluation, exports, and the checks on its outputs."""

import json
import os
from pathlib import Path

import pandas as pd
from conftest import one_line_error, run, tiny_config, train_ok, write_config


def test_test_py_checks_its_outputs_first_and_prints_before_it_writes(tiny_run, tmp_path, monkeypatch):
    config, path, runs = tiny_run
    train_ok("-c", path, "--run-id", "t", "--epochs", "1")
    best = runs / "t" / "model_best.pth"
    for target, message in (
        (tmp_path / "nowhere" / "r.csv", f"the folder {tmp_path / 'nowhere'} does not exist"),
        (tmp_path, f"{tmp_path} is a folder"),
    ):
        line = one_line_error(run("test.py", "-r", best, "--topk-out", target))
        assert f"--topk-out: {message}" in line, line
    real_access = os.access

    def read_only_run_folder(path, mode, *args, **kwargs):  # what chmod 555 answers (root's own access ignores it)
        if Path(path) == runs / "t" and mode & os.W_OK:
            return False
        return real_access(path, mode, *args, **kwargs)

    monkeypatch.setattr(os, "access", read_only_run_folder)
    result = run("test.py", "-r", best)  # a read-only checkpoint folder: the figures are still printed
    assert result.returncode == 0, result.stderr
    assert "recall@20" in result.stdout and "cannot be written" in result.stdout
    assert not (runs / "t" / "test_metrics.json").exists()


def test_the_export_writes_ids_exactly_as_the_input_has_them(tmp_path, tiny_data):
    config = tiny_config(tiny_data, tmp_path / "saved", trainer__epochs=1)
    assert run("train.py", "-c", write_config(tmp_path / "c.json", config), "--run-id", "e").returncode == 0
    best = tmp_path / "saved" / "models" / config["name"] / "e" / "model_best.pth"
    assert run("test.py", "-r", best, "--topk-out", tmp_path / "recs.csv", "--k", "3").returncode == 0
    recs = pd.read_csv(tmp_path / "recs.csv", dtype=str)  # the text as written
    ratings = pd.read_csv(tiny_data / "ml-100k" / "u.data", sep="\t", names=["user", "item", "r", "t"], dtype=str)
    assert set(recs["user_id"]) == set(ratings["user"]) and set(recs["item_id"]) <= set(ratings["item"])
    assert not recs["item_id"].str.contains(r"\.").any()  # 121, never 121.0


def test_test_py_takes_other_metrics_without_a_monitor(tmp_path, tiny_data):
    config = tiny_config(tiny_data, tmp_path / "saved", trainer__epochs=1)
    assert run("train.py", "-c", write_config(tmp_path / "c.json", config), "--run-id", "m").returncode == 0
    best = tmp_path / "saved" / "models" / config["name"] / "m" / "model_best.pth"
    result = run("test.py", "-r", best, "--set", 'metrics=["hit@5", "mrr@10"]')
    assert result.returncode == 0, result.stderr
    assert set(json.loads(best.with_name("test_metrics.json").read_text())) == {"hit@5", "mrr@10"}
