"""The contract every module keeps, and what a user sees when one does not: a model that leaves an
abstract method out, a file that does not import, a forward that returns the wrong thing. And
the merge check: the three modules added on their own branches train side by side."""

import json
import os
import re
import shutil
import subprocess
import sys

import pytest
import torch
import torch.nn as nn
from conftest import ROOT, copy_tracked, one_line_error, run, run_script, tiny_config, write_config

import train
from base.base_model import BaseModel
from model import LOSSES, METRICS, MODELS
from utils.files import read_jsonl
from utils.registry import discover


def write_package(folder, files):
    folder.mkdir()
    (folder / "__init__.py").write_text("")
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


def test_a_missing_method_or_a_broken_import_names_the_file(tmp_path, monkeypatch):
    package = write_package(
        tmp_path / "teammates",
        {
            "half_done.py": "from base.base_model import BaseModel\n\nclass HalfDone(BaseModel):\n    pass\n",
            "typo.py": "import torhc\n",
            "fine.py": (
                "from base.base_model import BaseModel\n\nclass Fine(BaseModel):\n"
                "    def full_scores(self, users, history):\n        return None\n"
            ),
        },
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = discover("teammates", [str(package)], BaseModel)
    assert list(registry) == ["Fine"]
    with pytest.raises(Exception) as error:
        registry.lookup("HalfDone", "arch.type")
    assert str(error.value) == (
        "arch.type: HalfDone in teammates/half_done.py cannot be built: it does not implement full_scores "
        "(abstract in BaseModel)"
    )
    with pytest.raises(Exception) as error:
        registry.lookup("Typo", "arch.type")
    message = str(error.value)
    assert "unknown name 'Typo' (available: Fine)" in message
    assert "teammates/typo.py could not be imported (ModuleNotFoundError: No module named 'torhc')" in message


def test_list_prints_every_module_with_its_first_docstring_line(capsys):
    result = run("train.py", "--list")
    assert result.returncode == 0
    for registry in (MODELS, LOSSES, METRICS):
        for name in registry:
            assert f"  {name} " in result.stdout, name
    assert "EASE" in result.stdout and "Embarrassingly" not in result.stdout.split("EASE")[0]
    assert re.search(r"^ +bpr_loss +BPR", result.stdout, re.MULTILINE)  # the column fits the longest name


class TupleModel(BaseModel):
    """Returns a tuple from forward, as a newcomer might."""

    def __init__(self, dataset, embed_dim=4):
        super().__init__()
        self.table = nn.Embedding(dataset.n_users + dataset.n_items, embed_dim)

    def forward(self, batch):
        return self.table(batch["users"]).sum(1), self.table(batch["pos_items"]).sum(1)

    def full_scores(self, users, history):
        return torch.zeros(len(users), history.shape[1])


class FlatScores(TupleModel):
    """Returns (B,) scores from full_scores."""

    def forward(self, batch):
        u = self.table(batch["users"])
        return {"pos_scores": u.sum(1), "neg_scores": -u.sum(1), "l2": u.pow(2).sum()}

    def full_scores(self, users, history):
        return torch.zeros(len(users))


def test_a_model_that_breaks_the_contract_gets_one_line(tmp_path, tiny_data, monkeypatch):
    for cls in (TupleModel, FlatScores):
        monkeypatch.setitem(train.MODELS, cls.__name__, cls)
    config = tiny_config(tiny_data, tmp_path / "saved")
    config["arch"] = {"type": "TupleModel", "args": {"embed_dim": 4}}
    line = one_line_error(run("train.py", "-c", write_config(tmp_path / "a.json", config)))
    assert line == (
        "error: TupleModel: bpr_loss needs the model's forward(batch) to return a dict with pos_scores, "
        "neg_scores, l2; got a tuple"
    )
    config["arch"]["type"] = "FlatScores"
    line = one_line_error(run("train.py", "-c", write_config(tmp_path / "b.json", config)))
    assert "FlatScores.full_scores(users, history) returned (60,); expected a tensor of shape (B, n_items)" in line
    assert not (tmp_path / "saved" / "models").exists()  # both stopped before their first epoch: nothing left


MODULES = {  # module: (its files, its config)
    "EASE": (["model/ease.py", "tests/test_ease.py"], "configs/ease_ml100k.json"),
    "MultVAE": (["model/multvae.py", "tests/test_multvae.py"], "configs/multvae_ml100k.json"),
    "NeuMF": (["model/neumf.py", "tests/test_neumf.py"], "configs/pointwise_ml100k.json"),
}


@pytest.mark.slow
def test_three_modules_added_together_each_train(tmp_path, tiny_data):
    """The merge check: the project without the three modules, then all three added at once (what
    merging three teammates' pull requests does), then each one's config trained and tested."""
    added = {path for files, config in MODULES.values() for path in (*files, config)}
    project = copy_tracked(tmp_path / "project", leave_out=added)
    result = subprocess.run([sys.executable, "train.py", "--list"], cwd=project, capture_output=True, text=True)
    assert result.returncode == 0 and "EASE" not in result.stdout
    for path in added:  # the three pull requests, merged: new files only, no file edited
        shutil.copy(ROOT / path, project / path)
    for name, (_, config_path) in MODULES.items():
        config = json.loads((project / config_path).read_text())
        config["data_loader"]["args"].update(data_dir=str(tiny_data), download=False)
        config["trainer"].update(save_dir=str(tmp_path / "saved"), epochs=2)
        config["wandb"]["mode"] = "disabled"
        path = write_config(tmp_path / f"{name}.json", config)
        result = run_script("train.py", "-c", path, "--run-id", "merged", cwd=project)
        assert result.returncode == 0, (name, result.stderr[-2000:])
        folder = tmp_path / "saved" / "models" / config["name"] / "merged"
        assert read_jsonl(folder / "metrics.jsonl")[-1]["val_recall@20"] > 0, name
        assert run_script("test.py", "-r", folder / "model_best.pth", cwd=project).returncode == 0, name


@pytest.mark.slow
def test_a_team_that_never_collides(tmp_path, tiny_data):
    """Two files defining one name is one line naming both; a loss with a long name and a metric named
    `map`, merged together, leave the whole fast suite green (no test lists names or widths)."""
    project = copy_tracked(tmp_path / "project")
    (project / "model" / "zz_my_mf.py").write_text(
        "from base.base_model import BaseModel\n\n\nclass MF(BaseModel):\n"
        '    """A teammate\'s MF under the same name."""\n\n'
        "    def __init__(self, dataset, embed_dim=8, init_std=0.1):\n        super().__init__()\n\n"
        "    def full_scores(self, users, history):\n        return None\n"
    )
    config = tiny_config(tiny_data, tmp_path / "saved")
    result = run_script("train.py", "-c", write_config(tmp_path / "c.json", config), cwd=project)
    line = one_line_error(result)
    assert "'MF' is defined in model/mf.py and in model/zz_my_mf.py: rename one" in line
    (project / "model" / "zz_my_mf.py").unlink()
    (project / "model" / "loss" / "margin.py").write_text(
        "def a_pairwise_margin_ranking_loss(output, step, margin=1.0):\n"
        '    """Hinge on the score difference."""\n'
        '    return (margin - output["pos_scores"] + output["neg_scores"]).clamp(min=0).mean()\n'
    )
    (project / "model" / "metric" / "map.py").write_text(
        "import torch\n\n\ndef map(hits, n_relevant):  # noqa: A001 - the metric's name\n"
        '    """MAP@K: the mean of precision at each hit."""\n'
        "    precision = hits.cumsum(dim=1) / torch.arange(1, hits.shape[1] + 1, device=hits.device)\n"
        "    return (precision * hits).sum(dim=1) / n_relevant.clamp(min=1, max=hits.shape[1])\n"
    )
    env = {**os.environ, "WANDB_MODE": "disabled"}
    git = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]
    for command in ([*git, "init", "-q"], [*git, "add", "-A"], [*git, "commit", "-qm", "merged"]):
        subprocess.run(command, cwd=project, check=True)  # the team's repository, the modules merged
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider"],
        cwd=project,
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 0, result.stdout[-3000:]
    listed = subprocess.run([sys.executable, "train.py", "--list"], cwd=project, capture_output=True, text=True)
    assert "a_pairwise_margin_ranking_loss" in listed.stdout and re.search(r"^ +map +MAP@K", listed.stdout, re.M)
