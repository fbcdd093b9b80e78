"""The data set contract: who interacted with what, split into train / valid / test.

Every data loader turns its files into one `Interactions`; models, samplers and evaluation read
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


@dataclass
class Interactions:
    """n_users x n_items interactions and the maps back to the raw ids.

    train, valid, test: CSR (n_users, n_items); valid may have no entries (no validation).
    user_ids, item_ids: raw id of each index, shapes (n_users,), (n_items,).
    item_titles: (n_items,) strings, or None when the source has no titles.
    item_genres: (n_items,) strings such as "Action|Comedy", or None when the source has none.
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

    def __post_init__(self):
        for name in ("train", "valid", "test"):
            matrix = getattr(self, name)
            assert matrix.shape == (self.n_users, self.n_items), f"{name} has shape {matrix.shape}"
        assert len(self.user_ids) == self.n_users and len(self.item_ids) == self.n_items

    def summary(self):
        """One line for the log: sizes of the splits and the density."""
        total = self.train.nnz + self.valid.nnz + self.test.nnz
        return (
            f"{self.n_users} users, {self.n_items} items, {total} interactions "
            f"(train {self.train.nnz}, valid {self.valid.nnz}, test {self.test.nnz}; "
            f"density {total / max(1, self.n_users * self.n_items):.4%})"
        )
