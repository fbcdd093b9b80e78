"""The prepared data set, kept next to the raw files and reused while neither they nor the
preparation config change.

The key is a SHA-256 over the raw files' SHA-256s, the preparation arguments and a format
version; any change gives another key, so a stale cache is never read. Arrays only (numpy .npz,
no pickle). A cache that cannot be read, or whose content does not fit its key or itself (a
truncated file, another data set's cache copied over it), is logged, removed and rebuilt.
"""

import hashlib
import json
import logging
import zipfile
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from base.interactions import Interactions, ItemAttribute
from data_loader.download import file_digest
from utils.files import write_atomic

FORMAT = 4
logger = logging.getLogger("data")
MATRICES = ("train", "valid", "test")


class DamagedCache(Exception):
    """The cache file exists but cannot be trusted."""


def cache_key(files, preparation):
    digest = hashlib.sha256(f"format {FORMAT}\n{json.dumps(preparation, sort_keys=True)}\n".encode())
    for path in files:
        digest.update(f"{Path(path).name} {file_digest(path, 'sha256') if Path(path).is_file() else '-'}\n".encode())
    return digest.hexdigest()[:24]


def _ids(values):
    return values.astype(str) if values.dtype == object else values


def _save(dataset, path, key):
    arrays = {
        "key": np.array(key),
        "shape": np.array([dataset.n_users, dataset.n_items]),
        "timed": np.array(dataset.timed),
        "user_ids": _ids(dataset.user_ids),
        "item_ids": _ids(dataset.item_ids),
    }
    if dataset.item_titles is not None:
        arrays["item_titles"] = dataset.item_titles.astype(str)
    for name in MATRICES:
        arrays.update(_csr_arrays(name, getattr(dataset, name)))
    if dataset.order is not None:
        arrays.update(_csr_arrays("order", dataset.order, with_data=True))
    for name, attribute in dataset.item_attributes.items():
        arrays[f"attribute:{name}:values"] = attribute.values.astype(str)
        arrays.update(_csr_arrays(f"attribute:{name}", attribute.matrix))
    for name, values in dataset.item_numbers.items():
        arrays[f"number:{name}"] = values
    write_atomic(path, lambda f: np.savez(f, **arrays))


def _csr_arrays(name, matrix, with_data=False):
    arrays = {f"{name}_indptr": matrix.indptr, f"{name}_indices": matrix.indices}
    if with_data:
        arrays[f"{name}_data"] = matrix.data
    return arrays


def _matrix(z, name, n_rows, n_columns, with_data=False):
    indptr, indices = z[f"{name}_indptr"], z[f"{name}_indices"]
    if (
        indptr.ndim != 1
        or len(indptr) != n_rows + 1
        or indptr[0] != 0
        or indptr[-1] != len(indices)
        or (np.diff(indptr) < 0).any()
        or (len(indices) and (indices.min() < 0 or indices.max() >= n_columns))
    ):
        raise DamagedCache(f"its {name} matrix does not fit {n_rows} x {n_columns}")
    values = z[f"{name}_data"] if with_data else np.ones(len(indices), dtype=np.float32)
    return sp.csr_matrix((values, indices, indptr), shape=(n_rows, n_columns))


def _text(values):
    return values.astype(object) if values.dtype.kind == "U" else values


def _load(path, key):
    with np.load(path, allow_pickle=False) as z:
        if "key" not in z or str(z["key"]) != key:
            raise DamagedCache("it was written for another data set or preparation")
        n_users, n_items = (int(x) for x in z["shape"])
        user_ids, item_ids = _text(z["user_ids"]), _text(z["item_ids"])
        titles = _text(z["item_titles"]) if "item_titles" in z else None
        if len(user_ids) != n_users or len(item_ids) != n_items or (titles is not None and len(titles) != n_items):
            raise DamagedCache("its id or title arrays do not fit its shape")
        attributes, numbers = {}, {}
        for entry in z.files:
            kind, _, name = entry.partition(":")
            if kind == "attribute" and name.endswith(":values"):
                name = name.removesuffix(":values")
                values = _text(z[entry])
                attributes[name] = ItemAttribute(values, _matrix(z, f"attribute:{name}", n_items, len(values)))
            elif kind == "number":
                numbers[name] = z[entry]
                if len(numbers[name]) != n_items:
                    raise DamagedCache(f"its {name} numbers do not fit its shape")
        order = _matrix(z, "order", n_users, n_items, with_data=True) if "order_indptr" in z else None
        matrices = [_matrix(z, name, n_users, n_items) for name in MATRICES]
        return Interactions(
            n_users,
            n_items,
            *matrices,
            user_ids,
            item_ids,
            order=order,
            timed=bool(z["timed"]),
            item_titles=titles,
            item_attributes=attributes,
            item_numbers=numbers,
        )


def cached_dataset(files, preparation, build, enabled=True, data_dir=None):
    """Load the prepared data set for (files, preparation) from the cache, or build and store it.
    The cache is `<data_dir>/.prepared/` (default: beside the first file), never followed through
    a link. With enabled=False, just build it."""
    if not enabled:
        return build()
    folder = Path(data_dir if data_dir is not None else Path(files[0]).parent) / ".prepared"
    if folder.is_symlink():
        logger.warning(f"{folder} is a link: the prepared data set is neither read from it nor written there")
        return build()
    key = cache_key(files, preparation)
    path = folder / f"{key}.npz"
    if path.is_file():
        try:
            dataset = _load(path, key)
            logger.info(f"prepared data set loaded from {path}")
            return dataset
        except (DamagedCache, OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, AssertionError) as e:
            logger.warning(f"cache {path} is damaged ({type(e).__name__}: {e}); it is removed and prepared again")
            path.unlink(missing_ok=True)
    dataset = build()
    try:
        folder.mkdir(exist_ok=True)
        _save(dataset, path, key)
        logger.info(f"prepared data set cached in {path}")
    except OSError as e:  # a read-only or full data folder is fine: no cache then
        logger.info(f"could not cache the prepared data set in {folder} ({e.strerror or e})")
    return dataset
