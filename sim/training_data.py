"""The training view of the log: clicked (user, item) pairs read back from round partitions."""

from __future__ import annotations

from collections import deque
from pathlib import Path

import numpy as np
import polars as pl

from policies.interactions import (
    Interactions,
    RerankData,
    RerankRows,
    RoundImpressions,
    SlotCounts,
)
from policies.label_delay import label_weights

# Impression columns the learned reranker's rows need beside the ones every policy trains on.
RERANK_COLUMNS = ["request_id", "t", "source"]


class TrainingLog:
    """Accumulates each written ``impressions`` partition.

    Only the new partition is read at each retrain (not the whole history). Clicks of the most
    recent ``window_rounds`` rounds are kept (all rounds when ``None``); impressions per item are
    counted over the whole log; the newest round's rows are handed on for online updates.

    With ``rerank_rounds > 0`` (a learned reranker, ``policy/rerank=learned``) the round's
    ``candidates`` partition is read too: the model-served impressions of the last
    ``rerank_rounds`` rounds are kept joined to their candidate rows (the retriever's rank) with
    the item and user counts as they stood before the round (:class:`RerankRows`).

    With ``label`` other than ``clicks`` (:mod:`policies.label_delay`) each kept click also keeps
    its request id and hour, and :meth:`add_conversions` reads each written ``conversions``
    partition: the training matrix then holds the window's clicks whose conversion was logged by
    the last cut-off (weighted by ``label_correction``). ``conversions_oracle`` also counts the
    clicks whose conversion is still pending in the world (truth: a reference arm).
    """

    def __init__(
        self,
        n_users: int,
        n_items: int,
        window_rounds: int | None = None,
        keep_exposures: bool = False,
        rerank_rounds: int = 0,
        label: str = "clicks",
        label_correction: str = "none",
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
        self.rerank_rounds = rerank_rounds
        self._rerank: deque[RerankRows] = deque(maxlen=max(rerank_rounds, 1))
        self._rerank_top: deque[np.ndarray] = deque(maxlen=max(rerank_rounds, 1))
        self._item_clicks = np.zeros(n_items)
        self._user_clicks = np.zeros(n_users)
        self._user_impressions = np.zeros(n_users)
        self._last_t = 0.0
        self.label = label
        self.label_correction = label_correction
        # label != clicks: per round the kept clicks' (request ids, hours); the logged
        # conversions' keys (request_id · n_items + item_id, sorted) and hours; the cut-off
        self._click_meta: deque[tuple[np.ndarray, np.ndarray]] = deque(maxlen=window_rounds)
        self._conv_keys = np.empty(0, np.int64)
        self._conv_t = np.empty(0)
        self._oracle_keys = np.empty(0, np.int64)  # conversions_oracle: pending at the cut-off
        self._cutoff = 0.0

    def add_partition(self, impressions_path: Path, candidates_path: Path | None = None) -> None:
        """Read one written round (``candidates_path``: its candidates partition, needed with
        ``rerank_rounds > 0``)."""
        columns = ["user_id", "item_id", "clicked", "model_version", "position", "score"]
        columns += ["intervention"] + (RERANK_COLUMNS if self.rerank_rounds else [])
        if self.label != "clicks":
            columns += [c for c in ("request_id", "t") if c not in columns]
        shown = pl.read_parquet(impressions_path, columns=columns)  # the round, read once
        if self.rerank_rounds:
            if candidates_path is None:
                raise ValueError("a learned reranker trains on the candidates table too")
            self._add_rerank_round(shown, candidates_path)
        users = shown["user_id"].to_numpy().astype(np.int64)
        items = shown["item_id"].to_numpy().astype(np.int64)
        clicked = shown["clicked"].to_numpy()
        position = shown["position"].to_numpy().astype(np.int64)
        self._rounds.append((users[clicked], items[clicked], position[clicked]))
        if self.label != "clicks":
            request = shown["request_id"].to_numpy().astype(np.int64)
            self._click_meta.append((request[clicked], shown["t"].to_numpy()[clicked]))
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

    def _add_rerank_round(self, shown: pl.DataFrame, candidates_path: Path) -> None:
        """The round's model-served impressions (``shown``, with :data:`RERANK_COLUMNS`) as
        reranker rows; then count the round in."""
        names = pl.read_parquet_schema(candidates_path)
        cands = pl.read_parquet(
            candidates_path,
            columns=["request_id", "item_id", "score", "source"]
            + (["retriever_rank"] if "retriever_rank" in names else []),
        )
        if "retriever_rank" not in names:
            # One retriever per request ranks by its score (ties by item id): the candidate's
            # rank there, whatever order a reranker then logged the candidates in (``rank``).
            cands = cands.sort(
                ["request_id", "source", "score", "item_id"],
                descending=[False, False, True, False],
            ).with_columns(
                pl.int_range(pl.len()).over(["request_id", "source"]).alias("retriever_rank")
            )
        # the best candidate score of each request per retrieval source (RerankData.top_score)
        top = cands.group_by(["request_id", "source"]).agg(pl.col("score").max().alias("top"))
        served = (
            shown.filter(pl.col("model_version") >= 0)
            .join(
                cands.select("request_id", "item_id", "retriever_rank"),
                on=["request_id", "item_id"],
                how="left",
            )
            .join(
                top.with_columns(pl.col("source").cast(shown["source"].dtype)),
                on=["request_id", "source"],
                how="left",
            )
            .sort(["request_id", "position"])
        )
        self._rerank_top.append(served["top"].cast(pl.Float64).fill_null(np.nan).to_numpy())
        users = served["user_id"].to_numpy().astype(np.int64)
        items = served["item_id"].to_numpy().astype(np.int64)
        self._rerank.append(
            RerankRows(
                user_ids=users,
                item_ids=items,
                position=served["position"].to_numpy().astype(np.int64),
                score=served["score"].to_numpy().astype(np.float64),
                clicked=served["clicked"].to_numpy().astype(bool),
                source=served["source"].to_physical().to_numpy().astype(np.int64),
                retriever_rank=served["retriever_rank"]
                .cast(pl.Float64)
                .fill_null(np.nan)
                .to_numpy(),
                item_clicks=self._item_clicks[items],
                item_impressions=self._item_impressions[items],
                user_clicks=self._user_clicks[users],
                user_impressions=self._user_impressions[users],
                as_of_t=np.full(users.size, self._last_t),
            )
        )
        # The counts of every impression (bootstrap ones too) for the rounds after this one;
        # item impressions are counted in add_partition.
        all_users = shown["user_id"].to_numpy().astype(np.int64)
        all_items = shown["item_id"].to_numpy().astype(np.int64)
        clicked = shown["clicked"].to_numpy().astype(bool)
        self._item_clicks += np.bincount(all_items[clicked], minlength=self.n_items)
        self._user_clicks += np.bincount(all_users[clicked], minlength=self.n_users)
        self._user_impressions += np.bincount(all_users, minlength=self.n_users)
        if shown.height:
            self._last_t = max(self._last_t, float(shown["t"].max()))

    def add_conversions(
        self, path: Path, t_cutoff: float, pending: pl.DataFrame | None = None
    ) -> None:
        """Read one written ``conversions`` partition (closed at ``t_cutoff``). ``pending``:
        the world's conversions not yet happened of clicks before the cut-off — read only for
        ``label=conversions_oracle``."""
        self._cutoff = t_cutoff
        if self.label == "clicks":
            return
        conv = pl.read_parquet(path, columns=["request_id", "item_id", "t"])
        keys = self._keys(conv)
        order = np.argsort(np.concatenate([self._conv_keys, keys]), kind="stable")
        self._conv_keys = np.concatenate([self._conv_keys, keys])[order]
        self._conv_t = np.concatenate([self._conv_t, conv["t"].to_numpy()])[order]
        if self.label == "conversions_oracle":
            if pending is None:
                raise ValueError("policy.label=conversions_oracle reads the pending conversions")
            self._oracle_keys = np.sort(self._keys(pending))

    def _keys(self, frame: pl.DataFrame) -> np.ndarray:
        request = frame["request_id"].to_numpy().astype(np.int64)
        return request * self.n_items + frame["item_id"].to_numpy().astype(np.int64)

    def label_view(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Aligned with the window's kept clicks: ``(converted, delay, elapsed)`` at the last
        cut-off — converted by then (the oracle: ever), the observed delay in hours (NaN when
        not converted or only pending) and the hours since the click."""
        request = np.concatenate([m[0] for m in self._click_meta] or [np.empty(0, np.int64)])
        click_t = np.concatenate([m[1] for m in self._click_meta] or [np.empty(0)])
        items = np.concatenate([r[1] for r in self._rounds] or [np.empty(0, np.int64)])
        keys = request * self.n_items + items
        conv_keys = np.append(self._conv_keys, -1)  # a sentinel: never a click's key
        at = np.searchsorted(self._conv_keys, keys)
        converted = conv_keys[at] == keys
        delay = np.where(converted, np.append(self._conv_t, np.nan)[at] - click_t, np.nan)
        if self.label == "conversions_oracle":
            converted = converted | np.isin(keys, self._oracle_keys)
        return converted, delay, self._cutoff - click_t

    def interactions(self) -> Interactions:
        def stack(parts, j):
            return np.concatenate([p[j] for p in parts] or [np.empty(0, np.int64)])

        weights, correction = None, "none"
        if self.label != "clicks":
            converted, delay, elapsed = self.label_view()
            correction = self.label_correction if self.label == "conversions" else "none"
            weights = label_weights(
                correction, elapsed, delay, converted, stack(self._rounds, 1), self.n_items
            )

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
            rerank=self._rerank_data(),
            weights=weights,
            soft_labels=correction == "dfm",
        )

    def _rerank_data(self) -> RerankData | None:
        if not self.rerank_rounds:
            return None
        return RerankData(
            rows=RerankRows.concat(list(self._rerank)),
            item_clicks=self._item_clicks.copy(),
            item_impressions=self._item_impressions.copy(),
            user_clicks=self._user_clicks.copy(),
            user_impressions=self._user_impressions.copy(),
            now=self._last_t,
            top_score=np.concatenate([*self._rerank_top, np.empty(0)]),
        )
