"""The training view of the log: clicked (user, item) pairs read back from round partitions."""

from __future__ import annotations

from collections import deque
from pathlib import Path

import numpy as np
import polars as pl

from policies.interactions import Interactions, RoundImpressions


class TrainingLog:
    """Accumulates each written ``impressions`` partition.

    Only the new partition is read at each retrain (not the whole history). Clicks of the most
    recent ``window_rounds`` rounds are kept (all rounds when ``None``); impressions per item are
    counted over the whole log; the newest round's rows are handed on for online updates.
    """

    def __init__(self, n_users: int, n_items: int, window_rounds: int | None = None) -> None:
        self.n_users = n_users
        self.n_items = n_items
        self._rounds: deque[tuple[np.ndarray, np.ndarray]] = deque(maxlen=window_rounds)
        self._item_impressions = np.zeros(n_items)
        self._latest = RoundImpressions.empty()

    def add_partition(self, impressions_path: Path) -> None:
        shown = pl.read_parquet(
            impressions_path, columns=["user_id", "item_id", "clicked", "model_version"]
        )
        users = shown["user_id"].to_numpy().astype(np.int64)
        items = shown["item_id"].to_numpy().astype(np.int64)
        clicked = shown["clicked"].to_numpy()
        self._rounds.append((users[clicked], items[clicked]))
        self._item_impressions += np.bincount(items, minlength=self.n_items)
        self._latest = RoundImpressions(
            users, items, clicked, shown["model_version"].to_numpy().astype(np.int64)
        )

    def interactions(self) -> Interactions:
        users = np.concatenate([u for u, _ in self._rounds] or [np.empty(0, np.int64)])
        items = np.concatenate([i for _, i in self._rounds] or [np.empty(0, np.int64)])
        return Interactions.from_pairs(
            users,
            items,
            self.n_users,
            self.n_items,
            item_impressions=self._item_impressions.copy(),
            latest_round=self._latest,
        )
