"""sweep.py and the wandb sweep files."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import ROOT, load_script, run, run_script, tiny_config, write_config

from utils.files import read_jsonl


def write_sweep(tmp_path, tiny_data, grid, epochs):
    """A sweep file over a tiny config: `grid`, `epochs` each run (one checkpoint, at the end),
    ranked by val_recall@20, its table in tmp_path/sweep.csv. Returns the tiny config."""
    config = tiny_config(tiny_data, tmp_path / "saved")
    base = write_config(tmp_path / "base.json", config)
    sweep = {
        "config": str(base),
        "grid": grid,
        "set": {"trainer.epochs": epochs, "trainer.save_period": epochs},
        "metric": "val_recall@20",
        "out": str(tmp_path / "sweep.csv"),
    }
    (tmp_path / "sweep.json").write_text(json.dumps(sweep))
    return config


@pytest.mark.slow
def test_an_interrupted_sweep_keeps_its_table_and_resumes(tmp_path, tiny_data):
    config = write_sweep(tmp_path, tiny_data, {"optimizer.args.lr": [0.001, 0.002, 0.003, 0.004]}, epochs=40)
    process = subprocess.Popen(
        [sys.executable, "sweep.py", str(tmp_path / "sweep.json")],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "WANDB_MODE": "disabled"},
    )
    deadline = time.time() + 300
    while time.time() < deadline and not (tmp_path / "sweep.csv").is_file():
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130 and "Traceback" not in stderr, stderr
    assert "python sweep.py" in stderr and "--resume" in stderr
    done = pd.read_csv(tmp_path / "sweep.csv")
    assert 1 <= len(done) < 4 and (done["status"] == "ok").any()
    result = subprocess.run(
        [sys.executable, "sweep.py", str(tmp_path / "sweep.json"), "--resume"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "WANDB_MODE": "disabled"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    table = pd.read_csv(tmp_path / "sweep.csv")
    assert sorted(table["optimizer.args.lr"]) == [0.001, 0.002, 0.003, 0.004] and (table["status"] == "ok").all()
    history = read_jsonl(tmp_path / "saved" / "models" / config["name"] / "sweep-sweep-3" / "metrics.jsonl")
    assert history


@pytest.mark.slow
def test_local_sweep_writes_one_table(tmp_path, tiny_data):
    write_sweep(tmp_path, tiny_data, {"optimizer.args.lr": [0.001, 0.01], "arch.args.embed_dim": [8]}, epochs=1)
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


WANDB_SWEEPS = sorted(p.stem for p in (ROOT / "configs" / "wandb_sweeps").glob("*.yaml"))


assert WANDB_SWEEPS, "configs/wandb_sweeps/ holds no sweep file"  # an empty list would skip the test silently


@pytest.mark.parametrize("family", WANDB_SWEEPS)
def test_each_wandb_sweep_file_trains_every_config_it_names(tmp_path, tiny_data, family, monkeypatch):
    """What an agent would run: --config=<each model of the family> and every parameter as
    --<key>=<value> (here the range's low end); online for the agent's runs whatever the config says."""
    import yaml

    from logger.wandb_writer import effective_mode

    sweep = yaml.safe_load((ROOT / "configs" / "wandb_sweeps" / f"{family}.yaml").read_text())
    assert sweep["program"] == "train.py" and "${args}" in sweep["command"]
    parameters = dict(sweep["parameters"])
    configs = parameters.pop("config")["values"]
    assert len(configs) >= 2  # a family, not one model
    chosen = [f"--{key}={spec['values'][0] if 'values' in spec else spec['min']}" for key, spec in parameters.items()]
    for config in configs:
        result = run(
            "train.py",
            f"--config={ROOT / config}",
            *chosen,
            "--epochs",
            "1",
            "--run-id",
            Path(config).stem,
            "--set",
            f"data_loader.args.data_dir={tiny_data}",
            "--set",
            f"trainer.save_dir={tmp_path}",
        )
        assert result.returncode == 0, (config, result.stderr[-2000:])
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_SWEEP_ID", "abc")
    assert effective_mode("offline") == "online"


@pytest.mark.slow
def test_a_sweep_from_another_folder_over_names_run_twice_and_not_at_once(tmp_path, tiny_data):
    """Relative paths are the user's folder's; a grid over `name` keeps its metric; a finished sweep
    run again trains again (new run folders, no error rows); a second sweep on the same table waits."""
    from utils.runs import RunLock

    work = tmp_path / "work"
    work.mkdir()
    config = tiny_config(tiny_data, "saved", trainer__epochs=1)  # save_dir relative to the user's folder
    write_config(work / "base.json", config)
    sweep = {"config": "base.json", "grid": {"name": ["first", "second"]}, "metric": "val_recall@20", "out": "s.csv"}
    (work / "s.json").write_text(json.dumps(sweep))
    command = [sys.executable, str(ROOT / "sweep.py"), "s.json"]
    env = {**os.environ, "WANDB_MODE": "disabled"}
    for _ in (1, 2):
        result = subprocess.run(command, cwd=work, capture_output=True, text=True, env=env)
        assert result.returncode == 0, result.stderr[-2000:]
        table = pd.read_csv(work / "s.csv")
        assert (table["status"] == "ok").all() and (table["val_recall@20"] > 0).all(), table
    assert (work / "saved" / "models" / "second" / "sweep-s-1-2" / "metrics.jsonl").is_file()  # the second time
    lock = RunLock(work, ".s.csv.lock")
    assert lock.acquire()
    try:
        result = subprocess.run(command, cwd=work, capture_output=True, text=True, env=env)
    finally:
        lock.release()
    assert result.returncode == 2 and "another sweep" in result.stderr and "Traceback" not in result.stderr


def test_a_sweep_ranks_a_loss_lowest_first(tmp_path):
    sweep_script = load_script("sweep.py")

    (tmp_path / "s.json").write_text(json.dumps({"config": "c.json", "grid": {"a": [1]}, "metric": "loss", "out": "o"}))
    sweep = sweep_script.read_sweep(tmp_path / "s.json")
    assert sweep["goal"] == "min"
    rows = [{"loss": 0.5, "run_id": "x"}, {"loss": 0.1, "run_id": "y"}, {"loss": None, "run_id": "z"}]
    table = sweep_script.write_table(rows, sweep, tmp_path / "t.csv")
    assert list(table["run_id"]) == ["y", "x", "z"]


@pytest.mark.slow
def test_a_terminated_sweep_stops_its_run_and_writes_its_table(tmp_path, tiny_data):
    """SIGTERM (a scheduler, a closed terminal's SIGHUP) ends a sweep like Ctrl-C: the run in progress
    is stopped, not left behind as an orphan, and the table so far is written."""
    import time

    from conftest import send_signal

    write_sweep(tmp_path, tiny_data, {"optimizer.args.lr": [0.001, 0.002, 0.003]}, epochs=60)
    env = {**os.environ, "WANDB_MODE": "disabled"}
    process = subprocess.Popen(
        [sys.executable, "sweep.py", str(tmp_path / "sweep.json")], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True
    )
    deadline = time.time() + 300
    while time.time() < deadline and not (tmp_path / "sweep.csv").is_file():
        time.sleep(0.2)
    time.sleep(2)  # the second run is training now
    send_signal(process, "SIGTERM")
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130 and "Traceback" not in stderr and "--resume" in stderr, stderr[-2000:]
    assert len(pd.read_csv(tmp_path / "sweep.csv")) >= 1
    running = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert str(tmp_path / "base.json") not in running  # no train.py of this sweep left running
