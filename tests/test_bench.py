"""The speed benchmark (python -m bench) runs end to end, writes every figure the README lists, and
its straightforward baselines compute what the template computes, so the speed ratios compare like
with like. Times are never asserted: they belong to the benchmark's table, not to tests."""

import json
import math
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import ROOT, prepared, write_movielens_100k
from test_models import write_benchmark

from bench import baseline
from data_loader.benchmark import BenchmarkDataLoader
from model import METRICS
from model.graph import normalized_adjacency
from model.lightgcn import LightGCN
from trainer.evaluation import evaluate, parse_metrics

FIGURES = {
    "dataset": str,
    "model": str,
    "threads": int,
    "compiled": bool,
    "prep_s": float,
    "prep_baseline_s": float,
    "step_s": float,
    "step_floor_s": float,
    "step_baseline_s": float,
    "epoch_s": float,
    "epoch_note": str,
    "eval_s": float,
    "eval_floor_s": float,
    "eval_baseline_s": float,
    "eval_baseline_users": int,
    "peak_rss_mb": float,
    "impl": str,
    "fused": bool,
    "device": str,
    "amp": str,
    "allocator": str,
}


def write_gowalla_layout(folder, n_users=40, n_items=60, seed=0):
    """train.txt / test.txt in the Gowalla benchmark layout: 'user item item ...' per line."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for user in range(n_users):
        items = rng.choice(n_items, size=int(rng.integers(6, 15)), replace=False)
        train.append(" ".join(map(str, [user, *sorted(items[:-3])])))
        test.append(" ".join(map(str, [user, *sorted(items[-3:])])))
    return write_benchmark(folder, train, test)


def run_bench(tmp_path, *options):
    """python -m bench on a small ml-100k data set at 1 thread: (the JSON figures, the printed table)."""
    write_movielens_100k(tmp_path)
    out = tmp_path / "results.json"
    command = [sys.executable, "-m", "bench", "--dataset", "ml-100k", "--threads", "1", "--data-dir", str(tmp_path)]
    command += ["--eval-baseline-users", "10", "--out", str(out), *options]
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    return json.loads(out.read_text()), run.stdout


@pytest.mark.slow
def test_benchmark_writes_every_figure(tmp_path):
    results, table = run_bench(tmp_path)
    assert [r["model"] for r in results] == ["NGCF", "LightGCN"]
    for r in results:
        assert set(r) == set(FIGURES)
        for key, kind in FIGURES.items():
            assert isinstance(r[key], kind), key
        assert r["dataset"] == "ml-100k" and r["threads"] == 1 and r["eval_baseline_users"] == 10
        assert r["compiled"] is False and r["impl"] == "auto" and r["fused"] is True  # the CPU takes the kernels
        assert r["device"] == "cpu" and r["amp"] == "off"
        for key in FIGURES:
            if key.endswith("_s") or key == "peak_rss_mb":
                assert math.isfinite(r[key]) and r[key] > 0, key
    assert "step_floor_s" in table and "NGCF: step/floor" in table and "LightGCN: step/floor" in table


@pytest.mark.slow
@pytest.mark.skipif(
    shutil.which(os.environ.get("CXX", "g++")) is None and not os.environ.get("CI"),
    reason="torch.compile on the CPU needs a C++ compiler (g++ or $CXX); CI always has one",
)
def test_benchmark_compiled_step_is_timed_beside_the_eager_one(tmp_path):
    """--compile trains through torch.compile and times the same step without it, in turn."""
    (result,), table = run_bench(tmp_path, "--models", "NGCF", "--compile")
    assert set(result) == set(FIGURES) | {"step_eager_s"}
    assert result["model"] == "NGCF" and result["compiled"] is True
    assert math.isfinite(result["step_eager_s"]) and result["step_eager_s"] > 0
    assert "compiled step/eager step" in table


def test_baseline_adjacency_is_the_templates(tmp_path):
    """On a fixed split (the Gowalla layout), the dict-of-keys baseline builds the same Laplacian."""
    write_gowalla_layout(tmp_path / "gowalla")
    ds = prepared(BenchmarkDataLoader(str(tmp_path / "gowalla")), valid=0.0).dataset
    fast = normalized_adjacency(ds.train).toarray()
    plain = baseline.prepare("gowalla", tmp_path).toarray()
    np.testing.assert_allclose(plain, fast, rtol=1e-6)


def test_baseline_ranking_scores_what_evaluation_scores(tmp_path):
    """The per-user heap ranking the benchmark times gives the template's Recall@20 + NDCG@20."""
    write_gowalla_layout(tmp_path / "gowalla", n_users=50, n_items=90, seed=1)
    loader = prepared(BenchmarkDataLoader(str(tmp_path / "gowalla")), valid=0.0)
    torch.manual_seed(0)
    model = LightGCN(loader.dataset, n_layers=2).eval()
    assert model.fused  # the benchmark's baselines read the fused model's cache
    test = loader.evaluation("test")
    metrics = parse_metrics(["recall@20", "ndcg@20"], METRICS)
    template = evaluate(model, test, metrics, "cpu")
    plain = baseline.evaluate(model, test, test.users) / len(test.users)
    assert plain > 0
    assert abs(plain - (template["recall@20"] + template["ndcg@20"])) < 1e-6  # the template ranks in float32


@pytest.mark.slow
def test_the_scale_benchmark_times_every_shipped_model(tmp_path):
    """python -m bench --dataset synthetic-small: every model of the list, each figure measured, the
    data generated into --data-dir once; every shipped model has a config there."""
    from bench.scale import CONFIGS
    from model import MODELS

    assert sorted(CONFIGS) == sorted(MODELS)  # a new model joins the benchmark with its config
    out = tmp_path / "scale.json"
    command = [sys.executable, "-m", "bench", "--dataset", "synthetic-small", "--data-dir", str(tmp_path)]
    result = subprocess.run(
        [*command, "--models", "EASE,MultVAE,RecVAE", "--steps", "2", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads(out.read_text())
    assert [r["model"] for r in results] == ["EASE", "MultVAE", "RecVAE"]
    for r in results:
        for key in ("prep_s", "eval_s", "export_s", "peak_rss_mb"):
            assert math.isfinite(r[key]) and r[key] > 0, (r["model"], key)
        assert 0 < r["nrecall@10"] <= 1
    assert math.isfinite(results[0]["floor_s"]) and math.isnan(results[0]["epoch_s"])  # EASE: fitted, not trained
    if sys.platform == "linux":  # the fit's own peak, above the memory resident before it
        assert 0 < results[0]["fit_peak_mb"] < results[0]["peak_rss_mb"]
    assert results[2]["epoch_steps"] % 4 == 0  # RecVAE's epoch: three passes for the encoder, one for the decoder
    assert (tmp_path / "synthetic-small" / "train_ratings.csv").is_file() and "synthetic-small" in result.stdout
