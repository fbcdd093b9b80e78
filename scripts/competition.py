"""A movie-recommendation competition on your own machine: its data, its hidden test, its score.

    python scripts/competition.py synthetic OUT [--users N --items N --seed S]
        a competition-shaped data set: OUT/train_ratings.csv (user,item,time), the side files
        titles.tsv, years.tsv, genres.tsv, directors.tsv, writers.tsv (item, value; several rows per
        item where it has several), and OUT/hidden.csv, the held-out answers (see --last, --random)
    python scripts/competition.py standin RATINGS OUT [--items-file u.item]
        the same from a MovieLens u.data (and its u.item for titles, years and genres): a stand-in
        of the competition whose hidden answers you know
    python scripts/competition.py check SUBMISSION --data OUT/train_ratings.csv [--k 10]
        a submission is valid: user,item, every user of the data, exactly K distinct items each,
        none the user already has, every id one the data has
    python scripts/competition.py score SUBMISSION HIDDEN [--k 10]
        the competition's metric: Recall@K normalised by min(K, held-out items), the mean over users

The hidden test holds out each user's last --last items by time and --random more drawn from the
rest, as the competition did; the template's `evaluation.split: last_random` does the same to
validate (configs/competition/).
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data_loader.movielens import ML100K_GENRES  # noqa: E402
from data_loader.protocol import Protocol  # noqa: E402

GENRES = (
    "Action Adventure Animation Children Comedy Crime Documentary Drama Family Fantasy Film-Noir Horror "
    "Musical Mystery Romance Sci-Fi Thriller War Western"
).split()


def hold_out(frame, last, random, seed):
    """(kept, hidden): each user's last `last` rows by time plus `random` drawn from the rest go to
    `hidden` (a user keeps at least one row), as the template's last_random split cuts its test."""
    frame = frame.sort_values("time", kind="stable").reset_index(drop=True)
    users = pd.factorize(frame["user"])[0]
    part = Protocol("last_random", {"last": last, "random": random}, 0, seed).parts(users, np.arange(len(frame)))
    return frame[part == 0], frame.loc[part == 2, ["user", "item"]]


def synthetic(n_users=2000, n_items=800, mean_length=80, seed=0):
    """(ratings (user, item, time), {name: side table (item, value)}): power-law item popularity
    and user activity, each user's watches spread over time; integer ids that do not start at 0."""
    rng = np.random.default_rng(seed)
    popularity = 1.0 / np.arange(1, n_items + 1) ** 0.9
    popularity = rng.permutation(popularity / popularity.sum())
    lengths = np.minimum(np.maximum(rng.lognormal(np.log(mean_length), 0.8, n_users).astype(int), 5), n_items // 2)
    users = np.repeat(np.arange(n_users), lengths)
    # items by popularity, with a taste per user: half of the draws from the user's favourite genre block
    favourite = rng.integers(0, 8, n_users)[users]
    block = rng.integers(0, n_items // 8, len(users)) + favourite * (n_items // 8)
    items = np.where(rng.random(len(users)) < 0.5, rng.choice(n_items, len(users), p=popularity), block)
    start = rng.integers(1_100_000_000, 1_400_000_000, n_users)[users]
    times = start + (rng.random(len(users)) * 3e7).astype(np.int64)
    ratings = pd.DataFrame({"user": 11 + 3 * users, "item": 100 + 7 * items, "time": times})
    ratings = ratings.drop_duplicates(["user", "item"]).reset_index(drop=True)
    ids = 100 + 7 * np.arange(n_items)
    n_genres = rng.integers(1, 4, n_items)
    side = {
        "title": pd.DataFrame({"item": ids, "value": [f"Movie {i} ({1950 + i % 70})" for i in range(n_items)]}),
        "year": pd.DataFrame({"item": ids, "value": 1950 + np.arange(n_items) % 70}),
        "genre": pd.DataFrame(
            {
                "item": np.repeat(ids, n_genres),
                "value": np.asarray(GENRES)[rng.integers(0, len(GENRES), n_genres.sum())],
            }
        ).drop_duplicates(),
        "director": pd.DataFrame(
            {"item": ids, "value": [f"nm{d:05d}" for d in rng.integers(0, n_items // 3, n_items)]}
        ),
        "writer": pd.DataFrame(
            {"item": np.repeat(ids, 2), "value": [f"nm{w:05d}" for w in rng.integers(0, n_items // 2, 2 * n_items)]}
        ),
    }
    return ratings, side


def standin(ratings_path, items_path=None):
    """(ratings, side) from a MovieLens u.data (and u.item): every rating is a watch."""
    ratings = pd.read_csv(ratings_path, sep="\t", names=["user", "item", "rating", "time"])[["user", "item", "time"]]
    side = {}
    if items_path is not None:
        items = pd.read_csv(items_path, sep="|", header=None, encoding="latin-1")
        flags = items.iloc[:, 5:24].to_numpy(dtype=bool)
        rows, genre = np.nonzero(flags)
        side["title"] = pd.DataFrame({"item": items[0], "value": items[1]})
        years = items[2].astype(str).str.extract(r"(\d{4})$", expand=False)
        side["year"] = pd.DataFrame({"item": items[0], "value": years}).dropna()
        side["genre"] = pd.DataFrame({"item": items[0].to_numpy()[rows], "value": np.asarray(ML100K_GENRES)[genre]})
    return ratings, side


def write(out, ratings, side, last, random, seed):
    out.mkdir(parents=True, exist_ok=True)
    kept, hidden = hold_out(ratings, last, random, seed)
    kept.to_csv(out / "train_ratings.csv", index=False)
    hidden.to_csv(out / "hidden.csv", index=False)
    for name, table in side.items():  # item<TAB>value lines under a header, no quoting
        lines = [f"item\t{name}"] + [f"{i}\t{v}" for i, v in zip(table["item"], table["value"])]
        (out / f"{name}s.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    files = ", ".join(f"{name}s.tsv" for name in side)
    print(
        f"{out}: {len(kept)} interactions of {kept['user'].nunique()} users and {kept['item'].nunique()} items "
        f"in train_ratings.csv, {len(hidden)} held out in hidden.csv; side files: {files}"
    )


def read_table(path, columns):
    """A CSV of text columns that has `columns`; anything else ends the command with one line."""
    try:
        table = pd.read_csv(path, dtype=str)
    except FileNotFoundError:
        sys.exit(f"error: {path}: not found")
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        sys.exit(f"error: {path}: not a readable CSV ({getattr(e, 'strerror', None) or e})")
    missing = [c for c in columns if c not in table.columns]
    if missing:
        sys.exit(f"error: {path}: the header is {','.join(map(str, table.columns))}, expected {','.join(columns)}")
    return table


def check(submission, data, k):
    """A list of what is wrong with the submission (empty when it is valid)."""
    sub = read_table(submission, ["user", "item"])
    known = read_table(data, ["user", "item"])
    problems = []
    if list(sub.columns) != ["user", "item"]:
        return [f"the header is {','.join(sub.columns)}, expected user,item"]
    counts = sub.groupby("user").size()
    missing = set(known["user"]) - set(counts.index)
    if missing:
        problems.append(f"{len(missing)} users of the data have no row")
    if (counts != k).any():
        problems.append(f"{int((counts != k).sum())} users have other than {k} rows")
    if sub.duplicated().any():
        problems.append(f"{int(sub.duplicated().sum())} repeated (user, item) rows")
    seen = sub.merge(known[["user", "item"]], on=["user", "item"])
    if len(seen):
        problems.append(f"{len(seen)} rows name an item the user already has")
    unknown = ~sub["item"].isin(known["item"]) | ~sub["user"].isin(known["user"])
    if unknown.any():
        problems.append(f"{int(unknown.sum())} rows name a user or item the data does not have")
    return problems


def score(submission, hidden, k):
    """Recall@k normalised by min(k, held-out count), averaged over the users with held-out items."""
    sub, truth = read_table(submission, ["user", "item"]), read_table(hidden, ["user", "item"])
    sub = sub.assign(rank=sub.groupby("user").cumcount())
    hits = sub[sub["rank"] < k].merge(truth, on=["user", "item"]).groupby("user").size()
    held = truth.groupby("user").size()
    return float((hits.reindex(held.index, fill_value=0) / np.minimum(held, k)).mean())


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("synthetic", "standin"):
        command = commands.add_parser(name)
        if name == "standin":
            command.add_argument("ratings", type=Path)
            command.add_argument("--items-file", type=Path)
        command.add_argument("out", type=Path)
        command.add_argument("--users", type=int, default=2000)
        command.add_argument("--items", type=int, default=800)
        command.add_argument("--mean-length", type=int, default=80, help="median interactions a user (synthetic)")
        command.add_argument("--last", type=int, default=2, help="the last items of each user held out (default 2)")
        command.add_argument("--random", type=int, default=3, help="random items held out besides (default 3)")
        command.add_argument("--seed", type=int, default=0)
    command = commands.add_parser("check")
    command.add_argument("submission")
    command.add_argument("--data", required=True)
    command.add_argument("--k", type=int, default=10)
    command = commands.add_parser("score")
    command.add_argument("submission")
    command.add_argument("hidden")
    command.add_argument("--k", type=int, default=10)
    args = parser.parse_args(argv)
    for name in ("users", "items", "mean_length", "k"):
        if getattr(args, name, 1) < 1:
            parser.error(f"--{name.replace('_', '-')}: expected an integer >= 1, got {getattr(args, name)}")
    if args.command in ("synthetic", "standin"):
        taken = [name for name in ("train_ratings.csv", "hidden.csv") if (args.out / name).exists()]
        if taken:  # it may be the real competition's data
            sys.exit(f"error: {args.out} already holds {' and '.join(taken)}; give a new folder")
    if args.command == "synthetic":
        data = synthetic(args.users, args.items, args.mean_length, seed=args.seed)
        write(args.out, *data, args.last, args.random, args.seed)
    elif args.command == "standin":
        try:
            data = standin(args.ratings, args.items_file)
        except (OSError, ValueError, IndexError, pd.errors.ParserError) as e:  # not MovieLens's u.data / u.item
            sys.exit(
                f"error: {args.ratings} / {args.items_file}: not MovieLens files ({getattr(e, 'strerror', None) or e})"
            )
        write(args.out, *data, args.last, args.random, args.seed)
    elif args.command == "check":
        problems = check(args.submission, args.data, args.k)
        print("\n".join(problems) if problems else f"{args.submission}: valid ({args.k} unseen items for every user)")
        return 1 if problems else 0
    else:
        print(f"nrecall@{args.k}: {score(args.submission, args.hidden, args.k):.5f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
