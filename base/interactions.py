"""The data set contract: who interacted with what, split into train / valid / test.

Every data source turns its files into one `Interactions`; the evaluation protocol
(data_loader/protocol.py) splits it, and models, batching and evaluation read only this. Matrices
are users x items, CSR, float32 ones, column indices sorted within each row.
"""

import hashlib
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp


def to_csr(users, items, n_users, n_items):
    """(user, item) index pairs -> binary CSR matrix (n_users, n_items) with sorted indices."""
    data = np.ones(len(users), dtype=np.float32)
    matrix = sp.csr_matrix((data, (users, items)), shape=(n_users, n_items), dtype=np.float32)
    matrix.sum_duplicates()  # also sorts the indices of each row
    matrix.data[:] = 1.0
    return matrix


def order_matrix(users, items, n_users, n_items):
    """CSR (n_users, n_items) int64 whose entry (u, i) is 1 + the place of the pair (users[j],
    items[j]) in the given sequence, j = 0, 1, ...: the source's order of its interactions."""
    places = np.arange(1, len(users) + 1, dtype=np.int64)
    matrix = sp.csr_matrix((places, (users, items)), shape=(n_users, n_items))
    matrix.sort_indices()
    return matrix


@dataclass
class ItemAttribute:
    """One attribute of the items as multi-hot rows: values (V,) strings; matrix CSR (n_items, V)
    float32 ones, several per item where an item has several (genres, directors, writers)."""

    values: np.ndarray
    matrix: sp.csr_matrix

    def joined(self, items, sep="|"):
        """(len(items),) strings: each item's values joined by `sep` ('' when it has none)."""
        rows = self.matrix[items]
        return np.array(
            [sep.join(self.values[rows.indices[rows.indptr[r] : rows.indptr[r + 1]]]) for r in range(len(items))],
            dtype=object,
        )


@dataclass
class Interactions:
    """n_users x n_items interactions and the maps back to the raw ids.

    train, valid, test: CSR (n_users, n_items). A data source puts everything in `train` (a source
        with its own held-out file, such as the benchmark layout, puts that in `test`); the
        protocol's split moves the held-out interactions to `valid` and `test`.
    user_ids, item_ids: raw id of each index, shapes (n_users,), (n_items,), exactly as the input
        had them (integers stay integers, strings stay strings).
    order: CSR (n_users, n_items) int64, 1 + each interaction's place in the source's order (train,
        valid and test together): by time where the source has time (`timed`; equal times in input
        order), else the input order. Splits and sequences read it; O(interactions) memory.
    item_titles: (n_items,) strings, or None when the source has none.
    item_attributes: {name: ItemAttribute}, multi-hot side information (genre, director, ...).
    item_numbers: {name: (n_items,) float64}, numeric side information (year); NaN where unknown.
    """

    n_users: int
    n_items: int
    train: sp.csr_matrix
    valid: sp.csr_matrix
    test: sp.csr_matrix
    user_ids: np.ndarray
    item_ids: np.ndarray
    order: sp.csr_matrix | None = None
    timed: bool = False
    item_titles: np.ndarray | None = None
    item_attributes: dict = field(default_factory=dict)
    item_numbers: dict = field(default_factory=dict)

    def __post_init__(self):
        for name in ("train", "valid", "test", "order"):
            matrix = getattr(self, name)
            if matrix is not None:
                assert matrix.shape == (self.n_users, self.n_items), f"{name} has shape {matrix.shape}"
        assert len(self.user_ids) == self.n_users and len(self.item_ids) == self.n_items
        assert not self.timed or self.order is not None

    @property
    def known(self):
        """CSR (n_users, n_items): every interaction of the data set, whatever its part."""
        return (self.train + self.valid + self.test).tocsr()

    def in_time_order(self, rows, users=None):
        """The items of each row of `rows` (CSR (B, n_items), a subset of the interactions of
        `users`, all users when None) in time order: (indptr (B + 1,), items (nnz,)) int64."""
        assert self.timed, "this data set has no time order"
        order = self.order if users is None else self.order[users]
        places = order.multiply(rows > 0).tocsr()  # the places of the entries of rows
        places.eliminate_zeros()
        row = np.repeat(np.arange(places.shape[0]), np.diff(places.indptr))
        sort = np.lexsort((places.data, row))
        return places.indptr.astype(np.int64), places.indices[sort].astype(np.int64)

    def with_parts(self, train, valid, test):
        """The same data set with other train / valid / test matrices."""
        return Interactions(
            self.n_users,
            self.n_items,
            train,
            valid,
            test,
            self.user_ids,
            self.item_ids,
            self.order,
            self.timed,
            self.item_titles,
            self.item_attributes,
            self.item_numbers,
        )

    def fingerprint(self):
        """A digest of the sizes and the three parts' interactions. A checkpoint keeps it, so that
        resuming or testing on other data (or another split) is noticed."""
        digest = hashlib.sha256(f"{self.n_users} {self.n_items}".encode())
        for matrix in (self.train, self.valid, self.test):
            digest.update(np.ascontiguousarray(matrix.indptr, dtype=np.int64).tobytes())
            digest.update(np.ascontiguousarray(matrix.indices, dtype=np.int64).tobytes())
        return digest.hexdigest()[:16]

    def summary(self):
        """One line for the log: sizes of the splits and the density."""
        total = self.train.nnz + self.valid.nnz + self.test.nnz
        return (
            f"{self.n_users} users, {self.n_items} items, {total} interactions "
            f"(train {self.train.nnz}, valid {self.valid.nnz}, test {self.test.nnz}; "
            f"density {total / max(1, self.n_users * self.n_items):.4%})"
        )
