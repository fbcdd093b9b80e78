"""Scale benchmark: every shipped model on a synthetic data set of a competition's size.

    python -m bench --dataset synthetic-competition [--models EASE,MultVAE] [--steps 20] [--out f.json]
    python -m bench --dataset synthetic-20m
    python -m bench --dataset synthetic-small          (seconds: the benchmark checking itself)

The data is generated once, reproducibly (scripts/competition.py's generator, seed 0: power-law
item popularity and user activity, time stamps, side files) into <data-dir>/synthetic-<size>/, and
read as a competition's is: the CSV source, each user's last 2 + 3 random items held out
(configs/competition/). Each model runs from its shipped config (its arch, batches, loss and
optimizer), in its own process, so `peak_rss_mb` is its own. Per model:

- prep_s: reading the CSV and the side files, and the split (no cache);
- fit_s: a closed-form model's fit; epoch_s: one epoch of training steps, timed over --steps
  steps and scaled to the epoch's batch count (a phased model's passes included);
- eval_s: the full-ranking evaluation of every user with test items (the trainer's);
- export_s: every user's top 10, none known (test.py's export);
- floor_s: for EASE, XᵀX and its inverse alone (the fit without forming B from them);
- fit_peak_mb: the memory the fit added at its peak, above what was resident before it (Linux).
"""

import argparse
import json
import multiprocessing as mp
import sys
import time
from itertools import islice
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SIZES = {  # users, items, median interactions a user (the generator's lognormal, before repeats are dropped)
    "small": (2000, 800, 40),
    "competition": (31360, 6807, 145),  # 5.25M interactions, as the competition's 5.2M
    "20m": (138493, 26744, 130),  # about 20M, as MovieLens-20M
}
CONFIGS = {  # every shipped model: its ML-100K config, or its competition config where there is one
    "EASE": "configs/competition/ease.json",
    "EDLAE": "configs/edlae_ml100k.json",
    "ItemKNN": "configs/itemknn_ml100k.json",
    "RP3beta": "configs/rp3beta_ml100k.json",
    "Pop": "configs/pop_ml100k.json",
    "MultVAE": "configs/competition/multvae.json",
    "RecVAE": "configs/recvae_ml100k.json",
    "SASRec": "configs/competition/sasrec.json",
    "BERT4Rec": "configs/bert4rec_ml100k.json",
    "MF": "configs/mf_ml100k.json",
    "NeuMF": "configs/pointwise_ml100k.json",
    "LightGCN": "configs/competition/lightgcn.json",
    "NGCF": "config.json",
}


def synchronize(device):
    """Wait for the GPU's queued work, so that a time is the work's and not its launch's."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def generate(size, data_dir):
    """<data_dir>/synthetic-<size>/ with train_ratings.csv and the side files, made once."""
    folder = Path(data_dir) / f"synthetic-{size}"
    if not (folder / "train_ratings.csv").is_file():
        sys.path.insert(0, str(ROOT / "scripts"))
        import competition

        users, items, length = SIZES[size]
        ratings, side = competition.synthetic(users, items, length, seed=0)
        competition.write(folder, ratings, side, last=0, random=0, seed=0)  # nothing hidden: the split holds out
    return folder


def config_for(model, folder):
    """The model's shipped config on the synthetic data, with the competition's data and split."""
    from utils.parse_config import ConfigParser

    competition = json.loads((ROOT / "configs" / "competition" / "ease.json").read_text())
    config = json.loads((ROOT / CONFIGS[model]).read_text())
    config["data_loader"] = competition["data_loader"]
    config["data_loader"]["args"].update(data_dir=str(folder), cache=False)
    config["evaluation"] = competition["evaluation"]
    config["wandb"]["mode"] = "disabled"
    return ConfigParser(config)


def run_model(model_name, folder, threads, steps, device, queue):
    import numpy as np
    import scipy.linalg
    import torch

    import train
    from bench.run import peak_rss_mb, reset_peak_rss, rss_mb
    from data_loader import build_data
    from model import LOSSES, METRICS, MODELS
    from model._item_item import gram_matrix
    from test import top_k_lists
    from trainer.evaluation import evaluate, parse_metrics
    from trainer.trainer import Trainer
    from utils.device import configure_device, resolve_device

    device = resolve_device(device)
    configure_device(device)
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    config = config_for(model_name, folder)
    start = time.perf_counter()
    data = build_data(config, seed=config["seed"])
    figures = {"model": model_name, "threads": threads, "interactions": int(data.dataset.known.nnz)}
    figures["prep_s"] = time.perf_counter() - start
    model = config.init_obj("arch", MODELS, dataset=data.dataset)
    whole_peak, before = peak_rss_mb(), rss_mb()
    restarted = reset_peak_rss()
    start = time.perf_counter()
    model.fit(data.dataset)
    figures["fit_s"] = time.perf_counter() - start
    figures["fit_peak_mb"] = max(0.0, peak_rss_mb() - before) if restarted else float("nan")  # the fit's own
    model = model.to(device)
    model.on_device(device)
    params = [p for p in model.parameters() if p.requires_grad]
    figures["epoch_s"] = float("nan")
    if params:
        criterion = config.bind_loss("loss", LOSSES) if config.get("loss") is not None else model.loss
        optimizer = train.build_optimizer(config, model, params)
        trainer = Trainer(model, criterion, {}, optimizer, config, device, data_loader=data)
        batches, n = trainer.epoch_batches(1)
        model.train()
        for batch in islice(batches, 2):  # warm-up
            trainer._backward_and_step(trainer._loss(trainer._to_device(batch)))
        synchronize(device)
        start, done = time.perf_counter(), 0
        for batch in islice(batches, steps):
            trainer._backward_and_step(trainer._loss(trainer._to_device(batch)))
            done += 1
        synchronize(device)
        figures["epoch_s"] = (time.perf_counter() - start) / max(done, 1) * n
        figures["epoch_steps"] = n
    model.eval()
    metrics = parse_metrics(["nrecall@10"], METRICS)
    start = time.perf_counter()
    figures["nrecall@10"] = evaluate(model, data.evaluation("test"), metrics, device)["nrecall@10"]
    figures["eval_s"] = time.perf_counter() - start
    start = time.perf_counter()
    history = data.protocol.exported_history(data.dataset)
    top_k_lists(model, data.dataset, history, 10, device, data.protocol.batch_size)
    figures["export_s"] = time.perf_counter() - start
    figures["floor_s"] = float("nan")
    if model_name == "EASE":  # XᵀX, dense, and its inverse: what any EASE fit computes
        X = data.dataset.train
        start = time.perf_counter()
        gram = gram_matrix(X, np.float64)  # the fit's own XᵀX, a block of columns at a time
        gram[np.diag_indices_from(gram)] += 1.0
        scipy.linalg.inv(gram.T, overwrite_a=True, check_finite=False)  # LAPACK's LU inverse, in place
        figures["floor_s"] = time.perf_counter() - start
        figures["gram_mb"] = gram.nbytes / 2**20
    figures["peak_rss_mb"] = max(whole_peak, peak_rss_mb())  # the process's, on any device
    figures["device"] = device.type
    if device.type == "cuda":
        figures["peak_gpu_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    queue.put(figures)


def print_table(size, results):
    columns = ["model", "prep_s", "fit_s", "epoch_s", "eval_s", "export_s", "floor_s"]
    columns += ["fit_peak_mb", "peak_rss_mb", "nrecall@10"]
    print(f"dataset: synthetic-{size}, {results[0]['interactions']:,} interactions, {results[0]['threads']} thread(s)")
    rows = [
        [r["model"], *(f"{r[c]:.0f}" if c.endswith("_mb") else f"{r[c]:.2f}" for c in columns[1:])] for r in results
    ]
    widths = [max(len(c), *(len(row[i]) for row in rows)) for i, c in enumerate(columns)]
    print("  ".join(c.rjust(w) for c, w in zip(columns, widths)))
    for row in rows:
        print("  ".join(cell.rjust(w) for cell, w in zip(row, widths)))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True, choices=[f"synthetic-{s}" for s in SIZES])
    parser.add_argument("--data-dir", default=str(ROOT / "data"), help="where the data set is generated (data/)")
    parser.add_argument("--models", default=",".join(CONFIGS))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=20, help="training steps timed per model (default 20)")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--out", help="write the figures here as JSON")
    args = parser.parse_args(argv)
    size = args.dataset.removeprefix("synthetic-")
    unknown = [m for m in args.models.split(",") if m not in CONFIGS]
    if unknown:
        parser.error(f"--models: unknown {', '.join(unknown)} (accepted: {', '.join(CONFIGS)})")
    folder = generate(size, args.data_dir)
    context = mp.get_context("spawn")
    results = []
    for name in args.models.split(","):
        queue = context.Queue()
        process = context.Process(target=run_model, args=(name, folder, args.threads, args.steps, args.device, queue))
        process.start()
        results.append(queue.get())
        process.join()
        print(json.dumps(results[-1]), flush=True)
    print_table(size, results)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
