"""Evaluate a checkpoint on the test split, and export each user's top-K recommendations.

    python test.py -r saved/models/NAME/RUN/model_best.pth
    python test.py -r saved/models/NAME/RUN/model_best.pth --topk-out recs.csv --k 10

Prints the metrics and writes them to test_metrics.json beside the checkpoint.
"""

import argparse
import sys

import numpy as np
import pandas as pd
import torch

from data_loader import DATA_LOADERS
from logger.logger import get_logger, setup_logging
from model import METRICS, MODELS
from trainer.evaluation import evaluate, parse_metrics, rank_out, top_k_items
from utils.checkpoint import load_checkpoint, load_weights
from utils.cli import run_main
from utils.errors import ConfigError
from utils.parse_config import ConfigParser
from utils.util import keep_freed_memory, resolve_device, write_json


def build_arg_parser():
    parser = argparse.ArgumentParser(description="Evaluate a checkpoint and export top-K recommendations.")
    parser.add_argument("-r", "--resume", required=True, help="checkpoint to evaluate (e.g. model_best.pth)")
    parser.add_argument("-c", "--config", help="config file to use instead of the checkpoint's own")
    parser.add_argument("-d", "--device", default="auto", help="auto (default), cpu, cuda, cuda:N, mps")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key (JSON value)")
    parser.add_argument(
        "--split", choices=("test", "valid"), default="test", help="which held-out split to evaluate (default: test)"
    )
    parser.add_argument("--topk-out", dest="topk_out", help="write each user's top-K unseen items to this CSV")
    parser.add_argument("--k", type=int, default=10, help="K for --topk-out (default: 10)")
    return parser


@torch.no_grad()
def export_topk(model, dataset, k, path, device, batch_size=1024):
    """CSV with one row per (user, rank): user_id, rank, item_id, title, genres, score; seen items ranked out."""
    known = (dataset.train + dataset.valid).tocsr()
    k = min(k, dataset.n_items)
    users_out, items_out, scores_out = [], [], []
    for start in range(0, dataset.n_users, batch_size):
        users = np.arange(start, min(start + batch_size, dataset.n_users))
        scores = model.full_scores(torch.from_numpy(users).to(device)).float()  # (B, n_items)
        rank_out(scores, known[users])
        top = top_k_items(scores, k)  # (B, k), ties by lower item index
        users_out.append(np.repeat(users, k))
        items_out.append(top.cpu().numpy().ravel())
        scores_out.append(scores.gather(1, top).cpu().numpy().ravel())
    users, items = np.concatenate(users_out), np.concatenate(items_out)
    table = pd.DataFrame(
        {
            "user_id": dataset.user_ids[users],
            "rank": np.tile(np.arange(1, k + 1), dataset.n_users),
            "item_id": dataset.item_ids[items],
            "title": dataset.item_titles[items] if dataset.item_titles is not None else "",
            "genres": dataset.item_genres[items] if dataset.item_genres is not None else "",
            "score": np.concatenate(scores_out),
        }
    )
    table = table[np.isfinite(table["score"])]  # a user who has seen nearly everything gets fewer rows
    table.to_csv(path, index=False)
    return len(table)


def main(args):
    if args.k < 1:
        raise ConfigError(f"--k: expected a positive integer, got {args.k}")
    checkpoint = load_checkpoint(args.resume)
    config = ConfigParser.from_args(args, checkpoint_config=checkpoint["config"])
    device = resolve_device(args.device)
    setup_logging(None)
    keep_freed_memory()
    logger = get_logger("test")

    data = config.init_obj("data_loader", DATA_LOADERS, seed=config["seed"])
    logger.info(f"Data: {data.dataset.summary()}")
    model = config.init_obj("arch", MODELS, dataset=data.dataset)
    load_weights(model, checkpoint, args.resume)
    model = model.to(device).eval()

    loader = data.split_test() if args.split == "test" else data.split_validation()
    if loader is None:
        raise ConfigError("--split valid: this config has no validation split (valid_fraction = 0)")
    if loader.n_skipped:
        logger.info(f"{loader.n_skipped} users have no {args.split} items and are not evaluated")
    metrics = parse_metrics(config["metrics"], METRICS)
    figures = evaluate(model, loader, metrics, device)
    figures_path = config.resume.parent / f"{args.split}_metrics.json"
    write_json(figures, figures_path)
    logger.info(f"{args.split} metrics (epoch {checkpoint['epoch']}, {len(loader.users)} users):")
    for name, value in figures.items():
        logger.info(f"    {name:15s}: {value:.5f}")
    logger.info(f"Written to {figures_path}")

    if args.topk_out:
        rows = export_topk(model, data.dataset, args.k, args.topk_out, device)
        logger.info(f"Top-{args.k} recommendations for {data.dataset.n_users} users: {args.topk_out} ({rows} rows)")


if __name__ == "__main__":
    sys.exit(run_main(main, build_arg_parser().parse_args()))
