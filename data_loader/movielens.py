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
    """{name: DataFrame(item, value)}: the release's titles, genres and years ({} without an item file)."""
    path = folder / release.items
    if not path.is_file():
        return {}
    if release.layout == "tab":  # u.item: id|title|date|video date|url|19 genre flags; Latin-1
        try:
            items = pd.read_csv(path, sep="|", header=None, encoding="latin-1", dtype={0: np.int64, 1: str, 2: str})
        except (pd.errors.ParserError, ValueError) as e:
            raise DataError(f"{path}: not the u.item layout (id|title|date|...|19 genre flags): {e}") from None
        ids, titles = items[0].to_numpy(), items[1]
        years = items[2].str.extract(r"(\d{4})$", expand=False)  # release date, e.g. 01-Jan-1995
        if items.shape[1] >= 24:
            on = items.iloc[:, 5:24].to_numpy(dtype=bool)
            rows, flags = np.nonzero(on)
            genres = pd.DataFrame({"item": ids[rows], "value": np.asarray(ML100K_GENRES, dtype=object)[flags]})
        else:
            genres = pd.DataFrame({"item": [], "value": []})
    else:
        if release.layout == "csv":  # movies.csv: movieId,title,genres
            items = pd.read_csv(path, dtype={0: np.int64}, encoding="utf-8")
            ids, titles, listed = items.iloc[:, 0].to_numpy(), items.iloc[:, 1], items.iloc[:, 2]
        else:  # movies.dat: id::title::genres; titles may hold ':'
            parts = [line.split("::") for line in path.read_bytes().decode("latin-1").splitlines() if line]
            ids = np.array([int(p[0]) for p in parts])
            titles, listed = pd.Series([p[1] for p in parts]), pd.Series([p[2] for p in parts])
        years = titles.str.extract(r"\((\d{4})\)\s*$", expand=False)  # "Toy Story (1995)"
        genres = pd.DataFrame({"item": ids, "value": listed.str.split("|")}).explode("value")
        genres = genres[genres["value"].notna() & (genres["value"] != "(no genres listed)")]
    known_year = years.notna().to_numpy()
    return {
        "title": pd.DataFrame({"item": ids, "value": titles.to_numpy()}),
        "genre": genres,
        "year": pd.DataFrame({"item": ids[known_year], "value": years[known_year].astype(float).to_numpy()}),
    }


class MovieLensDataLoader(BaseDataLoader):
    """MovieLens ratings -> implicit interactions, with the items' titles, genres and years.

    data_dir: folder holding `<release>/` (downloaded there when missing and `download` is true).
    release: ml-100k, ml-1m, ml-10m, ml-20m, ml-25m, ml-32m, ml-latest-small.
    min_rating: ratings below it are dropped (0 keeps every rating as an interaction).
    k_core: keep users and items with at least k interactions, to a fixed point (0 = off).
    cache: keep the prepared data set next to the raw files and reuse it while neither changes.
    """

    def __init__(self, data_dir, release="ml-100k", min_rating=0, k_core=0, download=True, cache=True):
        if release not in RELEASES:
            raise ConfigError(
                f"data_loader.args.release: unknown release '{release}' (available: {', '.join(RELEASES)})"
            )
        self.preparation = preparation_args(min_rating, k_core)
        self.data_dir, self.release = Path(data_dir), release
        self.download, self.cache = download, cache

    def input_files(self):
        release = RELEASES[self.release]
        folder = self.data_dir / self.release
        return [folder / release.ratings, folder / release.items]

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
            if folder.exists():
                raise DataError(
                    f"{folder} exists but does not hold {release.ratings}; it is left as it is: move it away"
                )
            extracted.rename(folder)
        return folder

    def load_dataset(self):
        folder = self.locate()
        release = RELEASES[self.release]
        ratings_path = folder / release.ratings

        def build():
            frame = read_ratings(ratings_path, release.layout)
            return prepare(frame, str(ratings_path), side=read_items(folder, release), **self.preparation)

        return cached_dataset([ratings_path, folder / release.items], self.preparation, build, enabled=self.cache)
