"""new_project.py: a new project from the template."""

import shutil
import subprocess
import sys

import pytest
from conftest import ROOT, copy_tracked, run_script, tiny_config, write_config

from utils.files import read_jsonl


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
