"""The real train.py / test.py, as a user runs them, on a tiny data set and on MovieLens-100K."""

import json
import logging
import re

import pandas as pd
import pytest
import torch
from conftest import (
    SHARED_DATA,
    data_of,
    load_default_config,
    one_line_error,
    prepared,
    run,
    run_script,
    tiny_config,
    train_ok,
    write_config,
)

from utils.checkpoint import load_checkpoint
from utils.files import read_jsonl
from utils.runs import RunFolder


def test_train_writes_the_run_folder_and_test_reproduces_validation(tmp_path, tiny_data):
    config = tiny_config(tiny_data, tmp_path / "saved")
    train_ok("-c", write_config(tmp_path / "c.json", config), "--run-id", "tiny")
    folder = tmp_path / "saved" / "models" / config["name"] / "tiny"
    assert sorted(p.name for p in folder.iterdir()) == [
        "checkpoint-epoch1.pth",
        "checkpoint-epoch2.pth",
        "config.json",
        "curves.png",
        "metrics.jsonl",
        "model_best.pth",
    ]
    assert (folder / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((folder / "config.json").read_text()) == config
    assert (tmp_path / "saved" / "log" / config["name"] / "tiny" / "info.log").is_file()
    history = read_jsonl(folder / "metrics.jsonl")
    assert [h["epoch"] for h in history] == [1, 2]
    assert set(history[0]) == {"epoch", "loss", "val_recall@20", "val_ndcg@20", "val_precision@20", "val_hit@20"}
    assert history[1]["loss"] < history[0]["loss"]

    # test.py on the best checkpoint, on the validation split, gives the numbers seen in training
    best = max(history, key=lambda h: h["val_recall@20"])
    result = run("test.py", "-r", folder / "model_best.pth", "--split", "valid")
    assert result.returncode == 0, result.stderr
    valid = json.loads((folder / "valid_metrics.json").read_text())
    for name, value in valid.items():
        assert value == pytest.approx(best[f"val_{name}"], abs=1e-6), name

    # and on the test split, with a top-K export
    result = run("test.py", "-r", folder / "model_best.pth", "--topk-out", tmp_path / "recs.csv", "--k", "5")
    assert result.returncode == 0, result.stderr
    figures = json.loads((folder / "test_metrics.json").read_text())
    assert set(figures) == {"recall@20", "ndcg@20", "precision@20", "hit@20"}
    assert all(0 <= v <= 1 for v in figures.values()) and figures["hit@20"] > 0
    recs = pd.read_csv(tmp_path / "recs.csv")
    assert list(recs.columns) == ["user_id", "rank", "item_id", "title", "genre", "year", "score"]
    assert len(recs) == 60 * 5
    assert all(ranks == [1, 2, 3, 4, 5] for ranks in recs.groupby("user_id")["rank"].apply(list))
    # recommendations are unseen: no (user, item) pair from the user's own ratings, test ones included
    ratings = pd.read_csv(tiny_data / "ml-100k" / "u.data", sep="\t", names=["user_id", "item_id", "r", "t"])
    assert len(recs.merge(ratings, on=["user_id", "item_id"])) == 0
    assert (recs.groupby("user_id")["score"].apply(lambda s: s.is_monotonic_decreasing)).all()


def test_recommendations_never_include_a_known_item(tmp_path, tiny_data):
    from data_loader.movielens import MovieLensDataLoader
    from model.ngcf import NGCF
    from test import export_topk

    loader = prepared(MovieLensDataLoader(data_dir=str(tiny_data), download=False))
    ds = loader.dataset
    model = NGCF(ds, embed_dim=8, layers=[8]).eval()
    model.fit(ds)
    export_topk(model, loader, 10, tmp_path / "r.csv", torch.device("cpu"), logging.getLogger("test"))
    recs = pd.read_csv(tmp_path / "r.csv")
    index_of_user = {raw: i for i, raw in enumerate(ds.user_ids)}
    index_of_item = {raw: i for i, raw in enumerate(ds.item_ids)}
    known = (ds.train + ds.valid + ds.test).toarray() > 0
    u = recs["user_id"].map(index_of_user).to_numpy()
    i = recs["item_id"].map(index_of_item).to_numpy()
    assert not known[u, i].any()


def test_resume_equals_a_straight_run(tmp_path, tiny_data):
    """2 epochs + resume to 4 ends with the same weights, optimizer state, counters and history
    as 4 epochs straight."""
    config = tiny_config(tiny_data, tmp_path / "saved", trainer__epochs=4)
    train_ok("-c", write_config(tmp_path / "c.json", config), "--run-id", "straight")
    train_ok("-c", write_config(tmp_path / "c.json", config), "--run-id", "part", "--epochs", "2")
    runs = tmp_path / "saved" / "models" / config["name"]
    result = train_ok("-r", runs / "part" / "checkpoint-epoch2.pth", "--epochs", "4")
    assert "Resuming training from epoch 3" in result.stdout

    straight = torch.load(runs / "straight" / "checkpoint-epoch4.pth", weights_only=True)
    resumed = torch.load(runs / "part" / "checkpoint-epoch4.pth", weights_only=True)
    assert resumed["epoch"] == straight["epoch"] == 4
    assert resumed["monitor_best"] == straight["monitor_best"]
    assert resumed["best_epoch"] == straight["best_epoch"]
    for key, tensor in straight["state_dict"].items():
        assert torch.equal(tensor, resumed["state_dict"][key]), key
    for a, b in zip(straight["optimizer"]["state"].values(), resumed["optimizer"]["state"].values()):
        for key in a:
            assert torch.equal(torch.as_tensor(a[key]), torch.as_tensor(b[key])), key
    assert read_jsonl(runs / "straight" / "metrics.jsonl") == read_jsonl(runs / "part" / "metrics.jsonl")


@pytest.mark.slow
def test_wandb_offline_run_is_recorded_and_writes_nothing_outside_save_dir(tmp_path, tiny_data, monkeypatch):
    config = tiny_config(tiny_data, tmp_path / "saved", trainer__epochs=1)
    config["wandb"]["mode"] = "offline"
    monkeypatch.setenv("TEST_WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_CACHE_DIR", raising=False)
    home = tmp_path / "home"  # wandb's debug logs went to ~/.cache/wandb/logs, two more every run
    environment = {"HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache"), "MPLCONFIGDIR": str(tmp_path / "mpl")}
    result = run_script(
        "train.py", "-c", write_config(tmp_path / "w.json", config), "--run-id", "tracked", env=environment
    )
    assert result.returncode == 0, result.stderr[-3000:]
    tracked = tmp_path / "saved" / "log" / config["name"] / "tracked" / "wandb"
    offline_runs = list(tracked.glob("offline-run-*"))
    assert len(offline_runs) == 1 and list(offline_runs[0].glob("*.wandb"))
    assert not [p for p in home.rglob("*") if "wandb" in str(p)]
    assert list((tracked / "cache").rglob("core-debug-*.log"))


@pytest.mark.movielens
@pytest.mark.slow
def test_two_epochs_on_real_movielens(tmp_path):

    config = load_default_config()
    config["data_loader"]["args"].update(data_dir=str(SHARED_DATA), cache=False)  # shared/ stays untouched
    config["trainer"].update(epochs=2, save_dir=str(tmp_path / "saved"))
    config["wandb"]["mode"] = "disabled"
    path = write_config(tmp_path / "ml.json", config)
    result = run_script("train.py", "-c", path, "--run-id", "ml")
    assert result.returncode == 0, result.stderr[-3000:]
    folder = tmp_path / "saved" / "models" / config["name"] / "ml"
    history = read_jsonl(folder / "metrics.jsonl")
    assert len(history) == 2
    # a trained NGCF finds far more than chance (random ranking: recall@20 ~ 20/1682 ~ 0.012)
    assert history[-1]["val_recall@20"] > 0.2
    result = run_script("test.py", "-r", folder / "model_best.pth")
    assert result.returncode == 0, result.stderr
    assert json.loads((folder / "test_metrics.json").read_text())["recall@20"] > 0.2


def test_a_log_shows_the_progress_of_training_evaluation_and_export(tmp_path, tiny_data, monkeypatch):
    """Where stderr is not a terminal (a job's log file), a line every logger/progress.py EVERY
    seconds says the step, the rate and the time left: of an epoch, an evaluation, an export."""
    import logger.progress

    monkeypatch.setattr(logger.progress, "EVERY", 0.0)  # a line after every step
    config = tiny_config(tiny_data, tmp_path / "saved", trainer__epochs=1)
    config["batches"]["batch_size"] = 32
    config["evaluation"]["batch_size"] = 16
    result = run("train.py", "-c", write_config(tmp_path / "c.json", config), "--run-id", "p")
    assert result.returncode == 0, result.stderr[-2000:]
    steps = [line for line in result.stdout.splitlines() if "epoch 1: step " in line]
    assert steps and re.search(
        r"epoch 1: step 1/\d+ \(\d+%\), [\d.e+]+ steps/s, about \d+ s left, loss [\d.]+", steps[0]
    )
    assert "evaluation: step 1/" in result.stdout
    best = tmp_path / "saved" / "models" / config["name"] / "p" / "model_best.pth"
    result = run("test.py", "-r", best, "--topk-out", tmp_path / "r.csv", "--set", "evaluation.batch_size=16")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "export: step 1/4 (25%)" in result.stdout


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
