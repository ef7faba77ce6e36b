"""Build ``ope.html`` for an off-policy evaluation study from the files it wrote.

Reads ``ope.parquet`` (one row per estimator × target × seed: estimate, interval, truth,
diagnostics), ``ope_summary.csv`` (per estimator: bias, RMSE, relative error, interval coverage,
Kendall τ) and ``ope.json`` (the logging policy and the evaluation window), all written by
``experiments.ope``; ``recloop-report`` never needs the study's code to rebuild it. With the
conversion reward (``reward`` in ``ope.json``) the page adds the section of
:mod:`reports.ope_delay_section` from ``ope_delay_summary.csv``.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import plotly.graph_objects as go
import polars as pl

from reports.files import require
from reports.ope_delay_section import delay_section
from reports.page import CSS, figure_html, write_page

PAGE_NAME = "ope.html"
TABLE, SUMMARY, META = "ope.parquet", "ope_summary.csv", "ope.json"
SUMMARY_SCHEMA: dict[str, pl.DataType] = {
    "estimator": pl.String(),
    "level": pl.String(),
    "bias": pl.Float64(),
    "rmse": pl.Float64(),
    "relative_error": pl.Float64(),
    "ci_coverage": pl.Float64(),
    "support_warning": pl.Boolean(),
    "kendall_tau": pl.Float64(),
}


def _level_figure(part: pl.DataFrame, level: str, unit: str = "clicks") -> go.Figure:
    """Each estimator's estimate and interval per (target, seed), with the on-policy truth."""
    fig = go.Figure()
    for name in part["estimator"].unique(maintain_order=True).to_list():
        p = part.filter(pl.col("estimator") == name)
        fig.add_trace(
            go.Scatter(
                x=[f"{t} (seed {s})" for t, s in zip(p["target"], p["seed"], strict=True)],
                y=p["estimate"].to_numpy(),
                error_y={
                    "type": "data",
                    "symmetric": False,
                    "array": (p["ci_high"] - p["estimate"]).to_numpy(),
                    "arrayminus": (p["estimate"] - p["ci_low"]).to_numpy(),
                },
                mode="markers",
                name=name,
            )
        )
    truth = part.unique(["target", "seed"], maintain_order=True)
    fig.add_trace(
        go.Scatter(
            x=[f"{t} (seed {s})" for t, s in zip(truth["target"], truth["seed"], strict=True)],
            y=truth["truth"].to_numpy(),
            mode="markers",
            marker={"symbol": "x", "size": 12, "color": "#222"},
            name="truth (on-policy)",
        )
    )
    fig.update_layout(
        template="plotly_white",
        height=420,
        yaxis_title=f"{unit} per request" if level == "slate" else _item_axis(unit),
        margin={"t": 30},
    )
    return fig


def _item_axis(unit: str) -> str:
    return "slot-1 CTR" if unit == "clicks" else f"slot-1 {unit} per impression"


def _summary_table(summary: pl.DataFrame) -> str:
    rows = "".join(
        "<tr>"
        + "".join(
            f"<td>{html.escape(str(v))}</td>"
            if isinstance(v, str | bool)
            else f"<td class='num'>{v:.3f}</td>"
            for v in r
        )
        + "</tr>"
        for r in summary.rows()
    )
    head = "".join(f"<th>{html.escape(c)}</th>" for c in summary.columns)
    return f"<table><tr>{head}</tr>{rows}</table>"


def build_ope_report(out_dir: Path) -> Path:
    """Write ``out_dir/ope.html`` from the study's files and return its path.

    Raises
    ------
    ReportError
        If ``ope.parquet``, ``ope_summary.csv`` or ``ope.json`` is missing.
    """
    out_dir = Path(out_dir)
    table = pl.read_parquet(require(out_dir / TABLE))
    summary = pl.read_csv(require(out_dir / SUMMARY), schema_overrides=SUMMARY_SCHEMA)
    meta = json.loads(require(out_dir / META).read_text(encoding="utf-8"))
    logging, t0 = str(meta["logging"]), float(meta["window_start_hour"])
    unit = str(meta.get("reward_unit", "clicks"))
    figures = [
        f"<h2>{level.title()} level</h2>"
        + figure_html(
            _level_figure(table.filter(pl.col("level") == level), level, unit),
            f"fig-ope-{level}",
        )
        for level in ("item", "slate")
    ]
    end, reward = "the horizon", ""
    if "reward" in meta:
        h, t_end = float(meta["label_horizon_hours"]), float(meta["window_end_hour"])
        end = f"hour {t_end:g}"
        reward = f""" Reward: {html.escape(unit)} of the click, with complete labels (estimated
{h:g} h after the window's end; a truth run draws its own clicks' conversions)."""
    warnings = table.filter(pl.col("support_warning") != "").unique(["target"], maintain_order=True)
    warn = "".join(
        f"<li><b>{html.escape(t)}</b>: {html.escape(w)}</li>"
        for t, w in zip(warnings["target"], warnings["support_warning"], strict=True)
    )
    body = f"""<h1>Off-policy evaluation — logged by {html.escape(logging)}</h1>
<p class="meta">Window: from hour {t0:g} (the last deployment) to {end}. Truth: each
target run on-policy over the same window with the same model, users and response coin flips.{reward}</p>
<h2>Per estimator</h2>{_summary_table(summary)}
{"<h2>Support warnings</h2><ul>" + warn + "</ul>" if warn else ""}
{"".join(figures)}
{delay_section(out_dir, meta)}"""
    return write_page(out_dir / PAGE_NAME, "recloop OPE study", CSS, body)
