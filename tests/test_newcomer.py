"""A newcomer's first hour (issue 19): what the README gives works as written and leaves nothing
behind when it fails."""

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
from conftest import ROOT, copy_tracked, read_jsonl, run, tiny_config, write_config

import train


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


def test_an_interrupt_or_an_error_before_the_first_epoch_leaves_nothing(tmp_path, tiny_data, monkeypatch):
    config = tiny_config(tiny_data, tmp_path / "saved")
    path = write_config(tmp_path / "c.json", config)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt  # Ctrl-C in the middle of epoch 1

    monkeypatch.setattr(train.TRAINERS["Trainer"], "_train_step", interrupted)
    result = run("train.py", "-c", path)
    assert result.returncode == 130 and "no epoch has finished" in result.stdout
    assert not (tmp_path / "saved").exists()  # no folder with a lone config.json


def test_a_failed_download_leaves_no_data_folder_and_no_run_folder(tmp_path):
    config = tiny_config(tmp_path / "data", tmp_path / "saved")
    config["data_loader"]["args"]["download"] = True
    from data_loader import movielens

    url = movielens.RELEASES["ml-100k"].url
    movielens.RELEASES["ml-100k"] = movielens.RELEASES["ml-100k"].__class__(
        **{**movielens.RELEASES["ml-100k"].__dict__, "url": "http://127.0.0.1:9/ml-100k.zip"}
    )
    try:
        result = run("train.py", "-c", write_config(tmp_path / "c.json", config))
    finally:
        movielens.RELEASES["ml-100k"] = movielens.RELEASES["ml-100k"].__class__(
            **{**movielens.RELEASES["ml-100k"].__dict__, "url": url}
        )
    assert result.returncode == 2 and "could not download" in result.stderr
    assert not (tmp_path / "data").exists() and not (tmp_path / "saved").exists()


def test_a_data_dir_that_is_not_there_is_not_created(tmp_path):
    config = tiny_config(tmp_path / "nowhere", tmp_path / "saved")  # download is off in the tiny config
    result = run("train.py", "-c", write_config(tmp_path / "c.json", config))
    assert result.returncode == 2 and "not found and data_loader.args.download is false" in result.stderr
    assert not (tmp_path / "nowhere").exists() and not (tmp_path / "saved").exists()


def test_the_last_line_of_info_log_is_the_error(tmp_path, tiny_data, monkeypatch):
    import base.checkpointer as checkpointer

    config = tiny_config(tiny_data, tmp_path / "saved", trainer__epochs=3)
    calls = {"n": 0}
    original = checkpointer.append_line

    def full_at_the_second(path, line):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(28, "No space left on device")
        original(path, line)

    monkeypatch.setattr(checkpointer, "append_line", full_at_the_second)
    result = run("train.py", "-c", write_config(tmp_path / "c.json", config), "--run-id", "l")
    assert result.returncode == 2
    log = (tmp_path / "saved" / "log" / config["name"] / "l" / "info.log").read_text().splitlines()
    assert log[-1].endswith(result.stderr.strip())


def test_curves_mark_the_best_epoch_and_the_resume(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    import logging

    from matplotlib.axes import Axes

    from logger.plot import plot_history

    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text(
        "".join(json.dumps({"epoch": e, "loss": 1 / e, "val_recall@20": e % 3}) + "\n" for e in range(1, 7))
    )
    lines = []
    original = Axes.axvline
    monkeypatch.setattr(
        Axes, "axvline", lambda self, x, **kw: lines.append((x, kw["label"])) or original(self, x, **kw)
    )
    plot_history(
        metrics, tmp_path / "curves.png", "val_recall@20", logging.getLogger("t"), resumed_from=3, best_epoch=5
    )
    assert (5, "best: epoch 5") in lines and (3, "resumed after 3") in lines
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_curves_go_through_the_safe_write_a_link_or_a_folder_in_the_way(tmp_path, caplog):
    """A link planted at curves.png is replaced, not followed; a folder there is a warning, not a failure."""
    pytest.importorskip("matplotlib")
    import logging

    from logger.plot import plot_history

    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text("".join(json.dumps({"epoch": e, "loss": 1 / e}) + "\n" for e in range(1, 4)))
    outside = tmp_path / "outside.txt"
    outside.write_text("keep me")
    (tmp_path / "curves.png").symlink_to(outside)
    assert plot_history(metrics, tmp_path / "curves.png", None, logging.getLogger("t")) is not None
    assert outside.read_text() == "keep me" and not (tmp_path / "curves.png").is_symlink()
    (tmp_path / "curves.png").unlink()
    (tmp_path / "curves.png").mkdir()
    assert plot_history(metrics, tmp_path / "curves.png", None, logging.getLogger("t")) is None
    assert "the learning curves could not be written" in caplog.text


def test_new_project_copies_what_git_tracks_only(tmp_path):
    source = copy_tracked(tmp_path / "template")
    git = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], cwd=source, check=True)
    subprocess.run([*git, "add", "-A"], cwd=source, check=True)
    subprocess.run([*git, "commit", "-qm", "template"], cwd=source, check=True)
    (source / "recs.csv").write_text("user_id,rank\n" * 1000)  # a user's export and scratch files
    (source / "configs" / "scratch.json").write_text("{}")
    target = tmp_path / "mine"
    result = subprocess.run([sys.executable, "new_project.py", str(target)], cwd=source, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (target / "train.py").is_file() and (target / "configs" / "ease_ml100k.json").is_file()
    assert not (target / "recs.csv").exists() and not (target / "configs" / "scratch.json").exists()
    assert not (target / ".git").exists()


@pytest.mark.slow
def test_an_interrupted_sweep_keeps_its_table_and_resumes(tmp_path, tiny_data):
    config = tiny_config(tiny_data, tmp_path / "saved")
    base = write_config(tmp_path / "base.json", config)
    sweep = {
        "config": str(base),
        "grid": {"optimizer.args.lr": [0.001, 0.002, 0.003, 0.004]},
        "set": {"trainer.epochs": 40, "trainer.save_period": 40},
        "metric": "val_recall@20",
        "out": str(tmp_path / "sweep.csv"),
    }
    (tmp_path / "sweep.json").write_text(json.dumps(sweep))
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


def readme_section(title, document="README.md"):
    text = (ROOT / document).read_text()
    start = text.index(f"\n## {title}")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else None]


def test_the_readme_is_a_guide_read_once_and_its_commands_are_run_by_tests():
    """About 150-200 lines; the bash blocks are the install (run by .ci/run) and the two sections
    whose every line a slow test runs: Everyday use and A competition, start to finish."""
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 200
    with_commands = [title for title in ("Quick start", "Everyday use", "A competition, start to finish")]
    sections = [part.split("\n", 1)[0] for part in text.split("\n## ")[1:] if "```bash" in part]
    assert sections == with_commands
    for document in ("config", "data", "results", "competition", "runs", "ngcf", "devices", "adding-a-module"):
        assert f"`docs/{document}.md`" in text and (ROOT / "docs" / f"{document}.md").is_file()


def code_blocks(section):
    """(language, lines) of each fenced block of a README section."""
    blocks, inside = [], None
    for line in section.splitlines():
        if line.startswith("```"):
            if inside is None:
                inside = (line[3:].strip(), [])
            else:
                blocks.append(inside)
                inside = None
        elif inside is not None:
            inside[1].append(line)
    return blocks


def project_copy(tmp_path):
    """The project's tracked files in a new folder, with a small MovieLens-100K in its data/."""
    from conftest import write_movielens_100k

    project = copy_tracked(tmp_path / "project")
    write_movielens_100k(project / "data")
    return project


def shell(command, cwd):
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONPATH": ""}
    return subprocess.run(command, shell=True, cwd=cwd, capture_output=True, text=True, env=env, timeout=900)


@pytest.mark.slow
def test_the_adding_a_model_recipe_works_as_written(tmp_path):
    project = project_copy(tmp_path)
    blocks = code_blocks(readme_section("Adding a model", "docs/adding-a-module.md"))
    files = [lines for language, lines in blocks if language == "python" and lines[0].startswith("# ")]
    assert [lines[0] for lines in files] == ["# model/biased_mf.py", "# tests/test_biased_mf.py"]
    for lines in files:
        (project / lines[0][2:]).write_text("\n".join(lines[1:]) + "\n")
    (change,) = [json.loads("\n".join(lines)) for language, lines in blocks if language == "json"]
    (commands,) = [lines for language, lines in blocks if language == "bash"]
    for line in commands:
        command = line.split("  #")[0].strip()
        result = shell(command, project)
        assert result.returncode == 0, (command, result.stdout[-2000:], result.stderr[-2000:])
        if command.startswith("cp "):  # "then change name and arch as above"
            path = project / "configs" / "biased_mf_ml100k.json"
            path.write_text(json.dumps({**json.loads(path.read_text()), **change}, indent=4))
        if "--list" in command:
            assert "BiasedMF" in result.stdout
    (metrics,) = (project / "saved" / "models" / "BiasedMF_ml-100k").glob("*/metrics.jsonl")
    assert [h["epoch"] for h in read_jsonl(metrics)] == [1, 2, 3, 4, 5]


@pytest.mark.slow
def test_every_everyday_use_command_runs_in_order(tmp_path):
    project = project_copy(tmp_path)
    ((_, commands),) = [block for block in code_blocks(readme_section("Everyday use")) if block[0] == "bash"]
    for line in commands:
        command = line.split("  #")[0].strip()
        result = shell(command, project)
        assert result.returncode == 0, (command, result.stdout[-2000:], result.stderr[-2000:])
    runs = project / "saved" / "models" / "NGCF_ml-100k"
    assert (runs / "baseline" / "checkpoint-epoch30.pth").is_file() and (project / "recs.csv").is_file()
    assert json.loads((runs / "tuned" / "config.json").read_text())["_parent"]["checkpoint"].endswith("model_best.pth")
