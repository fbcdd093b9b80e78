"""The reference models (LightGCN, MF, Pop), the benchmark-format loader, and every shipped config."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import ROOT, SHARED_DATA, prepared, run, small_dataset

from data_loader.benchmark import BenchmarkDataLoader
from model.graph import normalized_adjacency
from model.lightgcn import LightGCN
from model.mf import MF
from model.pop import Pop
from utils.errors import DataError
from utils.files import read_jsonl


def test_lightgcn_is_the_mean_of_powers_of_the_laplacian():
    ds = small_dataset()
    model = LightGCN(ds, embed_dim=6, n_layers=3, impl="reference").eval()
    lap = torch.from_numpy(normalized_adjacency(ds.train).toarray())
    e = model.embedding.weight.detach()
    expected = (e + lap @ e + lap @ lap @ e + lap @ lap @ lap @ e) / 4
    users, items = model.propagate()
    torch.testing.assert_close(torch.cat([users, items]), expected, rtol=1e-5, atol=1e-6)
    scores = model.full_scores(torch.arange(ds.n_users), None)
    torch.testing.assert_close(scores, expected[: ds.n_users] @ expected[ds.n_users :].T, rtol=1e-4, atol=1e-6)


def test_mf_scores_are_dot_products():
    ds = small_dataset()
    model = MF(ds, embed_dim=5)
    out = model({"users": torch.tensor([1, 2]), "pos_items": torch.tensor([3, 4]), "neg_items": torch.tensor([5, 6])})
    u, i = model.user_embedding.weight, model.item_embedding.weight
    torch.testing.assert_close(out["pos_scores"], (u[[1, 2]] * i[[3, 4]]).sum(1))
    torch.testing.assert_close(model.full_scores(torch.tensor([1]), None)[0, 6], (u[1] * i[6]).sum())


def test_pop_ranks_by_training_popularity_and_has_nothing_to_train():
    ds = small_dataset()
    model = Pop(ds)
    assert model.n_trainable() == 0 and list(model.train_batches(None)) == []
    model.fit(ds)
    counts = torch.from_numpy(np.asarray(ds.train.sum(0)).ravel()).float()
    torch.testing.assert_close(model.full_scores(torch.tensor([0, 5]), None)[1], counts)


def write_benchmark(folder, lines_train, lines_test):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.txt").write_text("\n".join(lines_train) + "\n")
    (folder / "test.txt").write_text("\n".join(lines_test) + "\n")
    return folder


def test_benchmark_loader_keeps_the_files_split(tmp_path):
    rng = np.random.default_rng(0)
    train_lines, test_lines = [], []
    for user in range(30):
        items = rng.choice(50, size=12, replace=False)
        train_lines.append(" ".join(map(str, [user, *sorted(items[:9])])))
        test_lines.append(" ".join(map(str, [user, *sorted(items[9:])])))
    folder = write_benchmark(tmp_path / "bench", train_lines, test_lines)
    no_valid = prepared(BenchmarkDataLoader(str(folder)), valid=0.0).dataset
    assert no_valid.train.nnz == 30 * 9 and no_valid.test.nnz == 30 * 3 and no_valid.valid.nnz == 0
    assert prepared(BenchmarkDataLoader(str(folder)), valid=0.0).evaluation("valid") is None
    carved = prepared(BenchmarkDataLoader(str(folder)), valid=0.2).dataset
    assert carved.train.nnz + carved.valid.nnz == 30 * 9 and carved.valid.nnz == 30 * 2
    assert (carved.test != no_valid.test).nnz == 0


def test_benchmark_loader_errors(tmp_path):
    folder = write_benchmark(tmp_path / "b", ["0 1 2", "1 2 x3"], ["0 3"])
    with pytest.raises(DataError, match=r"train\.txt:2: ids are indices from 0 to 2147483647, got 'x3'"):
        prepared(BenchmarkDataLoader(str(folder)))
    with pytest.raises(DataError, match="is not a folder"):
        prepared(BenchmarkDataLoader(str(tmp_path / "nowhere")))


MOVIELENS_CONFIGS = ["config.json", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "configs").glob("*.json"))]
MOVIELENS_CONFIGS = [name for name in MOVIELENS_CONFIGS if "MovieLens" in (ROOT / name).read_text()]


@pytest.mark.parametrize("name", MOVIELENS_CONFIGS)
def test_each_shipped_movielens_config_trains_tests_and_exports(tmp_path, tiny_data, name):
    """Every shipped MovieLens config (every model), found by listing configs/, not by name."""
    result = run(
        "train.py",
        "-c",
        ROOT / name,
        "--epochs",
        "1",
        "--run-id",
        "t",
        "--set",
        f"data_loader.args.data_dir={tiny_data}",
        "--set",
        f"trainer.save_dir={tmp_path}",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    config = json.loads((ROOT / name).read_text())
    folder = tmp_path / "models" / config["name"] / "t"
    first = read_jsonl(folder / "metrics.jsonl")[0]
    assert max(v for k, v in first.items() if k.startswith("val_recall")) > 0
    result = run("test.py", "-r", folder / "model_best.pth", "--topk-out", tmp_path / "recs.csv", "--k", "5")
    assert result.returncode == 0, result.stderr[-2000:]
    recs = pd.read_csv(tmp_path / "recs.csv")
    assert len(recs) == 60 * 5 and recs.groupby("user_id")["score"].apply(lambda s: s.is_monotonic_decreasing).all()


@pytest.mark.parametrize("name", ["ngcf_gowalla", "lightgcn_gowalla", "mf_gowalla"])
def test_gowalla_configs_train_and_evaluate_the_last_epoch(tmp_path, name):
    """On a small file in the benchmark layout: no validation (the papers' protocol), so the log
    says monitoring is off and model_best.pth is the last epoch."""
    rng = np.random.default_rng(1)
    lines = [" ".join(map(str, [u, *sorted(rng.choice(40, 10, replace=False))])) for u in range(25)]
    tests = [
        " ".join(map(str, [u, *sorted(set(rng.choice(40, 3)) - set(map(int, lines[u].split()[1:])))]))
        for u in range(25)
    ]
    folder = write_benchmark(tmp_path / "gowalla", lines, [t for t in tests if len(t.split()) > 1])
    result = run(
        "train.py",
        "-c",
        ROOT / "configs" / f"{name}.json",
        "--epochs",
        "2",
        "--run-id",
        "t",
        "--set",
        f"data_loader.args.data_dir={folder}",
        "--set",
        f"trainer.save_dir={tmp_path}",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "monitoring and early stopping are off" in result.stdout
    config = json.loads((ROOT / "configs" / f"{name}.json").read_text())
    folder = tmp_path / "models" / config["name"] / "t"
    best = torch.load(folder / "model_best.pth", weights_only=True)
    assert best["epoch"] == 2
    assert run("test.py", "-r", folder / "model_best.pth").returncode == 0


@pytest.mark.gowalla
def test_real_gowalla_split_loads():
    ds = prepared(BenchmarkDataLoader(str(SHARED_DATA / "gowalla")), valid=0.0).dataset
    assert (ds.n_users, ds.n_items) == (29858, 40981)
    assert ds.train.nnz == 810_128 and ds.test.nnz == 217_242
    assert Path(SHARED_DATA / "gowalla" / "train.txt").is_file()
