"""Build ``report.html`` for one finished run from its files alone.

Reads ``summary.json``, ``metrics.parquet``, ``item_exposure.parquet``, ``config.yaml``,
``examination.parquet`` and ``logs/snapshots.parquet`` / ``logs/deployments.parquet`` (never the
simulator code, :mod:`reports.files`), so a report can be rebuilt at any time with
``recloop-report RUN_DIR``. A run on its own gets a self-contained page (plotly.js inlined once in
the head); a job of a sweep loads the sweep folder's one shared ``plotly.min.js``. Either way the
page works offline.

The page opens with the run's trajectory in words (:func:`headline`). Each chart's y axis is
fixed to its metrics' range from the metric catalog (:func:`y_axis`), with a log axis for
propensities; a chart that does not apply to the run (no model to score, no exploration) is
replaced by one line saying so.
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import plotly.graph_objects as go
import polars as pl
import yaml

from reports.cold_start_section import cold_start_section
from reports.files import (
    ReportError,
    deployment_days,
    has_item_exposure,
    item_exposure,
    read_overrides,
    require,
    window_bounds,
)
from reports.inequality import lorenz
from reports.metric_catalog import format_metric, is_missing, metric_info
from reports.page import (
    COLORS,
    CSS,
    FIG_HEIGHT,
    figure_dict,
    figure_html,
    plain_template,
    shared_plotlyjs,
    write_page,
)
from reports.retention_section import retention_section

__all__ = [
    "COLD_START_METRICS",
    "HEADLINE_METRICS",
    "KEY_METRICS",
    "LEDGER_METRICS",
    "OBJECTIVE_METRICS",
    "PAD",
    "PANELS",
    "REPORT_NAME",
    "RETENTION_METRICS",
    "SERVING_METRICS",
    "SERVING_PANELS",
    "ReportError",
    "build_run_report",
    "headline",
    "in_sweep",
    "nice_step",
    "read_config",
    "serving_reasons",
    "y_axis",
]

REPORT_NAME = "report.html"
MAX_RUG = 200  # deployment ticks drawn at most; beyond, every k-th (the caption says which)

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

# How a panel's y axis is ranged: ``domain`` fixes it to the metrics' whole range (coverage
# 0–100%); ``data`` runs from 0 (or the lowest value, if negative) to just above the highest
# value, within the range (CTR, homogenization: small values a 0–1 axis would flatten).
Scale = Literal["domain", "data"]


@dataclass(frozen=True)
class _Panel:
    div_id: str
    title: str
    caption: str
    left: tuple[str, ...]  # columns; the legend shows their catalog labels
    left_title: str
    left_scale: Scale = "domain"
    right: tuple[str, ...] = ()
    right_title: str = ""
    right_scale: Scale = "domain"
    stacked: bool = False  # left columns drawn as stacked areas (parts of one whole)


PANELS: tuple[_Panel, ...] = (
    _Panel(
        "fig-coverage",
        "Catalog coverage",
        "Share of catalog items shown (or clicked) at least once in each window; the cumulative "
        "curve counts every item shown since the start of the run.",
        ("coverage_exposure", "coverage_clicks", "cum_coverage_exposure"),
        "share of catalog",
    ),
    _Panel(
        "fig-concentration",
        "Concentration",
        "Gini coefficients of impressions and clicks over all catalog items (0 = equal, "
        "1 = one item takes everything), and the share of impressions taken by the top 1% of items.",
        ("gini_exposure", "gini_clicks", "top1pct_exposure_share"),
        "Gini / share",
    ),
    _Panel(
        "fig-popularity",
        "Popularity drift and the long tail",
        "Change since the first window in the mean popularity percentile of shown items (left), "
        "and the share of impressions on items outside the top 20% by past clicks (right); the "
        "long-tail share is undefined until items differ in past clicks (the first window).",
        ("popularity_drift",),
        "Δ popularity percentile",
        "data",
        ("long_tail_share",),
        "long-tail share of impressions",
    ),
    _Panel(
        "fig-utility",
        "Utility",
        "Mean true relevance of all shown items and of clicked items.",
        ("utility", "utility_clicked"),
        "mean true relevance",
    ),
    _Panel(
        "fig-ctr",
        "Click-through rate",
        "Clicks / impressions per window.",
        ("ctr",),
        "CTR",
        "data",
    ),
    _Panel(
        "fig-diversity",
        "Homogenization and diversity",
        "Mean Jaccard similarity of the clicked-item sets of user pairs (left) and mean pairwise "
        "cosine distance of items within a slate (right).",
        ("homogenization",),
        "Jaccard similarity",
        "data",
        ("intra_list_diversity",),
        "cosine distance",
        "data",
    ),
    _Panel(
        "fig-exploration",
        "Exploration",
        "Share of impressions filled by exploration (left) and the smallest logged marginal "
        "propensity in the window (right, log scale): 1 / min propensity bounds the "
        "inverse-propensity weights an off-policy estimate on this log would use.",
        ("exploration_share",),
        "share of impressions",
        "data",
        ("min_propensity",),
        "min propensity (log scale)",
    ),
    _Panel(
        "fig-model-quality",
        "The learned model against the truth",
        "True-relevance NDCG@K of the ranking of the model deployed at each window's end, for a "
        "fixed sample of users (metrics.ndcg_users), excluding items they already clicked. "
        "Only a simulator can draw this line: it shows the model drifting from what users want.",
        ("model_ndcg",),
        "NDCG",
        "data",
    ),
)

# ---------------------------------------------------------------- headline

# The headline's metrics, in order, and the subject of their sentence.
HEADLINE_METRICS: tuple[tuple[str, str], ...] = (
    ("ctr", "CTR"),
    ("coverage_exposure", "Exposure coverage"),
    ("utility", "True utility of shown items"),
)


@dataclass(frozen=True)
class _Point:
    """One window's value of a metric: what a headline clause names."""

    day: float  # end of the window, in simulated days (the charts' x)
    value: float
    text: str  # the value as the summary table prints it

    @property
    def when(self) -> str:
        return f"day {self.day:.4g}"


def _nanmean(values: np.ndarray) -> float:
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if finite.size else float("nan")


def _points(m: pl.DataFrame, col: str) -> list[_Point]:
    kind = metric_info(col).kind
    days = (m["t_end"].cast(pl.Float64) / 24.0).to_list()
    values = m[col].cast(pl.Float64).fill_null(float("nan")).to_list()
    return [
        _Point(d, v, format_metric(v, kind))
        for d, v in zip(days, values, strict=True)
        if not is_missing(v)
    ]


TURN_SHARE = 0.1  # a peak or trough is named when it stands this share of the range past the ends


def _turn(series: list[_Point]) -> _Point | None:
    """The peak or trough between the first and the last point worth naming: the interior
    extreme that reaches furthest outside the range of the two ends, by at least
    :data:`TURN_SHARE` of the series' whole range (a value printed like an end, or a wobble
    next to one, is not a turn). None for a series without one (monotone, flat, or two
    points)."""
    first, last = series[0], series[-1]
    inner = series[1:-1]
    if not inner:
        return None
    top = max(inner, key=lambda p: p.value)
    bottom = min(inner, key=lambda p: p.value)
    lo, hi = min(first.value, last.value), max(first.value, last.value)
    span = max(top.value, hi) - min(bottom.value, lo)  # the whole series' range
    candidates = [
        (excursion, p)
        for excursion, p in ((top.value - hi, top), (lo - bottom.value, bottom))
        if excursion > 0
        and excursion >= TURN_SHARE * span
        and p.text not in (first.text, last.text)
    ]
    return max(candidates, key=lambda c: c[0])[1] if candidates else None


def _moved(a: _Point, b: _Point) -> str:
    return "rose" if b.value > a.value else "fell"


def _trajectory(subject: str, bootstrap: _Point | None, series: list[_Point]) -> str:
    """One sentence on a metric's course: from the bootstrap (when given) to the first point
    of ``series``, through its peak or trough (:func:`_turn`), to its last point."""
    first, last = series[0], series[-1]
    turn = _turn(series)
    if turn is None and first.text == last.text and len(series) > 1:  # flat, as printed
        since = "the bootstrap" if bootstrap is not None else first.when
        if bootstrap is None or bootstrap.text == first.text:
            return f"{subject} stayed at {first.text} from {since} to {last.when}."
    if bootstrap is None:
        text = f"{subject} was {first.text} on {first.when}"
        verb = ""
    elif bootstrap.text == first.text:
        text = f"{subject} stayed at {first.text} from the bootstrap to {first.when}"
        verb = ""
    else:
        verb = _moved(bootstrap, first)
        text = f"{subject} {verb} from {bootstrap.text} (bootstrap) to {first.text} on {first.when}"
    if len(series) == 1:
        return text + "."
    previous = first
    if turn is not None:
        text += f", {'peaked' if turn.value > first.value else 'bottomed out'} at {turn.text} "
        text += f"on {turn.when}"
        previous, verb = turn, ""
    if last.text == previous.text:
        return text + f" and was still {last.text} by {last.when}."
    moved = _moved(previous, last)
    said = "" if moved == verb else f"{moved} "  # "fell from … to … and to …", not "and fell to"
    return text + f" and {said}to {last.text} by {last.when}."


def headline(metrics: pl.DataFrame) -> str:
    """What happened over the run, one sentence per headline metric: its value in the bootstrap
    (the windows before the first model, ``model_version`` −1), in the first window a model
    served, at its peak or trough, and at the end. Every number is a window's value in
    ``metrics.parquet`` printed as the summary table prints it; days are window ends."""
    m = metrics.sort("window")
    days = float(m["t_end"].max()) / 24.0
    span = f"{days:.4g} simulated day{'' if days == 1 else 's'}"
    booting = m["model_version"] < 0 if "model_version" in m.columns else pl.repeat(False, m.height)
    served = m.filter(~booting)
    boot = m.filter(booting)
    if m.height == 1:
        lead = f"A single window of {span}."
    elif served.height == 0:
        lead = (
            f"{m.height} windows over {span}; no model was deployed: every "
            "window was served by the bootstrap."
        )
    else:
        lead = f"{m.height} windows over {span}."
    sentences = [lead]
    for col, subject in HEADLINE_METRICS:
        if col not in m.columns:  # a run from an older version
            continue
        series = _points(served, col) if served.height else _points(m, col)
        before = _points(boot, col) if served.height else []
        if not series:
            sentences.append(f"{subject}: no value in any window.")
            continue
        sentences.append(_trajectory(subject, before[-1] if before else None, series))
    return " ".join(sentences)


# ---------------------------------------------------------------- tables


def _summary_table(metrics: pl.DataFrame, columns: tuple[str, ...] = KEY_METRICS) -> str:
    m = metrics.sort("window")
    rows, totals = [], []
    for col in columns:  # a dozen fixed metrics, not data
        if col not in m.columns:  # a run from an older version
            continue
        info = metric_info(col)
        values = m[col].cast(pl.Float64).fill_null(float("nan")).to_numpy()
        mean = _nanmean(values) if info.per_window else float("nan")
        if not info.per_window:
            totals.append(info.label)
        cells = "".join(
            f'<td class="num">{format_metric(v, info.kind)}</td>'
            for v in (values[0], values[-1], mean)
        )
        rows.append(
            f"<tr><td>{html.escape(info.title)}</td><td>{html.escape(info.description)}</td>"
            f"{cells}</tr>"
        )
    bootstrap = "model_version" in m.columns and m["model_version"][0] < 0
    first = "First window (bootstrap)" if bootstrap else "First window"
    caption = (
        "Mean over windows: the mean of a per-window rate over the windows where it is defined."
    )
    if totals:
        caption += (
            f" {', '.join(totals).capitalize()}: not a per-window rate but a running total "
            "(or a count), read by its final value; its mean over windows would mean nothing (–)."
        )
    return (
        '<table class="metrics"><thead><tr><th>Metric</th><th>Measures</th>'
        f"<th>{first}</th><th>Final window</th><th>Mean over windows</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
        f'<p class="caption">{html.escape(caption)}</p>'
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


def _series(m: pl.DataFrame, col: str) -> np.ndarray:
    return m[col].cast(pl.Float64).fill_null(float("nan")).to_numpy()


def nice_step(span: float, n_ticks: int = 5) -> float:
    """A tick step of 1, 2 or 5 × 10^k giving about ``n_ticks`` intervals over ``span``."""
    raw = max(span / n_ticks, 1e-12)  # a degenerate (zero or subnormal) span: a tiny step
    power = 10.0 ** math.floor(math.log10(raw))
    return next(f * power for f in (1.0, 2.0, 5.0, 10.0) if f * power >= raw * (1 - 1e-9))


def _decimals(step: float) -> int:
    """Fewest decimals that print every multiple of ``step`` exactly."""
    return next(d for d in range(12) if abs(step * 10**d - round(step * 10**d)) < 1e-6)


PAD = 0.02  # share of an axis's span left blank at each end, so edge values stay visible


def y_axis(columns: tuple[str, ...], values: list[np.ndarray], scale: Scale) -> dict[str, Any]:
    """Plotly y-axis settings for ``columns`` plotted together: the range (within the metrics'
    domain, :data:`PAD` aside), ticks at round values, percent ticks for shares, and a log axis
    with one tick per power of ten for a ``log_axis`` metric."""
    infos = [metric_info(c) for c in columns]
    lows = [i.domain[0] for i in infos]
    highs = [i.domain[1] for i in infos]
    low = -math.inf if None in lows else min(lows)
    high = math.inf if None in highs else max(highs)
    data = np.concatenate([v[np.isfinite(v)] for v in values] or [np.empty(0)])
    if any(i.log_axis for i in infos):
        positive = data[data > 0]
        top = 0 if high == 1.0 or positive.size == 0 else math.ceil(math.log10(positive.max()))
        bottom = math.floor(math.log10(positive.min())) if positive.size else top - 1
        bottom = min(bottom, top - 1)
        ticks = [10.0**k for k in range(bottom, top + 1)]
        pad = PAD * (top - bottom)
        return {
            "type": "log",
            "range": [bottom - pad, top + pad],
            "tickmode": "array",
            "tickvals": ticks,
            "ticktext": [format_metric(t, infos[0].kind) for t in ticks],
        }
    if scale == "domain" and math.isfinite(low) and math.isfinite(high):
        lo, hi = low, high
    else:
        lo = min(0.0, float(data.min())) if data.size else 0.0
        hi = max(0.0, float(data.max())) if data.size else 0.0
        if hi - lo < 1e-9:  # no data, all zero or a vanishing span: show the domain's first unit
            hi = lo + (min(high, 1.0) - lo if math.isfinite(high) else 1.0)
        step = nice_step(hi - lo)
        lo = max(low, math.floor(lo / step + 1e-9) * step)
        hi = min(high, math.ceil(hi / step - 1e-9) * step)
    step = nice_step(hi - lo)
    pct = all(i.kind == "pct" for i in infos)
    places = _decimals(step * 100 if pct else step)
    pad = PAD * (hi - lo)
    return {
        "range": [lo - pad, hi + pad],
        "tickmode": "linear",
        "tick0": 0.0,
        "dtick": step,
        "tickformat": f".{places}%" if pct else f".{places}f",
    }


def _rug(deploy_days: np.ndarray) -> tuple[list[dict[str, Any]], int]:
    """Short ticks along the bottom of the plot, one per deployment (every ``k``-th beyond
    :data:`MAX_RUG`): the shapes and ``k``."""
    every = max(1, math.ceil(deploy_days.size / MAX_RUG))
    shapes = [
        {  # keys in the order plotly writes them (:func:`_time_figure`)
            "line": {"color": "rgba(0,0,0,0.45)", "width": 1},
            "type": "line",
            "x0": float(d),
            "x1": float(d),
            "xref": "x",
            "y0": 0,
            "y1": 0.04,
            "yref": "paper",
        }
        for d in deploy_days[::every]  # at most MAX_RUG shapes
    ]
    return shapes, every


def _time_figure(panel: _Panel, metrics: pl.DataFrame, deploy_days: np.ndarray) -> dict[str, Any]:
    """The panel's figure as the plain dict plotly would serialize (:func:`figure_dict`): built
    directly, because building it through ``make_subplots`` and validated ``update_*`` calls
    cost ≈ 35 ms a figure, most of a run report's time (the keys are in the order plotly
    writes them, so the page is the same byte for byte)."""
    m = metrics.sort("window")
    day = m["t_end"].to_numpy() / 24.0
    mode = "lines+markers" if m.height <= 60 else "lines"
    # Runs written by older versions may lack newer metric columns: plot what is there.
    left = tuple(c for c in panel.left if c in m.columns)
    right = tuple(c for c in panel.right if c in m.columns)
    series = {c: _series(m, c) for c in (*left, *right)}
    traces = []
    for i, (col, secondary) in enumerate([(c, False) for c in left] + [(c, True) for c in right]):
        info = metric_info(col)
        fmt = ".1%" if info.kind == "pct" else ".3g" if info.log_axis else ".3f"
        line = {"color": COLORS[i % len(COLORS)], **({"dash": "dash"} if secondary else {})}
        traces.append(
            {
                "hovertemplate": f"day %{{x:.2f}}: %{{y:{fmt}}}<extra>{info.label}</extra>",
                "line": line,
                "meta": {"column": col},  # read back by the browser test
                "mode": mode,
                "name": info.label,
                **({"stackgroup": "left"} if panel.stacked and not secondary else {}),
                "x": day,
                "y": series[col],
                "type": "scatter",
                "xaxis": "x",
                "yaxis": "y2" if secondary else "y",
            }
        )
    layout: dict[str, Any] = {
        "template": plain_template(),
        "xaxis": {
            "anchor": "y",
            "domain": [0.0, 0.94 if panel.right else 1.0],
            "title": {"text": "simulated day (end of window)"},
            "rangemode": "tozero",
        },
    }
    for columns, title, scale, secondary in (
        (left, panel.left_title, panel.left_scale, False),
        (right, panel.right_title, panel.right_scale, True),
    ):
        if secondary and not panel.right:
            continue
        axis: dict[str, Any] = (
            {"anchor": "x", "overlaying": "y", "side": "right"}
            if secondary
            else {"anchor": "x", "domain": [0.0, 1.0]}
        )
        if columns:
            values = [series[c] for c in columns]
            if panel.stacked and not secondary:  # the axis must hold the stack's top
                values = [np.nansum(np.vstack(values), axis=0)]
            axis |= {"title": {"text": title}, **y_axis(columns, values, scale)}
        if secondary and right:
            axis["showgrid"] = False
        layout["yaxis2" if secondary else "yaxis"] = axis
    shapes = _rug(deploy_days)[0]
    layout |= {
        **({"shapes": shapes} if shapes else {}),  # plotly drops an empty list
        "margin": {"l": 60, "r": 60, "t": 20, "b": 50},
        "legend": {"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0},
        "height": FIG_HEIGHT,
        "hovermode": "x unified",
    }
    return figure_dict(traces, layout)


def _exploration_note(m: pl.DataFrame) -> str | None:
    """One line instead of the exploration panel when nothing explored and the smallest
    propensity changed at most once (e.g. a bootstrap's uniform slates, then a deterministic
    ranking); None when the panel has something to show."""
    if not {"exploration_share", "min_propensity"} <= set(m.columns):
        return None
    share = _series(m, "exploration_share")
    if (share[np.isfinite(share)] > 0).any():
        return None
    prop = _series(m, "min_propensity")
    known = np.isfinite(prop)
    values, days = prop[known], m["t_end"].to_numpy()[known] / 24.0
    if values.size == 0:
        return None
    steps = np.flatnonzero(values[1:] != values[:-1]) + 1
    if steps.size > 1:
        return None
    text = "No exploration in this run: exploration share 0 in every window. The smallest logged "
    first = format_metric(values[0], "prob")
    if steps.size == 0:
        text += f"propensity was {first} in every window"
    else:
        at = steps[0]
        text += (
            f"propensity was {first} up to day {days[at - 1]:.4g} and "
            f"{format_metric(values[at], 'prob')} from day {days[at]:.4g} on"
        )
    if values[-1] == 1.0:
        text += (
            " (propensity 1: a deterministic log, on which inverse-propensity estimates of "
            "other policies have no support)"
        )
    return text + "."


def _model_note(m: pl.DataFrame) -> str | None:
    """One line instead of the model-quality panel when no window has a model NDCG."""
    if "model_ndcg" not in m.columns or np.isfinite(_series(m, "model_ndcg")).any():
        return None
    return (
        "No model true NDCG in this run: the policy has no learned ranking to score (uniform "
        "random slates), or the probe was off (metrics.ndcg_users=0)."
    )


# A panel that does not apply to a run is replaced by one line saying why.
PANEL_NOTES = {"fig-exploration": _exploration_note, "fig-model-quality": _model_note}


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


def in_sweep(run_dir: Path) -> bool:
    """Whether the run is a job of a hydra sweep (hydra writes ``multirun.yaml`` in the sweep
    folder when the sweep starts)."""
    return (run_dir.parent / "multirun.yaml").is_file()


def _header(run_dir: Path, summary: dict[str, Any], sweep_job: bool) -> str:
    """What the run was: policy, seed, length, world size, how it was started, where it is."""
    facts = [
        f"policy <b>{html.escape(str(summary.get('policy', '?')))}</b>",
        f"seed {html.escape(str(summary.get('seed', '?')))}",
    ]
    if not is_missing(summary.get("days")):
        facts.append(f"{float(summary['days']):.4g} simulated days")
    users, items = summary.get("n_users"), summary.get("catalog_size")
    if not is_missing(users) and not is_missing(items):
        facts.append(f"{int(users):,} users × {int(items):,} items")
    elif not is_missing(items):
        facts.append(f"{int(items):,} items")
    facts.append(f"status {html.escape(str(summary.get('status', '?')))}")
    lines = [" · ".join(facts)]
    overrides = read_overrides(run_dir)
    if overrides is not None:
        given = " ".join(overrides)
        if sweep_job:
            lines.append(
                f"one job of the sweep in <code>{html.escape(str(run_dir.resolve().parent))}</code>, "
                "with overrides "
                f"<code>{html.escape(given) or '(none)'}</code>"
            )
        else:
            lines.append(f"command <code>{html.escape(('recloop ' + given).strip())}</code>")
    lines.append(f"run directory <code>{html.escape(str(run_dir))}</code>")
    return '<p class="meta">' + "<br>".join(lines) + "</p>"


def _panel_section(panel: _Panel, metrics: pl.DataFrame, deploy_days: np.ndarray) -> str:
    note_of = PANEL_NOTES.get(panel.div_id)
    note = note_of(metrics) if note_of else None
    if not set(panel.left + panel.right) & set(metrics.columns):
        note = "Not in this run's metrics.parquet (written by an older version of recloop)."
    if note is not None:
        return (
            f"<section><h3>{html.escape(panel.title)}</h3>"
            f'<p class="caption">{html.escape(note)}</p></section>'
        )
    rug = ""
    if deploy_days.size:
        every = _rug(deploy_days)[1]
        which = "each new model version" if every == 1 else f"every {every}th model version"
        rug = f" Ticks along the bottom: deployment of {which}."
    return (
        f"<section><h3>{html.escape(panel.title)}</h3>"
        f'<p class="caption">{html.escape(panel.caption)}{rug}</p>'
        f"{figure_html(_time_figure(panel, metrics, deploy_days), panel.div_id)}</section>"
    )


# ---------------------------------------------------------------- serving

SERVING_METRICS: tuple[str, ...] = (
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
)
SERVING_PANELS: tuple[_Panel, ...] = (
    _Panel(
        "fig-latency",
        "Latency",
        "Percentiles over the window's requests of the time from arrival to a served slate "
        "(queue wait + service; a cache hit's lookup; a fallback's own time), log scale. A p99 far "
        "above the p50 is the queue at the busy hours.",
        ("latency_p50_ms", "latency_p95_ms", "latency_p99_ms"),
        "latency (log scale)",
        "data",
    ),
    _Panel(
        "fig-fallback",
        "Fallback share by reason",
        "Share of the window's requests served by the popularity fallback instead of the model, "
        "stacked by reason: budget (the predicted wait + service exceeded the latency budget) and "
        "overload (no model server could take the request). Fallback slates show popular items: "
        "what the next model is trained on.",
        ("fallback_share_budget", "fallback_share_overload"),
        "share of requests",
        "data",
        stacked=True,
    ),
    _Panel(
        "fig-cache",
        "Slate cache and staleness",
        "Share of requests served from the slate cache (left) and the mean age of the model "
        "behind the served slate, in hours (right, dashed): the model's age when the slate was "
        "computed plus the slate's age in the cache.",
        ("cache_hit_rate",),
        "share of requests",
        "data",
        ("staleness_h",),
        "hours",
        "data",
    ),
    _Panel(
        "fig-retrieval",
        "Retrieval recall",
        "Share of the deployed model's exhaustive top-K (slate size) and top-N (candidates) that "
        "the retrieval stage returns, on the probe users (metrics.ndcg_users): below 1, the "
        "retrievers' quotas keep items from the ranking that the model alone would have shown.",
        ("retrieval_recall", "retrieval_recall_n"),
        "recall",
    ),
    _Panel(
        "fig-reranker",
        "Reranker AUC",
        "AUC of the learned reranker's predicted click probability against the clicks of the "
        "window (0.5 = chance, 1 = every clicked impression scored above every unclicked one). "
        "Each window is served by a model trained on earlier windows: this is its AUC on new data.",
        ("reranker_auc",),
        "AUC",
        "data",
    ),
)


def _finite(m: pl.DataFrame, col: str) -> np.ndarray:
    if col not in m.columns:
        return np.empty(0)
    values = _series(m, col)
    return values[np.isfinite(values)]


def _config_value(config: dict[str, Any] | None, dotted: str) -> Any:
    node: Any = config
    for key in dotted.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node


def serving_reasons(metrics: pl.DataFrame, config: dict[str, Any] | None) -> list[str]:
    """Why the run has a Serving section (empty: it has none). From the run's ``config.yaml``:
    a finite number of model servers, a latency budget, a slate cache (TTL > 0), a retriever
    mix (``policy.retrieve.quotas`` naming more than one retriever) or a learned reranker
    (``policy.rerank`` whose ``_target_`` or ``name`` says ``learned``); from
    ``metrics.parquet``: requests served by the fallback or the cache, a reranker AUC, or a
    retrieval recall below 1. Latency alone (every run has it) is no reason."""
    reasons = []
    servers = _config_value(config, "serving.model_servers")
    if servers is not None:
        reasons.append(f"{servers} model server{'' if servers == 1 else 's'}")
    budget = _config_value(config, "serving.latency_budget_ms")
    if budget is not None:
        reasons.append(f"latency budget {format_metric(budget, 'ms')}")
    ttl = _config_value(config, "serving.cache_ttl_hours")
    if isinstance(ttl, int | float) and ttl > 0:
        reasons.append(f"slate cache with a TTL of {ttl} h")
    quotas = _config_value(config, "policy.retrieve.quotas")
    if isinstance(quotas, dict) and sum(1 for v in quotas.values() if v) > 1:  # a mix
        reasons.append("retrievers " + ", ".join(f"{k} {v}" for k, v in quotas.items()))
    rerank = _config_value(config, "policy.rerank")
    if isinstance(rerank, dict) and "learned" in f"{rerank.get('_target_')} {rerank.get('name')}":
        reasons.append("a learned reranker")  # not the default identity stage
    fallback = [_finite(metrics, c) for c in ("fallback_share_budget", "fallback_share_overload")]
    data = (
        ("requests served by the popularity fallback", any((v > 0).any() for v in fallback)),
        ("requests served from the slate cache", (_finite(metrics, "cache_hit_rate") > 0).any()),
        ("a learned reranker's AUC", _finite(metrics, "reranker_auc").size > 0),
        ("retrieval recall below 1", (_finite(metrics, "retrieval_recall") < 1).any()),
    )
    reasons += [text for text, seen in data if seen]
    return reasons


def _serving_text(m: pl.DataFrame) -> str:
    """A few sentences on the serving metrics; every number is a cell of the serving table
    (a final-window value, or a mean over windows for a per-window rate)."""
    sentences = []

    def final(col: str) -> str | None:
        values = _series(m, col) if col in m.columns else np.empty(0)
        if values.size == 0 or not np.isfinite(values[-1]):
            return None
        return format_metric(values[-1], metric_info(col).kind)

    def mean(col: str) -> str | None:
        values = _finite(m, col)
        return format_metric(values.mean(), metric_info(col).kind) if values.size else None

    def used(col: str) -> bool:  # the feature served at least one request
        return bool((_finite(m, col) > 0).any())

    if (share := final("cum_fallback_share")) is not None and used("cum_fallback_share"):
        budget, overload = mean("fallback_share_budget"), mean("fallback_share_overload")
        sentences.append(
            f"Over the whole run, {share} of requests were served by the popularity fallback "
            f"(per window on average: {budget} for the latency budget, {overload} for overload)."
        )
    p50, p99 = mean("latency_p50_ms"), mean("latency_p99_ms")
    if p50 is not None and p99 is not None:
        sentences.append(
            f"Per window on average, the median request took {p50} and the p99 {p99} (queue "
            "wait + service)."
        )
    stale = mean("staleness_h")
    if (hit := mean("cache_hit_rate")) is not None and used("cache_hit_rate"):
        text = f"The slate cache served {hit} of requests per window on average"
        sentences.append(
            text + (f"; the model behind a slate was {stale} old on average." if stale else ".")
        )
    elif stale is not None:
        sentences.append(f"The model behind a slate was {stale} old on average.")
    if (recall := mean("retrieval_recall")) is not None:
        text = f"Retrieval kept {recall} of the model's own top-K"
        if (recall_n := mean("retrieval_recall_n")) is not None:
            text += f" and {recall_n} of its top-N candidates"
        sentences.append(text + " on average.")
    if (auc := mean("reranker_auc")) is not None:
        sentences.append(f"The reranker's AUC on the next window averaged {auc}.")
    return " ".join(sentences)


def _serving_panel(panel: _Panel, m: pl.DataFrame, deploy_days: np.ndarray) -> str:
    columns = panel.left + panel.right
    if not any(_finite(m, c).size for c in columns):
        return ""  # nothing measured (the feature is off): no empty panel
    if panel.stacked and not any((_finite(m, c) > 0).any() for c in panel.left):
        return (
            f'<section><h3>{html.escape(panel.title)}</h3><p class="caption">No request was '
            "served by the popularity fallback: 0% in every window.</p></section>"
        )
    return _panel_section(panel, m, deploy_days)


def _serving_section(
    metrics: pl.DataFrame, config: dict[str, Any] | None, deploy_days: np.ndarray
) -> str:
    """The Serving section, or "" when :func:`serving_reasons` finds nothing to show."""
    reasons = serving_reasons(metrics, config)
    if not reasons:
        return ""
    m = metrics.sort("window")
    columns = tuple(c for c in SERVING_METRICS if _finite(m, c).size)
    panels = "".join(_serving_panel(panel, m, deploy_days) for panel in SERVING_PANELS)
    return (
        '<h2 id="serving">Serving</h2>'
        f'<p class="caption">Shown because this run has: {html.escape("; ".join(reasons))}.</p>'
        f'<p class="serving-text">{html.escape(_serving_text(m))}</p>'
        f"{_summary_table(m, columns)}{panels}"
    )


# ---------------------------------------------------------------- objectives

OBJECTIVE_METRICS: tuple[str, ...] = (
    "revenue_per_request",
    "cum_revenue",
    "creator_gini_exposure",
    "max_creator_share",
    "content_diversity",
)
OBJECTIVE_PANELS: tuple[_Panel, ...] = (
    _Panel(
        "fig-revenue",
        "Revenue",
        "Price of the items clicked in the window per request (left) and the running total of "
        "the clicked items' price since the start of the run (right, dashed).",
        ("revenue_per_request",),
        "price per request",
        "data",
        ("cum_revenue",),
        "cumulative price",
        "data",
    ),
    _Panel(
        "fig-creators",
        "Exposure over creators",
        "Gini coefficient of the window's impressions over every creator in the catalog (zeros "
        "included; 0 = every creator shown equally) and the largest creator's share of them.",
        ("creator_gini_exposure", "max_creator_share"),
        "Gini / share",
    ),
    _Panel(
        "fig-content-diversity",
        "Content diversity",
        "Mean pairwise cosine distance within a slate of the items' content features (what a "
        "policy sees) and of their true latent factors (intra-list diversity, what users feel); "
        "1 = unrelated, 0 = identical.",
        ("content_diversity", "intra_list_diversity"),
        "cosine distance",
        "data",
    ),
)


def _objectives_text(m: pl.DataFrame) -> str:
    """What each objective means, with its mean over windows (cumulative revenue: its final
    value) — the cells of the section's table."""

    def mean(col: str) -> str:
        return format_metric(_nanmean(_series(m, col)), metric_info(col).kind)

    final_revenue = format_metric(_series(m, "cum_revenue")[-1], metric_info("cum_revenue").kind)
    return (
        f"Revenue per request is the price of the items users clicked, per request: what the "
        f"platform earns per visit ({mean('revenue_per_request')} per window on average, "
        f"{final_revenue} over the run). The creator exposure Gini measures how unequally "
        f"impressions are spread over the catalog's creators (0 = equally, towards 1 = a few "
        f"take everything; {mean('creator_gini_exposure')} on average), and the largest "
        f"creator took {mean('max_creator_share')} of a window's impressions on average. "
        f"Content diversity is how different a slate's items look to the platform (mean "
        f"pairwise cosine distance of their content features; {mean('content_diversity')} on "
        f"average) — intra-list diversity measures the same on the true tastes."
    )


def _objectives_section(metrics: pl.DataFrame, deploy_days: np.ndarray) -> str:
    """The Objectives section, or "" for a run whose metrics have no objective (written
    before them, or computed without the item metadata)."""
    m = metrics.sort("window")
    if not all(_finite(m, c).size for c in OBJECTIVE_METRICS):
        return ""
    panels = "".join(_panel_section(panel, m, deploy_days) for panel in OBJECTIVE_PANELS)
    return (
        '<h2 id="objectives">Objectives</h2>'
        f'<p class="objectives-text">{html.escape(_objectives_text(m))}</p>'
        f"{_summary_table(m, OBJECTIVE_METRICS)}{panels}"
    )


# ---------------------------------------------------------------- cold start

# the newcomer columns of metrics.parquet (NaN in every window of a world without arrivals)
COLD_START_METRICS: tuple[str, ...] = (
    "new_item_exposure_share",
    "new_item_ctr",
    "new_user_utility",
    "established_utility",
    "new_items_arrived",
)
COLD_START_PANELS: tuple[_Panel, ...] = (
    _Panel(
        "fig-cold-start-exposure",
        "New items' share of exposure",
        "Share of the window's impressions that went to items younger than metrics."
        "new_item_days (left) and their click-through rate, the cold-item CTR (right, dashed).",
        ("new_item_exposure_share",),
        "share of impressions",
        "data",
        ("new_item_ctr",),
        "new-item CTR",
        "data",
    ),
    _Panel(
        "fig-cold-start-utility",
        "New users vs everyone else",
        "Mean true relevance of the items shown in the first metrics.new_user_sessions requests "
        "of users who arrived during the run, and in every other request (what cold-start "
        "layers cost everyone else).",
        ("new_user_utility", "established_utility"),
        "mean true relevance",
        "data",
    ),
)


def _cold_start(run_dir: Path, summary: dict[str, Any], metrics: pl.DataFrame, days: Any) -> str:
    """The Cold start section (:mod:`reports.cold_start_section`), "" without arrivals."""
    if not isinstance(summary.get("cold_start"), dict):
        return ""
    m = metrics.sort("window")
    shown = tuple(c for c in COLD_START_METRICS if c in m.columns)
    panels = "".join(_panel_section(panel, m, days) for panel in COLD_START_PANELS)
    table = _summary_table(m, shown) if shown else ""
    return cold_start_section(run_dir, summary, table + panels)


# ---------------------------------------------------------------- retention

# the retention columns of metrics.parquet (only in runs with engagement or conversions; NaN in
# every window for the part that was off)
RETENTION_METRICS: tuple[str, ...] = (
    "active_users",
    "churn_rate",
    "return_rate",
    "satisfaction_mean",
    "conversions",
    "conversion_rate",
    "revenue",
    "conversion_lag_h",
)
RETENTION_PANELS: tuple[_Panel, ...] = (
    _Panel(
        "fig-retention-active",
        "Active users",
        "Users active at some moment of each window: joined, and not churned for all of it.",
        ("active_users",),
        "users",
        "data",
    ),
    _Panel(
        "fig-retention-churn",
        "Churn and return",
        "Churn events in the window over the users active just before it (left), and return "
        "events over the users churned just before it (right, dashed).",
        ("churn_rate",),
        "churn rate",
        "data",
        ("return_rate",),
        "return rate",
        "data",
    ),
    _Panel(
        "fig-retention-conversions",
        "Conversions and revenue",
        "Conversions that happened in the window (left) and their value (right, dashed).",
        ("conversions",),
        "conversions",
        "data",
        ("revenue",),
        "revenue",
        "data",
    ),
    _Panel(
        "fig-retention-conversion-rate",
        "Conversion rate and lag",
        "Share of the window's clicks that converted by the end of the run (left; the last "
        "windows' clicks have not all converted yet) and the mean hours from click to "
        "conversion of the window's conversions (right, dashed).",
        ("conversion_rate",),
        "conversions per click",
        "data",
        ("conversion_lag_h",),
        "hours",
        "data",
    ),
)


def _retention(run_dir: Path, summary: dict[str, Any], metrics: pl.DataFrame, days: Any) -> str:
    """The Retention section (:mod:`reports.retention_section`), "" when engagement and
    conversions were off; per-window panels only for columns with a value."""
    if not isinstance(summary.get("retention"), dict):
        return ""
    m = metrics.sort("window")
    shown = tuple(c for c in RETENTION_METRICS if _finite(m, c).size)
    panels = "".join(
        _panel_section(panel, m, days)
        for panel in RETENTION_PANELS
        if set(panel.left + panel.right) & set(shown)
    )
    table = _summary_table(m, shown) if shown else ""
    return retention_section(run_dir, summary, table + panels)


# ---------------------------------------------------------------- constraint ledger

CONSTRAINTS_FILE = "constraints.parquet"  # logs/, written by the constrained reranker
# the ledger's columns of metrics.parquet (per window, NaN in a run without the ledger)
LEDGER_METRICS: tuple[str, ...] = (
    "floor_met_share",
    "floor_infeasible_share",
    "item_max_share",
    "item_cap",
    "creator_max_share_window",
    "creator_cap",
    "multiplier_max",
)


def _share_vs_cap(share: float, cap: float) -> str:
    """``12.0% / 10.0%`` (cap off: the share alone); over the cap marked ``over``."""
    text = format_metric(share, "pct")
    if is_missing(cap) or not math.isfinite(cap):
        return f"{text} / off"
    over = math.isfinite(share) and share > cap
    return f"{text} / {format_metric(cap, 'pct')}" + (" (over)" if over else "")


def _ledger_totals(ledger: pl.DataFrame, floor: bool = True) -> str:
    """One paragraph over every tick of ``logs/constraints.parquet`` (``floor``: the run set a
    per-slate floor; without one every slate "meets" it, which the text does not claim)."""
    n_slates = int(ledger["n_slates"].sum())
    if n_slates == 0:
        return "The constrained reranker served no slate."
    met, infeasible = int(ledger["n_floor_met"].sum()), int(ledger["n_floor_infeasible"].sum())
    feasible = n_slates - infeasible
    text = (
        f"Over the run, {format_metric(n_slates, 'int')} slates were served by the constrained "
        f"reranker at {ledger.height} ticks; "
        + (
            f"{format_metric(met / n_slates, 'pct')} met the per-slate floor"
            if floor
            else "no per-slate floor was set (policy.rerank.min_creators and "
            "min_content_diversity are 0)"
        )
    )
    if infeasible:
        text += (
            f" ({format_metric(infeasible / n_slates, 'pct')} could not: their candidates did "
            f"not allow it"
            + (
                f"; {format_metric(met / feasible, 'pct')} of the feasible ones met it)"
                if feasible
                else ")"
            )
        )
    text += "."
    for kind in ("item", "creator"):
        cap = ledger[f"{kind}_cap"].cast(pl.Float64).fill_null(float("nan")).to_numpy()
        share = ledger[f"{kind}_max_share"].cast(pl.Float64).fill_null(float("nan")).to_numpy()
        on = np.isfinite(cap)
        if not on.any():
            continue
        over = int((share[on] > cap[on]).sum())
        text += (
            f" The largest {kind} share of the rolling window was at most "
            f"{format_metric(np.nanmax(share[on]), 'pct')} against a cap of "
            f"{format_metric(float(np.max(cap[on])), 'pct')}; {over} of {int(on.sum())} ticks "
            f"saw it above the cap."
        )
    last = ledger.sort("t").row(-1, named=True)
    text += (
        f" At the last tick the largest multipliers were {format_metric(last['item_multiplier_max'], 'prob')} "
        f"(items, {format_metric(last['n_items_penalized'], 'int')} penalized) and "
        f"{format_metric(last['creator_multiplier_max'], 'prob')} (creators, "
        f"{format_metric(last['n_creators_penalized'], 'int')} penalized)."
    )
    return text


def _ledger_section(run_dir: Path, metrics: pl.DataFrame) -> str:
    """The Constraint ledger section when ``logs/constraints.parquet`` exists, else ""."""
    path = run_dir / "logs" / CONSTRAINTS_FILE
    if not path.is_file():
        return ""
    ledger = pl.read_parquet(path)
    missing = [c for c in LEDGER_METRICS if c not in metrics.columns]
    head = '<h2 id="constraint-ledger">Constraint ledger</h2>'
    rerank = ((read_config(run_dir) or {}).get("policy") or {}).get("rerank") or {}
    floor = bool(rerank.get("min_creators") or rerank.get("min_content_diversity")) or not rerank
    totals = f'<p class="ledger-text">{html.escape(_ledger_totals(ledger, floor))}</p>'
    if missing:
        note = f"metrics.parquet has no ledger column {', '.join(missing)}: no table per window."
        return f'{head}{totals}<p class="caption">{html.escape(note)}</p>'
    m = metrics.sort("window")
    rows = []
    for r in m.select("t_end", *LEDGER_METRICS).iter_rows(named=True):  # one row per window
        v = {k: (float("nan") if r[k] is None else float(r[k])) for k in LEDGER_METRICS}
        cells = (
            format_metric(r["t_end"] / 24.0, "num1"),
            format_metric(v["floor_met_share"], "pct"),
            format_metric(v["floor_infeasible_share"], "pct"),
            _share_vs_cap(v["item_max_share"], v["item_cap"]),
            _share_vs_cap(v["creator_max_share_window"], v["creator_cap"]),
            format_metric(v["multiplier_max"], "prob"),
        )
        rows.append(
            "<tr>" + "".join(f'<td class="num">{html.escape(c)}</td>' for c in cells) + "</tr>"
        )
    caption = (
        "Per window: the share of the constrained reranker's slates that met the per-slate floor, "
        "the share whose candidates could not meet it (infeasible), the largest share of "
        "impressions an item and a creator took in the rolling window against its cap "
        '("(over)" above the cap; "off" without one), and the largest Lagrange multiplier '
        "after the window's last tick (0 = no cap binding). Every value is a column of "
        "metrics.parquet; the paragraph above sums logs/constraints.parquet."
    )
    return (
        f"{head}{totals}"
        '<table class="ledger"><thead><tr><th>Day (window end)</th><th>Floor met</th>'
        "<th>Infeasible</th><th>Item max share / cap</th><th>Creator max share / cap</th>"
        "<th>Max multiplier</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
        f'<p class="caption">{html.escape(caption)}</p>'
    )


def read_config(run_dir: Path) -> dict[str, Any] | None:
    """The run's resolved ``config.yaml`` as a dict (None when missing or unreadable)."""
    for path in (run_dir / "config.yaml", run_dir / ".hydra" / "config.yaml"):
        if path.is_file():
            try:
                data = yaml.safe_load(path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, yaml.YAMLError):
                continue
            if isinstance(data, dict):
                return data
    return None


def build_run_report(run_dir: Path, summary: dict[str, Any] | None = None) -> Path:
    """Write ``run_dir/report.html`` from the run's files and return its path.

    A run on its own gets a self-contained page (plotly.js inlined); a job of a sweep (its
    parent folder holds hydra's ``multirun.yaml``) loads the sweep's one shared
    ``../plotly.min.js`` (:func:`reports.page.shared_plotlyjs`), written here if missing.

    ``summary`` is the run's ``summary.json`` content when the run passes it before writing
    the file (so that ``summary.json`` is written only once the report is in place); by
    default it is read from the file.

    Raises
    ------
    ReportError
        If ``summary.json`` or ``metrics.parquet`` is missing (not a finished run).
    """
    run_dir = Path(run_dir)
    if summary is None:
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
    sweep_job = in_sweep(run_dir)

    policy = str(summary.get("policy", "?"))
    seed = summary.get("seed", "?")
    title = f"recloop run report — {policy} (seed {seed})"
    figures = "".join(_panel_section(panel, metrics, deploy_days) for panel in PANELS)
    body = f"""<h1>{html.escape(title)}</h1>
{_header(run_dir, summary, sweep_job)}
<p class="headline">{html.escape(headline(metrics))}</p>
<p class="caption">Bootstrap: the last window before the first model was deployed (model
version −1). Days are window ends, as on the charts' x axes; every number is that window's value in the
table below or in metrics.parquet.</p>
<h2>Summary</h2>
{_summary_table(metrics)}
{_totals_table(summary, metrics)}
<h2>Over time</h2>
{figures}
{_serving_section(metrics, read_config(run_dir), deploy_days)}
{_objectives_section(metrics, deploy_days)}
{_ledger_section(run_dir, metrics)}
{_cold_start(run_dir, summary, metrics, deploy_days)}
{_retention(run_dir, summary, metrics, deploy_days)}
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
    plotly_src = None
    if sweep_job:
        plotly_src = f"../{shared_plotlyjs(run_dir.parent).name}"
    return write_page(run_dir / REPORT_NAME, title, CSS, body, plotly_src=plotly_src)
