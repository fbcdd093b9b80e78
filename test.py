"""Evaluate a checkpoint on the test split, and export each user's top-K recommendations.

    python test.py -r saved/models/NAME/RUN/model_best.pth
    python test.py -r saved/models/NAME/RUN/model_best.pth --topk-out recs.csv --k 10

Prints the metrics and writes them to test_metrics.json beside the checkpoint.
"""

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from data_loader import DATA_LOADERS
from logger.logger import close_logging, get_logger, setup_logging
from model import METRICS, MODELS
from trainer.evaluation import checked_scores, evaluate, parse_metrics, rank_out, top_k_items
from utils.checkpoint import check_data, load_checkpoint, load_weights
from utils.cli import run_main
from utils.device import resolve_device
from utils.errors import ConfigError, DataError
from utils.files import write_atomic, write_json
from utils.parse_config import ConfigParser
from utils.util import keep_freed_memory, set_threads


def build_arg_parser():
    parser = argparse.ArgumentParser(description="Evaluate a checkpoint and export top-K recommendations.")
    parser.add_argument("-r", "--resume", required=True, help="checkpoint to evaluate (e.g. model_best.pth)")
    parser.add_argument("-c", "--config", help="config file to use instead of the checkpoint's own")
    parser.add_argument("-d", "--device", default="auto", help="auto (default), cpu, cuda, cuda:N, mps")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key (JSON value)")
    parser.add_argument("--threads", type=int, help="torch's CPU threads (default: the config's trainer.threads)")
    parser.add_argument(
        "--split", choices=("test", "valid"), default="test", help="which held-out split to evaluate (default: test)"
    )
    parser.add_argument("--topk-out", dest="topk_out", help="write each user's top-K unseen items to this CSV")
    parser.add_argument("--k", type=int, default=10, help="K for --topk-out (default: 10)")
    return parser


def check_output_file(path, option):
    """A file that can be written: its folder exists and is writable, and it is not a folder."""
    path = Path(path)
    if not str(path).strip():
        raise ConfigError(f"{option}: the path is empty")
    if path.is_dir():
        raise ConfigError(f"{option}: {path} is a folder; give a file name such as {path / 'recs.csv'}")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise ConfigError(f"{option}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ConfigError(f"{option}: {path} cannot be written (permission denied)")
    return path


@torch.no_grad()
def export_topk(model, dataset, k, path, device, batch_size=1024):
    """CSV with one row per (user, rank): user_id, rank, item_id, title, genres, score; seen items
    ranked out. Ids are written exactly as the input had them."""
    known = (dataset.train + dataset.valid).tocsr()
    k = min(k, dataset.n_items)
    users_out, items_out, scores_out = [], [], []
    for start in range(0, dataset.n_users, batch_size):
        users = np.arange(start, min(start + batch_size, dataset.n_users))
        history = known[users]
        scores = checked_scores(model, torch.from_numpy(users).to(device), history).float()  # (B, n_items)
        rank_out(scores, history)
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
    write_atomic(path, lambda f: table.to_csv(f, index=False), binary=False)
    return len(table)


def main(args):
    if args.k < 1:
        raise ConfigError(f"--k: expected a positive integer, got {args.k}")
    if not args.resume.strip():
        raise ConfigError("-r: the checkpoint path is empty (give a checkpoint file such as model_best.pth)")
    checkpoint = load_checkpoint(args.resume)
    config = ConfigParser.from_args(args, checkpoint_config=checkpoint["config"], for_training=False)
    figures_path = Path(args.resume).parent / f"{args.split}_metrics.json"
    try:
        check_output_file(figures_path, "-r")
    except ConfigError:
        figures_path = None  # a read-only checkpoint folder: the figures are printed, not written
    if args.topk_out:
        check_output_file(args.topk_out, "--topk-out")
    device = resolve_device(args.device)
    setup_logging(None, buffer=False)  # the console only: an evaluation keeps no log file
    set_threads(args.threads or config["trainer"].get("threads", "auto"))
    if device.type == "cpu":
        keep_freed_memory()
    logger = get_logger("test")

    data = config.init_obj("data_loader", DATA_LOADERS, seed=config["seed"])
    logger.info(f"Data: {data.dataset.summary()}")
    check_data(
        checkpoint, data.fingerprint(), args.resume, any(s.startswith("data_loader.") for s in args.set or []), logger
    )
    model = config.init_obj("arch", MODELS, dataset=data.dataset)
    load_weights(model, checkpoint, args.resume)  # a fitted model's state comes from the checkpoint
    model = model.to(device).eval()
    note = model.on_device(device)
    if note:
        logger.info(note)

    loader = data.split_test() if args.split == "test" else data.split_validation()
    if loader is None:
        raise ConfigError("--split valid: this config has no validation split (valid_fraction = 0)")
    if len(loader.users) == 0:
        raise DataError(f"nothing to evaluate: no user has a {args.split} item after the split")
    if loader.n_skipped:
        logger.info(f"{loader.n_skipped} users have no {args.split} items and are not evaluated")
    metrics = parse_metrics(config["metrics"], METRICS)
    figures = evaluate(model, loader, metrics, device)
    protocol = "full ranking" if not data.eval_negatives else f"{data.eval_negatives} sampled negatives"
    logger.info(f"{args.split} metrics (epoch {checkpoint['epoch']}, {len(loader.users)} users, {protocol}):")
    for name, value in figures.items():
        logger.info(f"    {name:15s}: {value:.5f}")
    if figures_path is None:
        logger.warning(f"{Path(args.resume).parent} cannot be written: the figures above are not saved to a file")
    else:
        write_json(figures, figures_path)
        logger.info(f"Written to {figures_path}")

    if args.topk_out:
        rows = export_topk(model, data.dataset, args.k, args.topk_out, device)
        logger.info(f"Top-{args.k} recommendations for {data.dataset.n_users} users: {args.topk_out} ({rows} rows)")


def run(argv):
    code = run_main(main, build_arg_parser().parse_args(argv))
    close_logging()
    return code


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
