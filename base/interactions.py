"""The data set contract: who interacted with what, split into train / valid / test.

Every data loader turns its files into one `Interactions`; models, batching and evaluation read
only this. Matrices are users x items, CSR, float32 ones, column indices sorted within each row.
"""

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp


def to_csr(users, items, n_users, n_items):
    """(user, item) index pairs -> binary CSR matrix (n_users, n_items) with sorted indices."""
    data = np.ones(len(users), dtype=np.float32)
    matrix = sp.csr_matrix((data, (users, items)), shape=(n_users, n_items), dtype=np.float32)
    matrix.sum_duplicates()  # also sorts the indices of each row
    matrix.data[:] = 1.0
    return matrix


def order_matrix(users, items, positions, n_users, n_items):
    """CSR (n_users, n_items) int64 with entry (u, i) = the 1-based position of u's interaction with
    i in u's history by time (`positions`, one per (users, items) pair)."""
    matrix = sp.csr_matrix((np.asarray(positions, dtype=np.int64), (users, items)), shape=(n_users, n_items))
    matrix.sort_indices()
    return matrix


@dataclass
class Interactions:
    """n_users x n_items interactions and the maps back to the raw ids.

    train, valid, test: CSR (n_users, n_items); valid may have no entries (no validation).
    user_ids, item_ids: raw id of each index, shapes (n_users,), (n_items,), exactly as the input
        had them (integers stay integers, strings stay strings).
    item_titles: (n_items,) strings, or None when the source has no titles.
    item_genres: (n_items,) strings such as "Action|Comedy", or None when the source has none.
    order: CSR (n_users, n_items) int64, 1 + each interaction's position in its user's history by
        time (train, valid and test together; ties in input order); None when the source has no
        time. O(interactions) memory; `in_time_order` reads sequences out of it.
    """

    n_users: int
    n_items: int
    train: sp.csr_matrix
    valid: sp.csr_matrix
    test: sp.csr_matrix
    user_ids: np.ndarray
    item_ids: np.ndarray
    item_titles: np.ndarray | None = None
    item_genres: np.ndarray | None = None
    order: sp.csr_matrix | None = None

    def __post_init__(self):
        for name in ("train", "valid", "test", "order"):
            matrix = getattr(self, name)
            if matrix is not None:
                assert matrix.shape == (self.n_users, self.n_items), f"{name} has shape {matrix.shape}"
        assert len(self.user_ids) == self.n_users and len(self.item_ids) == self.n_items

    def in_time_order(self, rows, users=None):
        """The items of each row of `rows` (CSR (B, n_items), a subset of the interactions of
        `users`, all users when None) in time order: (indptr (B + 1,), items (nnz,)) int64."""
        assert self.order is not None, "this data set has no time order"
        order = self.order if users is None else self.order[users]
        positions = order.multiply(rows > 0).tocsr()  # the positions of the entries of rows
        positions.eliminate_zeros()
        row = np.repeat(np.arange(positions.shape[0]), np.diff(positions.indptr))
        sort = np.lexsort((positions.data, row))
        return positions.indptr.astype(np.int64), positions.indices[sort].astype(np.int64)

    def summary(self):
        """One line for the log: sizes of the splits and the density."""
        total = self.train.nnz + self.valid.nnz + self.test.nnz
        return (
            f"{self.n_users} users, {self.n_items} items, {total} interactions "
            f"(train {self.train.nnz}, valid {self.valid.nnz}, test {self.test.nnz}; "
            f"density {total / max(1, self.n_users * self.n_items):.4%})"
        )
