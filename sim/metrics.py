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
  top 20% by prior clicks; ``top1pct_exposure_share`` — share of impressions taken by the
  ``ceil(n/100)`` most-shown items; ``intra_list_diversity`` — mean over slates of the mean
  pairwise cosine distance of the shown items' true latent factors;
* ``exploration_share`` — share of impressions whose ``source`` is ``explore`` (filled by an
  exploration draw or rerank); ``min_propensity`` — the smallest logged marginal propensity (how
  large inverse-propensity weights on this window's log can get).

``cum_*`` columns use all impressions from the start of the run to the window's end.
"""

from __future__ import annotations

from math import ceil
from pathlib import Path

import numpy as np
import polars as pl
import scipy.sparse as sp
from scipy.stats import rankdata

from sim.event_log import scan_table
from sim.inequality import gini

HEAD_PERCENTILE = 0.8  # items above this popularity percentile are the "head"

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
)


def popularity_percentile(prior_clicks: np.ndarray) -> np.ndarray:
    """Percentile in (0, 1) of each item by prior clicks; ties share their average rank."""
    n = prior_clicks.size
    return (rankdata(prior_clicks, method="average") - 0.5) / n


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


def compute_metrics(
    log_root: Path,
    n_items: int,
    item_factors: np.ndarray,
    snapshot_every_hours: float,
    rng: np.random.Generator,
    homogenization_pairs: int = 2000,
) -> pl.DataFrame:
    """One row per snapshot window (``logs/snapshots.parquet``), from the log files alone
    (plus the true item factors, which only metrics may use)."""
    snapshots = pl.read_parquet(log_root / "snapshots.parquet").sort("window")
    n_windows = snapshots.height
    window_of = (
        (pl.col("t") / snapshot_every_hours).floor().cast(pl.Int32).clip(0, n_windows - 1)
    ).alias("window")
    imp = (
        scan_table(log_root, "impressions")
        .select(
            "request_id", "t", "user_id", "item_id", "position", "clicked", "source", "propensity"
        )
        .join(
            scan_table(log_root, "truth").select("request_id", "position", "relevance"),
            on=["request_id", "position"],
            how="left",
        )
        .with_columns(window_of)
        .sort("request_id", "position")
        .collect()
    )
    w = imp["window"].to_numpy()
    item = imp["item_id"].to_numpy().astype(np.int64)
    clicked = imp["clicked"].to_numpy()
    relevance = imp["relevance"].to_numpy()
    request = imp["request_id"].to_numpy()
    explored = (imp["source"] == "explore").to_numpy()
    propensity = imp["propensity"].to_numpy()

    flat = w.astype(np.int64) * n_items + item
    exposure = np.bincount(flat, minlength=n_windows * n_items).reshape(n_windows, n_items)
    clicks = np.bincount(flat[clicked], minlength=n_windows * n_items).reshape(n_windows, n_items)
    cum_exposure = np.cumsum(exposure, axis=0)
    prior_clicks = np.vstack([np.zeros((1, n_items)), np.cumsum(clicks, axis=0)[:-1]])

    def per_window(mask: np.ndarray | slice = slice(None), weights=None) -> np.ndarray:
        return np.bincount(
            w[mask], weights=None if weights is None else weights[mask], minlength=n_windows
        )

    starts = _group_starts(request)
    unit = item_factors / np.linalg.norm(item_factors, axis=1, keepdims=True)
    diversity = slate_diversity(request, unit[item])  # one value per request
    req_window = w[starts]
    has_div = ~np.isnan(diversity)
    n_impressions = per_window()
    n_clicks = per_window(clicked)
    click_relevance = per_window(clicked, relevance)
    aggregates = pl.DataFrame(
        {
            "n_requests": np.bincount(req_window, minlength=n_windows),
            "n_impressions": n_impressions,
            "n_clicks": n_clicks,
            "utility": _ratio(per_window(weights=relevance), n_impressions),
            "utility_clicked": _ratio(click_relevance, n_clicks),
            "cumulative_utility": np.cumsum(click_relevance),
            "ctr": _ratio(n_clicks, n_impressions),
            "exploration_share": _ratio(per_window(explored), n_impressions),
            "min_propensity": _window_min(w, propensity, n_windows),
            "intra_list_diversity": _ratio(
                np.bincount(req_window[has_div], diversity[has_div], minlength=n_windows),
                np.bincount(req_window[has_div], minlength=n_windows),
            ),
        }
    )

    rows = []
    top_m = max(1, ceil(n_items / 100))
    for win in range(n_windows):  # a loop over windows (tens), not over requests or items
        e, c = exposure[win], clicks[win]
        total_e = e.sum()
        pct = popularity_percentile(prior_clicks[win])
        in_window = w == win
        rows.append(
            {
                "coverage_exposure": float((e > 0).mean()),
                "coverage_clicks": float((c > 0).mean()),
                "gini_exposure": gini(e),
                "gini_clicks": gini(c),
                "popularity_percentile": float(e @ pct / total_e) if total_e else float("nan"),
                "long_tail_share": float(e[pct <= HEAD_PERCENTILE].sum() / total_e)
                if total_e
                else float("nan"),
                "top1pct_exposure_share": float(np.sort(e)[-top_m:].sum() / total_e)
                if total_e
                else float("nan"),
                "homogenization": mean_jaccard(
                    imp["user_id"].to_numpy()[in_window & clicked],
                    item[in_window & clicked],
                    n_items,
                    homogenization_pairs,
                    rng,
                ),
                "cum_coverage_exposure": float((cum_exposure[win] > 0).mean()),
                "cum_gini_exposure": gini(cum_exposure[win]),
            }
        )
    out = pl.concat([snapshots, aggregates, pl.DataFrame(rows)], how="horizontal")
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


def _window_min(window: np.ndarray, values: np.ndarray, n_windows: int) -> np.ndarray:
    """Minimum of ``values`` per window (NaN for an empty window)."""
    out = np.full(n_windows, np.inf)
    np.minimum.at(out, window, values)
    return np.where(np.isinf(out), np.nan, out)


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
