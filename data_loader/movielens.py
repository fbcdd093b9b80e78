"""MovieLens (GroupLens) ratings as implicit feedback, every release: downloaded, verified, split.

`release` picks the data set; the files are read from `data_dir/<release>/` and downloaded there
(progress bar, temporary file, checksum, extraction, then moved into place) when missing.
"""

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from base.base_data_loader import BaseDataLoader
from data_loader.cache import cached_dataset
from data_loader.download import fetch_archive
from data_loader.preparation import preparation_args, prepare
from data_loader.tables import read_table
from utils.errors import ConfigError, DataError

BASE_URL = "https://files.grouplens.org/datasets/movielens"
COLUMNS = ("user", "item", "rating", "time")
TYPES = {"user": np.int64, "item": np.int64, "rating": np.float64, "time": np.float64}  # ids exact as integers


@dataclass(frozen=True)
class Release:
    url: str
    md5: str | None  # published by GroupLens beside the archive; None where it changes over time
    folder: str  # the folder inside the zip
    ratings: str  # ratings file inside the folder
    layout: str  # 'tab' (u.data), 'colons' (user::item::rating::time), 'csv' (with a header)
    items: str  # the file with titles
    file_sha256: dict = field(default_factory=dict)  # extracted files we have verified copies of


RELEASES = {
    "ml-100k": Release(
        f"{BASE_URL}/ml-100k.zip",
        "0e33842e24a9c977be4e0107933c0723",
        "ml-100k",
        "u.data",
        "tab",
        "u.item",
        {"u.data": "06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490"},
    ),
    "ml-1m": Release(
        f"{BASE_URL}/ml-1m.zip", "c4d9eecfca2ab87c1945afe126590906", "ml-1m", "ratings.dat", "colons", "movies.dat"
    ),
    "ml-10m": Release(
        f"{BASE_URL}/ml-10m.zip",
        "ce571fd55effeba0271552578f2648bd",
        "ml-10M100K",
        "ratings.dat",
        "colons",
        "movies.dat",
    ),
    "ml-20m": Release(
        f"{BASE_URL}/ml-20m.zip", "cd245b17a1ae2cc31bb14903e1204af3", "ml-20m", "ratings.csv", "csv", "movies.csv"
    ),
    "ml-25m": Release(
        f"{BASE_URL}/ml-25m.zip", "6b51fb2759a8657d3bfcbfc42b592ada", "ml-25m", "ratings.csv", "csv", "movies.csv"
    ),
    "ml-32m": Release(f"{BASE_URL}/ml-32m.zip", None, "ml-32m", "ratings.csv", "csv", "movies.csv"),
    "ml-latest-small": Release(
        f"{BASE_URL}/ml-latest-small.zip", None, "ml-latest-small", "ratings.csv", "csv", "movies.csv"
    ),
}


def read_ratings(path, layout):
    """(user, item, rating, time) DataFrame from a release's ratings file."""
    if layout == "tab":
        return read_table(path, "\t", COLUMNS, types=TYPES)
    if layout == "csv":
        return read_table(path, ",", COLUMNS, types=TYPES, header=True)
    # 'user::item::rating::time': read as ':'-separated (the fast C parser) and keep every other field.
    frame = read_table(path, ":", ("user", "_1", "item", "_2", "rating", "_3", "time"), types=TYPES)
    return frame[list(COLUMNS)]


ML100K_GENRES = (
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)  # the 19 flag columns of u.item, as u.genre lists them


def read_items(folder, release):
    """({raw item id: title}, {raw item id: "Genre|Genre"}), both {} when the release has no item file."""
    path = folder / release.items
    if not path.is_file():
        return {}, {}
    if release.layout == "tab":  # u.item: id|title|date|video date|url|19 genre flags; Latin-1
        items = pd.read_csv(path, sep="|", header=None, encoding="latin-1", dtype={0: np.int64, 1: str})
        flags = items.iloc[:, 5:24].to_numpy(dtype=bool) if items.shape[1] >= 24 else None
        genres = ["|".join(g for g, on in zip(ML100K_GENRES, row) if on) for row in flags] if flags is not None else []
        ids, titles = items[0].to_numpy(), items[1].to_numpy()
    elif release.layout == "csv":  # movies.csv: movieId,title,genres
        items = pd.read_csv(path, dtype={0: np.int64}, encoding="utf-8")
        ids, titles, genres = items.iloc[:, 0].to_numpy(), items.iloc[:, 1].to_numpy(), items.iloc[:, 2].tolist()
    else:  # movies.dat: id::title::genres; titles may hold ':'
        parts = [line.split("::") for line in path.read_bytes().decode("latin-1").splitlines() if line]
        ids, titles, genres = [int(p[0]) for p in parts], [p[1] for p in parts], [p[2] for p in parts]
    return dict(zip(ids, titles)), dict(zip(ids, genres))


class MovieLensDataLoader(BaseDataLoader):
    """MovieLens ratings -> implicit interactions.

    data_dir: folder holding `<release>/` (downloaded there when missing and `download` is true).
    release: ml-100k, ml-1m, ml-10m, ml-20m, ml-25m, ml-32m, ml-latest-small.
    min_rating: ratings below it are dropped (0 keeps every rating as an interaction).
    k_core: keep users and items with at least k interactions, to a fixed point (0 = off).
    split: random | leave_one_out | temporal | global_time (see data_loader/preparation.py).
    test_fraction, valid_fraction: the split's shares (valid is carved from the training part).
    cache: keep the prepared data set next to the raw files and reuse it while neither changes.
    batch_size, sampling, eval_batch_size, eval_negatives: see base/base_data_loader.py.
    """

    def __init__(
        self,
        data_dir,
        release="ml-100k",
        min_rating=0,
        k_core=0,
        split="random",
        test_fraction=0.2,
        valid_fraction=0.1,
        split_seed=2019,
        download=True,
        cache=True,
        batch_size=1024,
        sampling="user",
        eval_batch_size=1024,
        eval_negatives=0,
        seed=0,
    ):
        if release not in RELEASES:
            raise ConfigError(
                f"data_loader.args.release: unknown release '{release}' (available: {', '.join(RELEASES)})"
            )
        self.preparation = preparation_args(min_rating, k_core, split, test_fraction, valid_fraction, split_seed)
        self.data_dir, self.release = Path(data_dir), release
        self.download, self.cache = download, cache
        super().__init__(batch_size, sampling, eval_batch_size, seed, eval_negatives, protocol_seed=split_seed)

    def locate(self):
        """The release folder, downloaded first if it is missing and downloads are allowed."""
        release = RELEASES[self.release]
        folder = self.data_dir / self.release
        if (folder / release.ratings).is_file():
            return folder
        if not self.download:
            raise DataError(
                f"{folder / release.ratings} not found and data_loader.args.download is false; "
                f"download {release.url} and unzip it so that {folder}/{release.ratings} exists"
            )
        extracted = fetch_archive(
            release.url,
            self.data_dir,
            release.folder,
            md5=release.md5,
            required_files=(release.ratings,),
            file_sha256=release.file_sha256,
        )
        if extracted != folder:  # e.g. ml-10m unpacks as ml-10M100K
            extracted.rename(folder)
        return folder

    def load_dataset(self):
        folder = self.locate()
        release = RELEASES[self.release]
        ratings_path = folder / release.ratings

        def build():
            frame = read_ratings(ratings_path, release.layout)
            titles, genres = read_items(folder, release)
            return prepare(frame, str(ratings_path), titles=titles, genres=genres, **self.preparation)

        return cached_dataset([ratings_path, folder / release.items], self.preparation, build, enabled=self.cache)
