"""The OPE page's "Estimating before the labels are in" section (conversion reward only).

Reads ``ope_delay_summary.csv`` (per level × target × estimator × elapsed time, means over seeds:
estimate, truth, bias, relative bias, label shares) and ``ope.json`` (the label horizon, the
window's end, the label tail), both written by ``experiments.ope``. Every number printed is a
value of that file, formatted to three decimals (shares as percentages to one).
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import polars as pl
from plotly.subplots import make_subplots

from reports.files import require
from reports.page import figure_html

DELAY_SUMMARY = "ope_delay_summary.csv"
SECTION_ID = "ope-delay"
DELAY_SCHEMA: dict[str, pl.DataType] = {
    "level": pl.String(),
    "target": pl.String(),
    "estimator": pl.String(),
    "elapsed_hours": pl.Float64(),
    "labels_complete": pl.Boolean(),
    "estimate": pl.Float64(),
    "truth": pl.Float64(),
    "bias": pl.Float64(),
    "relative_bias": pl.Float64(),
    "open_share": pl.Float64(),
    "seen_share": pl.Float64(),
    "n_seeds": pl.Int64(),
}
# plotly's default qualitative colors, one per estimator (six per level)
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2")


def _hours(elapsed: float, complete: bool) -> str:
    return f"+{elapsed:g} h" + (" (complete)" if complete else "")


def _num(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def _times(summary: pl.DataFrame) -> pl.DataFrame:
    """One row per elapsed time: the label shares (the same for every target and estimator:
    one logging run per seed serves them all)."""
    return summary.unique("elapsed_hours", keep="first", maintain_order=True).sort("elapsed_hours")


def _label_table(summary: pl.DataFrame) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(_hours(e, c))}</td><td class='num'>{_pct(o)}</td>"
        f"<td class='num'>{_pct(s)}</td></tr>"
        for e, c, o, s in _times(summary)
        .select("elapsed_hours", "labels_complete", "open_share", "seen_share")
        .iter_rows()
    )
    return (
        "<table><tr><th>Estimated at window end</th><th>Window clicks whose label is still "
        "open</th><th>Conversions that count, logged by then</th></tr>"
        f"{rows}</table>"
    )


def _headline(summary: pl.DataFrame) -> str:
    """The earliest estimate's shortfall in one sentence: the share of labels in by then and
    the range of relative biases over every target and estimator (values of the file)."""
    times = _times(summary)
    first, complete = times.row(0, named=True), times.row(-1, named=True)
    if first["labels_complete"]:
        return ""
    rel = summary.filter(pl.col("elapsed_hours") == first["elapsed_hours"])["relative_bias"]
    rel_full = summary.filter(pl.col("elapsed_hours") == complete["elapsed_hours"])["relative_bias"]
    when = _hours(first["elapsed_hours"], False)
    return (
        f"<p><b>Estimated at the window's end {when}</b>, {_pct(first['seen_share'])} of the "
        "conversions that count were in the log; the estimates' relative bias ran from "
        f"{_pct(rel.min())} to {_pct(rel.max())} over every target and estimator, against "
        f"{_pct(rel_full.min())} to {_pct(rel_full.max())} with complete labels.</p>"
    )


def _level_table(part: pl.DataFrame) -> str:
    times = _times(part)
    elapsed = times["elapsed_hours"].to_list()
    head = "".join(
        f"<th>{html.escape(_hours(e, c))}</th>"
        for e, c in zip(elapsed, times["labels_complete"], strict=True)
    )
    first = elapsed[0]
    body = []
    for (target, estimator), rows in part.group_by(["target", "estimator"], maintain_order=True):
        by_time = dict(zip(rows["elapsed_hours"], rows["estimate"], strict=True))
        at_first = rows.filter(pl.col("elapsed_hours") == first)
        cells = "".join(f"<td class='num'>{_num(by_time.get(e))}</td>" for e in elapsed)
        body.append(
            f"<tr><td>{html.escape(str(target))}</td><td>{html.escape(str(estimator))}</td>"
            f"{cells}<td class='num'>{_num(rows['truth'][0])}</td>"
            f"<td class='num'>{_pct(at_first['relative_bias'][0])}</td></tr>"
        )
    return (
        f"<table><tr><th>Target</th><th>Estimator</th>{head}<th>Truth</th>"
        f"<th>Relative bias at +{first:g} h</th></tr>{''.join(body)}</table>"
    )


def _level_figure(part: pl.DataFrame, unit: str, level: str) -> go.Figure:
    """Per target, each estimator's estimate against the hours after the window's end, with the
    target's on-policy truth (complete labels) as a dashed line."""
    targets = part["target"].unique(maintain_order=True).to_list()
    estimators = part["estimator"].unique(maintain_order=True).to_list()
    fig = make_subplots(
        rows=1,
        cols=len(targets),
        shared_yaxes=True,
        horizontal_spacing=0.04,
        subplot_titles=targets,
    )
    x_range = [part["elapsed_hours"].min(), part["elapsed_hours"].max()]
    for col, target in enumerate(targets, start=1):
        mine = part.filter(pl.col("target") == target)
        for i, estimator in enumerate(estimators):
            p = mine.filter(pl.col("estimator") == estimator).sort("elapsed_hours")
            fig.add_trace(
                go.Scatter(
                    x=p["elapsed_hours"].to_numpy(),
                    y=p["estimate"].to_numpy(),
                    mode="lines+markers",
                    name=estimator,
                    legendgroup=estimator,
                    showlegend=col == 1,
                    line={"color": PALETTE[i % len(PALETTE)]},
                ),
                row=1,
                col=col,
            )
        fig.add_trace(
            go.Scatter(
                x=x_range,
                y=[mine["truth"][0]] * 2,
                mode="lines",
                name="truth (on-policy, complete labels)",
                legendgroup="truth",
                showlegend=col == 1,
                line={"color": "#222", "dash": "dash"},
            ),
            row=1,
            col=col,
        )
        fig.update_xaxes(title_text="hours after the window's end", row=1, col=col)
    per = "request" if level == "slate" else "slot-1 impression"
    fig.update_yaxes(title_text=f"{unit} per {per}", row=1, col=1)
    fig.update_layout(template="plotly_white", height=420, margin={"t": 40})
    return fig


def delay_section(out_dir: Path, meta: dict[str, Any]) -> str:
    """The section's HTML; empty for the click reward (no ``reward`` in ``ope.json``)."""
    if meta.get("reward") != "conversion":
        return ""
    summary = pl.read_csv(require(Path(out_dir) / DELAY_SUMMARY), schema_overrides=DELAY_SCHEMA)
    h = float(meta["label_horizon_hours"])
    unit = str(meta["reward_unit"])
    t_end = float(meta["window_end_hour"])
    tail = int(meta["label_tail_days"])
    n_seeds = summary["n_seeds"].max()
    parts = [
        f'<h2 id="{SECTION_ID}">Estimating before the labels are in</h2>',
        f"""<p>Reward: {html.escape(unit)} of the click
{"(the conversion's value)" if meta.get("conversion_value") else "(1 per converted click)"}.
A click's label is final {h:g} h after it; every run went on {tail} day{"s" if tail != 1 else ""}
past the window's end (hour {t_end:g}), so the log holds every conversion that counts. Each
estimate below uses only the conversions logged by the window's end plus the hours in its
column; at +{h:g} h every window click's label is complete. Truth: each target's on-policy value
over the same window with complete labels. Means over {n_seeds} seed{"s" if n_seeds != 1 else ""}.
</p>""",
        _headline(summary),
        _label_table(summary),
    ]
    for level in ("item", "slate"):
        part = summary.filter(pl.col("level") == level)
        if part.is_empty():
            continue
        parts.append(f"<h3>{level.title()} level</h3>")
        parts.append(_level_table(part))
        parts.append(figure_html(_level_figure(part, unit, level), f"fig-ope-delay-{level}"))
    return "\n".join(parts)
