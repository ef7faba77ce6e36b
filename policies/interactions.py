"""The training view of the log: click counts per (user, item)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp


@dataclass(frozen=True)
class Interactions:
    """Click counts from the event log, ``(n_users, n_items)`` CSR with float32 counts."""

    clicks: sp.csr_matrix

    @classmethod
    def empty(cls, n_users: int, n_items: int) -> Interactions:
        return cls(sp.csr_matrix((n_users, n_items), dtype=np.float32))

    @classmethod
    def from_pairs(
        cls, user_ids: np.ndarray, item_ids: np.ndarray, n_users: int, n_items: int
    ) -> Interactions:
        """Sum one click per ``(user, item)`` pair into a canonical CSR matrix."""
        data = np.ones(user_ids.shape[0], dtype=np.float32)
        m = sp.coo_matrix((data, (user_ids, item_ids)), shape=(n_users, n_items)).tocsr()
        m.sum_duplicates()
        m.sort_indices()
        return cls(m)

    @property
    def n_users(self) -> int:
        return int(self.clicks.shape[0])

    @property
    def n_items(self) -> int:
        return int(self.clicks.shape[1])

    @property
    def item_popularity(self) -> np.ndarray:
        """Total clicks per item, float64."""
        return np.asarray(self.clicks.sum(axis=0), dtype=np.float64).ravel()

    @property
    def user_activity(self) -> np.ndarray:
        """Number of distinct items each user clicked."""
        return np.diff(self.clicks.indptr)
