"""Catalog and utility metrics per snapshot window, computed from the event log files.

Formulas are the contract in DESIGN.md §Metrics. Over the ``n`` catalog items with ``e_i``
impressions and ``c_i`` clicks in a window:

* ``coverage_exposure`` / ``coverage_clicks`` — share of items with ``e_i > 0`` / ``c_i > 0``;
* ``gini_exposure`` / ``gini_clicks`` — ``G = Σ_k (2k − n − 1) x_(k) / (n Σ x)``, zeros included;
* ``popularity_percentile`` — mean over the window's impressions of the shown item's percentile
  by clicks *before* the window (ties share their average rank; all-equal gives 0.5);
  ``popularity_drift`` is its change since the first window;
* ``homogenization`` — mean Jaccard similarity of the clicked-item sets of sampled pairs of users
  who clicked in the window;
* ``utility`` — mean true relevance of shown items; ``utility_clicked`` — of clicked items;
  ``cumulative_utility`` — running sum of the true relevance of clicked items;
* ``ctr`` — clicks / impressions; ``long_tail_share`` — share of impressions on items outside the
  top 20% by prior clicks, NaN in a window before which every item has the same click count
  (no clicks yet, as in the first window): every item then ties at percentile 0.5, so none is
  in the head and the share would be 100% by construction, not by anything the policy did;
  ``popularity_percentile`` keeps its 0.5 there (the percentile of any pick when nothing is
  known: the baseline ``popularity_drift`` is measured from); ``top1pct_exposure_share`` — share of impressions taken by the
  ``ceil(n/100)`` most-shown items; ``intra_list_diversity`` — mean over slates of the mean
  pairwise cosine distance of the shown items' true latent factors;
* ``exploration_share`` — share of impressions whose ``source`` is ``explore`` (filled by an
  exploration draw or rerank); ``min_propensity`` — the smallest logged marginal propensity (how
  large inverse-propensity weights on this window's log can get);
* ``model_ndcg`` — true-relevance NDCG@K of the model deployed at the window's end, measured by
  the simulator when it was fitted (:mod:`sim.model_quality`, ``logs/deployments.parquet``); NaN
  before the first deployment or when the probe is off.

Serving (the serving system's columns of the impressions table; each is NaN in every window of a
log that lacks the column it needs — a log written before the serving system, or a feature whose
column is absent). Shares and percentiles are over **requests** (one value per request: its first
row), not over impression rows:

* ``latency_p50_ms`` / ``latency_p95_ms`` / ``latency_p99_ms`` — percentiles of ``latency_ms``
  over the window's requests (``numpy.percentile``'s default linear interpolation);
* ``fallback_share_budget`` / ``fallback_share_overload`` — share of the window's requests with
  ``degraded`` = ``budget`` / ``overload`` (served by the popularity fallback);
  ``cum_fallback_share`` — share of all requests since the start of the run served by the
  fallback for either reason (the run's total, read by its final window);
* ``cache_hit_rate`` — share of requests whose slate came from the slate cache (``cache_hit``);
* ``staleness_h`` — mean over requests of how old the model behind the served slate is: the
  model's age when the slate was computed, ``(t − slate_age_h) − t_deployed``, plus the slate's
  age ``slate_age_h`` — so a cached slate's age is counted once, and the sum is
  ``t − t_deployed`` of the request's ``model_version`` (``logs/deployments.parquet``). Bootstrap
  requests (``model_version`` −1) count from t = 0, when the bootstrap began serving; a version
  missing from the deployments table is left out. Needs ``slate_age_h`` in the log;
* ``retrieval_recall`` / ``retrieval_recall_n`` — the retrieval stage's recall of the exhaustive
  top-``slate_size`` / top-``n_candidates`` of the model deployed at the window's end, measured on
  the probe users when the model was fitted (``logs/deployments.parquet``, like ``model_ndcg``);
* ``reranker_auc`` — AUC of ``rerank_score`` against ``clicked`` over the window's model-served
  impressions (``degraded`` = ``none`` when the log has it) with a finite ``rerank_score`` (Mann–Whitney, ties counted one half: the probability that a
  random clicked impression outscores a random unclicked one). The model that served a window was
  trained on earlier windows, so this is the reranker's AUC on the next window. NaN in a window
  without a clicked or without an unclicked scored impression.

Objectives (from the item metadata a platform knows, ``agents.catalog.ItemMetadata``; each is NaN
in every window when the metrics are computed without it):

* ``revenue_per_request`` — ``Σ price_i`` over the window's clicked impressions (``price`` of the
  clicked item, counted once per click) divided by the window's requests; ``cum_revenue`` — the
  running total of that clicked price since the start of the run;
* ``creator_gini_exposure`` — the Gini formula of ``gini_exposure`` over the catalog's creators
  (every creator with at least one item, zeros included) with ``x`` = the window's impressions of
  the creator's items;
* ``max_creator_share`` — the largest creator's share of the window's impressions
  (``max_c x_c / Σ x``);
* ``content_diversity`` — like ``intra_list_diversity`` but on the observable content features:
  mean over slates of the mean pairwise cosine distance of the shown items' ``content`` vectors
  (what a policy can see and a diversity objective can act on; ``intra_list_diversity`` keeps the
  true latent factors).

Constraint ledger (``logs/constraints.parquet``, written by ``policy/rerank=constrained``,
:mod:`policies.constrained_rerank`; every column NaN in every window of a run without it). Over
the ledger's ticks with ``t`` in the window ``(t_start, t_end]``:

* ``floor_met_share`` — Σ ``n_floor_met`` / Σ ``n_slates``: share of the constrained reranker's
  slates that met the per-slate floor (creators and/or content diversity); NaN without a slate;
* ``floor_infeasible_share`` — Σ ``n_floor_infeasible`` / Σ ``n_slates``: share of slates whose
  candidates could not meet the floor (``1 − floor_met_share``: every unmet slate is one);
* ``item_max_share`` / ``creator_max_share_window`` — the largest rolling-window share of
  impressions of one item / one creator observed at any tick of the window (the ledger's
  ``item_max_share`` / ``creator_max_share``; all served impressions count, the bootstrap's,
  fallback and cached ones included). ``creator_max_share_window`` is named apart from
  ``max_creator_share`` (the largest creator's share of this snapshot window's impressions);
* ``item_cap`` / ``creator_cap`` — the caps (NaN when off), to read the shares against;
* ``multiplier_max`` — the largest Lagrange multiplier (item or creator) after any tick of the
  window, in units of the request's normalized relevance (in [0, 1]).

Newcomers (:mod:`sim.cold_start_metrics`, :data:`NEWCOMER_COLUMNS`; NaN in every window of a
world without arrivals): ``new_item_exposure_share``, ``new_item_ctr``, ``new_user_utility``,
``established_utility`` and ``new_items_arrived``.

``cum_*`` columns use all impressions from the start of the run to the window's end.

Beside the metrics, :func:`measure_log` returns the per-item counts they were computed from
(``item_exposure``: one row per window and item with ``e_i > 0``), which the run writes to
``item_exposure.parquet`` so reports can draw Lorenz curves from files alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import ceil
from pathlib import Path

import numpy as np
import polars as pl
import scipy.sparse as sp

from agents.catalog import ItemMetadata
from policies.constrained_rerank import LEDGER_FILE as CONSTRAINT_LEDGER
from sim.cold_start_metrics import NEWCOMER_COLUMNS, NewcomerWindows
from sim.event_log import DEGRADED_DTYPE, logged_rounds, scan_table
from sim.inequality import average_ranks, gini

IMPRESSION_COLUMNS = (
    "request_id",
    "t",
    "user_id",
    "item_id",
    "position",
    "clicked",
    "source",
    "propensity",
)
HEAD_PERCENTILE = 0.8  # items above this popularity percentile are the "head"
ITEM_EXPOSURE_SCHEMA: dict[str, pl.DataType] = {
    "window": pl.Int32(),
    "item_id": pl.Int32(),
    "impressions": pl.Int64(),
    "clicks": pl.Int64(),
}

# objective columns, from the item metadata (module docstring, "Objectives")
OBJECTIVE_COLUMNS = (
    "revenue_per_request",
    "cum_revenue",
    "creator_gini_exposure",
    "max_creator_share",
    "content_diversity",
)
# From the constraint ledger (logs/constraints.parquet, policy/rerank=constrained); NaN without it.
CONSTRAINT_COLUMNS = (
    "floor_met_share",
    "floor_infeasible_share",
    "item_max_share",
    "creator_max_share_window",
    "item_cap",
    "creator_cap",
    "multiplier_max",
)
METRIC_COLUMNS = (
    "window",
    "t_start",
    "t_end",
    "coverage_exposure",
    "coverage_clicks",
    "gini_exposure",
    "gini_clicks",
    "popularity_percentile",
    "popularity_drift",
    "homogenization",
    "utility",
    "utility_clicked",
    "cumulative_utility",
    "ctr",
    "long_tail_share",
    "top1pct_exposure_share",
    "intra_list_diversity",
    "cum_coverage_exposure",
    "cum_gini_exposure",
    "exploration_share",
    "min_propensity",
    "n_requests",
    "n_impressions",
    "n_clicks",
    "model_version",
    "model_ndcg",
    "latency_p50_ms",
    "latency_p95_ms",
    "latency_p99_ms",
    "fallback_share_budget",
    "fallback_share_overload",
    "cum_fallback_share",
    "cache_hit_rate",
    "staleness_h",
    "retrieval_recall",
    "retrieval_recall_n",
    "reranker_auc",
    *OBJECTIVE_COLUMNS,
    *CONSTRAINT_COLUMNS,
    *NEWCOMER_COLUMNS,
)
DEGRADED_CODES = DEGRADED_DTYPE.categories.to_list()  # the physical codes of `degraded`
# Columns of the impressions table the serving metrics read, when the log has them (the serving
# system's; ``model_version`` only alongside ``slate_age_h``, for the staleness).
SERVING_LOG_COLUMNS = ("latency_ms", "degraded", "cache_hit", "slate_age_h", "rerank_score")
LATENCY_PERCENTILES = (50.0, 95.0, 99.0)
# columns of logs/deployments.parquet joined onto the window's deployed model_version
DEPLOYMENT_METRICS = ("model_ndcg", "retrieval_recall", "retrieval_recall_n")


def popularity_percentile(prior_clicks: np.ndarray) -> np.ndarray:
    """Percentile in (0, 1) of each item by prior clicks; ties share their average rank."""
    n = prior_clicks.size
    return (average_ranks(prior_clicks) - 0.5) / n


def mean_jaccard(
    users: np.ndarray, items: np.ndarray, n_items: int, n_pairs: int, rng: np.random.Generator
) -> float:
    """Mean Jaccard similarity of the item sets of ``n_pairs`` random pairs of distinct users
    (among the users present in ``users``); NaN with fewer than two users."""
    uniq, row = np.unique(users, return_inverse=True)
    m = uniq.size
    if m < 2:
        return float("nan")
    sets = sp.csr_matrix((np.ones(row.size), (row, items)), shape=(m, n_items))
    sets.data[:] = 1.0  # sets, not counts (duplicates were summed)
    a = rng.integers(0, m, size=n_pairs)
    b = (a + rng.integers(1, m, size=n_pairs)) % m  # uniform over the other users
    inter = np.asarray(sets[a].multiply(sets[b]).sum(axis=1)).ravel()
    size = np.diff(sets.indptr)
    union = size[a] + size[b] - inter
    return float(np.mean(inter / union))


def slate_diversity(request_index: np.ndarray, unit_vectors: np.ndarray) -> np.ndarray:
    """Per slate, mean pairwise cosine *distance* of its items. Rows must be grouped by slate.

    Uses ``Σ_{a≠b} cos(a, b) = ||Σ v||² − k`` for unit vectors: no loop over pairs.
    """
    if request_index.size == 0:
        return np.empty(0)
    starts = _group_starts(request_index)
    sums = np.add.reduceat(unit_vectors, starts, axis=0)
    k = np.diff(np.r_[starts, request_index.size]).astype(np.float64)
    pair_sim = (np.einsum("ij,ij->i", sums, sums) - k) / np.maximum(k * (k - 1), 1)
    return np.where(k > 1, 1.0 - pair_sim, np.nan)


class MetricsAccumulator:
    """Window aggregates built one round partition at a time.

    Memory is bounded by one round's rows plus per-window item counts (``n_windows × n_items``)
    and the clicked (user, item) pairs (the interaction data): it does not grow with the number
    of impressions logged. Requests never straddle rounds, so per-slate quantities (diversity)
    are complete within a partition.
    """

    def __init__(
        self,
        n_items: int,
        n_windows: int,
        item_factors: np.ndarray,
        snapshot_every_hours: float,
        deployed_at: np.ndarray | None = None,
        items: ItemMetadata | None = None,
        user_arrival_t: np.ndarray | None = None,
        new_item_days: float = 7.0,
        new_user_sessions: int = 5,
    ) -> None:
        """``deployed_at[v]``: ``t_deployed`` of model version ``v`` (NaN if unknown), for the
        staleness; None when the run has no deployments table. ``items``: the catalog's
        metadata, for the objective columns (NaN without it). ``user_arrival_t`` (the users'
        ``arrival_t``), ``new_item_days`` and ``new_user_sessions``: for the newcomer columns
        (:mod:`sim.cold_start_metrics`; NaN without arrivals)."""
        self.n_items = n_items
        self.deployed_at = np.empty(0) if deployed_at is None else np.asarray(deployed_at, float)
        self.n_windows = n_windows
        self.snapshot_every_hours = snapshot_every_hours
        self.unit = item_factors / np.linalg.norm(item_factors, axis=1, keepdims=True)
        shape = (n_windows, n_items)
        self.exposure = np.zeros(shape, dtype=np.int64)
        self.clicks = np.zeros(shape, dtype=np.int64)
        zeros = lambda: np.zeros(n_windows)  # noqa: E731
        self.n_requests, self.n_impressions, self.n_clicks = zeros(), zeros(), zeros()
        self.relevance_sum, self.click_relevance, self.explored = zeros(), zeros(), zeros()
        self.diversity_sum, self.diversity_n = zeros(), zeros()
        self.min_propensity = np.full(n_windows, np.inf)
        self._clicked: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (window, user, item)
        # serving: which log columns were seen, per-window request counts, and the per-request
        # latencies / per-row reranker scores that exact percentiles and AUCs need
        self.seen: set[str] = set()
        self.budget, self.overload, self.cache_hits = zeros(), zeros(), zeros()
        self.stale_sum, self.stale_n = zeros(), zeros()
        self._latency: list[tuple[np.ndarray, np.ndarray]] = []  # (window, latency) per request
        self._scored: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (window, score, click)
        self.objectives = None if items is None else ObjectiveInputs.of(items, n_items)
        self.items = items
        self.revenue = zeros()
        self.content_div_sum, self.content_div_n = zeros(), zeros()
        self.newcomers = NewcomerWindows(
            n_windows,
            snapshot_every_hours,
            np.zeros(n_items) if items is None else items.arrival_t,
            user_arrival_t,
            new_item_days,
            new_user_sessions,
        )

    def add(self, impressions: pl.DataFrame, truth: pl.DataFrame) -> None:
        """Fold in one round: its ``impressions`` and ``truth`` partitions."""
        if impressions.height == 0:
            return
        n_windows = self.n_windows
        imp = (
            impressions.select(*IMPRESSION_COLUMNS, *serving_columns(impressions.columns))
            .join(
                truth.select("request_id", "position", "relevance"),
                on=["request_id", "position"],
                how="left",
            )
            .sort("request_id", "position")
        )
        t = imp["t"].to_numpy()
        w = np.clip(np.floor(t / self.snapshot_every_hours), 0, n_windows - 1).astype(np.int64)
        item = imp["item_id"].to_numpy().astype(np.int64)
        clicked = imp["clicked"].to_numpy()
        relevance = imp["relevance"].to_numpy()
        request = imp["request_id"].to_numpy()
        flat = w * self.n_items + item
        size = n_windows * self.n_items
        self.exposure += np.bincount(flat, minlength=size).reshape(n_windows, self.n_items)
        self.clicks += np.bincount(flat[clicked], minlength=size).reshape(n_windows, self.n_items)

        def per_window(mask=slice(None), weights=None) -> np.ndarray:
            return np.bincount(
                w[mask], weights=None if weights is None else weights[mask], minlength=n_windows
            )

        self.n_impressions += per_window()
        self.n_clicks += per_window(clicked)
        self.relevance_sum += per_window(weights=relevance)
        self.click_relevance += per_window(clicked, relevance)
        self.explored += per_window((imp["source"] == "explore").to_numpy())
        np.minimum.at(self.min_propensity, w, imp["propensity"].to_numpy())
        starts = _group_starts(request)
        req_window = w[starts]
        self.n_requests += np.bincount(req_window, minlength=n_windows)
        diversity = slate_diversity(request, self.unit[item])  # one value per request
        has_div = ~np.isnan(diversity)
        self.diversity_sum += np.bincount(
            req_window[has_div], diversity[has_div], minlength=n_windows
        )
        self.diversity_n += np.bincount(req_window[has_div], minlength=n_windows)
        if self.objectives is not None:
            obj = self.objectives
            self.revenue += per_window(clicked, obj.price[item])
            content_div = slate_diversity(request, obj.unit_content[item])
            ok = ~np.isnan(content_div)
            self.content_div_sum += np.bincount(
                req_window[ok], content_div[ok], minlength=n_windows
            )
            self.content_div_n += np.bincount(req_window[ok], minlength=n_windows)
        users = imp["user_id"].to_numpy()
        self._clicked.append((w[clicked], users[clicked], item[clicked]))
        self.newcomers.add(w, t, item, users, clicked, relevance, starts)
        self._add_serving(imp, starts, req_window, w, clicked)

    def _add_serving(
        self,
        imp: pl.DataFrame,
        starts: np.ndarray,
        req_window: np.ndarray,
        w: np.ndarray,
        clicked: np.ndarray,
    ) -> None:
        """The serving columns of one round (rows sorted by request): request-level values are
        read at each request's first row (``starts``)."""
        n_windows = self.n_windows
        columns = set(imp.columns)
        self.seen |= columns & set(SERVING_LOG_COLUMNS)
        at_start = pl.Series(starts)

        def per_request(name: str) -> pl.Series:
            return imp.get_column(name).gather(at_start)

        def count(mask: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
            return np.bincount(
                req_window[mask],
                None if weights is None else weights[mask],
                minlength=n_windows,
            )

        if "latency_ms" in columns:
            latency = per_request("latency_ms").cast(pl.Float64).fill_null(np.nan).to_numpy()
            self._latency.append((req_window.astype(np.int32), latency))
        if "degraded" in columns:
            # Enum codes (none, budget, overload), not strings
            reason = per_request("degraded").cast(DEGRADED_DTYPE).to_physical()
            reason = reason.fill_null(0).to_numpy()
            self.budget += count(reason == DEGRADED_CODES.index("budget"))
            self.overload += count(reason == DEGRADED_CODES.index("overload"))
        if "cache_hit" in columns:
            self.cache_hits += count(per_request("cache_hit").fill_null(False).to_numpy())
        if "slate_age_h" in columns:
            version = per_request("model_version").to_numpy().astype(np.int64)
            age = per_request("slate_age_h").cast(pl.Float64).fill_null(np.nan).to_numpy()
            t = per_request("t").to_numpy()
            known = (version >= 0) & (version < self.deployed_at.size)
            t_deployed = np.where(version < 0, 0.0, np.nan)  # the bootstrap serves from t = 0
            t_deployed[known] = self.deployed_at[version[known]]
            staleness = ((t - age) - t_deployed) + age  # model age when computed + slate age
            ok = np.isfinite(staleness)
            self.stale_sum += count(ok, staleness)
            self.stale_n += count(ok)
        if "rerank_score" in columns:
            score = imp["rerank_score"].fill_null(np.nan).to_numpy()
            ok = np.isfinite(score)
            if not ok.any():  # no learned reranker served this round (the usual case)
                return
            if "degraded" in columns:  # model-served rows only: not the popularity fallback's
                codes = imp["degraded"].cast(DEGRADED_DTYPE).to_physical().fill_null(0)
                ok &= codes.to_numpy() == DEGRADED_CODES.index("none")
            score = score.astype(np.float64)
            self._scored.append((w[ok].astype(np.int32), score[ok], clicked[ok]))

    def serving(self) -> pl.DataFrame:
        """The serving columns per window (NaN for a column whose log input was never seen)."""
        n_windows = self.n_windows
        nan = np.full(n_windows, np.nan)
        out: dict[str, np.ndarray] = {}
        percentiles = np.full((n_windows, len(LATENCY_PERCENTILES)), np.nan)
        if "latency_ms" in self.seen:
            win, latency = (np.concatenate(parts) for parts in zip(*self._latency, strict=True))
            ok = np.isfinite(latency)
            win, latency = win[ok], latency[ok]
            order = np.lexsort((latency, win))
            win, latency = win[order], latency[order]
            bounds = np.searchsorted(win, np.arange(n_windows + 1))
            for k in range(n_windows):  # a loop over windows
                if bounds[k + 1] > bounds[k]:
                    values = latency[bounds[k] : bounds[k + 1]]
                    percentiles[k] = np.percentile(values, LATENCY_PERCENTILES)
        for j, q in enumerate(LATENCY_PERCENTILES):
            out[f"latency_p{q:.0f}_ms"] = percentiles[:, j]
        has_degraded = "degraded" in self.seen
        out["fallback_share_budget"] = _ratio(self.budget, self.n_requests) if has_degraded else nan
        out["fallback_share_overload"] = (
            _ratio(self.overload, self.n_requests) if has_degraded else nan
        )
        out["cum_fallback_share"] = (
            _ratio(np.cumsum(self.budget + self.overload), np.cumsum(self.n_requests))
            if has_degraded
            else nan
        )
        out["cache_hit_rate"] = (
            _ratio(self.cache_hits, self.n_requests) if "cache_hit" in self.seen else nan
        )
        out["staleness_h"] = (
            _ratio(self.stale_sum, self.stale_n) if "slate_age_h" in self.seen else nan
        )
        auc = np.full(n_windows, np.nan)
        if "rerank_score" in self.seen and self._scored:
            win, score, click = (np.concatenate(parts) for parts in zip(*self._scored, strict=True))
            order = np.argsort(win, kind="stable")
            win, score, click = win[order], score[order], click[order]
            bounds = np.searchsorted(win, np.arange(n_windows + 1))
            for k in range(n_windows):  # a loop over windows
                lo, hi = bounds[k], bounds[k + 1]
                auc[k] = mann_whitney_auc(score[lo:hi], click[lo:hi])
        out["reranker_auc"] = auc
        return pl.DataFrame(out)

    def _creators_in(self, items: np.ndarray) -> np.ndarray:
        """(n_creators,) bool: the creators with at least one of the ``items`` (a bool mask)."""
        assert self.objectives is not None
        out = np.zeros(self.objectives.n_creators, dtype=bool)
        out[self.objectives.creator_index[items]] = True
        return out

    def catalog_masks(self, snapshots: pl.DataFrame) -> tuple[np.ndarray | None, np.ndarray | None]:
        """For a living catalog (items arrive or leave), ``(in_window, ever_in)``: (n_windows,
        n_items) masks of the items in the catalog at some time during each window, and at some
        time up to its end — the denominators of the per-window and cumulative item metrics
        (coverage, Gini, percentiles, top-1% share). ``(None, None)`` when every item is in the
        catalog throughout (the metrics then count every item, as before arrivals existed)."""
        items = self.items
        if items is None or (not np.any(items.arrival_t > 0) and np.isinf(items.depart_t).all()):
            return None, None
        t_start = snapshots["t_start"].to_numpy()[:, None]
        t_end = snapshots["t_end"].to_numpy()[:, None]
        arrived = items.arrival_t[None, :] < t_end
        return arrived & (items.depart_t[None, :] > t_start), arrived

    def objective_metrics(self, in_window: np.ndarray | None = None) -> pl.DataFrame:
        """The objective columns per window (``OBJECTIVE_COLUMNS``; NaN without metadata).

        ``in_window`` (a living catalog, :meth:`catalog_masks`): the creator Gini counts only the
        creators with an item in the catalog during the window (a creator whose items have not
        arrived yet is not a creator the ranking ignored)."""
        n_windows = self.n_windows
        if self.objectives is None:
            return pl.DataFrame({c: np.full(n_windows, np.nan) for c in OBJECTIVE_COLUMNS})
        obj = self.objectives
        # impressions per (window, creator): the item counts summed over each creator's items
        per_creator = np.zeros((n_windows, obj.n_creators), dtype=np.int64)
        np.add.at(per_creator.T, obj.creator_index, self.exposure.T)
        total = per_creator.sum(axis=1)
        return pl.DataFrame(
            {
                "revenue_per_request": _ratio(self.revenue, self.n_requests),
                "cum_revenue": np.cumsum(self.revenue),
                "creator_gini_exposure": [  # a loop over windows
                    gini(row if in_window is None else row[self._creators_in(in_window[w])])
                    for w, row in enumerate(per_creator)
                ],
                "max_creator_share": _ratio(per_creator.max(axis=1, initial=0), total),
                "content_diversity": _ratio(self.content_div_sum, self.content_div_n),
            }
        )

    def item_exposure(self) -> pl.DataFrame:
        """Impressions and clicks per (window, item), rows with impressions only, sorted by
        window then item (``ITEM_EXPOSURE_SCHEMA``)."""
        window, item = np.nonzero(self.exposure)  # row-major: sorted by window, then item
        return pl.DataFrame(
            {
                "window": window,
                "item_id": item,
                "impressions": self.exposure[window, item],
                "clicks": self.clicks[window, item],
            },
            schema=ITEM_EXPOSURE_SCHEMA,
        )

    def finalize(
        self,
        snapshots: pl.DataFrame,
        rng: np.random.Generator,
        homogenization_pairs: int,
        ledger: pl.DataFrame | None = None,
    ) -> pl.DataFrame:
        """One row per window (``snapshots`` sorted by window), in ``METRIC_COLUMNS`` order
        (``ledger``: the constraint ledger, when the run wrote one)."""
        n_windows, n_items = self.n_windows, self.n_items
        exposure, clicks = self.exposure, self.clicks
        cum_exposure = np.cumsum(exposure, axis=0)
        prior_clicks = np.vstack([np.zeros((1, n_items)), np.cumsum(clicks, axis=0)[:-1]])
        cw, cu, ci = (
            np.concatenate([part[j] for part in self._clicked] or [np.empty(0, np.int64)])
            for j in range(3)
        )
        order = np.argsort(cw, kind="stable")
        cw, cu, ci = cw[order], cu[order], ci[order]
        bounds = np.searchsorted(cw, np.arange(n_windows + 1))
        aggregates = pl.DataFrame(
            {
                "n_requests": self.n_requests.astype(np.int64),
                "n_impressions": self.n_impressions,
                "n_clicks": self.n_clicks,
                "utility": _ratio(self.relevance_sum, self.n_impressions),
                "utility_clicked": _ratio(self.click_relevance, self.n_clicks),
                "cumulative_utility": np.cumsum(self.click_relevance),
                "ctr": _ratio(self.n_clicks, self.n_impressions),
                "exploration_share": _ratio(self.explored, self.n_impressions),
                "min_propensity": np.where(
                    np.isinf(self.min_propensity), np.nan, self.min_propensity
                ),
                "intra_list_diversity": _ratio(self.diversity_sum, self.diversity_n),
            }
        )
        rows = []
        in_window, ever_in = self.catalog_masks(snapshots)
        for win in range(n_windows):  # a loop over windows (tens), not over requests or items
            e, c, prior, cum = exposure[win], clicks[win], prior_clicks[win], cum_exposure[win]
            if in_window is not None:  # a living catalog: its items during the window only
                e, c, prior = e[in_window[win]], c[in_window[win]], prior[in_window[win]]
                cum = cum[ever_in[win]]
            top_m = max(1, ceil(e.size / 100))
            total_e = e.sum()
            pct = popularity_percentile(prior)
            lo, hi = bounds[win], bounds[win + 1]
            rows.append(
                {
                    "coverage_exposure": float((e > 0).mean()),
                    "coverage_clicks": float((c > 0).mean()),
                    "gini_exposure": gini(e),
                    "gini_clicks": gini(c),
                    "popularity_percentile": float(e @ pct / total_e) if total_e else float("nan"),
                    "long_tail_share": float(e[pct <= HEAD_PERCENTILE].sum() / total_e)
                    if total_e and np.ptp(prior) > 0  # else no item is in the head
                    else float("nan"),
                    "top1pct_exposure_share": float(np.sort(e)[-top_m:].sum() / total_e)
                    if total_e
                    else float("nan"),
                    "homogenization": mean_jaccard(
                        cu[lo:hi], ci[lo:hi], n_items, homogenization_pairs, rng
                    ),
                    "cum_coverage_exposure": float((cum > 0).mean()),
                    "cum_gini_exposure": gini(cum),
                }
            )
        out = pl.concat(
            [
                snapshots,
                aggregates,
                pl.DataFrame(rows),
                self.serving(),
                self.objective_metrics(in_window),
                constraint_columns(ledger, snapshots),
                self.newcomers.columns(),
            ],
            how="horizontal",
        )
        out = out.with_columns(
            (pl.col("popularity_percentile") - pl.col("popularity_percentile").first()).alias(
                "popularity_drift"
            )
        )
        return out.select(METRIC_COLUMNS).cast(
            {
                "window": pl.Int32,
                "model_version": pl.Int32,
                "n_requests": pl.Int64,
                "n_impressions": pl.Int64,
                "n_clicks": pl.Int64,
            }
        )


@dataclass(frozen=True)
class ObjectiveInputs:
    """The item metadata the objective columns read, in the forms they use."""

    price: np.ndarray  # (n_items,) float64
    creator_index: np.ndarray  # (n_items,) int64: index of the item's creator among n_creators
    n_creators: int  # distinct creators in the catalog (each has at least one item)
    unit_content: np.ndarray  # (n_items, d) float64, content vectors scaled to unit norm

    @classmethod
    def of(cls, items: ItemMetadata, n_items: int) -> ObjectiveInputs:
        if items.n_items != n_items:
            raise ValueError(f"item metadata has {items.n_items} items, the catalog {n_items}")
        content = np.asarray(items.content, dtype=np.float64)
        norm = np.linalg.norm(content, axis=1, keepdims=True)
        if not (norm > 0).all():  # a zero vector has no direction: no cosine distance
            raise ValueError("item content vectors must be non-zero for content_diversity")
        creators, index = np.unique(items.creator_id, return_inverse=True)
        return cls(
            price=np.asarray(items.price, dtype=np.float64),
            creator_index=index.astype(np.int64).ravel(),
            n_creators=int(creators.size),
            unit_content=content / norm,
        )


@dataclass(frozen=True)
class LogMeasures:
    """What :func:`measure_log` computes from a run's log."""

    metrics: pl.DataFrame  # one row per snapshot window, ``METRIC_COLUMNS``
    item_exposure: pl.DataFrame  # ``ITEM_EXPOSURE_SCHEMA``: per (window, item) counts, e_i > 0


def measure_log(
    log_root: Path,
    n_items: int,
    item_factors: np.ndarray,
    snapshot_every_hours: float,
    rng: np.random.Generator,
    homogenization_pairs: int = 2000,
    items: ItemMetadata | None = None,
    user_arrival_t: np.ndarray | None = None,
    new_item_days: float = 7.0,
    new_user_sessions: int = 5,
) -> LogMeasures:
    """One row per snapshot window (``logs/snapshots.parquet``), from the log files alone
    (plus the true item factors, which only metrics may use, and the item metadata ``items``
    for the objective columns, NaN without it; the users' ``user_arrival_t`` with
    ``new_item_days`` / ``new_user_sessions`` for the newcomer columns), and the per-item counts
    behind them. Reads one
    round partition at a time, so memory does not grow with the length of the log."""
    snapshots = pl.read_parquet(log_root / "snapshots.parquet").sort("window")
    deployments = log_root / "deployments.parquet"
    found = pl.read_parquet(deployments) if deployments.exists() else pl.DataFrame()
    measured = [c for c in DEPLOYMENT_METRICS if c in found.columns]
    per_model = pl.DataFrame(schema={"model_version": pl.Int32})
    if "model_version" in found.columns:
        per_model = found.select(
            pl.col("model_version").cast(pl.Int32), *(pl.col(c).cast(pl.Float64) for c in measured)
        )
    snapshots = (
        snapshots.join(per_model, on="model_version", how="left")
        .with_columns(
            *(pl.col(c).fill_null(float("nan")) for c in measured),
            *(pl.lit(float("nan")).alias(c) for c in DEPLOYMENT_METRICS if c not in measured),
        )
        .sort("window")
    )
    deployed_at = None
    if {"model_version", "t_deployed"} <= set(found.columns) and found.height:
        version = found["model_version"].to_numpy().astype(np.int64)
        keep = version >= 0
        deployed_at = np.full(int(version.max(initial=-1)) + 1, np.nan)
        deployed_at[version[keep]] = found["t_deployed"].to_numpy()[keep]
    acc = MetricsAccumulator(
        n_items,
        snapshots.height,
        item_factors,
        snapshot_every_hours,
        deployed_at,
        items,
        user_arrival_t,
        new_item_days,
        new_user_sessions,
    )
    impressions, truth = scan_table(log_root, "impressions"), scan_table(log_root, "truth")
    read = [*IMPRESSION_COLUMNS, *serving_columns(impressions.collect_schema().names())]
    for rnd in logged_rounds(log_root, "impressions"):  # one round's files per collect
        acc.add(
            impressions.filter(pl.col("round") == rnd).select(read).collect(),
            truth.filter(pl.col("round") == rnd)
            .select("request_id", "position", "relevance")
            .collect(),
        )
    ledger_path = log_root / CONSTRAINT_LEDGER
    ledger = pl.read_parquet(ledger_path) if ledger_path.exists() else None
    return LogMeasures(
        acc.finalize(snapshots, rng, homogenization_pairs, ledger), acc.item_exposure()
    )


def constraint_columns(ledger: pl.DataFrame | None, snapshots: pl.DataFrame) -> pl.DataFrame:
    """The ledger's columns per window (:data:`CONSTRAINT_COLUMNS`): ticks with ``t`` in
    ``(t_start, t_end]`` (a tick covers the slates served before it); NaN without a ledger or a
    tick in the window."""
    t_start = snapshots["t_start"].to_numpy().astype(np.float64)
    t_end = snapshots["t_end"].to_numpy().astype(np.float64)
    out = {c: np.full(t_start.size, np.nan) for c in CONSTRAINT_COLUMNS}
    if ledger is not None and ledger.height:
        t = ledger["t"].to_numpy()
        col = {c: ledger[c].to_numpy().astype(np.float64) for c in ledger.columns}
        multiplier = np.maximum(col["item_multiplier_max"], col["creator_multiplier_max"])
        for w in range(t_start.size):  # a loop over windows (tens)
            sel = (t > t_start[w]) & (t <= t_end[w])
            if not sel.any():
                continue
            n = col["n_slates"][sel].sum()
            if n > 0:
                out["floor_met_share"][w] = col["n_floor_met"][sel].sum() / n
                out["floor_infeasible_share"][w] = col["n_floor_infeasible"][sel].sum() / n
            out["item_max_share"][w] = np.nanmax(np.append(col["item_max_share"][sel], np.nan))
            out["creator_max_share_window"][w] = np.nanmax(
                np.append(col["creator_max_share"][sel], np.nan)
            )
            out["item_cap"][w] = col["item_cap"][sel][-1]
            out["creator_cap"][w] = col["creator_cap"][sel][-1]
            out["multiplier_max"][w] = multiplier[sel].max()
    return pl.DataFrame(out)


def compute_metrics(
    log_root: Path,
    n_items: int,
    item_factors: np.ndarray,
    snapshot_every_hours: float,
    rng: np.random.Generator,
    homogenization_pairs: int = 2000,
    items: ItemMetadata | None = None,
) -> pl.DataFrame:
    """The metrics table of :func:`measure_log` alone."""
    return measure_log(
        log_root, n_items, item_factors, snapshot_every_hours, rng, homogenization_pairs, items
    ).metrics


def serving_columns(available: list[str] | tuple[str, ...]) -> list[str]:
    """The serving columns the metrics read among ``available`` (a log's columns):
    :data:`SERVING_LOG_COLUMNS` present, plus ``model_version`` when ``slate_age_h`` is (the
    staleness needs both). Older logs have none: their serving metrics are NaN."""
    found = [c for c in SERVING_LOG_COLUMNS if c in available]
    return found + (["model_version"] if "slate_age_h" in found else [])


def mann_whitney_auc(score: np.ndarray, positive: np.ndarray) -> float:
    """P(a random positive outscores a random negative), ties counted one half: the
    Mann–Whitney U of the positives over ``n_pos · n_neg``, from average ranks. NaN without a
    positive or without a negative."""
    positive = np.asarray(positive, dtype=bool)
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = average_ranks(score)
    u = ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def _group_starts(sorted_keys: np.ndarray) -> np.ndarray:
    """Index of the first row of each run of equal keys (empty input → no runs)."""
    if sorted_keys.size == 0:
        return np.empty(0, dtype=np.int64)
    return np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """Elementwise ``num / den`` with NaN where ``den == 0``."""
    out = np.full(np.shape(num), np.nan)
    np.divide(num, den, out=out, where=np.asarray(den) > 0)
    return out
