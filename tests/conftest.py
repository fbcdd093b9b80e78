"""Shared fixtures: tiny data sets in the real layouts, configs, and running the real scripts —
in this process (fast: no interpreter and torch start-up per run) or as a user's subprocess."""

import contextlib
import copy
import io
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import scipy.sparse as sp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the project's packages, for the helpers below and every test
from utils.files import read_jsonl  # noqa: E402  (the one reader of metrics.jsonl, for the tests too)

# The real data sets live beside the project (never in git); CI points here too.
SHARED_DATA = Path(os.environ.get("RECSYS_SHARED_DATA", ROOT.parent / "shared" / "data"))
# Tests never reach wandb's servers, and a WANDB_MODE from the shell (CI exports offline) must
# not override the configs the tests write: a test that exercises wandb sets the mode itself.
os.environ["WANDB_MODE"] = "disabled"


@pytest.hookimpl(trylast=True)  # after -m has deselected: only the tests that will run count
def pytest_collection_modifyitems(config, items):
    """Tests marked `movielens` / `gowalla` need the real data: skipped, with the reason, on a
    user's clone without it, but an error under CI (CI=true), where the data must be there, unless
    -m leaves them out (the GitHub workflow, whose runner has no data)."""
    if (SHARED_DATA / "ml-100k" / "u.data").is_file():
        return
    for item in items:
        if "movielens" in item.keywords or "gowalla" in item.keywords:
            if os.environ.get("CI"):
                raise pytest.UsageError(f"CI=true but the real data is not at {SHARED_DATA}; set RECSYS_SHARED_DATA")
            item.add_marker(pytest.mark.skip(reason=f"real data not found at {SHARED_DATA} (set RECSYS_SHARED_DATA)"))


@pytest.fixture
def device():
    """The device the `cuda`-marked tests run on: the CPU, or the GPU under RECSYS_TEST_DEVICE=cuda
    (scripts/gpu_check.sh sets it)."""
    import torch

    name = os.environ.get("RECSYS_TEST_DEVICE", "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        pytest.fail(f"RECSYS_TEST_DEVICE={name} but CUDA is not available")
    return torch.device(name)


def send_signal(process, name):
    """Send the named signal (SIGINT, SIGTERM, SIGHUP) to a subprocess; skip the test, saying why,
    on a platform that cannot (Windows has no SIGHUP, and SIGINT cannot be sent to a process there)."""
    if os.name == "nt" or not hasattr(signal, name):
        process.kill()
        pytest.skip(f"{name} cannot be sent to a process on {sys.platform}")
    process.send_signal(getattr(signal, name))


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


@pytest.fixture
def loo_loader(tiny_data):
    """The tiny MovieLens data, split leave-one-out, in batches of 8 (the sequence models' tests)."""
    from data_loader.movielens import MovieLensDataLoader

    return prepared(
        MovieLensDataLoader(str(tiny_data), download=False, cache=False), split="leave_one_out", batch_size=8
    )


def small_dataset(n_users=12, n_items=15, seed=0, empty_user=True, empty_item=True):
    """An Interactions of random training pairs (no valid / test), with an empty user and item."""
    from base.interactions import Interactions, to_csr

    rng = np.random.default_rng(seed)
    dense = rng.random((n_users, n_items)) < 0.3
    if empty_user:
        dense[0] = False  # a user without training interactions
    if empty_item:
        dense[:, -1] = False  # an item nobody has
    users, items = np.nonzero(dense)
    empty = sp.csr_matrix((n_users, n_items), dtype=np.float32)
    return Interactions(
        n_users, n_items, to_csr(users, items, n_users, n_items), empty, empty, np.arange(n_users), np.arange(n_items)
    )


def load_default_config():
    return json.loads((ROOT / "config.json").read_text())


def tiny_config(data_dir, save_dir, **changes):
    """The default config shrunk for tests: small model, 2 epochs, no wandb."""
    config = copy.deepcopy(load_default_config())
    config["data_loader"]["args"].update(data_dir=str(data_dir), download=False)
    config["batches"]["batch_size"] = 128
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


def shipped_config(name, data_dir):
    """configs/<name>.json as a dict, reading the tiny data in `data_dir` (no download)."""
    config = json.loads((ROOT / "configs" / f"{name}.json").read_text())
    config["data_loader"]["args"].update(data_dir=str(data_dir), download=False)
    return config


def prepared(loader, split=None, test=None, valid=None, seed=2019, candidates="all", eval_batch_size=1024, **batches):
    """A data loader loaded and split as train.py does, with the given evaluation protocol and
    batch settings (batch_size, sampling). By default the shipped configs' protocol: random 0.2 /
    0.1; the source's own test for the benchmark layout; 1 / 1 for leave_one_out."""
    from data_loader.benchmark import BenchmarkDataLoader
    from data_loader.protocol import Protocol

    split = split or ("source" if isinstance(loader, BenchmarkDataLoader) else "random")
    defaults = {"source": (0, 0.1), "leave_one_out": (1, 1)}.get(split, (0.2, 0.1))
    test = defaults[0] if test is None else test
    valid = defaults[1] if valid is None else valid
    return loader.prepare(Protocol(split, test, valid, seed, candidates, eval_batch_size), **batches)


def data_of(config):
    """The data loader a run of `config` (a dict or a ConfigParser) builds: loaded, split, batches set."""
    from data_loader import build_data
    from utils.parse_config import ConfigParser

    config = config if isinstance(config, ConfigParser) else ConfigParser(copy.deepcopy(config))
    return build_data(config, seed=config["seed"])


def copy_tracked(target, leave_out=()):
    """The files git tracks in this checkout (what a clone has), copied into `target`; returns it."""
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for name in tracked:
        if name not in leave_out and (ROOT / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(ROOT / name, target / name)
    return target


def write_config(path, config):
    path.write_text(json.dumps(config, indent=2))
    return path


def run_script(*args, cwd=ROOT, timeout=600, env=None):
    """Run train.py / test.py as a user would, in a subprocess; returns the CompletedProcess."""
    env = dict(
        os.environ, WANDB_MODE=os.environ.get("TEST_WANDB_MODE", "disabled"), PYTHONUNBUFFERED="1", **(env or {})
    )
    return subprocess.run(
        [sys.executable, *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def load_script(script):
    """A top-level script (train.py, test.py, sweep.py) as a module named `<stem>_py`, loaded once:
    imported as `test`, test.py would stand in for the standard library's `test` package."""
    import importlib.util

    name = f"{Path(script).stem}_py"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / script)
        sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[name])
    return sys.modules[name]


def run(script, *args):
    """Run train.py's or test.py's whole command in this process, as `python script args` would:
    returns (returncode, stdout, stderr) as a CompletedProcess-like object."""
    import torch

    module = load_script(script)
    out, err = io.StringIO(), io.StringIO()
    threads = torch.get_num_threads()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = module.run([str(a) for a in args])
        except SystemExit as e:  # argparse's usage errors
            code = e.code
    torch.set_num_threads(threads)
    return SimpleNamespace(returncode=code, stdout=out.getvalue(), stderr=err.getvalue())


def straight_and_resumed(tmp_path, config, epochs=4):
    """Train `config` `epochs` epochs straight, and half of them then a resume to the end, in this
    process; returns (the run folders' parent, the straight run's last checkpoint, the resumed one's)."""
    import torch

    config = copy.deepcopy(config)
    config["trainer"].update(save_dir=str(tmp_path / "saved"), epochs=epochs, save_period=1)
    config["wandb"]["mode"] = "disabled"
    path = write_config(tmp_path / "resumed.json", config)
    runs = tmp_path / "saved" / "models" / config["name"]
    half = epochs // 2
    for args in (("--run-id", "straight"), ("--run-id", "part", "--epochs", str(half))):
        result = run("train.py", "-c", path, *args)
        assert result.returncode == 0, result.stderr[-3000:]
    result = run("train.py", "-r", runs / "part" / f"checkpoint-epoch{half}.pth", "--epochs", str(epochs))
    assert result.returncode == 0, result.stderr[-3000:]
    straight = torch.load(runs / "straight" / f"checkpoint-epoch{epochs}.pth", weights_only=True)
    resumed = torch.load(runs / "part" / f"checkpoint-epoch{epochs}.pth", weights_only=True)
    for key, tensor in straight["state_dict"].items():
        assert torch.equal(tensor, resumed["state_dict"][key]), key
    assert read_jsonl(runs / "straight" / "metrics.jsonl") == read_jsonl(runs / "part" / "metrics.jsonl")
    return runs, straight, resumed


def one_line_error(result, code=2):
    """The single stderr line of a run that failed on bad input (no traceback)."""
    assert result.returncode == code, (result.returncode, result.stderr[-3000:])
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture
def tiny_run(tmp_path, tiny_data):
    """A tiny config written to disk; returns (config dict, its path, the runs folder)."""
    config = tiny_config(tiny_data, tmp_path / "saved", trainer__epochs=2)
    path = write_config(tmp_path / "c.json", config)
    return config, path, tmp_path / "saved" / "models" / config["name"]


def train_ok(*args):
    result = run("train.py", *args)
    assert result.returncode == 0, result.stderr[-3000:]
    return result
