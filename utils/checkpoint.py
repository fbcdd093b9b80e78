"""Checkpoints: written atomically, read without unpickling arbitrary objects, checked on reading.

A checkpoint holds only tensors and plain Python data (the config as a dict), so it loads with
`torch.load(weights_only=True)`.
"""

import pickle
import random
import struct
import zipfile
from pathlib import Path

import numpy as np
import torch

from utils import checks
from utils.errors import CheckpointError
from utils.files import write_atomic

REQUIRED = ("arch", "epoch", "state_dict", "config")


def save_checkpoint(state, path):
    """Write to a fresh temporary file in the same folder, sync it, then rename it into place: a kill
    or a full disk mid-write leaves the previous file at `path` intact, and no temporary file."""
    path = Path(path)
    try:
        write_atomic(path, lambda f: torch.save(state, f))
    except OSError as e:
        raise CheckpointError(f"cannot write checkpoint {path}: {e.strerror or e}") from None
    except RuntimeError as e:  # torch's zip writer reports a full disk as "[enforce fail ...] file write failed"
        if "write" not in str(e):
            raise
        raise CheckpointError(
            f"cannot write checkpoint {path}: the disk is full or the file cannot be written"
        ) from None


def check_state(state, path):
    """Every value a resume or an evaluation reads has the type it must have; else a CheckpointError."""

    def bad(key, expected):
        got = state.get(key)
        shown = type(got).__name__ if not isinstance(got, (int, float, str)) else repr(got)[:40]
        raise CheckpointError(f"{path}: '{key}' is {shown}, expected {expected} (not a checkpoint of this template?)")

    if not isinstance(state.get("arch"), str):
        bad("arch", "a class name")
    if not checks.is_int(state.get("epoch")) or state["epoch"] < 0:
        bad("epoch", "an epoch number >= 0")
    if not isinstance(state.get("state_dict"), dict) or not all(
        isinstance(v, torch.Tensor) for v in state["state_dict"].values()
    ):
        bad("state_dict", "a dict of tensors")
    if not isinstance(state.get("config"), dict):
        bad("config", "the run's config (a dict)")
    if "step" in state and (not checks.is_int(state["step"]) or state["step"] < 0):
        bad("step", "a step count >= 0")
    for key in ("monitor_best",):
        if key in state and not isinstance(state[key], (int, float)):
            bad(key, "a number")
    if "best_epoch" in state and not checks.is_int(state["best_epoch"]):
        bad("best_epoch", "an epoch number")
    for key in ("optimizer", "lr_scheduler"):
        if state.get(key) is not None and not isinstance(state[key], dict):
            bad(key, "a state dict or None")
    rng = state.get("rng")
    if rng is not None and not (
        isinstance(rng, list)
        and rng
        and all(isinstance(r, dict) and {"python", "numpy", "torch"} <= set(r) for r in rng)
    ):
        bad("rng", "one random state (python, numpy, torch) per process")
    loader = state.get("data_loader")
    if loader is not None and not (
        isinstance(loader, list) and loader and all(isinstance(s, dict) and "bit_generator" in s for s in loader)
    ):
        bad("data_loader", "one batch generator state per process")


def load_checkpoint(path, map_location="cpu"):
    """Read a checkpoint; anything that is not one of ours is a CheckpointError."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder; give a checkpoint file such as {path}/model_best.pth")
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        if "Unsupported global" not in str(e):  # garbage bytes, not a pickled object
            raise CheckpointError(
                f"{path}: not a readable checkpoint (truncated, or not saved by this template)"
            ) from None
        raise CheckpointError(
            f"{path}: holds Python objects besides tensors and plain data, which are never loaded "
            "(not a checkpoint saved by this template)"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError, KeyError, IndexError, struct.error) as e:
        # IndexError, struct.error: a text file whose first byte torch's legacy reader takes for an opcode
        first = str(e).strip().splitlines()[0] if isinstance(e, (RuntimeError, OSError)) and str(e).strip() else ""
        raise CheckpointError(
            f"{path}: not a readable checkpoint (truncated, or not saved by this template)"
            + (f": {first[:200]}" if first else "")
        ) from None
    if not isinstance(state, dict) or any(key not in state for key in REQUIRED):
        raise CheckpointError(f"{path}: not a checkpoint of this template (expected keys {', '.join(REQUIRED)})")
    check_state(state, path)
    return state


def load_weights(model, checkpoint, path):
    """Put a checkpoint's weights into `model`; a different architecture or shapes, or weights fitted
    with other values of the model's `fitted_args`, is a CheckpointError."""
    if checkpoint["arch"] != type(model).__name__:
        raise CheckpointError(f"{path}: holds a {checkpoint['arch']} model, but arch.type is {type(model).__name__}")
    saved_args = checkpoint["config"].get("arch", {}).get("args", {})
    for name in getattr(model, "fitted_args", ()):
        now = getattr(model, name, None)
        if name in saved_args and saved_args[name] != now:
            raise CheckpointError(
                f"arch.args.{name}: {path} was fitted with {name} = {saved_args[name]!r}, not {now!r}; "
                f"fit it again with python train.py -c CONFIG --set arch.args.{name}={now!r}"
            )
    try:
        model.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as e:
        detail = "; ".join(line.strip() for line in str(e).splitlines()[1:4])
        raise CheckpointError(f"{path}: the weights do not fit the configured model ({detail})") from None


def check_data(checkpoint, fingerprint, path, deliberate, logger):
    """The checkpoint was trained on this data set (the same prepared splits). With `deliberate`
    (the user changed data_loader.* or evaluation.* on the command line) a difference is a warning, else an error."""
    saved = checkpoint.get("data_fingerprint")
    if saved is None or saved == fingerprint:
        return
    message = (
        f"{path} was trained on other data than this config prepares (another file, split or filter: "
        f"data fingerprint {saved}, now {fingerprint})"
    )
    if deliberate:
        logger.warning(f"{message}; going on, as --set data_loader.* / evaluation.* asked")
        return
    raise CheckpointError(
        f"{message}; its held-out items may be training items here. Give the data the checkpoint was "
        "trained on, or change data_loader.* or evaluation.* with --set to go on on purpose"
    )


def seed_everything(seed):
    """Seed Python, NumPy's global generator and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state():
    """The random state of Python, NumPy's global generator and torch, as plain data and tensors."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state):
    try:
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
        n = state["numpy"]
        np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
        torch.set_rng_state(state["torch"].cpu())
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as e:
        raise CheckpointError(f"the checkpoint's random state cannot be restored ({type(e).__name__}: {e})") from None
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
