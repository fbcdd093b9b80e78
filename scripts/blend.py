"""Blend several models' saved scores, the weights tuned on validation:

    python scripts/blend.py --valid A_valid.npz B_valid.npz [--test A_test.npz B_test.npz]
                            [--submission A_all.npz B_all.npz --out submission.csv] [--norm rank|minmax]

The files come from `test.py -r RUN/model_best.pth --split valid --scores-out A_valid.npz` (and
`--split test`, and from a model trained on everything for the submission): every user's top N
items and scores. Each model's scores are normalised per user (rank: 1 - place / N; minmax:
(s - min) / (max - min) over the user's N items), weighted and added; an item a model did not list
adds nothing. Every weight vector on a grid of --step that sums to 1 is scored on the validation
files (each logged); the best is applied to the test files, whose figures are printed beside each
model's, and to the submission files (user,item, --k items per user, raw ids).
"""

import argparse
import itertools
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.metric.ranking import ndcg, nrecall, recall  # noqa: E402
from utils.errors import ConfigError  # noqa: E402
from utils.files import check_output_file, write_atomic  # noqa: E402

METRICS = {"nrecall": nrecall, "recall": recall, "ndcg": ndcg}


class ScoreFile:
    """One model's saved top-N: items, scores (n_users, N), held-out CSR rows, raw ids."""

    def __init__(self, path):
        try:
            with np.load(path, allow_pickle=False) as z:
                self.path, self.kind, self.fingerprint = path, str(z["kind"]), str(z["fingerprint"])
                self.items, self.scores = z["items"].astype(np.int64), z["scores"]
                self.indptr, self.indices = z["heldout_indptr"], z["heldout_indices"]
                self.user_ids, self.item_ids = z["user_ids"], z["item_ids"]
        except FileNotFoundError:
            sys.exit(f"error: {path}: not found")
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
            reason = f" ({e.strerror})" if isinstance(e, OSError) and e.strerror else ""
            sys.exit(f"error: {path}: not a score file of test.py --scores-out{reason}")

    def normalised(self, norm):
        """(n_users, N) values in [0, 1], 0 where the model listed nothing."""
        listed = np.isfinite(self.scores)
        if norm == "rank":
            values = 1.0 - np.arange(self.scores.shape[1]) / self.scores.shape[1]
            return np.where(listed, values, 0.0)
        low = np.where(listed, self.scores, np.inf).min(axis=1, keepdims=True)
        high = np.where(listed, self.scores, -np.inf).max(axis=1, keepdims=True)
        span = np.where(high > low, high - low, 1.0)
        return np.where(listed, (self.scores - low) / span, 0.0)


def read_group(paths, what, kind=None):
    """The score files of one split, checked to be of one data set, one split and one ranking (and
    of `kind` where given)."""
    files = [ScoreFile(p) for p in paths]
    first = files[0]
    if kind is not None and first.kind != kind:
        sys.exit(
            f"error: {what}: {first.path} ranks the {first.kind} split; expected scores of the {kind} (test.py "
            "--scores-out on a model trained with evaluation.split none, which ranks out every known item)"
        )
    for f in files[1:]:
        same = f.fingerprint == first.fingerprint and f.kind == first.kind
        if not same or not np.array_equal(f.item_ids, first.item_ids):
            sys.exit(f"error: {what}: {f.path} is not of the data and split of {first.path}")
    return files


def blended_top(files, weights, norm, k):
    """(n_users, k) item indices of the weighted sum, best first (items no model listed excluded)."""
    n_users, n_items = files[0].items.shape[0], len(files[0].item_ids)
    parts = [(f.items, f.normalised(norm), np.isfinite(f.scores)) for f in files]
    top = np.empty((n_users, min(k, n_items)), dtype=np.int64)
    for start in range(0, n_users, 1024):
        rows = slice(start, start + 1024)
        total = torch.zeros(min(1024, n_users - start), n_items, dtype=torch.float64)  # this batch's users
        listed = torch.zeros_like(total, dtype=torch.bool)
        for (items, values, ok), weight in zip(parts, weights):
            index = torch.from_numpy(items[rows])
            total.scatter_add_(1, index, torch.from_numpy(np.asarray(values[rows] * weight, dtype=np.float64)))
            listed |= torch.zeros_like(listed).scatter_(1, index, torch.from_numpy(ok[rows]))
        total[~listed] = -np.inf
        top[rows] = torch.topk(total, top.shape[1], dim=1).indices.numpy()
    return top


def figures(files, top, k):
    """{metric@k: mean over the users with held-out items} of a ranking `top` (n_users, k)."""
    f = files[0]
    counts = np.diff(f.indptr)
    users = np.flatnonzero(counts > 0)
    heldout = [set(f.indices[f.indptr[u] : f.indptr[u + 1]]) for u in users]
    hits = torch.tensor([[item in held for item in top[u, :k]] for u, held in zip(users, heldout)], dtype=torch.float64)
    relevant = torch.from_numpy(counts[users]).double()
    return {f"{name}@{k}": float(fn(hits, relevant).mean()) for name, fn in METRICS.items()}


def weight_grid(n_models, step):
    parts = round(1 / step)
    for split in itertools.product(range(parts + 1), repeat=n_models):
        if sum(split) == parts:
            yield tuple(p / parts for p in split)


def main(argv):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], epilog=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--valid", nargs="+", required=True, help="score files of the validation split, one a model")
    parser.add_argument("--test", nargs="+", help="score files of the test split, in the same model order")
    parser.add_argument("--submission", nargs="+", help="score files of the models trained on everything")
    parser.add_argument("--out", help="the submission CSV (user,item) written from --submission")
    parser.add_argument("--norm", choices=("rank", "minmax"), default="rank")
    parser.add_argument("--metric", default="nrecall", choices=sorted(METRICS), help="what the weights maximise")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--step", type=float, default=0.1, help="weight grid step (default 0.1)")
    args = parser.parse_args(argv)
    if args.k < 1:
        parser.error(f"--k: expected an integer >= 1, got {args.k}")
    if not 0 < args.step <= 1 or abs(1 / args.step - round(1 / args.step)) > 1e-6:
        parser.error(f"--step: expected 1 / N for a whole N (0.1, 0.05, 0.25, ...), got {args.step}")
    if args.out:
        try:
            check_output_file(args.out, "--out", [*args.valid, *(args.test or []), *(args.submission or [])])
        except ConfigError as e:
            sys.exit(f"error: {e}")
    for option in ("test", "submission"):
        given = getattr(args, option)
        if given is not None and len(given) != len(args.valid):
            sys.exit(f"error: --{option}: give one file a model, as --valid ({len(args.valid)})")
    if args.submission and not args.out:
        sys.exit("error: --submission needs --out (the CSV to write)")
    valid = read_group(args.valid, "--valid")
    key = f"{args.metric}@{args.k}"
    best, best_value = None, -1.0
    for weights in weight_grid(len(valid), args.step):
        value = figures(valid, blended_top(valid, weights, args.norm, args.k), args.k)[key]
        print(f"weights {', '.join(f'{w:.2f}' for w in weights)}: valid {key} {value:.5f}")
        if value > best_value:
            best, best_value = weights, value
    print(f"best on validation: weights {best} ({key} {best_value:.5f}, {args.norm} normalisation)")
    if args.test:
        test = read_group(args.test, "--test")
        for path, weights in [*zip(args.test, np.eye(len(test))), ("blend", best)]:
            shown = ", ".join(
                f"{n} {v:.5f}" for n, v in figures(test, blended_top(test, weights, args.norm, args.k), args.k).items()
            )
            print(f"test {Path(path).name if path != 'blend' else 'blend'}: {shown}")
    if args.submission:
        files = read_group(args.submission, "--submission", kind="export")
        top = blended_top(files, best, args.norm, args.k)
        table = pd.DataFrame(
            {"user": np.repeat(files[0].user_ids, top.shape[1]), "item": files[0].item_ids[top.ravel()]}
        )
        write_atomic(args.out, lambda f: table.to_csv(f, index=False), binary=False)
        users = len(files[0].user_ids)
        print(f"submission: {args.out} ({len(table)} rows, {top.shape[1]} items for each of {users} users)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
