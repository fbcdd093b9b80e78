"""Checkpoints: written atomically, read without unpickling arbitrary objects.

A checkpoint holds only tensors and plain Python data (the config as a dict), so it loads with
`torch.load(weights_only=True)`.
"""

import os
import pickle
import random
import zipfile
from pathlib import Path

import numpy as np
import torch

from utils.errors import CheckpointError

REQUIRED = ("arch", "epoch", "state_dict", "config")


def save_checkpoint(state, path):
    """Write to a temporary file in the same folder, flush to disk, then rename into place.

    A kill mid-write leaves the previous file at `path` intact.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise CheckpointError(f"cannot write checkpoint {path}: {e.strerror or e}") from None


def load_checkpoint(path, map_location="cpu"):
    """Read a checkpoint; anything that is not one of ours is a CheckpointError."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder; give a checkpoint file such as {path}/model_best.pth")
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(
            f"{path}: not a readable checkpoint (truncated, or not saved by this template): {first[:200]}"
        ) from None
    if not isinstance(state, dict) or any(key not in state for key in REQUIRED):
        raise CheckpointError(f"{path}: not a checkpoint of this template (expected keys {', '.join(REQUIRED)})")
    return state


def load_weights(model, checkpoint, path):
    """Put a checkpoint's weights into `model`; a different architecture or shapes is a CheckpointError."""
    if checkpoint["arch"] != type(model).__name__:
        raise CheckpointError(f"{path}: holds a {checkpoint['arch']} model, but arch.type is {type(model).__name__}")
    try:
        model.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as e:
        detail = "; ".join(line.strip() for line in str(e).splitlines()[1:4])
        raise CheckpointError(f"{path}: the weights do not fit the configured model ({detail})") from None


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
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def find_latest_checkpoint(save_dir, name):
    """The newest checkpoint-epoch<N>.pth of the newest run under save_dir/models/name (for `-r latest`)."""
    runs_dir = Path(save_dir) / "models" / name
    candidates = []
    for path in runs_dir.glob("*/checkpoint-epoch*.pth"):
        epoch = path.stem.removeprefix("checkpoint-epoch")
        if epoch.isdigit():
            candidates.append((path.parent.stat().st_mtime, path.parent.name, int(epoch), path))
    if not candidates:
        raise CheckpointError(
            f"-r latest: no checkpoint-epoch<N>.pth under {runs_dir}/*/ "
            "(the config's trainer.save_dir and name say where runs are)"
        )
    newest_run = max(candidates)[1]
    return max(c for c in candidates if c[1] == newest_run)[3]
