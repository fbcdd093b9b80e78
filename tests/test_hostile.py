"""Nothing lost, nobody in: what a careless user, a crashed machine or a hostile file does to run
folders, resume, caches, checkpoints and paths, each case kept fixed by a test (issue 18)."""

import errno
import json
import os
import signal
import sys
import time
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import ROOT, data_of, one_line_error, prepared, read_jsonl, run, tiny_config, write_config

from data_loader.csv_loader import CSVDataLoader
from data_loader.movielens import MovieLensDataLoader
from utils.checkpoint import load_checkpoint, save_checkpoint
from utils.files import deferred_signals, write_atomic
from utils.runs import RunLock, find_latest_checkpoint


@pytest.fixture
def setup(tmp_path, tiny_data):
    """A tiny config written to disk; returns (config dict, its path, the runs folder)."""
    config = tiny_config(tiny_data, tmp_path / "saved", trainer__epochs=2)
    path = write_config(tmp_path / "c.json", config)
    return config, path, tmp_path / "saved" / "models" / config["name"]


def train_ok(*args):
    result = run("train.py", *args)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


# -- run folders and resume ------------------------------------------------------------------------


def test_an_empty_resume_path_is_an_error_and_writes_nothing(setup, tmp_path, monkeypatch):
    config, path, runs = setup
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config.json").write_text("{}")
    line = one_line_error(run("train.py", "-r", "", "-c", path))
    assert "-r: the checkpoint path is empty" in line
    assert (tmp_path / "config.json").read_text() == "{}" and not (tmp_path / "saved").exists()


def test_a_taken_run_id_is_refused_and_default_ids_never_collide(setup):
    config, path, runs = setup
    train_ok("-c", path, "--run-id", "mine")
    before = (runs / "mine" / "metrics.jsonl").read_text()
    line = one_line_error(run("train.py", "-c", path, "--run-id", "mine"))
    assert "--run-id mine: the run folder" in line and "already exists" in line
    assert (runs / "mine" / "metrics.jsonl").read_text() == before
    import utils.runs
    from utils.runs import RunFolder

    ids = iter(["0101_120000_aaaaaa", "0101_120000_aaaaaa", "0101_120000_bbbbbb"])  # the same second, twice
    original = utils.runs.default_run_id
    utils.runs.default_run_id = lambda: next(ids)
    try:
        first = RunFolder(config["trainer"]["save_dir"], config["name"], utils.runs.default_run_id()).create(False)
        second = RunFolder(config["trainer"]["save_dir"], config["name"], utils.runs.default_run_id()).create(False)
    finally:
        utils.runs.default_run_id = original
    assert first.path.name == "0101_120000_aaaaaa" and second.path.name == "0101_120000_bbbbbb"  # drawn again


def test_a_folder_in_use_by_a_live_run_is_never_joined(setup):
    config, path, runs = setup
    train_ok("-c", path, "--run-id", "live")
    lock = RunLock(runs / "live")
    assert lock.acquire()  # as a process still training in it holds it
    try:
        line = one_line_error(run("train.py", "-r", runs / "live" / "checkpoint-epoch2.pth", "--epochs", "3"))
        assert "is in use by another training process" in line
        with pytest.raises(Exception, match="in use by a live run"):
            find_latest_checkpoint(config["trainer"]["save_dir"], config["name"])
    finally:
        lock.release()


def test_latest_is_the_newest_checkpoint_not_the_newest_folder(setup):
    config, path, runs = setup
    train_ok("-c", path, "--run-id", "old")
    time.sleep(0.05)
    train_ok("-c", path, "--run-id", "new")
    time.sleep(0.05)
    assert run("test.py", "-r", runs / "old" / "model_best.pth").returncode == 0  # touches the old folder
    latest = find_latest_checkpoint(config["trainer"]["save_dir"], config["name"])
    assert latest == runs / "new" / "checkpoint-epoch2.pth"


def test_a_failed_resume_writes_nothing_and_fine_tuning_starts_a_new_folder(setup, tmp_path):
    config, path, runs = setup
    train_ok("-c", path, "--run-id", "base")
    saved_config = (runs / "base" / "config.json").read_text()
    other = tiny_config(config["data_loader"]["args"]["data_dir"], tmp_path / "saved", trainer__epochs=4)
    other["arch"] = {"type": "LightGCN", "args": {"embed_dim": 16, "n_layers": 2, "init_std": 0.1}}
    line = one_line_error(
        run("train.py", "-r", runs / "base" / "checkpoint-epoch2.pth", "-c", write_config(tmp_path / "l.json", other))
    )
    assert "holds a NGCF model, but arch.type is LightGCN" in line
    assert (runs / "base" / "config.json").read_text() == saved_config
    # fine-tuning with another config: a new folder that says where it came from
    tune = tiny_config(config["data_loader"]["args"]["data_dir"], tmp_path / "saved", trainer__epochs=3)
    tune["optimizer"]["args"]["lr"] = 0.0001
    result = train_ok(
        "-r",
        runs / "base" / "checkpoint-epoch2.pth",
        "-c",
        write_config(tmp_path / "t.json", tune),
        "--run-id",
        "tuned",
    )
    assert "Resuming training from epoch 3" in result.stdout
    parent = json.loads((runs / "tuned" / "config.json").read_text())["_parent"]
    assert parent == {"checkpoint": str(runs / "base" / "checkpoint-epoch2.pth"), "epoch": 2}
    assert (runs / "base" / "config.json").read_text() == saved_config
    assert sorted(p.name for p in (runs / "base").glob("*.pth")) == [
        "checkpoint-epoch1.pth",
        "checkpoint-epoch2.pth",
        "model_best.pth",
    ]


def test_resuming_with_more_processes_gives_each_rank_its_own_stream(setup, monkeypatch):
    from base.base_trainer import BaseTrainer
    from trainer.trainer import Trainer
    from utils import distributed

    config, path, runs = setup
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


def test_nothing_to_train_is_said_and_keep_last_counts_the_older_checkpoints(setup, tmp_path):
    config, path, runs = setup
    config["trainer"].update(epochs=4, keep_last=2)
    path = write_config(tmp_path / "k.json", config)
    train_ok("-c", path, "--run-id", "k", "--epochs", "3")
    line = one_line_error(run("train.py", "-r", runs / "k" / "checkpoint-epoch3.pth", "--epochs", "3"))
    assert "is at epoch 3 and trainer.epochs is 3, so there is nothing to train; give --epochs 4" in line
    train_ok("-r", runs / "k" / "checkpoint-epoch3.pth", "--epochs", "4")
    assert sorted(p.name for p in (runs / "k").glob("checkpoint-*.pth")) == [
        "checkpoint-epoch3.pth",
        "checkpoint-epoch4.pth",
    ]


def test_a_checkpoint_of_other_data_is_refused_unless_asked(setup, tmp_path):
    config, path, runs = setup
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
def test_a_checkpoint_with_bad_inner_values_is_a_clear_error(setup, tmp_path, change, message):
    config, path, runs = setup
    train_ok("-c", path, "--run-id", "b")
    state = torch.load(runs / "b" / "checkpoint-epoch1.pth", weights_only=True)
    change(state)
    torch.save(state, tmp_path / "bad.pth")
    result = run("train.py", "-r", tmp_path / "bad.pth", "--epochs", "3")
    line = one_line_error(result)
    assert message is None or message in line, line


# -- files and disks --------------------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["empty", "truncated", "another data set", "short arrays"])
def test_a_damaged_cache_is_removed_and_rebuilt(tmp_path, tiny_data, damage, caplog):
    first = prepared(MovieLensDataLoader(str(tiny_data), download=False)).dataset
    (cache,) = (tiny_data / "ml-100k" / ".prepared").glob("*.npz")
    if damage == "empty":
        cache.write_bytes(b"")
    elif damage == "truncated":
        cache.write_bytes(cache.read_bytes()[:200])
    elif damage == "another data set":
        prepared(MovieLensDataLoader(str(tiny_data), download=False, min_rating=4))
        other = max((tiny_data / "ml-100k" / ".prepared").glob("*.npz"), key=os.path.getmtime)
        cache.write_bytes(other.read_bytes())
    else:
        with np.load(cache) as z:
            arrays = dict(z)
        arrays["train_indptr"] = arrays["train_indptr"][:5]
        np.savez(cache, **arrays)
    caplog.set_level("INFO", logger="data")
    again = prepared(MovieLensDataLoader(str(tiny_data), download=False)).dataset
    assert "is damaged" in caplog.text and "cached in" in caplog.text
    assert (again.train != first.train).nnz == 0 and (again.test != first.test).nnz == 0
    assert not list((tiny_data / "ml-100k" / ".prepared").glob("*.tmp"))


def test_a_full_disk_while_writing_metrics_saves_the_epoch_and_says_so(setup, monkeypatch):
    import base.checkpointer as checkpointer

    config, path, runs = setup
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


def test_links_planted_at_the_run_files_are_never_followed(setup, tmp_path):
    config, path, runs = setup
    train_ok("-c", path, "--run-id", "l", "--epochs", "1")
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    folder = runs / "l"
    for name in (".checkpoint-epoch2.pth.tmp", ".config.json.tmp", ".model_best.pth.tmp"):
        (folder / name).symlink_to(victim)
    (folder / "metrics.jsonl").unlink()
    (folder / "metrics.jsonl").symlink_to(victim)
    train_ok("-r", folder / "checkpoint-epoch1.pth", "--epochs", "2")
    assert victim.read_text() == "precious"
    assert not (folder / "metrics.jsonl").is_symlink() and read_jsonl(folder / "metrics.jsonl")[-1]["epoch"] == 2


def test_test_py_checks_its_outputs_first_and_prints_before_it_writes(setup, tmp_path, monkeypatch):
    config, path, runs = setup
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


# -- paths and hostile configs ------------------------------------------------------------------------


@pytest.mark.parametrize("run_id", ["../../../../etc/x", "/etc/x", "a/b", ".hidden", ""])
def test_a_run_id_is_one_safe_folder_name(setup, tmp_path, run_id):
    config, path, runs = setup
    line = one_line_error(run("train.py", "-c", path, "--run-id", run_id))
    assert "--run-id: expected one folder name" in line
    assert not (tmp_path / "saved").exists()


def test_the_checkpoint_location_decides_where_a_resume_writes(setup, tmp_path):
    config, path, runs = setup
    train_ok("-c", path, "--run-id", "r")
    state = torch.load(runs / "r" / "checkpoint-epoch2.pth", weights_only=True)
    state["config"]["trainer"]["save_dir"] = str(tmp_path / "elsewhere")  # a downloaded checkpoint's idea
    save_checkpoint(state, runs / "r" / "checkpoint-epoch2.pth")
    train_ok("-r", runs / "r" / "checkpoint-epoch2.pth", "--epochs", "3")
    assert (runs / "r" / "checkpoint-epoch3.pth").is_file() and not (tmp_path / "elsewhere").exists()
    # a checkpoint outside any run folder starts a new run under the command line's save_dir
    loose = tmp_path / "downloads"
    loose.mkdir()
    save_checkpoint(state, loose / "model.pth")
    train_ok(
        "-r", loose / "model.pth", "--epochs", "3", "--set", f"trainer.save_dir={tmp_path / 'mine'}", "--run-id", "x"
    )
    assert (tmp_path / "mine" / "models" / config["name"] / "x" / "checkpoint-epoch3.pth").is_file()
    assert not (tmp_path / "elsewhere").exists() and sorted(p.name for p in loose.iterdir()) == ["model.pth"]


@pytest.mark.parametrize(
    "override,message",
    [
        ("seed=-1", "seed: expected an integer >= 0 and <= 4294967295, got -1"),
        ("seed=4294967296", "seed: expected an integer >= 0 and <= 4294967295"),
        ("evaluation.seed=-5", "evaluation.seed: expected an integer >= 0"),
        (
            'lr_scheduler={"type": "LambdaLR", "args": {"lr_lambda": "lambda e: 0.9 ** e"}}',
            "LambdaLR takes a Python function",
        ),
        ("arch.args.embed_dim=100000000", "needs about"),
    ],
)
def test_bad_values_are_one_line_not_a_traceback(setup, tmp_path, override, message):
    config, path, runs = setup
    line = one_line_error(run("train.py", "-c", path, "--set", override))
    assert message in line, line
    assert not (tmp_path / "saved").exists()


def test_the_dataset_argument_is_the_templates(setup, tmp_path):
    config, path, runs = setup
    config["arch"]["args"]["dataset"] = "x"
    line = one_line_error(run("train.py", "-c", write_config(tmp_path / "d.json", config)))
    assert "arch.args.dataset: the template passes the data set to the model itself" in line


def test_a_latin1_config_and_csv_name_the_encoding(tmp_path):
    (tmp_path / "c.json").write_bytes('{"name": "Caf\xe9"}'.encode("latin-1"))
    line = one_line_error(run("train.py", "-c", tmp_path / "c.json"))
    assert "c.json:1: not UTF-8 text (byte 0xe9); save the config as UTF-8" in line
    (tmp_path / "log.csv").write_bytes("user,item\nJos\xe9,x\nAnn,y\n".encode("latin-1"))
    with pytest.raises(Exception, match=r"log\.csv:2: not utf-8 text .* data_loader\.args\.encoding"):
        prepared(CSVDataLoader(str(tmp_path), "log.csv", cache=False))
    ds = prepared(CSVDataLoader(str(tmp_path), "log.csv", encoding="latin-1", cache=False), test=0.0).dataset
    assert "José" in list(ds.user_ids)


def test_online_wandb_without_a_login_is_refused_before_anything_is_made(setup, tmp_path, monkeypatch):
    config, path, runs = setup
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    line = one_line_error(run("train.py", "-c", path))
    assert "wandb.mode: online needs a wandb login" in line
    assert not (tmp_path / "saved").exists()


class FakeWandb:
    """Stands for the wandb module: records each init's mode; `fail` says what an init raises."""

    Settings = dict

    def __init__(self, fail):
        self.fail, self.modes = fail, []

    def init(self, mode, **arguments):
        self.modes.append(mode)
        error = self.fail.get(mode)
        if error is not None:
            raise error
        return types.SimpleNamespace(id="r1", log=lambda *a, **k: None, finish=lambda **k: None)


@pytest.mark.parametrize(
    "fail, modes, run_kept, warning",
    [
        ({"online": RuntimeError("CommError")}, ["online", "offline"], True, "this run is recorded offline"),
        ({"online": TimeoutError("no reply")}, ["online", "offline"], True, "this run is recorded offline"),
        ({"online": PermissionError(errno.EACCES, "Permission denied")}, ["online"], False, "tracking is off"),
        ({"offline": PermissionError(errno.EACCES, "Permission denied")}, ["offline"], False, "tracking is off"),
    ],
)
def test_wandb_that_cannot_reach_its_server_or_write_never_stops_the_run(
    tmp_path, monkeypatch, caplog, fail, modes, run_kept, warning
):
    from logger.wandb_writer import WandbWriter

    fake = FakeWandb(fail)
    monkeypatch.setitem(sys.modules, "wandb", fake)
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    writer = WandbWriter({}, tmp_path, mode=modes[0])
    assert fake.modes == modes
    assert (writer.run is not None) == run_kept
    assert warning in caplog.text
    writer.log({"loss": 1.0}, step=1)  # a writer whose tracking is off still takes the calls
    writer.finish()


@pytest.fixture
def python_sigint():
    """Python's own Ctrl-C handler for the test, even where the tests were started with SIGINT
    ignored (a background job of a shell script), and the previous one back after it."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_a_second_interrupt_during_a_save_waits_for_it(tmp_path, python_sigint):
    target = tmp_path / "checkpoint.pth"

    def slow_write(f):
        f.write(b"a" * 1000)
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C while the file is half written
        time.sleep(0.05)
        f.write(b"b" * 1000)

    with pytest.raises(KeyboardInterrupt):
        write_atomic(target, slow_write)
    assert target.read_bytes() == b"a" * 1000 + b"b" * 1000  # finished, then the interrupt
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pth"]
    with deferred_signals():
        pass  # and the handlers are back: a later Ctrl-C interrupts at once
    with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.1)


# -- data -----------------------------------------------------------------------------------------------


def test_csv_ids_1_and_1_0_are_one_user_and_big_ids_stay_exact(tmp_path, tiny_data):
    (tmp_path / "a.csv").write_text("user,item\n1,10\n1.0,11\n2,10\n2,12\n")
    ds = prepared(CSVDataLoader(str(tmp_path), "a.csv", cache=False, ids="integers"), test=0.0, valid=0.0).dataset
    assert list(ds.user_ids) == [1, 2] and ds.user_ids.dtype == np.int64
    # by default ids are text, exactly as the file writes them: 000242 stays 000242, 0007 and 7 are two
    (tmp_path / "b.csv").write_text("user,item\n000242,0007\n000242,07\n1,7\n")
    ds = prepared(CSVDataLoader(str(tmp_path), "b.csv", cache=False), test=0.0, valid=0.0).dataset
    assert list(ds.user_ids) == ["000242", "1"] and list(ds.item_ids) == ["0007", "07", "7"]
    with pytest.raises(Exception, match=r"b.csv:4: '1x' is not an integer id"):
        (tmp_path / "b.csv").write_text("user,item\n1,2\n2,3\n1x,4\n")
        prepared(CSVDataLoader(str(tmp_path), "b.csv", cache=False, ids="integers"), test=0.0, valid=0.0)
    big = 2**53 + 1  # float64 would merge it with 2^53
    lines = (tiny_data / "ml-100k" / "u.data").read_text().splitlines()
    lines += [f"{big}\t1\t5\t881250949", f"{big - 1}\t2\t5\t881250949", f"{big - 1}\t3\t5\t881250950"]
    (tiny_data / "ml-100k" / "u.data").write_text("\n".join(lines) + "\n")
    ds = prepared(MovieLensDataLoader(str(tiny_data), download=False, cache=False)).dataset
    assert {big, big - 1} <= set(ds.user_ids.tolist()) and ds.n_users == 62


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


# -- round two (issue 25) ---------------------------------------------------------------------------


def test_resuming_an_older_checkpoint_branches_and_leaves_the_run_as_it_was(setup, tmp_path):
    config, path, runs = setup
    train_ok("-c", path, "--run-id", "long", "--epochs", "4")
    before = {p.name: p.read_bytes() for p in (runs / "long").iterdir() if p.is_file() and p.name != ".lock"}
    result = train_ok("-r", runs / "long" / "checkpoint-epoch1.pth", "--epochs", "2")
    assert "went on to epoch 4: training continues in a new run folder" in result.stdout
    after = {p.name: p.read_bytes() for p in (runs / "long").iterdir() if p.is_file() and p.name != ".lock"}
    assert after == before  # metrics.jsonl not cut, model_best.pth (epoch 4's best) not replaced
    (branch,) = [p for p in runs.iterdir() if p.name != "long"]
    parent = json.loads((branch / "config.json").read_text())["_parent"]
    assert parent["epoch"] == 1 and parent["checkpoint"].endswith("long/checkpoint-epoch1.pth")
    assert [r["epoch"] for r in read_jsonl(branch / "metrics.jsonl")] == [2]


def test_the_command_line_save_dir_wins_for_latest_and_for_a_checkpoint(setup, tmp_path):
    config, path, runs = setup
    other = tmp_path / "elsewhere"
    train_ok("-c", path, "--run-id", "here", "--set", f"trainer.save_dir={other}")
    train_ok("-c", path, "--run-id", "default")
    # -r latest looks where --set says: the run in `elsewhere`, not the newer one in the config's save_dir
    result = train_ok("-r", "latest", "-c", path, "--set", f"trainer.save_dir={other}", "--epochs", "3")
    assert read_jsonl(other / "models" / config["name"] / "here" / "metrics.jsonl")[-1]["epoch"] == 3
    assert read_jsonl(runs / "default" / "metrics.jsonl")[-1]["epoch"] == 2
    # -r CKPT --set trainer.save_dir=X: a new run in X, whose config says X (the file stays true)
    third = tmp_path / "third"
    result = train_ok(
        "-r", runs / "default" / "checkpoint-epoch2.pth", "--set", f"trainer.save_dir={third}", "--epochs", "3"
    )
    (branch,) = (third / "models" / config["name"]).iterdir()
    assert json.loads((branch / "config.json").read_text())["trainer"]["save_dir"] == str(third)
    assert read_jsonl(runs / "default" / "metrics.jsonl")[-1]["epoch"] == 2 and result.returncode == 0


@pytest.mark.parametrize("first", list("uaestbhrq.K"))
def test_a_text_file_given_to_r_is_one_line(tmp_path, first):
    (tmp_path / "notes.pth").write_text(f"{first}ser notes, not a checkpoint\n")
    line = one_line_error(run("train.py", "-r", tmp_path / "notes.pth"))
    assert "not a readable checkpoint" in line or "holds Python objects" in line


@pytest.mark.parametrize(
    "override,message",
    [
        ("optimizer.args.weight_decay=-1", "optimizer.args: Adam refuses them: Invalid weight_decay value: -1"),
        ('optimizer.type="LBFGS"', "optimizer.type: LBFGS needs a closure"),
        ('optimizer.type="SparseAdam"', "optimizer.type: SparseAdam takes sparse gradients only"),
        ('lr_scheduler={"type": "StepLR", "args": {"step_size": 0}}', "lr_scheduler.args: StepLR refuses them"),
        ('lr_scheduler={"type": "OneCycleLR", "args": {"max_lr": 0.1}}', "lr_scheduler.args: OneCycleLR refuses"),
        ("arch.args.embed_dim=0", "arch.args.embed_dim: expected an integer >= 1, got 0"),
        ("arch.args.init_std=-1", "arch.args.init_std: expected a number > 0, got -1"),
    ],
)
def test_arguments_torch_would_refuse_are_one_line_naming_the_key(tmp_path, tiny_data, override, message):
    config = json.loads((ROOT / "configs" / "mf_ml100k.json").read_text())
    config["data_loader"]["args"].update(data_dir=str(tiny_data), download=False)
    config["trainer"]["save_dir"] = str(tmp_path / "saved")
    line = one_line_error(run("train.py", "-c", write_config(tmp_path / "c.json", config), "--set", override))
    assert message in line and not (tmp_path / "saved").exists()


@pytest.mark.parametrize(
    "text,message",
    [('{"name": "a", "name": "b"}', "the key 'name' is given twice"), ("[" * 100_000, "nested too deeply")],
)
def test_a_config_with_repeated_keys_or_endless_nesting_is_one_line(tmp_path, text, message):
    (tmp_path / "c.json").write_text(text)
    assert message in one_line_error(run("train.py", "-c", tmp_path / "c.json"))


def test_ctrl_c_in_test_py_and_a_planted_lock_link_are_no_traceback(setup, tmp_path, monkeypatch):
    import test as test_script

    config, path, runs = setup
    train_ok("-c", path, "--run-id", "a")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(test_script, "build_data", interrupted)
    result = run("test.py", "-r", runs / "a" / "model_best.pth")
    assert result.returncode == 130 and result.stderr.strip() == "interrupted"
    monkeypatch.undo()
    (runs / "a" / ".lock").unlink(missing_ok=True)
    (runs / "a" / ".lock").symlink_to(tmp_path / "elsewhere")
    line = one_line_error(run("train.py", "-r", "latest", "-c", path, "--epochs", "3"))
    assert "cannot lock the run folder" in line and "(Too many levels of symbolic links)" in line


@pytest.mark.parametrize("script", ["train.py", "test.py", "sweep.py"])
def test_ctrl_c_while_a_script_imports_is_no_traceback(script):
    """SIGINT while torch or pandas, which take seconds, still load."""
    import subprocess

    from conftest import send_signal

    process = subprocess.Popen(
        [sys.executable, "-X", "importtime", script], cwd=ROOT, stderr=subprocess.PIPE, text=True
    )
    for line in process.stderr:  # -X importtime writes a line as each module finishes loading
        if line.startswith("import time:") and "numpy" in line:  # numpy loads early inside torch and pandas
            break
    send_signal(process, "SIGINT")
    rest = [line for line in process.stderr.read().splitlines() if not line.startswith("import time:")]
    assert process.wait(timeout=60) == 130 and rest == ["interrupted"], rest


def test_a_line_without_an_epoch_in_metrics_does_not_fail_the_curves(tmp_path):
    import logging

    from logger.plot import plot_history

    (tmp_path / "metrics.jsonl").write_text('{"epoch": 1, "loss": 1.0}\n{}\n{"epoch": 2, "loss": 0.5}\n')
    plot_history(tmp_path / "metrics.jsonl", tmp_path / "curves.png", None, logging.getLogger("t"))


def test_a_full_disk_during_a_checkpoint_write_is_one_line_and_keeps_the_last_good_file(setup, monkeypatch):
    """torch's zip writer says a full disk as RuntimeError('[enforce fail at inline_container.cc…]
    … file write failed'): stood in for here after half a file, as a 1 MB tmpfs does."""
    import utils.checkpoint as checkpoint_module

    config, path, runs = setup
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


def test_run_files_follow_the_umask_so_a_team_can_read_them(setup, tmp_path):
    config, path, runs = setup
    old = os.umask(0o002)  # a team's shared folder: group-writable
    try:
        train_ok("-c", path, "--run-id", "shared", "--epochs", "1")
    finally:
        os.umask(old)
    for name in ("model_best.pth", "checkpoint-epoch1.pth", "config.json"):
        assert (runs / "shared" / name).stat().st_mode & 0o777 == 0o664, name


def test_nan_in_a_config_or_as_a_checkpoints_best_and_a_unicode_run_id_are_said_plainly(setup, tmp_path):
    config, path, runs = setup
    text = path.read_text().replace('"reg": 1e-05', '"reg": NaN')
    assert "NaN" in text
    line = one_line_error(run("train.py", "-c", write_config(tmp_path / "n.json", json.loads(text))))
    assert "loss.args.reg: nan is not a number JSON allows" in line
    line = one_line_error(run("train.py", "-c", path, "--run-id", "répétition/é"))
    assert '"répétition/é"' in line and "at most 128" in line
    train_ok("-c", path, "--run-id", "b")
    state = torch.load(runs / "b" / "checkpoint-epoch2.pth", weights_only=True)
    state["monitor_best"] = float("nan")
    save_checkpoint(state, runs / "b" / "checkpoint-epoch2.pth")
    (runs / "b" / "model_best.pth").unlink()
    result = train_ok("-r", runs / "b" / "checkpoint-epoch2.pth", "--epochs", "3")
    assert "its best monitored figure is NaN" in result.stdout and (runs / "b" / "model_best.pth").is_file()
