"""Checkpoints: what they hold, how they are refused, and what an interrupt or a failed write saves
(utils/checkpoint.py, base/checkpointer.py)."""

import errno
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch
from conftest import (
    ROOT,
    data_of,
    one_line_error,
    run,
    run_script,
    send_signal,
    tiny_config,
    train_ok,
    write_config,
)

from utils.checkpoint import load_checkpoint
from utils.errors import CheckpointError
from utils.files import read_jsonl
from utils.runs import RunFolder


def test_resuming_with_more_processes_gives_each_rank_its_own_stream(tiny_run, monkeypatch):
    from base.base_trainer import BaseTrainer
    from trainer.trainer import Trainer
    from utils import distributed

    config, path, runs = tiny_run
    train_ok("-c", path, "--run-id", "one")
    checkpoint = load_checkpoint(runs / "one" / "checkpoint-epoch2.pth")
    assert len(checkpoint["rng"]) == 1
    streams = []
    for rank in (0, 1):
        monkeypatch.setattr(distributed, "rank", lambda rank=rank: rank)
        monkeypatch.setattr(distributed, "world_size", lambda: 2)
        trainer = Trainer.__new__(Trainer)
        trainer.logger = __import__("logging").getLogger("test")
        trainer.data_loader = data_of(config)
        trainer._load_extra_state(checkpoint)
        from utils.checkpoint import set_rng_state

        set_rng_state(BaseTrainer._for_this_rank(trainer, checkpoint["rng"], "random state"))
        BaseTrainer._derive_rank_streams(trainer)
        streams.append((trainer.data_loader.rng.integers(2**62, size=4), torch.rand(4)))
    assert not np.array_equal(streams[0][0], streams[1][0]) and not torch.equal(streams[0][1], streams[1][1])


def test_a_checkpoint_of_other_data_is_refused_unless_asked(tiny_run, tmp_path):
    config, path, runs = tiny_run
    train_ok("-c", path, "--run-id", "d")
    best = runs / "d" / "model_best.pth"
    other = tiny_config(config["data_loader"]["args"]["data_dir"], tmp_path / "saved")
    other["evaluation"]["seed"] = 7  # the same files, another split: held-out items leak
    line = one_line_error(run("test.py", "-r", best, "-c", write_config(tmp_path / "o.json", other)))
    assert "was trained on other data than this config prepares" in line
    result = run("test.py", "-r", best, "--set", "evaluation.seed=7")
    assert result.returncode == 0 and "going on, as --set data_loader.* / evaluation.* asked" in result.stdout


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda s: s.update(epoch="x"), "'epoch' is 'x', expected an epoch number"),
        (lambda s: s.pop("rng"), "holds no random state ('rng')"),
        (lambda s: s.update(rng=[{"python": 1}]), "'rng' is list, expected one random state"),
        (
            lambda s: s.update(data_loader=[{"bit_generator": {"state": "nonsense"}}]),
            "batch generator state cannot be restored",
        ),
        (  # torch loads it unchecked and its Adam kernel then corrupts the heap (a segfault before)
            lambda s: s["optimizer"]["state"][0].update(exp_avg=torch.zeros(3)),
            "the optimizer's 'exp_avg' for parameter 0 of group 0 has shape (3,)",
        ),
    ],
)
def test_a_checkpoint_with_bad_inner_values_is_a_clear_error(tiny_run, tmp_path, change, message):
    config, path, runs = tiny_run
    train_ok("-c", path, "--run-id", "b")
    state = torch.load(runs / "b" / "checkpoint-epoch1.pth", weights_only=True)
    change(state)
    torch.save(state, tmp_path / "bad.pth")
    result = run("train.py", "-r", tmp_path / "bad.pth", "--epochs", "3")
    line = one_line_error(result)
    assert message is None or message in line, line


def test_a_full_disk_while_writing_metrics_saves_the_epoch_and_says_so(tiny_run, monkeypatch):
    import base.checkpointer as checkpointer

    config, path, runs = tiny_run
    calls = {"n": 0}
    original = checkpointer.append_line

    def full_after_one(path, line):
        calls["n"] += 1
        if calls["n"] == 2:
            with open(path, "a") as f:  # half a line, then the disk is full
                f.write(line[:10])
            raise OSError(errno.ENOSPC, "No space left on device")
        original(path, line)

    monkeypatch.setattr(checkpointer, "append_line", full_after_one)
    line = one_line_error(run("train.py", "-c", path, "--run-id", "full", "--set", "trainer.save_period=5"))
    assert "No space left on device" in line and "epoch 2 is saved; resume with" in line
    assert load_checkpoint(runs / "full" / "checkpoint-epoch2.pth")["epoch"] == 2
    monkeypatch.undo()
    # the torn last line is dropped (with a warning) when the run resumes from it
    result = train_ok("-r", runs / "full" / "checkpoint-epoch2.pth", "--epochs", "3")
    assert [h["epoch"] for h in read_jsonl(runs / "full" / "metrics.jsonl")] == [1, 3]
    assert "the last line is incomplete" in result.stdout + result.stderr


@pytest.mark.parametrize("first", list("uaestbhrq.K"))
def test_a_text_file_given_to_r_is_one_line(tmp_path, first):
    (tmp_path / "notes.pth").write_text(f"{first}ser notes, not a checkpoint\n")
    line = one_line_error(run("train.py", "-r", tmp_path / "notes.pth"))
    assert "not a readable checkpoint" in line or "holds Python objects" in line


def test_a_full_disk_during_a_checkpoint_write_is_one_line_and_keeps_the_last_good_file(tiny_run, monkeypatch):
    """torch's zip writer says a full disk as RuntimeError('[enforce fail at inline_container.cc…]
    … file write failed'): stood in for here after half a file, as a 1 MB tmpfs does."""
    import utils.checkpoint as checkpoint_module

    config, path, runs = tiny_run
    train_ok("-c", path, "--run-id", "d", "--epochs", "1")
    good = (runs / "d" / "model_best.pth").read_bytes()
    original = checkpoint_module.torch.save

    def full_disk(state, f):
        f.write(b"PK\x03\x04 half a zip")
        raise RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 64 vs 0; file write failed")

    monkeypatch.setattr(checkpoint_module.torch, "save", full_disk)
    line = one_line_error(run("train.py", "-r", runs / "d" / "checkpoint-epoch1.pth", "--epochs", "2"))
    monkeypatch.setattr(checkpoint_module.torch, "save", original)
    assert "cannot write checkpoint" in line and "the disk is full or the file cannot be written" in line
    assert (runs / "d" / "model_best.pth").read_bytes() == good and load_checkpoint(runs / "d" / "model_best.pth")
    assert not [p for p in (runs / "d").iterdir() if p.name.endswith(".tmp")]


@pytest.mark.slow
@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM", "SIGHUP"])
def test_interrupt_saves_the_last_finished_epoch_and_resume_is_exact(tmp_path, tiny_data, signame):
    config = tiny_config(tiny_data, tmp_path / "saved", trainer__epochs=200, trainer__save_period=1000)
    path = write_config(tmp_path / "c.json", config)
    run = tmp_path / "saved" / "models" / config["name"] / "int"
    process = subprocess.Popen(
        [sys.executable, "train.py", "-c", str(path), "--run-id", "int"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**__import__("os").environ, "WANDB_MODE": "disabled"},
    )
    deadline = time.time() + 120
    while time.time() < deadline:  # wait for a few finished epochs
        metrics = run / "metrics.jsonl"
        if metrics.is_file() and len(metrics.read_text().splitlines()) >= 3:
            break
        time.sleep(0.1)
    send_signal(process, signame)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr[-2000:]
    assert "Resume with:" in stdout
    saved = sorted(run.glob("checkpoint-epoch*.pth"))
    assert len(saved) == 1
    finished = load_checkpoint(saved[0])["epoch"]
    assert not list(run.glob(".*.tmp"))  # no temporary file left
    assert finished >= 2  # the signal may land between epoch 3's metrics line and its snapshot

    # resuming it to finished + 2 equals a straight run of finished + 2 epochs, bit for bit
    target = finished + 2
    assert run_script("train.py", "-r", saved[0], "--epochs", str(target)).returncode == 0
    config["trainer"]["epochs"] = target
    assert run_script("train.py", "-c", write_config(tmp_path / "s.json", config), "--run-id", "s").returncode == 0
    straight = torch.load(run.parent / "s" / f"checkpoint-epoch{target}.pth", weights_only=True)
    resumed = torch.load(run / f"checkpoint-epoch{target}.pth", weights_only=True)
    for key, tensor in straight["state_dict"].items():
        assert torch.equal(tensor, resumed["state_dict"][key]), key


@pytest.mark.slow
def test_killing_a_writer_never_corrupts_the_checkpoint(tmp_path):
    """SIGKILL a process that keeps rewriting a large checkpoint; what is at the path always loads."""
    target = tmp_path / "ckpt.pth"
    writer = textwrap.dedent(f"""
        import sys, torch
        sys.path.insert(0, {str(ROOT)!r})
        from utils.checkpoint import save_checkpoint
        big = torch.randn(25_000_000)  # 100 MB: a write takes a while
        i = 0
        while True:
            i += 1
            save_checkpoint({{"arch": "X", "epoch": i, "state_dict": {{"w": big}}, "config": {{}}}}, {str(target)!r})
            print(i, flush=True)
    """)
    for delay in (0.5, 0.9, 1.3):
        process = subprocess.Popen([sys.executable, "-c", writer], stdout=subprocess.PIPE, text=True)
        process.stdout.readline()  # one complete checkpoint exists
        time.sleep(delay)
        process.kill()
        process.wait()
        state = load_checkpoint(target)
        assert state["state_dict"]["w"].numel() == 25_000_000


def test_bad_checkpoints_are_clear_errors(tmp_path, tiny_data):
    config = tiny_config(tiny_data, tmp_path / "saved", trainer__epochs=1)
    assert run("train.py", "-c", write_config(tmp_path / "c.json", config), "--run-id", "a").returncode == 0
    best = tmp_path / "saved" / "models" / config["name"] / "a" / "model_best.pth"
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(best.read_bytes()[: best.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(truncated)
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="not a checkpoint of this template"):
        load_checkpoint(tmp_path / "other.pth")
    result = run("test.py", "-r", best, "--set", "arch.args.embed_dim=32")
    assert result.returncode == 2 and "the weights do not fit the configured model" in result.stderr
    assert "size mismatch" in result.stderr


def test_a_failing_write_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    """A full disk (or any OSError) at save time: a clear error, the earlier file intact, no temp file."""
    import errno

    from utils import checkpoint

    target = tmp_path / "model_best.pth"
    checkpoint.save_checkpoint({"arch": "X", "epoch": 1, "state_dict": {}, "config": {}}, target)

    def disk_full(obj, f, *args, **kwargs):
        f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint.torch, "save", disk_full)
    with pytest.raises(CheckpointError, match="cannot write checkpoint .*No space left on device"):
        checkpoint.save_checkpoint({"arch": "X", "epoch": 2, "state_dict": {}, "config": {}}, target)
    assert load_checkpoint(target)["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model_best.pth"]


def test_the_checkpointer_saves_the_last_finished_epoch_copying_only_what_is_not_on_disk(tmp_path, monkeypatch):
    """An interrupt saves the last finished epoch as checkpoint-epoch<N>.pth: from its checkpoint when
    written, from model_best.pth when only that was, and from a copy held in memory only when neither
    was; the live tensors the next epoch changes never reach the file."""
    import logging

    import base.checkpointer as checkpointer

    run = RunFolder(tmp_path, "t", "r")
    run.path.mkdir(parents=True)
    saver = checkpointer.Checkpointer(run, logger=logging.getLogger("t"))
    weights = torch.zeros(3)
    copies, deepcopy = [], checkpointer.copy.deepcopy
    counting = __import__("types").SimpleNamespace(deepcopy=lambda x: copies.append(x["epoch"]) or deepcopy(x))
    monkeypatch.setattr(checkpointer, "copy", counting)

    def state(epoch):
        return {"arch": "X", "epoch": epoch, "state_dict": {"w": weights}, "config": {}}

    def interrupted_in(epoch):
        weights.add_(100.0)  # the abandoned epoch's steps change the live tensors
        saver.save_interrupted(epoch)
        return load_checkpoint(run.checkpoint(epoch - 1))["state_dict"]["w"]

    weights.fill_(1.0)
    saver.end_of_epoch(1, state(1), {"epoch": 1}, periodic=True, best=False)
    assert interrupted_in(2).tolist() == [1.0] * 3 and copies == []  # already on disk: nothing copied
    weights.fill_(2.0)
    saver.end_of_epoch(2, state(2), {"epoch": 2}, periodic=False, best=True)
    assert interrupted_in(3).tolist() == [2.0] * 3 and copies == []  # copied from model_best.pth
    weights.fill_(3.0)
    saver.end_of_epoch(3, state(3), None, periodic=False, best=False)
    assert interrupted_in(4).tolist() == [3.0] * 3 and copies == [3]  # the one copy, of an unwritten epoch
    assert [r["epoch"] for r in read_jsonl(run.metrics)] == [1, 2]


@pytest.mark.skipif(not hasattr(signal, "SIGTERM") or os.name == "nt", reason="raises SIGTERM in-process (POSIX)")
@pytest.mark.parametrize("path", ["lost peer", "interrupt"])
def test_a_signal_during_the_last_save_waits_until_the_save_is_said(tmp_path, monkeypatch, caplog, path):
    """torchrun SIGTERMs rank 0 just after a peer dies, often while rank 0 saves the last finished
    epoch: the save still ends with its line, and the signal is delivered after it."""
    import logging

    import base.checkpointer as checkpointer

    run = RunFolder(tmp_path, "t", "r")
    run.path.mkdir(parents=True)
    saver = checkpointer.Checkpointer(run, logger=logging.getLogger("t"))
    state = {"arch": "X", "epoch": 1, "state_dict": {"w": torch.ones(2)}, "config": {}}
    saver.end_of_epoch(1, state, None, periodic=False, best=False)
    written = checkpointer.save_checkpoint

    def signalled_while_writing(state, to):
        signal.raise_signal(signal.SIGTERM)
        written(state, to)

    monkeypatch.setattr(checkpointer, "save_checkpoint", signalled_while_writing)
    previous = signal.signal(signal.SIGTERM, lambda number, frame: (_ for _ in ()).throw(KeyboardInterrupt))
    try:
        with caplog.at_level(logging.INFO, logger="t"), pytest.raises(KeyboardInterrupt):
            saver.save_after_failure("another process stopped") if path == "lost peer" else saver.save_interrupted(2)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert "epoch 1 is saved" in caplog.text
    assert load_checkpoint(run.checkpoint(1))["epoch"] == 1
