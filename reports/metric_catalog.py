"""The metric catalog: what each column of ``metrics.parquet`` is called and how it is printed.

One entry per metric column, used by every place that shows metrics: the terminal summary
(``experiments.console``), the sweep comparison table (``experiments.study``), the run report and
the sweep report. It lives in ``reports`` because reports import nothing of the simulator, while
``experiments`` may import reports. ``tests/reports/test_metric_catalog.py`` ties it to
``sim.metrics.METRIC_COLUMNS``: every entry is a real column, and every column has an entry or is
listed in :data:`NOT_METRICS`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

Direction = Literal["higher", "lower", "neutral"]
# How a value is printed on the HTML pages; ``pct`` marks a share (differences in pp).
Kind = Literal["pct", "num", "num0", "num1", "signed", "int", "prob", "ms", "hours"]


@dataclass(frozen=True)
class Metric:
    """One column of ``metrics.parquet``.

    Attributes
    ----------
    column : the column name.
    label : short lower-case name ("exposure Gini"); pages capitalize the first letter.
    description : what it measures, one phrase.
    unit : what the numbers are ("share of catalog items", "Jaccard similarity" ...).
    kind : how the HTML pages print it (:func:`format_metric`).
    text_format : ``str.format`` spec of the terminal and ``comparison.md`` tables, which
        print some metrics with more digits than the pages.
    direction : ``higher`` or ``lower`` is better for the catalog and its users, or ``neutral``
        (a count, or a knob rather than an outcome).
    domain : the range every value lies in, ``(low, high)``; ``None`` for an open end. Plots fix
        their axes to it and intervals never leave it (:mod:`reports.intervals`).
    per_window : True for a rate measured within each window, whose mean over windows means
        something; False for a running total or a count (a cumulative is summarized by its
        final value, never averaged).
    log_axis : plot on a log axis (values spanning orders of magnitude, e.g. propensities).
    """

    column: str
    label: str
    description: str
    unit: str
    kind: Kind
    text_format: str
    direction: Direction
    domain: tuple[float | None, float | None] = (0.0, 1.0)
    per_window: bool = True
    log_axis: bool = False

    @property
    def title(self) -> str:
        """The label with its first letter capitalized ("Exposure Gini", "CTR")."""
        return self.label[:1].upper() + self.label[1:]

    def text(self, value: Any) -> str:
        """``value`` in the terminal/comparison format; None/NaN become an en dash."""
        return "–" if is_missing(value) else self.text_format.format(value)


_SHARE = "share of impressions"
_REQUESTS = "share of requests"
METRICS: tuple[Metric, ...] = (
    Metric(
        "coverage_exposure",
        "exposure coverage",
        "share of catalog items shown at least once",
        "share of catalog items",
        "pct",
        "{:.1%}",
        "higher",
    ),
    Metric(
        "coverage_clicks",
        "click coverage",
        "share of catalog items clicked at least once",
        "share of catalog items",
        "pct",
        "{:.1%}",
        "higher",
    ),
    Metric(
        "gini_exposure",
        "exposure Gini",
        "inequality of impressions over items (0 = equal)",
        "Gini coefficient",
        "num",
        "{:.3f}",
        "lower",
    ),
    Metric(
        "gini_clicks",
        "click Gini",
        "inequality of clicks over items",
        "Gini coefficient",
        "num",
        "{:.3f}",
        "lower",
    ),
    Metric(
        "popularity_percentile",
        "popularity percentile",
        "mean popularity percentile (by clicks before the window) of shown items",
        "percentile (0–1)",
        "num",
        "{:.3f}",
        "lower",
    ),
    Metric(
        "popularity_drift",
        "popularity drift",
        "change since window 1 in the popularity percentile of shown items",
        "Δ popularity percentile",
        "signed",
        "{:+.3f}",
        "lower",
        domain=(-1.0, 1.0),
    ),
    Metric(
        "homogenization",
        "homogenization",
        "mean Jaccard similarity of users' clicked sets",
        "Jaccard similarity",
        "num",
        "{:.4f}",
        "lower",
    ),
    Metric(
        "utility",
        "utility",
        "mean true relevance of shown items",
        "mean true relevance",
        "num",
        "{:.4f}",
        "higher",
    ),
    Metric(
        "utility_clicked",
        "utility (clicked)",
        "mean true relevance of clicked items",
        "mean true relevance",
        "num",
        "{:.4f}",
        "higher",
    ),
    Metric(
        "cumulative_utility",
        "cumulative utility",
        "running sum of relevance of clicked items",
        "sum of true relevance",
        "num0",
        "{:,.0f}",
        "higher",
        domain=(0.0, None),
        per_window=False,
    ),
    Metric(
        "ctr", "CTR", "clicks / impressions", "clicks per impression", "pct", "{:.2%}", "higher"
    ),
    Metric(
        "long_tail_share",
        "long-tail share",
        "impressions outside the top 20% by past clicks",
        _SHARE,
        "pct",
        "{:.1%}",
        "higher",
    ),
    Metric(
        "top1pct_exposure_share",
        "top-1% exposure share",
        "impressions taken by the 1% most-shown items",
        _SHARE,
        "pct",
        "{:.1%}",
        "lower",
    ),
    Metric(
        "intra_list_diversity",
        "intra-list diversity",
        "mean pairwise cosine distance of the true latent factors within a slate",
        "cosine distance",
        "num",
        "{:.3f}",
        "higher",
        domain=(0.0, 2.0),
    ),
    Metric(
        "cum_coverage_exposure",
        "cumulative exposure coverage",
        "share of catalog items shown at least once since the start of the run",
        "share of catalog items",
        "pct",
        "{:.1%}",
        "higher",
        per_window=False,
    ),
    Metric(
        "cum_gini_exposure",
        "cumulative exposure Gini",
        "inequality of impressions since the start of the run",
        "Gini coefficient",
        "num",
        "{:.3f}",
        "lower",
        per_window=False,
    ),
    Metric(
        "exploration_share",
        "exploration share",
        "share of impressions filled by exploration",
        _SHARE,
        "pct",
        "{:.1%}",
        "neutral",
    ),
    Metric(
        "min_propensity",
        "min propensity",
        "smallest logged marginal propensity in the window",
        "probability",
        "prob",
        "{:.3g}",
        "neutral",
        log_axis=True,
    ),
    Metric(
        "n_requests",
        "requests",
        "requests served",
        "requests",
        "int",
        "{:,}",
        "neutral",
        domain=(0.0, None),
        per_window=False,
    ),
    Metric(
        "n_impressions",
        "impressions",
        "slots shown",
        "impressions",
        "int",
        "{:,}",
        "neutral",
        domain=(0.0, None),
        per_window=False,
    ),
    Metric(
        "n_clicks",
        "clicks",
        "clicks",
        "clicks",
        "int",
        "{:,}",
        "neutral",
        domain=(0.0, None),
        per_window=False,
    ),
    Metric(
        "model_ndcg",
        "model true NDCG",
        "true-relevance NDCG@K of the deployed model's ranking (fixed users)",
        "NDCG@K",
        "num",
        "{:.3f}",
        "higher",
    ),
    *(
        Metric(
            f"latency_p{q}_ms",
            f"p{q} latency",
            f"{q}th percentile over the window's requests of queue wait + service time",
            "milliseconds",
            "ms",
            "{:,.0f} ms",
            "lower",
            domain=(0.0, None),
            log_axis=True,
        )
        for q in (50, 95, 99)
    ),
    Metric(
        "fallback_share_budget",
        "fallback share (budget)",
        "share of requests served by the popularity fallback: predicted latency over the budget",
        _REQUESTS,
        "pct",
        "{:.1%}",
        "lower",
    ),
    Metric(
        "fallback_share_overload",
        "fallback share (overload)",
        "share of requests served by the popularity fallback: model servers overloaded",
        _REQUESTS,
        "pct",
        "{:.1%}",
        "lower",
    ),
    Metric(
        "cum_fallback_share",
        "cumulative fallback share",
        "share of all requests since the start of the run served by the popularity fallback",
        _REQUESTS,
        "pct",
        "{:.1%}",
        "lower",
        per_window=False,
    ),
    Metric(
        "cache_hit_rate",
        "cache hit rate",
        "share of requests served from the slate cache",
        _REQUESTS,
        "pct",
        "{:.1%}",
        "neutral",  # cheaper serving, staler slates: a knob's effect, not better or worse
    ),
    Metric(
        "staleness_h",
        "staleness",
        "mean age of the model behind the served slate (model age when computed + slate age)",
        "hours",
        "hours",
        "{:.1f} h",
        "lower",
        domain=(0.0, None),
    ),
    Metric(
        "retrieval_recall",
        "retrieval recall@K",
        "share of the deployed model's exhaustive top-K that the retrieval stage returns",
        "recall (probe users)",
        "num",
        "{:.3f}",
        "higher",
    ),
    Metric(
        "retrieval_recall_n",
        "retrieval recall@N",
        "share of the deployed model's exhaustive top-N (N = candidates) that retrieval returns",
        "recall (probe users)",
        "num",
        "{:.3f}",
        "higher",
    ),
    Metric(
        "reranker_auc",
        "reranker AUC",
        "AUC of the learned reranker's score against clicks on the window's impressions",
        "AUC (0.5 = chance)",
        "num",
        "{:.3f}",
        "higher",
    ),
    # objectives, from the item metadata (sim.metrics "Objectives")
    Metric(
        "revenue_per_request",
        "revenue per request",
        "price of the clicked items per request",
        "price units per request",
        "num",
        "{:.3f}",
        "higher",
        domain=(0.0, None),
    ),
    Metric(
        "cum_revenue",
        "cumulative revenue",
        "running sum of the price of clicked items",
        "price units",
        "num0",
        "{:,.0f}",
        "higher",
        domain=(0.0, None),
        per_window=False,
    ),
    Metric(
        "creator_gini_exposure",
        "creator exposure Gini",
        "inequality of impressions over creators, zeros included (0 = equal)",
        "Gini coefficient",
        "num",
        "{:.3f}",
        "lower",
    ),
    Metric(
        "max_creator_share",
        "max creator share",
        "the most-shown creator's share of the window's impressions",
        _SHARE,
        "pct",
        "{:.1%}",
        "lower",
    ),
    Metric(
        "content_diversity",
        "content diversity",
        "mean pairwise cosine distance of the content features within a slate",
        "cosine distance",
        "num",
        "{:.3f}",
        "higher",
        domain=(0.0, 2.0),
    ),
    # The constraint ledger (policy/rerank=constrained); NaN in runs without it.
    Metric(
        "floor_met_share",
        "floor met",
        "share of the constrained reranker's slates that met the per-slate floor "
        "(distinct creators and/or content diversity)",
        "share of constrained slates",
        "pct",
        "{:.1%}",
        "higher",
    ),
    Metric(
        "floor_infeasible_share",
        "floor infeasible",
        "share of the constrained reranker's slates whose candidates could not meet the floor",
        "share of constrained slates",
        "pct",
        "{:.1%}",
        "lower",
    ),
    Metric(
        "item_max_share",
        "max item share (rolling)",
        "largest share of the rolling window's impressions held by one item at any tick",
        _SHARE,
        "pct",
        "{:.2%}",
        "lower",
    ),
    Metric(
        "creator_max_share_window",
        "max creator share (rolling)",
        "largest share of the rolling window's impressions held by one creator at any tick",
        _SHARE,
        "pct",
        "{:.2%}",
        "lower",
    ),
    Metric(
        "item_cap",
        "item exposure cap",
        "the constrained reranker's cap on one item's rolling share of impressions",
        _SHARE,
        "pct",
        "{:.2%}",
        "neutral",
    ),
    Metric(
        "creator_cap",
        "creator exposure cap",
        "the constrained reranker's cap on one creator's rolling share of impressions",
        _SHARE,
        "pct",
        "{:.2%}",
        "neutral",
    ),
    Metric(
        "multiplier_max",
        "max Lagrange multiplier",
        "largest exposure-cap multiplier after any tick of the window",
        "normalized relevance (0-1 per request)",
        "num",
        "{:.3f}",
        "neutral",
    ),
    # Newcomers (sim.cold_start_metrics): NaN in every window of a world without arrivals.
    Metric(
        "new_item_exposure_share",
        "new-item exposure share",
        "impressions of items that arrived during the run, within their first days (metrics."
        "new_item_days)",
        _SHARE,
        "pct",
        "{:.1%}",
        "neutral",
    ),
    Metric(
        "new_item_ctr",
        "new-item CTR",
        "clicks / impressions of the new items (the cold-item CTR)",
        "clicks per impression",
        "pct",
        "{:.2%}",
        "higher",
    ),
    Metric(
        "new_user_utility",
        "new-user utility",
        "mean true relevance shown in the first requests (metrics.new_user_sessions) of users "
        "who arrived during the run",
        "mean true relevance",
        "num",
        "{:.4f}",
        "higher",
    ),
    Metric(
        "established_utility",
        "established utility",
        "mean true relevance shown in every other request (what cold-start layers cost the rest)",
        "mean true relevance",
        "num",
        "{:.4f}",
        "higher",
    ),
    Metric(
        "new_items_arrived",
        "new items arrived",
        "items that arrived in the window",
        "items",
        "int",
        "{:,.0f}",
        "neutral",
        domain=(0.0, None),
        per_window=False,
    ),
    # Retention and conversions (sim.retention_metrics): columns only of runs with engagement or
    # conversions on; NaN in every window for the half that is off.
    Metric(
        "active_users",
        "active users",
        "users active at some moment of the window (joined, not churned)",
        "users",
        "int",
        "{:,.0f}",
        "higher",
        domain=(0.0, None),
        per_window=False,
    ),
    Metric(
        "churn_rate",
        "churn rate",
        "churn events in the window / users active just before it",
        "share of active users",
        "pct",
        "{:.2%}",
        "lower",
    ),
    Metric(
        "return_rate",
        "return rate",
        "return events in the window / users churned just before it",
        "share of churned users",
        "pct",
        "{:.2%}",
        "higher",
    ),
    Metric(
        "satisfaction_mean",
        "satisfaction",
        "mean satisfaction of active users at the window's day boundaries",
        "moving average of true relevance clicked per request",
        "num",
        "{:.4f}",
        "higher",
        domain=(0.0, None),
    ),
    Metric(
        "conversions",
        "conversions",
        "conversions that happened in the window",
        "conversions",
        "int",
        "{:,.0f}",
        "higher",
        domain=(0.0, None),
        per_window=False,
    ),
    Metric(
        "conversion_rate",
        "conversion rate",
        "share of the window's clicks that converted by the end of the run (late windows censored)",
        "conversions per click",
        "pct",
        "{:.2%}",
        "higher",
    ),
    Metric(
        "revenue",
        "revenue",
        "value of the conversions that happened in the window",
        "price units",
        "num1",
        "{:,.1f}",
        "higher",
        domain=(0.0, None),
        per_window=False,
    ),
    Metric(
        "conversion_lag_h",
        "conversion lag",
        "mean hours from click to conversion of the window's conversions",
        "hours",
        "hours",
        "{:,.1f} h",
        "neutral",
        domain=(0.0, None),
    ),
)
CATALOG: dict[str, Metric] = {m.column: m for m in METRICS}
# Columns of metrics.parquet that identify a window rather than measure it.
NOT_METRICS: tuple[str, ...] = ("window", "t_start", "t_end", "model_version")


def metric_info(column: str) -> Metric:
    """The catalog entry of ``column`` (KeyError naming it when there is none)."""
    try:
        return CATALOG[column]
    except KeyError:
        raise KeyError(f"{column!r} is not in the metric catalog") from None


def is_missing(value: Any) -> bool:
    """None or NaN: a value a page prints as an en dash."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def format_metric(value: Any, kind: str) -> str:
    """Format one value for a page by ``kind`` (a :class:`Metric`'s, or ``pct_short``/``num2``
    for the headline); None/NaN becomes an en dash."""
    if is_missing(value):
        return "–"
    v = float(value)
    if kind == "pct":
        return f"{v:.1%}"
    if kind == "pct_short":  # headline: whole percents unless that would round small values away
        return f"{v:.0%}" if abs(v) >= 0.1 else f"{v:.1%}"
    if kind == "signed":
        return f"{v:+.3f}"
    if kind == "num2":
        return f"{v:.2f}"
    if kind == "num0":  # large totals: whole numbers with thousands separators
        return f"{v:,.0f}"
    if kind == "num1":
        return f"{v:,.1f}"
    if kind == "int":
        return f"{int(v):,}"
    if kind == "prob":  # probabilities spanning orders of magnitude: 3 significant digits
        return f"{v:.3g}"
    if kind == "ms":  # latencies: ms below 10 s (one decimal below 10 ms), then s, then min
        if abs(v) < 10:
            return f"{v:.1f} ms"
        if abs(v) < 10_000:
            return f"{v:,.0f} ms"
        if abs(v) < 600_000:
            return f"{v / 1000:.3g} s"
        if abs(v) < 60_000_000:
            return f"{v / 60_000:.3g} min"
        return f"{v / 3_600_000:,.0f} h"
    if kind == "hours":
        return f"{v:,.1f} h"
    return f"{v:.3f}"
