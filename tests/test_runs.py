"""Run folders: ids, locks, `latest`, where a resume writes, and what a run leaves (utils/runs.py, train.py)."""

import json
import os
import time

import pytest
import torch
from conftest import (
    one_line_error,
    run,
    tiny_config,
    train_ok,
    write_config,
)

import train
from utils.checkpoint import save_checkpoint
from utils.files import read_jsonl
from utils.runs import RunFolder, RunLock, find_latest_checkpoint


def test_an_empty_resume_path_is_an_error_and_writes_nothing(tiny_run, tmp_path, monkeypatch):
    config, path, runs = tiny_run
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config.json").write_text("{}")
    line = one_line_error(run("train.py", "-r", "", "-c", path))
    assert "-r: the checkpoint path is empty" in line
    assert (tmp_path / "config.json").read_text() == "{}" and not (tmp_path / "saved").exists()


def test_a_taken_run_id_is_refused_and_default_ids_never_collide(tiny_run):
    config, path, runs = tiny_run
    train_ok("-c", path, "--run-id", "mine")
    before = (runs / "mine" / "metrics.jsonl").read_text()
    line = one_line_error(run("train.py", "-c", path, "--run-id", "mine"))
    assert "--run-id mine: the run folder" in line and "already exists" in line
    assert (runs / "mine" / "metrics.jsonl").read_text() == before
    import utils.runs

    ids = iter(["0101_120000_aaaaaa", "0101_120000_aaaaaa", "0101_120000_bbbbbb"])  # the same second, twice
    original = utils.runs.default_run_id
    utils.runs.default_run_id = lambda: next(ids)
    try:
        first = RunFolder(config["trainer"]["save_dir"], config["name"], utils.runs.default_run_id()).create(False)
        second = RunFolder(config["trainer"]["save_dir"], config["name"], utils.runs.default_run_id()).create(False)
    finally:
        utils.runs.default_run_id = original
    assert first.path.name == "0101_120000_aaaaaa" and second.path.name == "0101_120000_bbbbbb"  # drawn again


def test_a_folder_in_use_by_a_live_run_is_never_joined(tiny_run):
    config, path, runs = tiny_run
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


def test_latest_is_the_newest_checkpoint_not_the_newest_folder(tiny_run):
    config, path, runs = tiny_run
    train_ok("-c", path, "--run-id", "old")
    time.sleep(0.05)
    train_ok("-c", path, "--run-id", "new")
    time.sleep(0.05)
    assert run("test.py", "-r", runs / "old" / "model_best.pth").returncode == 0  # touches the old folder
    latest = find_latest_checkpoint(config["trainer"]["save_dir"], config["name"])
    assert latest == runs / "new" / "checkpoint-epoch2.pth"


def test_a_failed_resume_writes_nothing_and_fine_tuning_starts_a_new_folder(tiny_run, tmp_path):
    config, path, runs = tiny_run
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


def test_nothing_to_train_is_said_and_keep_last_counts_the_older_checkpoints(tiny_run, tmp_path):
    config, path, runs = tiny_run
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


def test_links_planted_at_the_run_files_are_never_followed(tiny_run, tmp_path):
    config, path, runs = tiny_run
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


@pytest.mark.parametrize("run_id", ["../../../../etc/x", "/etc/x", "a/b", ".hidden", ""])
def test_a_run_id_is_one_safe_folder_name(tiny_run, tmp_path, run_id):
    config, path, runs = tiny_run
    line = one_line_error(run("train.py", "-c", path, "--run-id", run_id))
    assert "--run-id: expected one folder name" in line
    assert not (tmp_path / "saved").exists()


def test_the_checkpoint_location_decides_where_a_resume_writes(tiny_run, tmp_path):
    config, path, runs = tiny_run
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


def test_resuming_an_older_checkpoint_branches_and_leaves_the_run_as_it_was(tiny_run, tmp_path):
    config, path, runs = tiny_run
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


def test_the_command_line_save_dir_wins_for_latest_and_for_a_checkpoint(tiny_run, tmp_path):
    config, path, runs = tiny_run
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


def test_run_files_follow_the_umask_so_a_team_can_read_them(tiny_run, tmp_path):
    config, path, runs = tiny_run
    old = os.umask(0o002)  # a team's shared folder: group-writable
    try:
        train_ok("-c", path, "--run-id", "shared", "--epochs", "1")
    finally:
        os.umask(old)
    for name in ("model_best.pth", "checkpoint-epoch1.pth", "config.json"):
        assert (runs / "shared" / name).stat().st_mode & 0o777 == 0o664, name


def test_an_interrupt_or_an_error_before_the_first_epoch_leaves_nothing(tmp_path, tiny_data, monkeypatch):
    config = tiny_config(tiny_data, tmp_path / "saved")
    path = write_config(tmp_path / "c.json", config)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt  # Ctrl-C in the middle of epoch 1

    monkeypatch.setattr(train.TRAINERS["Trainer"], "_train_step", interrupted)
    result = run("train.py", "-c", path)
    assert result.returncode == 130 and "no epoch has finished" in result.stdout
    assert not (tmp_path / "saved").exists()  # no folder with a lone config.json


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
