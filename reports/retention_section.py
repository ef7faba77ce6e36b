"""The run report's "Retention" section: who stayed, who left and came back, how satisfied the
active users were, and what their clicks converted into — from the files
:mod:`sim.retention_metrics` and :mod:`sim.engagement_log` wrote.

Reads ``summary.json``'s ``retention`` block (absent when engagement and conversions were off:
no section), ``retention_curves.parquet`` (the cohorts' retention curves),
``logs/engagement_days.parquet`` (the satisfaction distribution and the satiation of the active
users at each day boundary) and ``logs/conversions`` (the conversion lags). Every number printed
is a value of those files, formatted.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import polars as pl

from reports.metric_catalog import format_metric, is_missing
from reports.page import COLORS, FIG_HEIGHT, figure_html

CURVES_FILE = "retention_curves.parquet"
ENGAGEMENT_DAYS_FILE = "logs/engagement_days.parquet"
CONVERSIONS_DIR = "logs/conversions"
RETENTION_DAYS = (7, 30, 60, 90)
# the run-level table: (summary key, label, page format kind)
RUN_ROWS: tuple[tuple[str, str, str], ...] = (
    ("users_ever_active", "users ever active (joined before the end)", "int"),
    ("active_at_end", "active on the last day", "int"),
    ("churn_events", "churn events", "int"),
    ("churned_users", "users who churned at least once", "int"),
    ("return_events", "return events", "int"),
    ("returned_users", "users who returned at least once", "int"),
    *(
        (f"retention_{k}d", f"day-0 cohort still active after {k} days", "pct")
        for k in RETENTION_DAYS
    ),
    ("satisfaction_mean", "mean satisfaction of active users (over day boundaries)", "num"),
    ("satisfaction_final", "mean satisfaction of active users on the last day", "num"),
    ("conversions", "conversions", "int"),
    ("conversion_rate", "conversion rate (conversions by the end ÷ clicks)", "pct"),
    ("revenue", "revenue (value of the conversions)", "num1"),
    ("revenue_per_user", "revenue per user ever active", "num2"),
    ("conversion_lag_mean_h", "mean conversion lag", "hours"),
    ("conversion_lag_median_h", "median conversion lag", "hours"),
    ("long_term_utility_per_user", "long-term utility per user (true relevance clicked)", "num"),
)


def run_table(block: dict[str, Any]) -> str:
    """The run-level numbers of the ``retention`` block; null keys (a part that was off, a
    retention horizon past the run's end) are left out."""
    rows = [
        f'<tr><td>{html.escape(label[:1].upper() + label[1:])}</td><td class="num">'
        f"{html.escape(format_metric(block.get(key), kind))}</td></tr>"
        for key, label, kind in RUN_ROWS
        if not is_missing(block.get(key))
    ]
    return (
        '<table class="retention"><thead><tr><th>Over the run</th><th>Value</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _text(block: dict[str, Any], days: int | None) -> str:
    def show(key: str, kind: str) -> str:
        return format_metric(block.get(key), kind)

    parts = []
    if not is_missing(block.get("active_at_end")):
        text = (
            f"{show('users_ever_active', 'int')} users were active during the run and "
            f"{show('active_at_end', 'int')} on its last day"
        )
        horizons = [k for k in RETENTION_DAYS if not is_missing(block.get(f"retention_{k}d"))]
        if horizons:
            k = horizons[-1]
            text += (
                f"; {show(f'retention_{k}d', 'pct')} of the users active on day 0 were still "
                f"active {k} days later"
            )
        elif days is not None:
            text += f" (the run's {days} days are too short for a 7-day retention)"
        text += (
            f". {show('churn_events', 'int')} churn events ({show('churned_users', 'int')} "
            f"users) and {show('return_events', 'int')} returns."
        )
        parts.append(text)
    if not is_missing(block.get("conversions")):
        parts.append(
            f"{show('conversions', 'int')} clicks converted by the end of the run "
            f"({show('conversion_rate', 'pct')} of all clicks), for a revenue of "
            f"{show('revenue', 'num1')}, {show('conversion_lag_mean_h', 'hours')} after the "
            "click on average."
        )
    parts.append(
        f"Long-term utility: {show('long_term_utility_per_user', 'num')} of true relevance "
        "clicked per user ever active."
    )
    return " ".join(parts)


def _day0(curves: pl.DataFrame) -> pl.DataFrame:
    return curves.filter((pl.col("cohort") == "active") & (pl.col("start_day") == 0)).sort("k")


def _curves_figure(curves: pl.DataFrame) -> go.Figure:
    """The ``active`` cohorts' curves (day 0 first, solid), share still active after k days."""
    fig = go.Figure()
    starts = sorted(curves.filter(pl.col("cohort") == "active")["start_day"].unique().to_list())
    for i, start in enumerate(starts):
        c = curves.filter((pl.col("cohort") == "active") & (pl.col("start_day") == start)).sort("k")
        fig.add_trace(
            go.Scatter(
                x=c["k"].to_list(),
                y=c["share"].to_list(),
                customdata=list(zip(c["n_active"].to_list(), c["n_cohort"].to_list(), strict=True)),
                mode="lines+markers" if c.height <= 60 else "lines",
                line={"color": COLORS[i % len(COLORS)], "dash": None if start == 0 else "dot"},
                name=f"active on day {start}",
                hovertemplate="after %{x} days: %{y:.1%} (%{customdata[0]} of "
                "%{customdata[1]})<extra></extra>",
            )
        )
    fig.update_layout(
        height=FIG_HEIGHT,
        margin={"l": 60, "r": 20, "t": 30, "b": 50},
        xaxis={"title": "days since the cohort's start day", "rangemode": "tozero"},
        yaxis={"title": "share still active", "range": [0, 1.02], "tickformat": ".0%"},
        legend={"orientation": "h", "y": -0.25},
        template="plotly_white",
    )
    return fig


def _satisfaction_figure(days: pl.DataFrame) -> go.Figure:
    """Mean, median and the p10–p90 band of the active users' satisfaction per day boundary."""
    day = (days["t"] / 24.0).to_list()
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=day + day[::-1],
            y=days["satisfaction_p90"].to_list() + days["satisfaction_p10"].to_list()[::-1],
            fill="toself",
            fillcolor="rgba(31,119,180,0.15)",
            line={"width": 0},
            hoverinfo="skip",
            name="p10–p90",
        )
    )
    for col, name, dash in (
        ("satisfaction_p10", "p10", "dot"),
        ("satisfaction_p50", "median", "dash"),
        ("satisfaction_p90", "p90", "dot"),
        ("satisfaction_mean", "mean", None),
    ):
        fig.add_trace(
            go.Scatter(
                x=day,
                y=days[col].to_list(),
                mode="lines",
                line={
                    "color": COLORS[0] if col != "satisfaction_mean" else COLORS[1],
                    "dash": dash,
                },
                name=name,
                meta={"column": col},
                hovertemplate=f"day %{{x:.0f}}: %{{y:.4f}}<extra>{name}</extra>",
                showlegend=col in ("satisfaction_p50", "satisfaction_mean"),
            )
        )
    fig.update_layout(
        height=FIG_HEIGHT,
        margin={"l": 60, "r": 20, "t": 30, "b": 50},
        xaxis={"title": "simulated day (day boundary)", "rangemode": "tozero"},
        yaxis={"title": "satisfaction of active users", "rangemode": "tozero"},
        legend={"orientation": "h", "y": -0.25},
        template="plotly_white",
    )
    return fig


def _satiation_figure(days: pl.DataFrame) -> go.Figure:
    day = (days["t"] / 24.0).to_list()
    fig = go.Figure()
    for i, (col, name) in enumerate(
        (
            ("satiation_mean", "total satiation (all topics)"),
            ("satiation_top_topic", "satiation of the most consumed topic"),
        )
    ):
        fig.add_trace(
            go.Scatter(
                x=day,
                y=days[col].to_list(),
                mode="lines+markers" if days.height <= 60 else "lines",
                line={"color": COLORS[i % len(COLORS)]},
                name=name,
                meta={"column": col},
                hovertemplate=f"day %{{x:.0f}}: %{{y:.3f}}<extra>{name}</extra>",
            )
        )
    fig.update_layout(
        height=FIG_HEIGHT,
        margin={"l": 60, "r": 20, "t": 30, "b": 50},
        xaxis={"title": "simulated day (day boundary)", "rangemode": "tozero"},
        yaxis={"title": "mean over active users", "rangemode": "tozero"},
        legend={"orientation": "h", "y": -0.25},
        template="plotly_white",
    )
    return fig


def read_lags(run_dir: Path) -> list[float] | None:
    """Hours from click to conversion of every written conversion; None without the table."""
    folder = run_dir / CONVERSIONS_DIR
    files = sorted(folder.glob("round=*/*.parquet")) if folder.is_dir() else []
    if not files:
        return None
    conv = pl.concat([pl.read_parquet(f).select("click_t", "t") for f in files])
    return (conv["t"] - conv["click_t"]).to_list()


def _lag_figure(lags: list[float], mean: float, median: float) -> go.Figure:
    fig = go.Figure(go.Histogram(x=lags, nbinsx=40, marker_color=COLORS[0], name="conversions"))
    for i, (value, name, position) in enumerate(
        ((median, "median", "top left"), (mean, "mean", "top right"))
    ):
        fig.add_vline(
            x=value,
            line={"dash": "dash" if i else "dot", "color": COLORS[1 + i]},
            annotation_text=f"{name} {format_metric(value, 'hours')}",
            annotation_position=position,
        )
    fig.update_layout(
        height=FIG_HEIGHT,
        margin={"l": 60, "r": 20, "t": 30, "b": 50},
        xaxis_title="hours from click to conversion",
        yaxis_title="conversions",
        showlegend=False,
        template="plotly_white",
    )
    return fig


def retention_section(run_dir: Path, summary: dict[str, Any], window_panels: str) -> str:
    """The section, or "" for a run without engagement and conversions (no ``retention``
    block). ``window_panels``: the per-window table and charts (the run report's machinery)."""
    block = summary.get("retention")
    if not isinstance(block, dict):
        return ""
    days = summary.get("days")
    parts = [
        '<h2 id="retention">Retention</h2>',
        f'<p class="retention-text">{html.escape(_text(block, days))}</p>',
        run_table(block),
        '<p class="caption">A user is active on a day when they joined before it ended and are '
        "not churned at its boundary (churn and return are decided at day boundaries). The "
        "conversion rate counts a conversion with the click it came from; clicks in the last "
        "mean delay before the end have not all converted yet. Values from summary.json "
        "(retention).</p>",
    ]
    curves_path = run_dir / CURVES_FILE
    if curves_path.is_file():
        curves = pl.read_parquet(curves_path)
        day0 = _day0(curves)
        if day0.height:
            parts.append(
                "<section><h3>Retention curves</h3>"
                '<p class="caption">Share of the users active on day d still active k days '
                f"later; solid: day 0 ({format_metric(int(day0['n_cohort'][0]), 'int')} users), "
                "dotted: later start days (retention_curves.parquet, which also holds the "
                "cohorts of users who joined on each day).</p>"
                f"{figure_html(_curves_figure(curves), 'fig-retention-curves')}</section>"
            )
    parts.append(window_panels)
    days_path = run_dir / ENGAGEMENT_DAYS_FILE
    engagement = pl.read_parquet(days_path).sort("t") if days_path.is_file() else None
    if engagement is not None and not is_missing(block.get("satisfaction_mean")):
        parts.append(
            "<section><h3>Satisfaction of the active users</h3>"
            '<p class="caption">At each day boundary: the mean, the median and the 10th–90th '
            "percentile band of the active users' satisfaction (a moving average of the true "
            "relevance they clicked per request; logs/engagement_days.parquet).</p>"
            f"{figure_html(_satisfaction_figure(engagement), 'fig-retention-satisfaction')}"
            "</section>"
        )
    if engagement is not None and "satiation_mean" in engagement.columns:
        parts.append(
            "<section><h3>Satiation</h3>"
            '<p class="caption">Mean over the active users at each day boundary of their total '
            "satiation over topics and of their most satiated topic's (logit drop per unit = "
            "world.satiation; logs/engagement_days.parquet).</p>"
            f"{figure_html(_satiation_figure(engagement), 'fig-retention-satiation')}</section>"
        )
    lags = read_lags(run_dir)
    mean, median = block.get("conversion_lag_mean_h"), block.get("conversion_lag_median_h")
    if lags and not is_missing(mean) and not is_missing(median):
        parts.append(
            "<section><h3>Conversion lag</h3>"
            f'<p class="caption">Hours from click to conversion of the {len(lags):,} '
            "conversions that happened before the end of the run (logs/conversions); those "
            "still pending at the end are not in it, so long lags are under-represented.</p>"
            f"{figure_html(_lag_figure(lags, float(mean), float(median)), 'fig-retention-lag')}"
            "</section>"
        )
    return "".join(parts)


__all__ = ["RUN_ROWS", "read_lags", "retention_section", "run_table"]
