"""The same train.py under torchrun (DistributedDataParallel, gloo on CPU) with 2 processes."""

import os
import subprocess
import sys

import pytest
import torch
from conftest import ROOT, read_jsonl, run_script, tiny_config, write_config


def torchrun(*args):
    env = dict(os.environ, WANDB_MODE="disabled", OMP_NUM_THREADS="1", PYTHONFAULTHANDLER="1")
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node=2",
            "--standalone",
            "train.py",
            *map(str, args),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
def test_two_processes_train_evaluate_and_resume_like_one(tmp_path, tiny_data):
    config = tiny_config(tiny_data, tmp_path / "saved", trainer__epochs=3)
    path = write_config(tmp_path / "c.json", config)
    result = torchrun("-c", path, "--run-id", "ddp")
    assert result.returncode == 0, result.stderr[-12000:]  # both ranks and the launcher
    run = tmp_path / "saved" / "models" / config["name"] / "ddp"
    # one set of files, written by rank 0 only
    assert sorted(p.name for p in run.iterdir()) == [
        "checkpoint-epoch1.pth",
        "checkpoint-epoch2.pth",
        "checkpoint-epoch3.pth",
        "config.json",
        "curves.png",
        "metrics.jsonl",
        "model_best.pth",
    ]
    assert list((tmp_path / "saved" / "log").rglob("*.log")) == [
        tmp_path / "saved" / "log" / config["name"] / "ddp" / "info.log"
    ]
    history = read_jsonl(run / "metrics.jsonl")
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert "processes: 2" in result.stdout
    state = torch.load(run / "checkpoint-epoch3.pth", weights_only=True)
    assert len(state["rng"]) == 2 and len(state["data_loader"]) == 2  # each rank's generators

    # the sharded evaluation equals a single-process evaluation of the same weights
    assert run_script("test.py", "-r", run / "checkpoint-epoch3.pth", "--split", "valid").returncode == 0
    single = __import__("json").loads((run / "valid_metrics.json").read_text())
    for name, value in single.items():
        assert history[-1][f"val_{name}"] == pytest.approx(value, abs=1e-6), name

    # resuming under torchrun continues from the saved epoch and repeats epoch 3 exactly
    (run / "checkpoint-epoch3.pth").unlink()
    result = torchrun("-r", run / "checkpoint-epoch2.pth", "--epochs", "3")
    assert result.returncode == 0, result.stderr[-12000:]  # both ranks and the launcher
    assert "Resuming training from epoch 3" in result.stdout
    assert read_jsonl(run / "metrics.jsonl") == history
