"""The training view of the log: click counts, exposure counts and the newest round's impressions."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp


@dataclass(frozen=True)
class TrainingNeeds:
    """What a policy needs kept of the log to train (the simulator shapes its training view so).

    ``window_rounds``: train on the clicks of the last N log rounds only (``None``: all);
    ``keep_exposures``: also keep the shown-but-not-clicked pairs (:attr:`Interactions.exposures`).
    """

    window_rounds: int | None = None
    keep_exposures: bool = False
    rerank_rounds: int = 0  # > 0: keep the last N rounds' impressions as reranker rows (RerankData)
    label: str = "clicks"  # what the training matrix counts (policies.label_delay.LABELS)
    label_correction: str = "none"  # with label=conversions (policies.label_delay.CORRECTIONS)


@dataclass(frozen=True)
class RoundImpressions:
    """Every slot shown in the newest log round (what an online bandit updates on)."""

    user_ids: np.ndarray  # (m,) int
    item_ids: np.ndarray  # (m,) int
    clicked: np.ndarray  # (m,) bool
    model_version: np.ndarray  # (m,) int: the deployed model that served the row (-1: none)
    position: np.ndarray | None = None  # (m,) int: 0-based slot
    score: np.ndarray | None = None  # (m,) float: the score the serving policy logged (NaN: none)

    @classmethod
    def empty(cls) -> RoundImpressions:
        e = np.empty(0, np.int64)
        return cls(e, e, np.empty(0, bool), e, e, np.empty(0))


@dataclass(frozen=True)
class RerankRows:
    """Model-served impressions (``model_version >= 0``) of the last ``rerank_rounds`` log rounds,
    joined to their candidates rows, with what was known at the start of each row's round.

    Every count is over the whole log *before* the row's round (rounds ``< r`` for a row of round
    ``r``): what the model that served round ``r`` knew at its cut-off. ``as_of_t`` is the last
    logged hour before the round (0 for the first round): the "now" of item age.
    """

    user_ids: np.ndarray  # (m,) int64
    item_ids: np.ndarray  # (m,) int64
    position: np.ndarray  # (m,) int64: the slot shown
    score: np.ndarray  # (m,) float64: the logged model score (NaN: none)
    clicked: np.ndarray  # (m,) bool
    source: np.ndarray  # (m,) int64: code into policies.models.SOURCES (of the impression)
    retriever_rank: np.ndarray  # (m,) float64: rank in its retriever (NaN: not a candidate)
    item_clicks: np.ndarray  # (m,) float64
    item_impressions: np.ndarray  # (m,) float64
    user_clicks: np.ndarray  # (m,) float64
    user_impressions: np.ndarray  # (m,) float64
    as_of_t: np.ndarray  # (m,) float64

    @property
    def n(self) -> int:
        return int(self.user_ids.shape[0])

    @classmethod
    def concat(cls, parts: list[RerankRows]) -> RerankRows:
        names = [f for f in cls.__dataclass_fields__]
        if not parts:
            e = np.empty(0)
            return cls(**{f: e.astype(bool) if f == "clicked" else e for f in names})
        return cls(**{f: np.concatenate([getattr(p, f) for p in parts]) for f in names})


@dataclass(frozen=True)
class RerankData:
    """What the learned reranker trains on (``rows``) and serves with: whole-log counts per item
    and per user up to the cut-off, and ``now``, the last logged hour."""

    rows: RerankRows
    item_clicks: np.ndarray  # (n_items,) float64
    item_impressions: np.ndarray  # (n_items,) float64
    user_clicks: np.ndarray  # (n_users,) float64
    user_impressions: np.ndarray  # (n_users,) float64
    now: float
    # (m,) float64 aligned with ``rows``: the largest candidate score of the row's request among
    # the candidates of the row's source (NaN: the impression's source retrieved no candidate,
    # e.g. an explored item); the scalarized reranker calibrates the gap ``score − top_score``.
    top_score: np.ndarray | None = None


@dataclass(frozen=True)
class ClickEvents:
    """Every click in the training window with the slot it was shown in (for position IPW)."""

    user_ids: np.ndarray  # (c,) int64
    item_ids: np.ndarray  # (c,) int64
    positions: np.ndarray  # (c,) int64

    @classmethod
    def empty(cls) -> ClickEvents:
        e = np.empty(0, np.int64)
        return cls(e, e, e)


@dataclass(frozen=True)
class SlotCounts:
    """Impressions and clicks per slot on randomized (shuffled top-K) traffic, whole log."""

    impressions: np.ndarray  # (K,) float64
    clicks: np.ndarray  # (K,) float64


@dataclass(frozen=True)
class Interactions:
    """What a model trains on, all derived from the event log.

    ``clicks`` is ``(n_users, n_items)`` CSR with float32 click counts (the training window);
    ``item_impressions`` counts every impression of each item in the whole log so far;
    ``latest_round`` holds the impressions of the round that was just closed;
    ``click_events`` every click of the window with its slot; ``exposures`` the window's
    shown-but-not-clicked pairs (when kept); ``randomized_slots`` per-slot counts on shuffled
    traffic (when any).
    """

    clicks: sp.csr_matrix
    item_impressions: np.ndarray = field(default_factory=lambda: np.zeros(0))
    latest_round: RoundImpressions = field(default_factory=RoundImpressions.empty)
    click_events: ClickEvents = field(default_factory=ClickEvents.empty)
    # Shown-but-not-clicked (user, item) pairs of the window, kept only for exposure-aware
    # training (they are ~10x the clicks).
    exposures: tuple[np.ndarray, np.ndarray] | None = None
    randomized_slots: SlotCounts | None = None
    rerank: RerankData | None = None  # kept when TrainingNeeds.rerank_rounds > 0
    # ``clicks`` holds soft labels (policy.label_correction=dfm: the sum over a pair's clicks of
    # each one's probability of converting) rather than counts (policies.label_delay)
    soft_labels: bool = False
    # The window's click counts when ``clicks`` holds labels other than clicks (policy.label):
    # what a factor model filters when it serves (None: ``clicks`` itself); see seen_matrix.
    clicked: sp.csr_matrix | None = None

    def __post_init__(self) -> None:
        if self.item_impressions.size == 0:
            object.__setattr__(self, "item_impressions", np.zeros(self.clicks.shape[1]))

    @classmethod
    def empty(cls, n_users: int, n_items: int) -> Interactions:
        return cls(sp.csr_matrix((n_users, n_items), dtype=np.float32))

    @classmethod
    def from_pairs(
        cls,
        user_ids: np.ndarray,
        item_ids: np.ndarray,
        n_users: int,
        n_items: int,
        item_impressions: np.ndarray | None = None,
        latest_round: RoundImpressions | None = None,
        click_positions: np.ndarray | None = None,
        exposures: tuple[np.ndarray, np.ndarray] | None = None,
        randomized_slots: SlotCounts | None = None,
        rerank: RerankData | None = None,
        weights: np.ndarray | None = None,
        soft_labels: bool = False,
    ) -> Interactions:
        """Sum one click per ``(user, item)`` pair into a canonical CSR matrix (``weights``: one
        value per pair instead of 1, pairs of weight 0 left out; the plain counts are then kept
        as :attr:`clicked`)."""
        rows, cols = user_ids, item_ids
        if weights is None:
            data = np.ones(user_ids.shape[0], dtype=np.float32)
        else:
            keep = weights > 0
            rows, cols, data = rows[keep], cols[keep], weights[keep].astype(np.float32)
        m = sp.coo_matrix((data, (rows, cols)), shape=(n_users, n_items)).tocsr()
        m.sum_duplicates()
        m.sort_indices()
        clicked = None
        if weights is not None:
            clicked = cls.from_pairs(user_ids, item_ids, n_users, n_items).clicks
        events = ClickEvents.empty()
        if click_positions is not None:
            events = ClickEvents(
                user_ids.astype(np.int64),
                item_ids.astype(np.int64),
                click_positions.astype(np.int64),
            )
        return cls(
            m,
            np.zeros(n_items) if item_impressions is None else item_impressions,
            latest_round or RoundImpressions.empty(),
            events,
            exposures,
            randomized_slots,
            rerank,
            soft_labels,
            clicked,
        )

    @property
    def n_users(self) -> int:
        return int(self.clicks.shape[0])

    @property
    def n_items(self) -> int:
        return int(self.clicks.shape[1])

    @property
    def seen_matrix(self) -> sp.csr_matrix:
        """What a user has clicked in the window (what serving filters), whatever the labels."""
        return self.clicks if self.clicked is None else self.clicked

    @property
    def item_popularity(self) -> np.ndarray:
        """Total clicks per item, float64."""
        return np.asarray(self.clicks.sum(axis=0), dtype=np.float64).ravel()

    @property
    def user_activity(self) -> np.ndarray:
        """Number of distinct items each user clicked."""
        return np.diff(self.clicks.indptr)
