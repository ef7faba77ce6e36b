"""The training view of the log: clicked (user, item) pairs read back from round partitions."""

from __future__ import annotations

from collections import deque
from pathlib import Path

import numpy as np
import polars as pl

from policies.interactions import Interactions


class TrainingLog:
    """Accumulates the clicks of each written ``impressions`` partition.

    Only the new partition is read at each retrain (not the whole history); with
    ``window_rounds`` set, only the most recent rounds are kept (a sliding window).
    """

    def __init__(self, n_users: int, n_items: int, window_rounds: int | None = None) -> None:
        self.n_users = n_users
        self.n_items = n_items
        self._rounds: deque[tuple[np.ndarray, np.ndarray]] = deque(maxlen=window_rounds)

    def add_partition(self, impressions_path: Path) -> None:
        clicks = (
            pl.scan_parquet(impressions_path)
            .filter(pl.col("clicked"))
            .select("user_id", "item_id")
            .collect()
        )
        self._rounds.append((clicks["user_id"].to_numpy(), clicks["item_id"].to_numpy()))

    def interactions(self) -> Interactions:
        if not self._rounds:
            return Interactions.empty(self.n_users, self.n_items)
        users = np.concatenate([u for u, _ in self._rounds])
        items = np.concatenate([i for _, i in self._rounds])
        return Interactions.from_pairs(users, items, self.n_users, self.n_items)
