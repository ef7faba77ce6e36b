"""The training view of the log: clicked (user, item) pairs read back from round partitions."""

from __future__ import annotations

from collections import deque
from pathlib import Path

import numpy as np
import polars as pl

from policies.interactions import Interactions, RoundImpressions, SlotCounts


class TrainingLog:
    """Accumulates each written ``impressions`` partition.

    Only the new partition is read at each retrain (not the whole history). Clicks of the most
    recent ``window_rounds`` rounds are kept (all rounds when ``None``); impressions per item are
    counted over the whole log; the newest round's rows are handed on for online updates.
    """

    def __init__(
        self,
        n_users: int,
        n_items: int,
        window_rounds: int | None = None,
        keep_exposures: bool = False,
    ) -> None:
        self.n_users = n_users
        self.n_items = n_items
        # per round: clicked (users, items, positions)
        self._rounds: deque[tuple[np.ndarray, ...]] = deque(maxlen=window_rounds)
        self.keep_exposures = keep_exposures
        self._exposures: deque[tuple[np.ndarray, np.ndarray]] = deque(maxlen=window_rounds)
        self._item_impressions = np.zeros(n_items)
        self._latest = RoundImpressions.empty()
        self._slot_impressions = np.zeros(0)
        self._slot_clicks = np.zeros(0)

    def add_partition(self, impressions_path: Path) -> None:
        shown = pl.read_parquet(
            impressions_path,
            columns=[
                "user_id",
                "item_id",
                "clicked",
                "model_version",
                "position",
                "score",
                "intervention",
            ],
        )
        users = shown["user_id"].to_numpy().astype(np.int64)
        items = shown["item_id"].to_numpy().astype(np.int64)
        clicked = shown["clicked"].to_numpy()
        position = shown["position"].to_numpy().astype(np.int64)
        self._rounds.append((users[clicked], items[clicked], position[clicked]))
        if self.keep_exposures:
            self._exposures.append((users[~clicked], items[~clicked]))
        self._item_impressions += np.bincount(items, minlength=self.n_items)
        shuffled = (shown["intervention"] == "shuffle").to_numpy()
        if shuffled.any():
            k = int(position.max()) + 1
            grow = max(k - self._slot_impressions.size, 0)
            self._slot_impressions = np.pad(self._slot_impressions, (0, grow))
            self._slot_clicks = np.pad(self._slot_clicks, (0, grow))
            size = self._slot_impressions.size
            self._slot_impressions += np.bincount(position[shuffled], minlength=size)
            self._slot_clicks += np.bincount(position[shuffled & clicked], minlength=size)
        self._latest = RoundImpressions(
            users,
            items,
            clicked,
            shown["model_version"].to_numpy().astype(np.int64),
            position,
            shown["score"].to_numpy().astype(np.float64),
        )

    def interactions(self) -> Interactions:
        def stack(parts, j):
            return np.concatenate([p[j] for p in parts] or [np.empty(0, np.int64)])

        exposures = None
        if self.keep_exposures:
            exposures = (stack(self._exposures, 0), stack(self._exposures, 1))
        slots = None
        if self._slot_impressions.size:
            slots = SlotCounts(self._slot_impressions.copy(), self._slot_clicks.copy())
        return Interactions.from_pairs(
            stack(self._rounds, 0),
            stack(self._rounds, 1),
            self.n_users,
            self.n_items,
            item_impressions=self._item_impressions.copy(),
            latest_round=self._latest,
            click_positions=stack(self._rounds, 2),
            exposures=exposures,
            randomized_slots=slots,
        )
