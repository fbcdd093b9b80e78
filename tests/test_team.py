"""Growing the template: a new model is one file, a new project is one command, sweeps run locally."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

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


def test_the_github_workflow_selects_its_tests_without_the_data_sets(tmp_path):
    """The hosted runner has no MovieLens or Gowalla: the workflow's -m leaves those tests out, and
    CI=true must not stop the run for tests that are not selected (it does for selected ones)."""
    workflow = (ROOT / ".github" / "workflows" / "tests.yml").read_text()
    selections = [
        line.split("pytest -m ")[1].strip().strip('"') for line in workflow.splitlines() if "pytest -m " in line
    ]
    assert selections == ["not slow and not movielens and not gowalla", "slow and not movielens and not gowalla"]
    env = {**os.environ, "CI": "true", "RECSYS_SHARED_DATA": str(tmp_path / "no-data")}
    for marks in selections:
        command = [sys.executable, "-m", "pytest", "-m", marks, "--collect-only", "-q", "-p", "no:cacheprovider"]
        result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        assert "tests collected" in result.stdout and "test_real_movielens_100k" not in result.stdout
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-m", "movielens", "--collect-only", "-q", "-p", "no:cacheprovider"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0 and "CI=true but the real data is not at" in result.stdout + result.stderr


def test_new_project_inside_the_template_or_on_a_failing_disk_leaves_nothing(tmp_path, monkeypatch, capsys):
    import new_project

    assert new_project.main([str(ROOT / "configs" / "mine")]) == 2
    assert "is inside the template" in capsys.readouterr().err and not (ROOT / "configs" / "mine").exists()
    copies = {"n": 0}
    original = shutil.copy2

    def full_after_ten(source, target):
        copies["n"] += 1
        if copies["n"] > 10:
            raise OSError(28, "No space left on device")
        return original(source, target)

    monkeypatch.setattr(new_project.shutil, "copy2", full_after_ten)
    assert new_project.main([str(tmp_path / "mine")]) == 1
    assert "No space left on device" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # no half copy, no temporary folder


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
    import sweep as sweep_script

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

    config = tiny_config(tiny_data, tmp_path / "saved")
    write_config(tmp_path / "base.json", config)
    sweep = {
        "config": str(tmp_path / "base.json"),
        "grid": {"optimizer.args.lr": [0.001, 0.002, 0.003]},
        "set": {"trainer.epochs": 60, "trainer.save_period": 60},
        "metric": "val_recall@20",
        "out": str(tmp_path / "sweep.csv"),
    }
    (tmp_path / "sweep.json").write_text(json.dumps(sweep))
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
