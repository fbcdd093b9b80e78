"""MovieLens (GroupLens) ratings as implicit feedback: downloaded, verified, split per user."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from base.base_data_loader import BaseDataLoader
from base.interactions import Interactions, to_csr
from data_loader.download import fetch_archive
from data_loader.tables import read_table
from utils.errors import ConfigError, DataError
from utils.split import split_per_user


@dataclass(frozen=True)
class Release:
    url: str
    md5: str | None  # published by GroupLens beside the archive
    ratings: str  # file inside the release folder
    sep: str
    file_sha256: dict  # extracted files we have verified copies of


RELEASES = {
    "ml-100k": Release(
        url="https://files.grouplens.org/datasets/movielens/ml-100k.zip",
        md5="0e33842e24a9c977be4e0107933c0723",
        ratings="u.data",
        sep="\t",
        file_sha256={"u.data": "06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490"},
    ),
}


def read_titles(folder):
    """{raw item id: title} from u.item ('|' separated, Latin-1), or {} if absent."""
    path = folder / "u.item"
    if not path.is_file():
        return {}
    items = pd.read_csv(
        path,
        sep="|",
        header=None,
        usecols=[0, 1],
        names=["item", "title"],
        encoding="latin-1",
        dtype={"item": np.int64, "title": str},
    )
    return dict(zip(items["item"], items["title"]))


class MovieLensDataLoader(BaseDataLoader):
    """MovieLens ratings -> implicit interactions, split per user at random from `split_seed`.

    data_dir: folder holding `<release>/` (downloaded there when missing and `download` is true).
    min_rating: ratings below it are dropped (0 keeps every rating as an interaction).
    test_fraction: share of each user's interactions held out for test.
    valid_fraction: share of the remaining (training) part held out for validation; 0 = none.
    """

    def __init__(
        self,
        data_dir,
        release="ml-100k",
        min_rating=0,
        test_fraction=0.2,
        valid_fraction=0.1,
        split_seed=2019,
        download=True,
        batch_size=1024,
        sampling="user",
        eval_batch_size=1024,
        seed=0,
    ):
        if release not in RELEASES:
            raise ConfigError(
                f"data_loader.args.release: unknown release '{release}' (available: {', '.join(RELEASES)})"
            )
        for key, value in (("test_fraction", test_fraction), ("valid_fraction", valid_fraction)):
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value < 1:
                raise ConfigError(f"data_loader.args.{key}: expected a number in [0, 1), got {value!r}")
        if not isinstance(min_rating, (int, float)) or isinstance(min_rating, bool):
            raise ConfigError(f"data_loader.args.min_rating: expected a number, got {min_rating!r}")
        self.data_dir, self.release, self.min_rating = Path(data_dir), release, min_rating
        self.test_fraction, self.valid_fraction, self.split_seed = test_fraction, valid_fraction, split_seed
        self.download = download
        super().__init__(batch_size, sampling, eval_batch_size, seed)

    def locate(self):
        """The release folder, downloaded first if it is missing and downloads are allowed."""
        release = RELEASES[self.release]
        folder = self.data_dir / self.release
        if (folder / release.ratings).is_file():
            return folder
        if not self.download:
            raise DataError(
                f"{folder / release.ratings} not found and data_loader.args.download is false; "
                f"download {release.url} and unzip it into {self.data_dir.resolve()}"
            )
        return fetch_archive(
            release.url,
            self.data_dir,
            self.release,
            md5=release.md5,
            required_files=(release.ratings,),
            file_sha256=release.file_sha256,
        )

    def load_dataset(self):
        folder = self.locate()
        release = RELEASES[self.release]
        ratings = read_table(
            folder / release.ratings,
            release.sep,
            ("user", "item", "rating", "timestamp"),
            numeric=("user", "item", "rating", "timestamp"),
        )
        kept = ratings[ratings["rating"] >= self.min_rating]
        if kept.empty:
            raise DataError(
                f"no rating in {folder / release.ratings} is >= data_loader.args.min_rating = {self.min_rating}"
            )
        # Repeated (user, item) pairs count once; the latest is the one kept.
        kept = kept.sort_values("timestamp", kind="stable").drop_duplicates(["user", "item"], keep="last")
        user_ids, users = np.unique(kept["user"].to_numpy(np.int64), return_inverse=True)
        item_ids, items = np.unique(kept["item"].to_numpy(np.int64), return_inverse=True)
        titles = read_titles(folder)
        item_titles = np.array([titles.get(i, "") for i in item_ids], dtype=object) if titles else None

        part = split_per_user(users, self.test_fraction, self.valid_fraction, self.split_seed)
        n_users, n_items = len(user_ids), len(item_ids)
        train, valid, test = (to_csr(users[part == p], items[part == p], n_users, n_items) for p in (0, 1, 2))
        return Interactions(n_users, n_items, train, valid, test, user_ids, item_ids, item_titles)
