"""Nothing lost: interrupts, kills mid-write, NaN losses, bad checkpoints, hostile config input."""

import json
import subprocess
import sys
import textwrap
import time

import pytest
import torch
from conftest import (
    ROOT,
    data_of,
    load_default_config,
    one_line_error,
    run,
    run_script,
    send_signal,
    tiny_config,
    write_config,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from utils.checkpoint import load_checkpoint
from utils.errors import CheckpointError, ConfigError
from utils.parse_config import apply_override, parse_set_option, validate
from utils.runs import RunFolder


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


def test_nan_loss_stops_with_epoch_and_batch_and_keeps_the_best(tmp_path, tiny_data):
    from base.base_trainer import TrainingError
    from model import METRICS
    from model.loss.bpr import bpr_loss
    from model.ngcf import NGCF
    from trainer.evaluation import parse_metrics
    from trainer.trainer import Trainer
    from utils.parse_config import ConfigParser

    config = tiny_config(tiny_data, tmp_path / "saved", trainer__epochs=3)
    parsed = ConfigParser(config)
    data = data_of(config)
    model = NGCF(data.dataset, embed_dim=8, layers=[8])
    calls = {"n": 0}

    def poisoned(output, step):
        calls["n"] += 1
        loss = bpr_loss(output, step)
        return loss * float("nan") if calls["n"] > n_batches + 1 else loss  # epoch 2, batch 1

    trainer = Trainer(
        model,
        poisoned,
        parse_metrics(["recall@20"], METRICS),
        torch.optim.Adam(model.parameters()),
        parsed,
        torch.device("cpu"),
        data_loader=data,
        valid_data_loader=data.evaluation("valid"),
    )
    n_batches = len(trainer.batches)
    run = RunFolder(tmp_path, "test", "run")
    run.path.mkdir(parents=True)
    trainer.set_output(run)
    folder = run.path
    before = {}
    with pytest.raises(TrainingError, match="epoch 2, batch 1: the loss is nan before its optimizer step"):
        original = trainer._backward_and_step

        def watch(loss):
            original(loss)
            before["weights"] = model.embedding.weight.detach().clone()  # after the last step taken

        trainer._backward_and_step = watch
        trainer.train()
    assert torch.equal(model.embedding.weight, before["weights"])  # the poisoned batch never stepped
    # a loss that is not finite before any update is not blamed on the learning rate
    config = tiny_config(tiny_data, tmp_path / "saved", loss__args__reg=1e308)
    line = one_line_error(run_script("train.py", "-c", write_config(tmp_path / "reg.json", config)), code=1)
    assert "epoch 1, batch 0: the loss is inf" in line and "before any update" in line and "learning rate" not in line
    best = load_checkpoint(folder / "model_best.pth")
    assert best["epoch"] == 1 and all(torch.isfinite(t).all() for t in best["state_dict"].values())


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


def test_resume_latest_and_unwritable_save_dir(tmp_path, tiny_data):
    config = tiny_config(tiny_data, tmp_path / "saved", trainer__epochs=2)
    path = write_config(tmp_path / "c.json", config)
    assert run("train.py", "-c", path, "--run-id", "old").returncode == 0
    time.sleep(0.05)
    assert run("train.py", "-c", path, "--run-id", "new").returncode == 0
    result = run("train.py", "-c", path, "-r", "latest", "--epochs", "3")
    assert result.returncode == 0, result.stderr
    assert "new/checkpoint-epoch2.pth" in result.stdout and "Resuming training from epoch 3" in result.stdout
    (tmp_path / "a_file").write_text("")
    result = run("train.py", "-c", path, "--set", f"trainer.save_dir={tmp_path / 'a_file' / 'sub'}")
    assert result.returncode == 2 and "trainer.save_dir: cannot write the run folder" in result.stderr


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=5,
)


@pytest.mark.slow
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    key=st.sampled_from(
        [
            "optimizer.args.lr",
            "trainer.epochs",
            "arch.args.layers",
            "metrics",
            "name",
            "trainer.monitor",
            "batches.batch_size",
            "evaluation.test",
            "wandb.mode",
            "seed",
            "trainer.early_stop",
            "arch.args.layers.0",
            "nope",
            "trainer",
            "",
        ]
    )
    | st.text(),
    value=json_values,
)
def test_fuzz_overrides_either_apply_cleanly_or_raise_config_error(key, value):
    config = load_default_config()
    try:
        parsed_key, parsed_value = parse_set_option(f"{key}={json.dumps(value)}")
        apply_override(config, parsed_key, parsed_value)
        validate(config)
    except ConfigError as e:
        assert str(e)  # a message, not a crash from deep inside


@pytest.mark.slow
@settings(max_examples=200, deadline=None)
@given(text=st.text())
def test_fuzz_set_syntax_never_crashes(text):
    config = load_default_config()
    try:
        key, value = parse_set_option(text)
        apply_override(config, key, value)
    except ConfigError as e:
        assert str(e)  # a message, not a crash from deep inside


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
    assert [r["epoch"] for r in __import__("conftest").read_jsonl(run.metrics)] == [1, 2]
