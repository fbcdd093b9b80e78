"""The prepared data set, kept next to the raw files and reused while neither they nor the
preparation config change.

The key is a SHA-256 over the raw files' SHA-256s, the preparation arguments and a format
version; any change gives another key, so a stale cache is never read. Arrays only
(numpy .npz, no pickle).
"""

import hashlib
import json
import logging
import os
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from base.interactions import Interactions
from data_loader.download import file_digest

FORMAT = 2
logger = logging.getLogger("data")


def cache_key(files, preparation):
    digest = hashlib.sha256(f"format {FORMAT}\n{json.dumps(preparation, sort_keys=True)}\n".encode())
    for path in files:
        digest.update(f"{Path(path).name} {file_digest(path, 'sha256') if Path(path).is_file() else '-'}\n".encode())
    return digest.hexdigest()[:24]


def _save(dataset, path):
    arrays = {
        "shape": np.array([dataset.n_users, dataset.n_items]),
        "user_ids": dataset.user_ids.astype(str) if dataset.user_ids.dtype == object else dataset.user_ids,
        "item_ids": dataset.item_ids.astype(str) if dataset.item_ids.dtype == object else dataset.item_ids,
    }
    for name in ("item_titles", "item_genres"):
        if getattr(dataset, name) is not None:
            arrays[name] = getattr(dataset, name).astype(str)
    for name in ("train", "valid", "test"):
        matrix = getattr(dataset, name)
        arrays[f"{name}_indptr"], arrays[f"{name}_indices"] = matrix.indptr, matrix.indices
    tmp = path.with_name(f".{path.name}.tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def _load(path):
    with np.load(path, allow_pickle=False) as z:
        n_users, n_items = (int(x) for x in z["shape"])

        def matrix(name):
            indices = z[f"{name}_indices"]
            data = np.ones(len(indices), dtype=np.float32)
            return sp.csr_matrix((data, indices, z[f"{name}_indptr"]), shape=(n_users, n_items))

        text = {name: z[name].astype(object) if name in z else None for name in ("item_titles", "item_genres")}
        return Interactions(
            n_users, n_items, matrix("train"), matrix("valid"), matrix("test"), z["user_ids"], z["item_ids"], **text
        )


def cached_dataset(files, preparation, build, enabled=True):
    """Load the prepared data set for (files, preparation) from the cache, or build and store it.
    With enabled=False, just build it."""
    if not enabled:
        return build()
    folder = Path(files[0]).parent / ".prepared"
    path = folder / f"{cache_key(files, preparation)}.npz"
    if path.is_file():
        try:
            dataset = _load(path)
            logger.info(f"prepared data set loaded from {path}")
            return dataset
        except (OSError, ValueError, KeyError) as e:  # damaged: rebuild it
            logger.info(f"cache {path} unreadable ({e}); preparing again")
    dataset = build()
    try:
        folder.mkdir(exist_ok=True)
        _save(dataset, path)
        logger.info(f"prepared data set cached in {path}")
    except OSError as e:  # a read-only data folder is fine: no cache then
        logger.info(f"could not cache the prepared data set in {folder} ({e.strerror or e})")
    return dataset
