"""Evaluate a checkpoint on the test split, and export each user's top-K recommendations.

    python test.py -r saved/models/NAME/RUN/model_best.pth
    python test.py -r saved/models/NAME/RUN/model_best.pth --topk-out recs.csv --k 10

Prints the metrics and writes them to test_metrics.json beside the checkpoint. The export ranks
out every interaction the data set has (train, valid and test), so no user is recommended an item
they already have; its format is the config's evaluation.export ("detailed" or "submission").
A model trained with nothing held out (evaluation.split = none) is exported without evaluating.
"""

import signal
import sys

from utils.errors import exit_interrupted

if __name__ == "__main__":  # Ctrl-C while the imports below load ends quietly, as it does later
    signal.signal(signal.SIGINT, exit_interrupted)

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from data_loader import build_data
from logger.logger import close_logging, get_logger, run_main, setup_logging
from logger.progress import Progress
from model import METRICS, MODELS
from trainer.evaluation import checked_scores, evaluate, parse_metrics, rank_out, top_k_items
from utils.checkpoint import check_data, load_checkpoint, load_weights
from utils.device import keep_freed_memory, resolve_device, set_threads
from utils.errors import ConfigError, DataError
from utils.files import check_output_file, write_atomic, write_json
from utils.parse_config import ConfigParser
from utils.runs import RUN_FILE_SUFFIXES


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
    parser.add_argument(
        "--scores-out",
        dest="scores_out",
        help="save every user's top --n items with their scores (.npz) for scripts/blend.py: of --split's "
        "ranking (what it ranks out, its held-out items), or of the export where nothing is held out",
    )
    parser.add_argument("--n", type=int, default=100, help="items per user in --scores-out (default: 100)")
    return parser


def protected_files(checkpoint_path, data):
    """What an export must never replace: the checkpoint, its run folder's files, the data's files."""
    run = Path(checkpoint_path).parent
    run_files = [p for p in run.iterdir() if p.suffix in RUN_FILE_SUFFIXES] if run.is_dir() else []
    return [Path(checkpoint_path), *run_files, *data.input_files()]


@torch.no_grad()
def top_k_lists(model, dataset, history, k, device, batch_size):
    """(users (U*k,), items (U*k,), scores (U*k,)) of every user's top-k items, `history` (CSR
    (n_users, n_items)) ranked out and given to the model; -inf scores where a user has fewer than
    k items left."""
    users_out, items_out, scores_out = [], [], []
    starts = range(0, dataset.n_users, batch_size)
    for start in Progress(starts, len(starts), "export"):
        users = np.arange(start, min(start + batch_size, dataset.n_users))
        rows = history[users]
        scores = checked_scores(model, torch.from_numpy(users).to(device), rows).float()  # (B, n_items)
        rank_out(scores, rows)
        top = top_k_items(scores, k)  # (B, k), ties by lower item index
        users_out.append(np.repeat(users, k))
        items_out.append(top.cpu().numpy().ravel())
        scores_out.append(scores.gather(1, top).cpu().numpy().ravel())
    return np.concatenate(users_out), np.concatenate(items_out), np.concatenate(scores_out)


def export_table(dataset, users, items, scores, ranks, export):
    """The export as a DataFrame: "submission" (user,item) or "detailed" (user_id, rank, item_id,
    title, each side attribute, score). Ids exactly as the input had them."""
    if export == "submission":
        return pd.DataFrame({"user": dataset.user_ids[users], "item": dataset.item_ids[items]})
    columns = {
        "user_id": dataset.user_ids[users],
        "rank": ranks,
        "item_id": dataset.item_ids[items],
        "title": dataset.item_titles[items] if dataset.item_titles is not None else "",
    }
    for name, attribute in dataset.item_attributes.items():
        columns[name] = attribute.joined(items)
    for name, values in dataset.item_numbers.items():
        columns[name] = values[items]
    return pd.DataFrame({**columns, "score": scores})


def export_topk(model, data, k, path, device, logger):
    """Write every user's top-k unseen items to `path` (CSV); returns the number of rows."""
    dataset = data.dataset
    k = min(k, dataset.n_items)
    history = data.protocol.exported_history(dataset)
    users, items, scores = top_k_lists(model, dataset, history, k, device, data.protocol.batch_size)
    found = np.isfinite(scores)  # a user who has nearly every item gets fewer than k
    short = len(np.unique(users[~found]))
    if short:
        logger.warning(f"{short} users already have all but fewer than {k} items: they get fewer than {k} rows")
    ranks = np.tile(np.arange(1, k + 1), dataset.n_users)  # before the short users' missing rows are left out
    table = export_table(dataset, users[found], items[found], scores[found], ranks[found], data.protocol.export)
    write_atomic(path, lambda f: table.to_csv(f, index=False), binary=False)
    return len(table)


def main(args):
    if args.k < 1:
        raise ConfigError(f"--k: expected a positive integer, got {args.k}")
    if not args.resume.strip():
        raise ConfigError("-r: the checkpoint path is empty (give a checkpoint file such as model_best.pth)")
    for registry in (MODELS, METRICS):
        registry.check()
    checkpoint = load_checkpoint(args.resume)
    config = ConfigParser.from_args(args, checkpoint_config=checkpoint["config"], for_training=False)
    figures_path = Path(args.resume).parent / f"{args.split}_metrics.json"
    try:
        check_output_file(figures_path, "-r")
    except ConfigError:
        figures_path = None  # a read-only checkpoint folder: the figures are printed, not written
    for option, path in (("--topk-out", args.topk_out), ("--scores-out", args.scores_out)):
        if path:
            check_output_file(path, option)
    if args.n < 1:
        raise ConfigError(f"--n: expected a positive integer, got {args.n}")
    device = resolve_device(args.device)
    setup_logging(None, buffer=False)  # the console only: an evaluation keeps no log file
    set_threads(args.threads or config["trainer"].get("threads", "auto"))
    if device.type == "cpu":
        keep_freed_memory()
    logger = get_logger("test")

    data = build_data(config, seed=config["seed"])
    logger.info(f"Data: {data.dataset.summary()}; evaluation: {data.protocol.describe()}")
    changed = any(s.startswith(("data_loader.", "evaluation.")) for s in args.set or [])
    check_data(checkpoint, data.fingerprint(), args.resume, changed, logger)
    for option, path in (("--topk-out", args.topk_out), ("--scores-out", args.scores_out)):
        if path:
            check_output_file(path, option, protected_files(args.resume, data))
    model = config.init_obj("arch", MODELS, dataset=data.dataset)
    load_weights(model, checkpoint, args.resume)  # a fitted model's state comes from the checkpoint
    model = model.to(device).eval()
    note = model.on_device(device)
    if note:
        logger.info(note)

    loader = data.evaluation(args.split)
    if args.scores_out:
        save_scores(model, data, loader, args, device, logger)
    if loader is None and not (args.topk_out or args.scores_out):
        raise DataError(
            f"nothing to evaluate: the split ({data.protocol.describe()}) holds out no {args.split} items; "
            "--topk-out FILE exports recommendations"
        )
    if loader is None:
        logger.info(f"No {args.split} items held out: nothing to evaluate, recommendations exported only")
    else:
        evaluate_split(model, loader, config, data, checkpoint, args, figures_path, device, logger)
    if args.topk_out:
        rows = export_topk(model, data, args.k, args.topk_out, device, logger)
        logger.info(
            f"Top-{args.k} recommendations ({data.protocol.export}) for {data.dataset.n_users} users, every known "
            f"item ranked out: {args.topk_out} ({rows} rows)"
        )


def save_scores(model, data, loader, args, device, logger):
    """Every user's top --n items and scores, for blending: ranked as --split ranks them (its
    history ranked out, its held-out items saved beside them), or as the export ranks them where
    nothing is held out for it."""
    dataset = data.dataset
    if loader is not None:
        history, heldout, kind = loader.exclude, loader.heldout, args.split
    else:
        history, kind = data.protocol.exported_history(dataset), "export"
        heldout = sp.csr_matrix(dataset.known.shape, dtype=np.float32)
    n = min(args.n, dataset.n_items)
    users, items, scores = top_k_lists(model, dataset, history, n, device, data.protocol.batch_size)
    arrays = {
        "kind": np.array(kind),
        "fingerprint": np.array(data.fingerprint()),
        "items": items.reshape(dataset.n_users, n).astype(np.int32),  # (n_users, n) item indices, best first
        "scores": scores.reshape(dataset.n_users, n).astype(np.float32),  # -inf where a user has fewer items
        "heldout_indptr": heldout.indptr,
        "heldout_indices": heldout.indices,
        "user_ids": dataset.user_ids.astype(str),
        "item_ids": dataset.item_ids.astype(str),
    }
    write_atomic(args.scores_out, lambda f: np.savez(f, **arrays))
    logger.info(f"Top-{n} scores of {dataset.n_users} users ({kind}): {args.scores_out}")


def evaluate_split(model, loader, config, data, checkpoint, args, figures_path, device, logger):
    """Print the figures of `loader`'s users and write them beside the checkpoint."""
    if loader.n_skipped:
        logger.info(f"{loader.n_skipped} users have no {args.split} items and are not evaluated")
    metrics = parse_metrics(config["metrics"], METRICS)
    figures = evaluate(model, loader, metrics, device)
    protocol = "full ranking" if data.protocol.candidates == "all" else f"{data.protocol.candidates} sampled negatives"
    logger.info(f"{args.split} metrics (epoch {checkpoint['epoch']}, {len(loader.users)} users, {protocol}):")
    for name, value in figures.items():
        logger.info(f"    {name:15s}: {value:.5f}")
    if figures_path is None:
        logger.warning(f"{Path(args.resume).parent} cannot be written: the figures above are not saved to a file")
    else:
        write_json(figures, figures_path)
        logger.info(f"Written to {figures_path}")


def run(argv):
    try:
        code = run_main(main, build_arg_parser().parse_args(argv))
    except KeyboardInterrupt:  # nothing test.py writes is left half-written (every file is atomic)
        print("interrupted", file=sys.stderr)
        code = 130
    close_logging()
    return code


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.default_int_handler)  # from here each script handles Ctrl-C
    sys.exit(run(sys.argv[1:]))
