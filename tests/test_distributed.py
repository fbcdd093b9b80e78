"""The same train.py under torchrun (DistributedDataParallel, gloo on CPU) with 2 processes."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import ROOT, run_script, tiny_config, write_config

from utils.files import read_jsonl


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


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/environ").is_file(), reason="finds rank 1 through /proc (Linux)")
def test_a_killed_process_leaves_the_last_finished_epoch_saved_and_no_traceback(tmp_path, tiny_data):
    """SIGKILL of rank 1 mid-run: rank 0's collective fails (gloo) or the launcher stops it (SIGTERM);
    either way it saves the last finished epoch, says so in a line, and prints no traceback."""
    import signal
    import time

    config = tiny_config(tiny_data, tmp_path / "saved", trainer__epochs=500, trainer__save_period=1000)
    path = write_config(tmp_path / "c.json", config)
    run = tmp_path / "saved" / "models" / config["name"] / "killed"
    env = dict(os.environ, WANDB_MODE="disabled", OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone", "train.py"]
    launcher = subprocess.Popen(
        [*command, "-c", str(path), "--run-id", "killed"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 120
    while not ((run / "metrics.jsonl").is_file() and len(read_jsonl(run / "metrics.jsonl")) >= 3):
        assert time.time() < deadline and launcher.poll() is None
        time.sleep(0.1)
    workers = subprocess.run(["pgrep", "-P", str(launcher.pid)], capture_output=True, text=True).stdout.split()
    (rank_1,) = [pid for pid in workers if b"RANK=1" in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")]
    os.kill(int(rank_1), signal.SIGKILL)
    stdout, stderr = launcher.communicate(timeout=120)

    rank_0 = [line for line in stderr.splitlines() if not line.startswith(("W1", "E1", "I1", " ", "Traceback"))]
    rank_0 = [line for line in rank_0 if line.startswith(("error:", "interrupted", "[rank"))]
    assert rank_0 and not [line for line in rank_0 if line.startswith("[rank")], stderr[-6000:]  # no traceback
    assert rank_0[0].startswith("error: another process of the run stopped") or rank_0[0] == "interrupted"
    (saved,) = run.glob("checkpoint-epoch*.pth")
    epoch = torch.load(saved, weights_only=True)["epoch"]
    assert epoch >= 2 and f"epoch {epoch} is saved" in stdout
    assert [h["epoch"] for h in read_jsonl(run / "metrics.jsonl")][:epoch] == list(range(1, epoch + 1))
