"""Build ``report.html`` for one finished run from its files alone.

Reads ``summary.json``, ``metrics.parquet``, ``item_exposure.parquet``, ``config.yaml``,
``examination.parquet`` and ``logs/snapshots.parquet`` / ``logs/deployments.parquet`` (never the
simulator code, :mod:`reports.files`), so a report can be rebuilt at any time with
``recloop-report RUN_DIR``. The page is self-contained: plotly.js is inlined once in the head, so
it works offline.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
import polars as pl
from plotly.subplots import make_subplots

from reports.files import (
    ReportError,
    deployment_days,
    has_item_exposure,
    item_exposure,
    require,
    window_bounds,
)
from reports.inequality import lorenz
from reports.metric_catalog import format_metric, is_missing, metric_info
from reports.page import COLORS, CSS, FIG_HEIGHT, figure_html, write_page

__all__ = ["KEY_METRICS", "PANELS", "REPORT_NAME", "ReportError", "build_run_report", "headline"]

REPORT_NAME = "report.html"
MAX_DEPLOY_MARKERS = 60  # beyond this the dotted lines drown the series

# the summary table's rows: first window, final window and mean over windows
KEY_METRICS: tuple[str, ...] = (
    "coverage_exposure",
    "coverage_clicks",
    "gini_exposure",
    "gini_clicks",
    "popularity_drift",
    "homogenization",
    "utility",
    "ctr",
    "long_tail_share",
    "top1pct_exposure_share",
    "intra_list_diversity",
    "cumulative_utility",
    "model_ndcg",
)


@dataclass(frozen=True)
class _Panel:
    div_id: str
    title: str
    caption: str
    left: tuple[str, ...]  # columns; the legend shows their catalog labels
    left_title: str
    left_pct: bool
    right: tuple[str, ...] = ()
    right_title: str = ""
    right_pct: bool = False


PANELS: tuple[_Panel, ...] = (
    _Panel(
        "fig-coverage",
        "Catalog coverage",
        "Share of catalog items shown (or clicked) at least once in each window; the cumulative "
        "curve counts every item shown since the start of the run.",
        ("coverage_exposure", "coverage_clicks", "cum_coverage_exposure"),
        "share of catalog",
        True,
    ),
    _Panel(
        "fig-concentration",
        "Concentration",
        "Gini coefficients of impressions and clicks over all catalog items (0 = equal, "
        "1 = one item takes everything), and the share of impressions taken by the top 1% of items.",
        ("gini_exposure", "gini_clicks", "top1pct_exposure_share"),
        "Gini / share",
        False,
    ),
    _Panel(
        "fig-popularity",
        "Popularity drift and the long tail",
        "Change since the first window in the mean popularity percentile of shown items (left), "
        "and the share of impressions on items outside the top 20% by past clicks (right).",
        ("popularity_drift",),
        "Δ popularity percentile",
        False,
        ("long_tail_share",),
        "long-tail share of impressions",
        True,
    ),
    _Panel(
        "fig-utility",
        "Utility",
        "Mean true relevance of all shown items and of clicked items.",
        ("utility", "utility_clicked"),
        "mean true relevance",
        False,
    ),
    _Panel(
        "fig-ctr",
        "Click-through rate",
        "Clicks / impressions per window.",
        ("ctr",),
        "CTR",
        True,
    ),
    _Panel(
        "fig-diversity",
        "Homogenization and diversity",
        "Mean Jaccard similarity of the clicked-item sets of user pairs (left) and mean pairwise "
        "cosine distance of items within a slate (right).",
        ("homogenization",),
        "Jaccard similarity",
        False,
        ("intra_list_diversity",),
        "cosine distance",
        False,
    ),
    _Panel(
        "fig-exploration",
        "Exploration",
        "Share of impressions filled by exploration (left) and the smallest logged marginal "
        "propensity in the window (right): 1 / min propensity bounds the inverse-propensity "
        "weights an off-policy estimate on this log would use.",
        ("exploration_share",),
        "share of impressions",
        True,
        ("min_propensity",),
        "min propensity",
        False,
    ),
    _Panel(
        "fig-model-quality",
        "The learned model against the truth",
        "True-relevance NDCG@K of the ranking of the model deployed at each window's end, for a "
        "fixed sample of users (metrics.ndcg_users), excluding items they already clicked. "
        "Only a simulator can draw this line: it shows the model drifting from what users want.",
        ("model_ndcg",),
        "NDCG",
        False,
    ),
)

# ---------------------------------------------------------------- tables


def _nanmean(values: np.ndarray) -> float:
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if finite.size else float("nan")


def headline(metrics: pl.DataFrame) -> str:
    """One or two sentences on what happened to the catalog, first window vs last window."""
    m = metrics.sort("window")
    first, last = m.row(0, named=True), m.row(-1, named=True)
    days = float(last["t_end"]) / 24.0
    if m.height == 1:
        return (
            f"A single window of {days:.1f} simulated days: exposure coverage "
            f"{format_metric(first['coverage_exposure'], 'pct_short')}, exposure Gini "
            f"{format_metric(first['gini_exposure'], 'num2')}, CTR {format_metric(first['ctr'], 'pct')}."
        )
    c0, c1 = first["coverage_exposure"], last["coverage_exposure"]
    if is_missing(c0) or is_missing(c1):
        verdict = ""
    elif c1 < c0 - 0.05:
        verdict = "The catalog narrowed. "
    elif c1 > c0 + 0.05:
        verdict = "The catalog broadened. "
    else:
        verdict = "Catalog exposure stayed roughly stable. "
    return (
        f"{verdict}Over {days:.1f} simulated days ({m.height} windows), exposure coverage went "
        f"from {format_metric(c0, 'pct_short')} in the first window to {format_metric(c1, 'pct_short')} in the "
        f"last; exposure Gini from {format_metric(first['gini_exposure'], 'num2')} to "
        f"{format_metric(last['gini_exposure'], 'num2')}. CTR went from {format_metric(first['ctr'], 'pct')} to "
        f"{format_metric(last['ctr'], 'pct')}, and the mean utility of shown items from "
        f"{format_metric(first['utility'], 'num')} to {format_metric(last['utility'], 'num')}."
    )


def _summary_table(metrics: pl.DataFrame) -> str:
    m = metrics.sort("window")
    rows = []
    for col in KEY_METRICS:  # a dozen fixed metrics, not data
        if col not in m.columns:  # a run from an older version
            continue
        info = metric_info(col)
        values = m[col].cast(pl.Float64).fill_null(float("nan")).to_numpy()
        cells = "".join(
            f'<td class="num">{format_metric(v, info.kind)}</td>'
            for v in (values[0], values[-1], _nanmean(values))
        )
        rows.append(
            f"<tr><td>{html.escape(info.title)}</td><td>{html.escape(info.description)}</td>"
            f"{cells}</tr>"
        )
    return (
        '<table class="metrics"><thead><tr><th>Metric</th><th>Measures</th>'
        "<th>First window</th><th>Final window</th><th>Mean over windows</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _totals_table(summary: dict[str, Any], metrics: pl.DataFrame) -> str:
    def total(key: str) -> Any:
        value = summary.get(key)
        return metrics[key].sum() if value is None and key in metrics.columns else value

    n_imp, n_clk = total("n_impressions"), total("n_clicks")
    ctr = n_clk / n_imp if not is_missing(n_imp) and not is_missing(n_clk) and n_imp else None
    rows = (
        ("Requests", format_metric(total("n_requests"), "int")),
        ("Impressions", format_metric(n_imp, "int")),
        ("Clicks", format_metric(n_clk, "int")),
        ("Overall CTR", format_metric(ctr, "pct")),
        ("Catalog size", format_metric(summary.get("catalog_size"), "int")),
        ("Windows", format_metric(metrics.height, "int")),
        ("Simulated days", format_metric(float(metrics["t_end"].max()) / 24.0, "num1")),
    )
    body = "".join(f'<tr><th>{k}</th><td class="num">{v}</td></tr>' for k, v in rows)
    return f'<table class="totals"><tbody>{body}</tbody></table>'


# ---------------------------------------------------------------- figures


def _time_figure(panel: _Panel, metrics: pl.DataFrame, deploy_days: np.ndarray) -> go.Figure:
    m = metrics.sort("window")
    day = m["t_end"].to_numpy() / 24.0
    mode = "lines+markers" if m.height <= 60 else "lines"
    fig = make_subplots(specs=[[{"secondary_y": bool(panel.right)}]])
    # Runs written by older versions may lack newer metric columns: plot what is there.
    series = [
        (c, metric_info(c).label, False, panel.left_pct) for c in panel.left if c in m.columns
    ]
    series += [
        (c, metric_info(c).label, True, panel.right_pct) for c in panel.right if c in m.columns
    ]
    for i, (col, label, secondary, pct) in enumerate(series):
        fmt = ".1%" if pct else ".3f"
        fig.add_trace(
            go.Scatter(
                x=day,
                y=m[col].cast(pl.Float64).fill_null(float("nan")).to_numpy(),
                name=label,
                mode=mode,
                line={"color": COLORS[i % len(COLORS)], "dash": "dash" if secondary else None},
                hovertemplate=f"day %{{x:.2f}}: %{{y:{fmt}}}<extra>{label}</extra>",
            ),
            secondary_y=secondary,
        )
    if 0 < deploy_days.size <= MAX_DEPLOY_MARKERS:
        fig.update_layout(
            shapes=[
                {
                    "type": "line",
                    "xref": "x",
                    "yref": "paper",
                    "x0": d,
                    "x1": d,
                    "y0": 0,
                    "y1": 1,
                    "layer": "below",
                    "line": {"width": 1, "dash": "dot", "color": "rgba(0,0,0,0.2)"},
                }
                for d in deploy_days  # at most MAX_DEPLOY_MARKERS shapes
            ]
        )
    fig.update_xaxes(title_text="simulated day (end of window)", rangemode="tozero")
    fig.update_yaxes(
        title_text=panel.left_title, tickformat=".0%" if panel.left_pct else None, secondary_y=False
    )
    if panel.right:
        fig.update_yaxes(
            title_text=panel.right_title,
            tickformat=".0%" if panel.right_pct else None,
            secondary_y=True,
            showgrid=False,
        )
    fig.update_layout(
        template="plotly_white",
        height=FIG_HEIGHT,
        margin={"l": 60, "r": 60, "t": 20, "b": 50},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0},
        hovermode="x unified",
    )
    return fig


def equality_figure() -> go.Figure:
    """A figure holding only the Lorenz line of perfect equality (curves are added to it)."""
    return go.Figure(
        go.Scatter(
            x=[0, 1],
            y=[0, 1],
            name="equality",
            mode="lines",
            line={"color": "#999", "dash": "dash", "width": 1},
            hoverinfo="skip",
        )
    )


def _lorenz_figure(curves: list[tuple[str, np.ndarray, float]]) -> go.Figure:
    """One curve per ``(label, per-item impressions, exposure Gini from metrics.parquet)``."""
    fig = equality_figure()
    for i, (label, exposure, gini) in enumerate(curves):
        xs, ys = lorenz(exposure, vertices_only=True)
        name = f"{label}: Gini {format_metric(gini, 'num')}"
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=ys,
                name=name,
                mode="lines",
                line={"color": COLORS[i % len(COLORS)], "width": 2},
                hovertemplate="%{x:.1%} of items get %{y:.1%} of impressions"
                f"<extra>{html.escape(label)}</extra>",
            )
        )
    fig.update_xaxes(
        title_text="cumulative share of items (fewest impressions first)",
        tickformat=".0%",
        range=[-0.01, 1.01],  # keep the curves on the edges fully visible
    )
    fig.update_yaxes(
        title_text="cumulative share of impressions", tickformat=".0%", range=[-0.01, 1.01]
    )
    fig.update_layout(
        template="plotly_white",
        height=FIG_HEIGHT + 70,  # a near-square plot area reads better for a Lorenz curve
        margin={"l": 60, "r": 30, "t": 20, "b": 50},
        legend={"x": 0.02, "y": 0.98, "bgcolor": "rgba(255,255,255,0.8)"},
    )
    return fig


def _lorenz_section(
    run_dir: Path, bounds: pl.DataFrame, metrics: pl.DataFrame, n_items: Any
) -> str:
    if not has_item_exposure(run_dir):
        return (
            '<p class="caption">No item_exposure.parquet in the run directory (a run written '
            "before the file existed); Lorenz curves skipped.</p>"
        )
    if is_missing(n_items) or int(n_items) <= 0:
        return '<p class="caption">summary.json has no catalog_size; Lorenz curves skipped.</p>'
    gini_of = dict(
        zip(metrics["window"].to_list(), metrics["gini_exposure"].to_list(), strict=True)
    )
    windows = [(0, "first window")]
    if bounds.height > 1:
        windows.append((bounds.height - 1, "last window"))
    curves, empty = [], []
    for idx, name in windows:  # at most two windows
        row = bounds.row(idx, named=True)
        exposure = item_exposure(run_dir, row["window"], int(n_items))
        label = f"{name} (day {row['t_start'] / 24:.4g}–{row['t_end'] / 24:.4g})"
        if exposure.sum() > 0:
            curves.append((label, exposure, gini_of.get(row["window"], float("nan"))))
        else:
            empty.append(label)
    notes = "".join(
        f'<p class="caption">{html.escape(label)}: no impressions.</p>' for label in empty
    )
    if not curves:
        return notes
    caption = (
        '<p class="caption">Per-item impression counts within the window, including items never '
        f"shown (catalog of {int(n_items):,} items). The further a curve sags below the diagonal, "
        "the more exposure is concentrated on few items.</p>"
    )
    return caption + notes + figure_html(_lorenz_figure(curves), "fig-lorenz")


# ---------------------------------------------------------------- page


def _examination_section(run_dir: Path) -> str:
    """Estimated vs true position-bias curve, when the run wrote ``examination.parquet``."""
    path = run_dir / "examination.parquet"
    if not path.is_file():
        return ""
    exam = pl.read_parquet(path)
    if exam.height == 0:
        return (
            "<h2>Position bias: estimated vs true θ</h2><p class='caption'>The log supports "
            "no estimator (no randomized traffic and no scored ordinary traffic).</p>"
        )
    fig = go.Figure()
    truth = exam.filter(pl.col("method") == exam["method"][0]).sort("slot")
    if truth["truth"].is_not_nan().any():
        fig.add_trace(
            go.Scatter(
                x=truth["slot"].to_numpy() + 1,
                y=truth["truth"].to_numpy(),
                name="true θ (simulator)",
                mode="lines",
                line={"color": "#222", "dash": "dash"},
            )
        )
    rows = []
    for method in exam["method"].unique(maintain_order=True).to_list():
        part = exam.filter(pl.col("method") == method).sort("slot")
        se = part["std_error"].to_numpy()
        fig.add_trace(
            go.Scatter(
                x=part["slot"].to_numpy() + 1,
                y=part["estimate"].to_numpy(),
                name=method,
                mode="markers+lines",
                error_y={"array": 1.96 * np.nan_to_num(se), "visible": bool(np.isfinite(se).any())},
            )
        )
        err = np.abs(part["estimate"].to_numpy() - part["truth"].to_numpy())
        max_err = float(np.nanmax(err)) if np.isfinite(err).any() else float("nan")
        rows.append(
            f"<tr><td>{html.escape(method)}</td><td class='num'>"
            f"{int(part['n_impressions'].sum()):,}</td><td class='num'>"
            f"{format_metric(max_err, 'num')}</td></tr>"
        )
    fig.update_layout(
        xaxis_title="slot (1 = top)",
        yaxis_title="θ_k / θ_1",
        height=380,
        margin={"t": 30},
        template="plotly_white",
    )
    return (
        "<h2>Position bias: estimated vs true θ</h2>"
        "<p class='caption'>Examination probability of each slot relative to the top slot, as "
        "estimated from this run's log (randomized: shuffled top-K traffic; swap: slot-1 swaps; "
        "regression_em: ordinary traffic of the newest rounds), against the curve the simulated "
        "users followed. Error bars: 95% (delta method).</p>"
        f"{figure_html(fig, 'fig-examination')}"
        "<table><tr><th>method</th><th>impressions used</th><th>max |estimate − truth|</th></tr>"
        f"{''.join(rows)}</table>"
    )


def build_run_report(run_dir: Path) -> Path:
    """Write ``run_dir/report.html`` from the run's files and return its path.

    Raises
    ------
    ReportError
        If ``summary.json`` or ``metrics.parquet`` is missing (not a finished run).
    """
    run_dir = Path(run_dir)
    summary = json.loads(require(run_dir / "summary.json").read_text(encoding="utf-8"))
    metrics = pl.read_parquet(require(run_dir / "metrics.parquet")).sort("window")
    if metrics.height == 0:
        raise ReportError(f"metrics.parquet in {run_dir} has no windows")
    config_path = run_dir / "config.yaml"
    config_text = (
        config_path.read_text(encoding="utf-8")
        if config_path.is_file()
        else "(config.yaml missing)"
    )
    bounds = window_bounds(run_dir, metrics)
    deploy_days = deployment_days(run_dir)

    policy = str(summary.get("policy", "?"))
    seed = summary.get("seed", "?")
    title = f"recloop run report — {policy} (seed {seed})"
    meta = (
        f"config <code>{html.escape(str(summary.get('config_name', '?')))}</code> · "
        f"status {html.escape(str(summary.get('status', '?')))} · run directory "
        f"<code>{html.escape(str(run_dir))}</code>"
    )
    figures = []
    for panel in PANELS:
        deploy_note = (
            " Dotted lines: deployment of each new model version."
            if 0 < deploy_days.size <= MAX_DEPLOY_MARKERS
            else ""
        )
        figures.append(
            f"<section><h3>{html.escape(panel.title)}</h3>"
            f'<p class="caption">{html.escape(panel.caption)}{deploy_note}</p>'
            f"{figure_html(_time_figure(panel, metrics, deploy_days), panel.div_id)}</section>"
        )

    body = f"""<h1>{html.escape(title)}</h1>
<p class="meta">{meta}</p>
<p class="headline">{html.escape(headline(metrics))}</p>
<h2>Summary</h2>
{_summary_table(metrics)}
{_totals_table(summary, metrics)}
<h2>Over time</h2>
{"".join(figures)}
<h2>Exposure concentration: Lorenz curves</h2>
{_lorenz_section(run_dir, bounds, metrics, summary.get("catalog_size"))}
{_examination_section(run_dir)}
<h2>Resolved config</h2>
<pre>{html.escape(config_text)}</pre>
<footer>Produced by recloop-report: <code>recloop-report {html.escape(str(run_dir))}</code>
rebuilds this page from the run's files (summary.json, metrics.parquet, item_exposure.parquet,
config.yaml, logs/).
</footer>
"""
    return write_page(run_dir / REPORT_NAME, title, CSS, body)
