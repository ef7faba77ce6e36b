"""The sweep report's "Retention" section: does an arm keep its users, and what is each user
worth over the run — with intervals across seeds and paired differences to the baseline.

Per arm, from each finished job's files (:mod:`sim.retention_metrics`):

* the retention curve of the day-0 cohort (``retention_curves.parquet``, cohort ``active``,
  start day 0: the share of the users active on day 0 still active k days later), the mean over
  seeds with its 95% t-interval as a band (:func:`reports.intervals.column_intervals`, cut to
  [0, 1]);
* outcomes per job — the final retention (that curve's last day), the long-term utility per
  user, the revenue per user, the mean satisfaction and the conversion rate (``summary.json``
  ``retention``) — each arm's mean with its t-interval, and each arm minus the baseline on the
  same seeds (:func:`reports.comparison.paired_difference`: mean difference, 95% t-interval,
  paired t-test);
* the mean satisfaction of active users per window (``metrics.parquet``'s
  ``satisfaction_mean``), mean over seeds with its band;
* the mechanism: each window's CTR and the active users' satiation of their most consumed
  topic (``logs/engagement_days.parquet``), mean over seeds with bands.

Shown when some finished job has a ``retention`` block (engagement or conversions were on).
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import plotly.graph_objects as go
import polars as pl

from reports.comparison import Paired, difference_text, fmt_interval, p_text, paired_difference
from reports.intervals import METHOD, Interval, column_intervals, mean_interval
from reports.metric_catalog import format_metric, is_missing
from reports.page import COLORS, FIG_HEIGHT, figure_html
from reports.sweep_folder import FINISHED, Job, Sweep, metric_values

CURVES_FILE = "retention_curves.parquet"
DAYS_FILE = (
    "engagement_days.parquet"  # sim.engagement_log.ENGAGEMENT_DAYS_FILE (reports read files)
)


@dataclass(frozen=True)
class Outcome:
    """One compared quantity of a job."""

    key: str
    label: str
    source: str  # "curve": the day-0 curve's last day; "summary": a retention key
    kind: str  # page format of a level (a difference is printed signed)
    domain: tuple[float | None, float | None]
    better: str  # "higher" or "lower"


OUTCOMES: tuple[Outcome, ...] = (
    Outcome("final_retention", "day-0 cohort active on the last day", "curve", "pct",
            (0.0, 1.0), "higher"),
    Outcome("long_term_utility_per_user", "long-term utility per user", "summary", "num",
            (0.0, None), "higher"),
    Outcome("revenue_per_user", "revenue per user", "summary", "num2", (0.0, None), "higher"),
    Outcome("satisfaction_mean", "mean satisfaction", "summary", "num", (0.0, None), "higher"),
    Outcome("conversion_rate", "conversion rate", "summary", "pct", (0.0, 1.0), "higher"),
)  # fmt: skip


def day0_curve(job: Job) -> pl.DataFrame | None:
    """``k``, ``n_cohort``, ``n_active``, ``share`` of the job's day-0 cohort; None without the
    file."""
    path = job.path / CURVES_FILE
    if not path.is_file():
        return None
    curves = pl.read_parquet(path)
    day0 = curves.filter((pl.col("cohort") == "active") & (pl.col("start_day") == 0)).sort("k")
    return day0.select("k", "n_cohort", "n_active", "share") if day0.height else None


def job_value(job: Job, outcome: Outcome) -> float:
    """The job's value of ``outcome`` (NaN when it has none)."""
    if outcome.source == "curve":
        curve = day0_curve(job)
        return math.nan if curve is None else float(curve["share"][-1])
    value = ((job.summary or {}).get("retention") or {}).get(outcome.key)
    return math.nan if is_missing(value) else float(value)


def _per_seed(sweep: Sweep, arm: str, outcome: Outcome) -> dict[Any, float]:
    """The arm's value per seed (jobs sharing a seed averaged; missing values left out)."""
    found: dict[Any, list[float]] = {}
    for job in sweep.jobs_of(arm, FINISHED):
        value = job_value(job, outcome)
        if job.seed is not None and math.isfinite(value):
            found.setdefault(job.seed, []).append(value)
    return {seed: float(np.mean(v)) for seed, v in found.items()}


def has_retention(sweep: Sweep) -> bool:
    return any(isinstance((j.summary or {}).get("retention"), dict) for j in sweep.finished)


def _arms(sweep: Sweep) -> list[str]:
    """Finished arms, the baseline first."""
    return sorted(sweep.finished_arms, key=lambda arm: arm != sweep.baseline)


def arm_levels(sweep: Sweep) -> dict[str, dict[str, Interval]]:
    """``{arm: {outcome key: mean over seeds with its t-interval}}``, the baseline first."""
    return {
        arm: {o.key: mean_interval(_per_seed(sweep, arm, o).values(), o.domain) for o in OUTCOMES}
        for arm in _arms(sweep)
    }


def arm_effects(sweep: Sweep) -> dict[str, dict[str, Paired]]:
    """``{arm: {outcome key: arm − baseline paired by seed}}`` for every finished arm but the
    baseline (empty without one)."""
    base = sweep.baseline
    if base is None:
        return {}
    reference = {o.key: _per_seed(sweep, base, o) for o in OUTCOMES}
    return {
        arm: {
            o.key: paired_difference(_per_seed(sweep, arm, o), reference[o.key], o.domain)
            for o in OUTCOMES
        }
        for arm in _arms(sweep)
        if arm != base
    }


def arm_curve(jobs: list[Job]) -> pl.DataFrame | None:
    """The day-0 cohort's share by ``k`` across ``jobs``: ``k``, ``mean``, ``low``, ``high``
    (NaN with fewer than 2 jobs at that k) and ``n``; None when no job has the curve."""
    curves = [c for c in (day0_curve(j) for j in jobs) if c is not None]
    if not curves:
        return None
    size = max(int(c["k"].max()) + 1 for c in curves)
    matrix = np.full((len(curves), size), np.nan)
    for row, c in enumerate(curves):
        matrix[row, c["k"].to_numpy()] = c["share"].to_numpy()
    mean, low, high, n = column_intervals(matrix, (0.0, 1.0))
    band = n >= 2
    return pl.DataFrame(
        {
            "k": np.arange(size),
            "mean": mean,
            "low": np.where(band, low, np.nan),
            "high": np.where(band, high, np.nan),
            "n": n.astype(np.int64),
        }
    )


def arm_satisfaction(jobs: list[Job]) -> pl.DataFrame | None:
    """``satisfaction_mean`` per window across ``jobs``: ``day`` (window end), ``mean``,
    ``low``, ``high``, ``n``; None when no job has a finite value."""
    return arm_metric(jobs, "satisfaction_mean")


def arm_metric(jobs: list[Job], column: str) -> pl.DataFrame | None:
    """A ``metrics.parquet`` column per window across ``jobs`` (see :func:`arm_satisfaction`)."""
    runs = [
        (j.metrics["t_end"].to_numpy() / 24.0, v)
        for j in jobs
        if j.metrics is not None
        and (v := metric_values(j, column)) is not None
        and np.isfinite(v).any()
    ]
    return _series(runs)


def arm_satiation(jobs: list[Job]) -> pl.DataFrame | None:
    """The active users' mean satiation of their most consumed topic at each day boundary
    (``logs/engagement_days.parquet``'s ``satiation_top_topic``) across ``jobs``; None
    without satiation."""
    runs = []
    for job in jobs:
        path = job.path / "logs" / DAYS_FILE
        if not path.is_file():
            continue
        days = pl.read_parquet(path)
        if "satiation_top_topic" in days.columns:
            runs.append((days["t"].to_numpy() / 24.0, days["satiation_top_topic"].to_numpy()))
    return _series(runs)


def _series(runs: list[tuple[np.ndarray, np.ndarray]]) -> pl.DataFrame | None:
    """Per-job ``(day, values)`` series as one mean with its t-interval band per day."""
    if not runs:
        return None
    size = max(v.size for _, v in runs)
    matrix = np.full((len(runs), size), np.nan)
    for row, (_, v) in enumerate(runs):
        matrix[row, : v.size] = v
    day = next(d for d, v in runs if v.size == size)
    mean, low, high, n = column_intervals(matrix, (0.0, None))
    band = n >= 2
    return pl.DataFrame(
        {
            "day": day,
            "mean": mean,
            "low": np.where(band, low, np.nan),
            "high": np.where(band, high, np.nan),
            "n": n.astype(np.int64),
        }
    )


def _rgba(hex_color: str, alpha: float) -> str:
    r, g, b = (int(hex_color[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def _band_figure(
    series: dict[str, pl.DataFrame], x: str, x_title: str, y_title: str, pct: bool
) -> go.Figure:
    """One line per arm (mean over seeds) with its interval as a shaded band."""
    fig = go.Figure()
    for i, (arm, s) in enumerate(series.items()):
        color = COLORS[i % len(COLORS)]
        band = s.filter(pl.col("low").is_not_nan())
        if band.height:
            xs = band[x].to_numpy()
            fig.add_trace(
                go.Scatter(
                    x=np.concatenate([xs, xs[::-1]]),
                    y=np.concatenate([band["high"].to_numpy(), band["low"].to_numpy()[::-1]]),
                    fill="toself",
                    fillcolor=_rgba(color, 0.18),
                    line={"width": 0},
                    mode="lines",
                    hoverinfo="skip",
                    showlegend=False,
                    legendgroup=arm,
                )
            )
        fmt = ".1%" if pct else ".4f"
        fig.add_trace(
            go.Scatter(
                x=s[x].to_list(),
                y=s["mean"].to_list(),
                customdata=s["n"].to_list(),
                name=arm,
                legendgroup=arm,
                mode="lines+markers" if s.height <= 60 else "lines",
                line={"color": color, "width": 2},
                hovertemplate=f"%{{x}}: %{{y:{fmt}}} (n=%{{customdata}})<extra>{arm}</extra>",
            )
        )
    fig.update_layout(
        height=FIG_HEIGHT,
        margin={"l": 60, "r": 20, "t": 30, "b": 50},
        xaxis={"title": x_title, "rangemode": "tozero"},
        yaxis={"title": y_title, **({"tickformat": ".0%"} if pct else {"rangemode": "tozero"})},
        legend={"orientation": "h", "y": -0.25},
        template="plotly_white",
        hovermode="x unified",
    )
    return fig


def _diff_cell(pair: Paired, kind: str) -> str:
    if pair.n == 0:
        return "–"

    def signed(v: float) -> str:
        text = f"{v * 100:+.1f} pp" if kind == "pct" else format_metric(v, kind)
        return text if text.startswith(("+", "-", "–")) else f"+{text}"

    text = difference_text(pair, signed)
    if pair.n >= 2:
        text += f" · {p_text(pair.p)}{' *' if pair.significant else ''}"
    return text


def retention_sweep_section(sweep: Sweep) -> str:
    """The section ("" when no finished job had engagement or conversions)."""
    if not has_retention(sweep):
        return ""
    parts = ['<h2 id="retention">Retention</h2>']
    levels = arm_levels(sweep)
    shown = [o for o in OUTCOMES if any(math.isfinite(v[o.key].mean) for v in levels.values())]
    head = "".join(f"<th>{html.escape(o.label)}</th>" for o in shown)
    rows = "".join(
        f"<tr><td>{html.escape(arm)}</td>"
        + "".join(
            f'<td class="num">{html.escape(fmt_interval(values[o.key], o.kind))}</td>'
            for o in shown
        )
        + "</tr>"
        for arm, values in levels.items()
    )
    parts.append(
        '<div class="table-scroll"><table class="headline-table retention-levels"><thead><tr>'
        f"<th>Arm</th>{head}</tr></thead><tbody>{rows}</tbody></table></div>"
        f'<p class="caption">Each arm\'s mean over its seeds with the {html.escape(METHOD)}. '
        "Final retention: the share of the users active on day 0 still active on the run's last "
        "day (retention_curves.parquet); the rest from each job's summary.json (retention): the "
        "long-term utility per user is the run's cumulative true relevance of clicked items over "
        "the users ever active, the conversion rate all conversions by the end over all clicks. "
        "Higher is better for all of them.</p>"
    )
    effects = arm_effects(sweep)
    if effects:
        base = html.escape(str(sweep.baseline))
        head = "".join(f"<th>Δ {html.escape(o.label)}</th>" for o in shown)
        rows = "".join(
            f"<tr><td>{html.escape(arm)}</td>"
            + "".join(
                f'<td class="num">{html.escape(_diff_cell(pairs[o.key], o.kind))}</td>'
                for o in shown
            )
            + "</tr>"
            for arm, pairs in effects.items()
        )
        parts.append(
            '<div class="table-scroll"><table class="headline-table retention-effects"><thead>'
            f"<tr><th>Arm</th>{head}</tr></thead><tbody>{rows}</tbody></table></div>"
            f'<p class="caption">Each arm minus <code>{base}</code> on the same seeds (which '
            "share users and coin flips): the mean difference with its 95% t-interval and "
            "paired t-test (* p &lt; 0.05, not corrected for the number of comparisons), or one "
            "seed's difference. Shares in percentage points (pp).</p>"
        )
    found = {arm: arm_curve(sweep.jobs_of(arm, FINISHED)) for arm in _arms(sweep)}
    curves = {arm: c for arm, c in found.items() if c is not None}
    if curves:
        fig = _band_figure(
            curves, "k", "days since day 0", "share of the day-0 users still active", pct=True
        )
        parts.append(
            "<section><h3>Retention of the day-0 cohort</h3>"
            '<p class="caption">Per arm, the share of the users active on day 0 still active '
            "k days later: the mean over seeds, the shaded band its 95% t-interval (cut to "
            "[0, 1]; none with one seed).</p>"
            f"{figure_html(fig, 'fig-sweep-retention-curve')}</section>"
        )
    found = {arm: arm_satisfaction(sweep.jobs_of(arm, FINISHED)) for arm in _arms(sweep)}
    satisfaction = {arm: s for arm, s in found.items() if s is not None}
    if satisfaction:
        fig = _band_figure(
            satisfaction,
            "day",
            "simulated day (end of window)",
            "mean satisfaction of active users",
            pct=False,
        )
        parts.append(
            "<section><h3>Satisfaction over time</h3>"
            '<p class="caption">Per arm, the mean satisfaction of the active users at the '
            "window's day boundaries (metrics.parquet's satisfaction_mean): mean over seeds "
            "with its 95% t-interval band.</p>"
            f"{figure_html(fig, 'fig-sweep-retention-satisfaction')}</section>"
        )
    parts.append(_mechanism(sweep))
    return "".join(parts)


def _mechanism(sweep: Sweep) -> str:
    """Short-term CTR against satiation per arm: how a policy's clicks and its users'
    boredom move together over the run."""
    arms = _arms(sweep)
    ctr = {a: s for a in arms if (s := arm_metric(sweep.jobs_of(a, FINISHED), "ctr")) is not None}
    tired = {a: s for a in arms if (s := arm_satiation(sweep.jobs_of(a, FINISHED))) is not None}
    if not tired:
        return ""
    parts = ["<section><h3>The mechanism: clicks and satiation</h3>"]
    if ctr:
        fig = _band_figure(ctr, "day", "simulated day (end of window)", "CTR", pct=True)
        parts.append(
            '<p class="caption">Per arm, the click-through rate of each window '
            "(metrics.parquet's ctr): mean over seeds with its 95% t-interval band.</p>"
            f"{figure_html(fig, 'fig-sweep-retention-ctr')}"
        )
    fig = _band_figure(
        tired, "day", "simulated day (day boundary)", "satiation of the top topic", pct=False
    )
    parts.append(
        '<p class="caption">Per arm, the active users\' mean satiation of the topic they '
        "consumed most, at each day boundary (logs/engagement_days.parquet's "
        "satiation_top_topic: the logit drop of that topic's attraction is world.satiation "
        "times it), mean over seeds with its band. Satiation follows consumption: it rises "
        "with clicks and decays over world.satiation_recovery_days.</p>"
        f"{figure_html(fig, 'fig-sweep-retention-satiation')}</section>"
    )
    return "".join(parts)


__all__ = [
    "OUTCOMES",
    "arm_curve",
    "arm_effects",
    "arm_levels",
    "arm_metric",
    "arm_satiation",
    "arm_satisfaction",
    "day0_curve",
    "job_value",
    "retention_sweep_section",
]
