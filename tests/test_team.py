"""Growing the template: a new model is one file, a new project is one command, sweeps run locally."""

import json
import shutil
import subprocess
import sys

import pandas as pd
import pytest
from conftest import ROOT, read_jsonl, run, run_script, tiny_config, write_config


@pytest.mark.slow
def test_new_project_then_a_new_model_in_one_file_trains(tmp_path, tiny_data):
    project = tmp_path / "my_project"
    result = subprocess.run([sys.executable, "new_project.py", str(project)], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (project / "train.py").is_file() and not (project / ".git").exists()
    assert not (project / "saved").exists() and not list(project.rglob("__pycache__"))

    # a teammate's pull request: one new file in model/, and a config that names it
    shutil.copy(project / "model" / "_template.py", project / "model" / "my_model.py")
    config = tiny_config(tiny_data, tmp_path / "saved", trainer__epochs=1)
    config["arch"] = {"type": "MyModel", "args": {"embed_dim": 8}}
    result = run_script("train.py", "-c", write_config(tmp_path / "c.json", config), "--run-id", "mine", cwd=project)
    assert result.returncode == 0, result.stderr[-2000:]
    assert read_jsonl(tmp_path / "saved" / "models" / config["name"] / "mine" / "metrics.jsonl")[0]["val_recall@20"] > 0

    # the template files themselves are never loaded, so the name is unknown until the copy exists
    (project / "model" / "my_model.py").unlink()
    result = run_script("train.py", "-c", tmp_path / "c.json", cwd=project)
    assert result.returncode == 2 and "unknown name 'MyModel'" in result.stderr


def test_new_project_refuses_an_existing_folder(tmp_path):
    result = subprocess.run([sys.executable, "new_project.py", str(tmp_path)], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 2 and "already exists" in result.stderr


@pytest.mark.slow
def test_local_sweep_writes_one_table(tmp_path, tiny_data):
    config = tiny_config(tiny_data, tmp_path / "saved", trainer__epochs=1)
    base = write_config(tmp_path / "base.json", config)
    sweep = {
        "config": str(base),
        "grid": {"optimizer.args.lr": [0.001, 0.01], "arch.args.embed_dim": [8]},
        "set": {"trainer.epochs": 1},
        "metric": "val_recall@20",
        "out": str(tmp_path / "sweep.csv"),
    }
    (tmp_path / "sweep.json").write_text(json.dumps(sweep))
    result = subprocess.run(
        [sys.executable, "sweep.py", str(tmp_path / "sweep.json")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**__import__("os").environ, "WANDB_MODE": "disabled"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    table = pd.read_csv(tmp_path / "sweep.csv")
    assert sorted(table["optimizer.args.lr"]) == [0.001, 0.01]
    assert (table["status"] == "ok").all() and (table["val_recall@20"] > 0).all()
    assert table["val_recall@20"].is_monotonic_decreasing


def test_sweep_agent_style_arguments(tmp_path, tiny_data):
    """A wandb sweep agent passes --<config key>=<value>; train.py takes it as --set."""
    config = tiny_config(tiny_data, tmp_path / "saved")
    path = write_config(tmp_path / "c.json", config)
    result = run("train.py", "-c", path, "--trainer.epochs=1", "--optimizer.args.lr=0.01", "--run-id", "a")
    assert result.returncode == 0, result.stderr[-2000:]
    saved = json.loads((tmp_path / "saved" / "models" / config["name"] / "a" / "config.json").read_text())
    assert saved["trainer"]["epochs"] == 1 and saved["optimizer"]["args"]["lr"] == 0.01
    result = run_script("train.py", "-c", path, "--bogus")
    assert result.returncode == 2 and "unrecognized argument: --bogus" in result.stderr
