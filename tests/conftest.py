"""Shared fixtures: a tiny MovieLens-layout data set, configs, and running the real scripts."""

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
# The real data sets live beside the project (never in git); CI points here too.
SHARED_DATA = Path(os.environ.get("RECSYS_SHARED_DATA", ROOT.parent / "shared" / "data"))


def pytest_collection_modifyitems(config, items):
    """Tests marked `movielens` need the real data: skipped on a user's clone without it,
    but a failure under CI (CI=true), where the data must be there."""
    if (SHARED_DATA / "ml-100k" / "u.data").is_file():
        return
    for item in items:
        if "movielens" in item.keywords or "gowalla" in item.keywords:
            if os.environ.get("CI"):
                raise pytest.UsageError(f"CI=true but the real data is not at {SHARED_DATA}; set RECSYS_SHARED_DATA")
            item.add_marker(pytest.mark.skip(reason=f"real data not found at {SHARED_DATA} (set RECSYS_SHARED_DATA)"))


def write_movielens_100k(folder, n_users=60, n_items=80, seed=0):
    """A small data set in the GroupLens ml-100k layout (u.data tab-separated, u.item Latin-1)."""
    rng = np.random.default_rng(seed)
    folder = Path(folder) / "ml-100k"
    folder.mkdir(parents=True, exist_ok=True)
    popularity = rng.zipf(1.5, n_items).astype(float)
    popularity /= popularity.sum()
    lines = []
    for user in range(1, n_users + 1):
        count = int(rng.integers(12, 30))
        items = rng.choice(np.arange(1, n_items + 1), size=count, replace=False, p=popularity)
        for item in items:
            lines.append(f"{user}\t{item}\t{rng.integers(1, 6)}\t{880000000 + rng.integers(0, 10**7)}")
    (folder / "u.data").write_text("\n".join(lines) + "\n")
    titles = [f"{i}|Movie {i} (199{i % 10})|01-Jan-1995||http://x|" + "|".join("0" * 19) for i in range(1, n_items + 1)]
    titles[0] = "1|Amélie (2001)|01-Jan-2001||http://x|" + "|".join("0" * 19)
    (folder / "u.item").write_bytes(("\n".join(titles) + "\n").encode("latin-1"))
    return folder


@pytest.fixture
def tiny_data(tmp_path):
    """data_dir holding a small ml-100k folder."""
    data_dir = tmp_path / "data"
    write_movielens_100k(data_dir)
    return data_dir


def load_default_config():
    return json.loads((ROOT / "config.json").read_text())


def tiny_config(data_dir, save_dir, **changes):
    """The default config shrunk for tests: small model, 2 epochs, no wandb."""
    config = copy.deepcopy(load_default_config())
    config["data_loader"]["args"].update(data_dir=str(data_dir), batch_size=128, download=False)
    config["arch"]["args"].update(embed_dim=16, layers=[16, 16])
    config["trainer"].update(epochs=2, save_dir=str(save_dir), save_period=1, keep_last=0)
    config["wandb"]["mode"] = "disabled"
    for dotted, value in changes.items():
        node = config
        *parents, last = dotted.split("__")
        for part in parents:
            node = node[part]
        node[last] = value
    return config


def write_config(path, config):
    path.write_text(json.dumps(config, indent=2))
    return path


def run_script(*args, cwd=ROOT, timeout=600):
    """Run train.py / test.py as a user would; returns the CompletedProcess."""
    env = dict(os.environ, WANDB_MODE=os.environ.get("TEST_WANDB_MODE", "disabled"), PYTHONUNBUFFERED="1")
    return subprocess.run(
        [sys.executable, *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def read_jsonl(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
