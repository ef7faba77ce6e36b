"""The run report's "Cold start" section: how the items and users that arrived during the run
were served, from the files :mod:`sim.cold_start_metrics` wrote.

Reads ``summary.json``'s ``cold_start`` block (absent for a world without arrivals: no section),
``cold_start_survival.parquet`` (the Kaplan–Meier steps of the time from arrival to an item's
first impression and first click) and ``cold_start_items.parquet`` (per new item: its hand-off
jump). Every number printed is a value of those files, formatted.
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import polars as pl

from reports.metric_catalog import format_metric, is_missing
from reports.page import COLORS, FIG_HEIGHT, figure_html

SURVIVAL_FILE = "cold_start_survival.parquet"
ITEMS_FILE = "cold_start_items.parquet"
ALWAYS_SHOWN = ("new_", "first_impression_", "first_click_")  # rows shown even when null
EVENT_LABELS = {"first_impression": "first impression", "first_click": "first click"}
# the run-level table: (summary key, label, page format kind)
RUN_ROWS: tuple[tuple[str, str, str], ...] = (
    ("new_items", "items arrived during the run", "int"),
    ("new_users", "users arrived during the run", "int"),
    ("first_impression_median_h", "median time to first impression (Kaplan–Meier)", "hours"),
    ("first_impression_rmst_7d_h", "mean time to first impression within 7 days", "hours"),
    ("first_impression_within_24h", "shown within 24 h of arrival", "pct"),
    ("first_impression_within_7d", "shown within 7 days of arrival", "pct"),
    ("first_click_median_h", "median time to first click (Kaplan–Meier)", "hours"),
    ("first_click_rmst_7d_h", "mean time to first click within 7 days", "hours"),
    ("first_click_within_24h", "clicked within 24 h of arrival", "pct"),
    ("first_click_within_7d", "clicked within 7 days of arrival", "pct"),
    ("first_click_censored", "items never clicked (censored at departure or the end)", "int"),
    ("onboarding_users", "users onboarded", "int"),
    ("onboarding_completion_rate", "onboarding completion (completed ÷ onboarded)", "pct"),
    ("onboarding_mean_screens", "screens answered per onboarded user", "num2"),
    ("handoff_count", "items handed off to learned factors", "int"),
    ("handoff_median_abs_jump_rank", "median |hand-off jump| in rank percentile", "num"),
    ("handoff_median_jump_rank", "median hand-off jump in rank percentile", "signed"),
    ("handoff_median_jump_ctr", "median hand-off jump in CTR", "signed"),
    ("content_map_r2_subspace", "true factors explained by the map's span (R², last fit)", "num"),
    ("content_map_r2_ceiling", "… by the content itself: what its noise allows (R²)", "num"),
    ("content_map_r2_true", "the map's predictions as they are vs the truth (R²)", "num"),
    ("content_map_r2_signal", "share of the predictions that is taste, not noise (R²)", "num"),
    ("content_map_content_noise", "content noise", "num"),
    ("content_map_cv_r2", "content map cross-validated R² (on learned factors)", "num"),
)


def run_table(block: dict[str, Any]) -> str:
    """The run-level numbers of the ``cold_start`` block. A layer's keys are null when the
    layer was off: their rows are left out; a time-to-first-event row is always shown ("–"
    when the curve does not say: a median not reached, a share past the longest follow-up)."""
    rows = []
    for key, label, kind in RUN_ROWS:
        value = block.get(key)
        if is_missing(value) and not key.startswith(ALWAYS_SHOWN):
            continue
        rows.append(
            f'<tr><td>{html.escape(label[:1].upper() + label[1:])}</td><td class="num">'
            f"{html.escape(format_metric(value, kind))}</td></tr>"
        )
    return (
        '<table class="cold-start"><thead><tr><th>Over the run</th><th>Value</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _text(block: dict[str, Any]) -> str:
    def show(key: str, kind: str) -> str:
        return format_metric(block.get(key), kind)

    median = block.get("first_click_median_h")
    click = (
        f"half of them had their first click within {show('first_click_median_h', 'hours')}"
        if not is_missing(median)
        else "fewer than half of them were ever clicked, so the median time to a first click "
        "is not reached"
    )
    return (
        f"{show('new_items', 'int')} items and {show('new_users', 'int')} users arrived during "
        f"the run. Of the new items, {show('first_impression_within_24h', 'pct')} were shown "
        f"within 24 h of arriving and {show('first_click_within_7d', 'pct')} clicked within "
        f"7 days; {click}. Items not reached by their departure or the end of the run count as "
        "censored there (Kaplan–Meier), not as dropped."
    )


def _survival_figure(
    survival: pl.DataFrame, block: dict[str, Any], follow_up: float | None
) -> go.Figure:
    """The step curves from (0, 1), held flat after the last event up to ``follow_up`` (the
    longest time any new item was followed: the curve is known that far)."""
    fig = go.Figure()
    for i, (event, label) in enumerate(EVENT_LABELS.items()):
        steps = survival.filter(pl.col("event") == event).sort("hours")
        hours = [0.0, *steps["hours"].to_list()]
        share = [1.0, *steps["survival"].to_list()]
        if follow_up is not None and follow_up > hours[-1]:
            hours.append(follow_up)
            share.append(share[-1])
        fig.add_trace(
            go.Scatter(
                x=hours,
                y=share,
                mode="lines",
                line={"shape": "hv", "color": COLORS[i % len(COLORS)]},
                name=f"not yet {label}",
            )
        )
        median = block.get(f"{event}_median_h")
        if not is_missing(median):
            fig.add_vline(
                x=float(median),
                line={"dash": "dot", "color": COLORS[i % len(COLORS)]},
                annotation_text=f"{label}: median {format_metric(median, 'hours')}",
                annotation_position="top right" if i == 0 else "bottom right",
            )
    # The first 7 days, where the summary's shares and restricted means are read (the whole
    # follow-up is one double-click away: plotly's autoscale).
    week = 7 * 24.0 if follow_up is None else min(7 * 24.0, follow_up)
    fig.update_layout(
        height=FIG_HEIGHT,
        margin={"l": 60, "r": 20, "t": 30, "b": 50},
        xaxis={"title": "hours since the item arrived", "range": [0, week]},
        yaxis={"title": "share of new items not yet reached", "range": [0, 1.02]},
        legend={"orientation": "h", "y": -0.25},
        template="plotly_white",
    )
    return fig


def _jump_figure(jumps: list[float], median: float) -> go.Figure:
    fig = go.Figure(go.Histogram(x=jumps, nbinsx=30, marker_color=COLORS[0], name="items"))
    fig.add_vline(
        x=median,
        line={"dash": "dash", "color": COLORS[1]},
        annotation_text=f"median {format_metric(median, 'signed')}",
    )
    fig.update_layout(
        height=FIG_HEIGHT,
        margin={"l": 60, "r": 20, "t": 30, "b": 50},
        xaxis_title="rank percentile at the hand-off model − at the model before",
        yaxis_title="new items",
        showlegend=False,
        template="plotly_white",
    )
    return fig


def cold_start_section(run_dir: Path, summary: dict[str, Any], window_panels: str) -> str:
    """The section, or "" for a run without arrivals (no ``cold_start`` block in the summary).
    ``window_panels``: the per-window charts (built by the run report's panel machinery)."""
    block = summary.get("cold_start")
    if not isinstance(block, dict):
        return ""
    parts = [
        '<h2 id="cold-start">Cold start</h2>',
        f'<p class="cold-start-text">{html.escape(_text(block))}</p>',
        run_table(block),
        '<p class="caption">Medians and "within" shares are read off the Kaplan–Meier curves '
        "below; the hand-off model of an item is the first model trained on a click of it. "
        "Values from summary.json (cold_start).</p>",
        window_panels,
    ]
    path, items = run_dir / SURVIVAL_FILE, run_dir / ITEMS_FILE
    table = pl.read_parquet(items) if items.is_file() else None
    if path.is_file():
        survival = pl.read_parquet(path)
        follow_up = None
        if table is not None and table.height:
            follow_up = float((table["end_t"] - table["arrival_t"]).max())
        parts.append(
            "<section><h3>Time to first impression and first click</h3>"
            '<p class="caption">Kaplan–Meier estimate of the share of new items not yet shown '
            "(clicked) as a function of the hours since they arrived, drawn up to the longest "
            "time a new item was followed and shown over the first 7 days (double-click the "
            "plot for the whole follow-up); dotted lines mark the medians "
            "(cold_start_survival.parquet).</p>"
            f"{figure_html(_survival_figure(survival, block, follow_up), 'fig-cold-start-survival')}"
            "</section>"
        )
    median = block.get("handoff_median_jump_rank")
    jumps = [] if table is None else table["jump_rank"].drop_nulls().to_list()
    if jumps and not is_missing(median) and math.isfinite(float(median)):
        parts.append(
            "<section><h3>The hand-off jump</h3>"
            '<p class="caption">Per new item, the change of its mean rank percentile among '
            "available items (probe users, 1 = top) between the last model without a training "
            "click of it and the first with one; the dashed line is the median "
            f"(cold_start_items.parquet, {len(jumps)} items).</p>"
            f"{figure_html(_jump_figure(jumps, float(median)), 'fig-cold-start-jump')}"
            "</section>"
        )
    else:
        parts.append(
            "<section><h3>The hand-off jump</h3>"
            '<p class="caption">No hand-off measured: the run has no item rank probe '
            "(logs/item_ranks.parquet) or no new item was clicked into the training data.</p>"
            "</section>"
        )
    return "".join(parts)


__all__ = ["ALWAYS_SHOWN", "RUN_ROWS", "cold_start_section", "run_table"]
