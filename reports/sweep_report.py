"""Build ``report.html`` for a hydra sweep folder from its jobs' files alone.

The page opens with the finding: the study's name and question, the answer in a sentence or two
generated from the data, and one small table of each arm's key final-window metrics with the
paired difference to the baseline arm. Then, for a sweep of three or more arms with the revenue
metric, the Pareto front of utility, revenue and creator exposure (:mod:`reports.sweep_tradeoffs`),
each metric over time, the utility/coverage trade-off, the last window's Lorenz curves, the full final-window table, the failed and
incomplete jobs, and each arm's command and config.

Reading the folder (jobs, arms, baseline) is :mod:`reports.sweep_folder`; every number compared
is :mod:`reports.comparison`'s (the same definitions as ``comparison.md``); intervals are
:mod:`reports.intervals`' (t across seeds, cut to the metric's range). The sweep's pages share
one plotly.js, ``plotly.min.js`` in the sweep folder (job reports load ``../plotly.min.js``).
"""

from __future__ import annotations

import html
import math
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import plotly.graph_objects as go
import polars as pl
from plotly.colors import qualitative

from reports.comparison import (
    ALPHA,
    FINAL,
    ArmValue,
    Comparison,
    Paired,
    compare,
    difference_text,
    fmt_interval,
    job_finals,
    p_text,
)
from reports.horizons import horizon_section
from reports.inequality import lorenz
from reports.intervals import METHOD, column_intervals, error_bar
from reports.metric_catalog import Metric, format_metric, metric_info
from reports.optuna_study import chosen_arm, load_optuna_study
from reports.page import CSS, FIG_HEIGHT, figure_html, shared_plotlyjs, write_page
from reports.run_report import REPORT_NAME, equality_figure, read_config, serving_reasons
from reports.sweep_cold_start import cold_start_sweep_section
from reports.sweep_folder import (
    FAILED,
    FINISHED,
    INCOMPLETE,
    Job,
    Sweep,
    SweepReportError,
    is_sweep_dir,
    last_window_exposure,
    load_sweep,
    metric_values,
)
from reports.sweep_retention import retention_sweep_section
from reports.sweep_tradeoffs import tradeoffs_section
from reports.trials_section import TRIALS_CSS, trials_section
from reports.weight_sweep import weight_sweep_section

__all__ = ["SweepReportError", "build_sweep_report", "is_sweep_dir"]

# columns of metrics.parquet; labels, formats, ranges and descriptions come from the catalog
HEADLINE_METRICS: tuple[str, ...] = (
    "cumulative_utility",
    "coverage_exposure",
    "gini_exposure",
    "model_ndcg",
)
TABLE_METRICS: tuple[str, ...] = (
    "cumulative_utility",
    "coverage_exposure",
    "gini_exposure",
    "model_ndcg",
    "popularity_drift",
    "homogenization",
    "utility",
    "ctr",
    "long_tail_share",
    "coverage_clicks",
    "top1pct_exposure_share",
    "intra_list_diversity",
    "exploration_share",
    # objectives (rows hidden when no arm has them: runs without item metadata)
    "cum_revenue",
    "revenue_per_request",
    "creator_gini_exposure",
    "max_creator_share",
    "content_diversity",
)
SERIES_METRICS: tuple[str, ...] = (
    "coverage_exposure",
    "gini_exposure",
    "popularity_drift",
    "utility",
    "ctr",
    "homogenization",
    "cumulative_utility",
    "model_ndcg",
    "exploration_share",
)
# the serving study's metrics: in the tables and series only when a job has serving worth
# showing (:func:`reports.run_report.serving_reasons`)
SERVING_TABLE_METRICS: tuple[str, ...] = (
    "cum_fallback_share",
    "fallback_share_budget",
    "fallback_share_overload",
    "cache_hit_rate",
    "latency_p50_ms",
    "latency_p99_ms",
    "staleness_h",
    "retrieval_recall",
    "retrieval_recall_n",
    "reranker_auc",
)
SERVING_SERIES_METRICS: tuple[str, ...] = (
    "latency_p99_ms",
    "fallback_share_budget",
    "fallback_share_overload",
    "cache_hit_rate",
    "staleness_h",
    "retrieval_recall",
    "retrieval_recall_n",
    "reranker_auc",
)
# the serving headline: each shortcut's quality cost and its feedback effect on the catalog,
# paired by seed against the reference arm (unlimited capacity)
SHORTCUT_COST: tuple[str, ...] = ("utility", "ctr", "model_ndcg")
SHORTCUT_FEEDBACK: tuple[str, ...] = ("gini_exposure", "popularity_drift")
SHORTCUT_CONTEXT: tuple[str, ...] = ("cum_fallback_share", "cache_hit_rate")
UTILITY, COVERAGE, GINI = "cumulative_utility", "coverage_exposure", "gini_exposure"
MORE_SEEDS = "seed=0,1,2"  # the override a single-seed sweep is told to rerun with
# A bounded axis spans the metric's whole range unless the data fill less than this share of it
# (a CTR of 4% on a 0–100% axis is a flat line); then it zooms in, never past the range.
ZOOM_BELOW = 0.1
PALETTE: tuple[str, ...] = tuple(qualitative.D3) + tuple(qualitative.Dark24)

SWEEP_CSS = """
.container { max-width: 1150px; }
p.question { font-size: 1.15rem; margin: 0.2rem 0 0.6rem; color: #333; }
.answer { font-size: 1.05rem; }
.subtitle { color: #555; margin-top: 0; }
tr.group th { background: #e9eef5; font-weight: 600; }
tr.group th span { font-weight: normal; color: #555; }
td.sig, div.sig { background: #fff3c4; font-weight: 600; }
table.headline-table td.num { white-space: normal; }
div.table-scroll { overflow-x: auto; }
table.headline-table { font-size: 0.88rem; }
table.headline-table th, table.headline-table td { padding: 0.3rem 0.45rem; }
td div.diff { font-size: 0.85rem; color: #444; max-width: 15rem; margin-left: auto; }
.nowrap { white-space: nowrap; }
tr.baseline td { color: #555; }
table.pareto { font-size: 0.88rem; }
table.pareto th, table.pareto td { padding: 0.3rem 0.45rem; }
table.pareto tr.dominated td { color: #777; }
table.pareto div.ci { font-size: 0.8rem; color: #555; }
.status-failed { color: #b00020; font-weight: 600; }
.status-incomplete { color: #a15c00; font-weight: 600; }
.ok { color: #1b7f3b; }
nav ul { columns: 2; font-size: 0.92rem; }
details { margin: 0.4rem 0 0.8rem; }
summary { cursor: pointer; color: #1f4e9c; }
code.cmd { display: block; background: #f6f6f6; padding: 0.5rem 0.8rem; overflow-x: auto;
  white-space: pre; }
ul.jobs { margin: 0.3rem 0; font-size: 0.92rem; }
"""


# ---------------------------------------------------------------- series across seeds


def arm_series(jobs: Sequence[Job], metric: str) -> pl.DataFrame | None:
    """Per window: ``day`` (t_end / 24, mean over the jobs with a value), the mean across the
    jobs, the interval ``low``/``high`` of :func:`reports.intervals.column_intervals` (cut to the
    metric's range; null with fewer than 2 finite values) and ``n``.

    Jobs whose metrics lack the column are skipped; None when no job has a finite value.
    """
    runs = [
        (j.metrics["window"].to_numpy(), j.metrics["t_end"].to_numpy(), values)
        for j in jobs
        if j.metrics is not None
        and {"window", "t_end"} <= set(j.metrics.columns)
        and (values := metric_values(j, metric)) is not None
    ]
    windows = np.unique(np.concatenate([w for w, _, _ in runs])) if runs else np.empty(0)
    values = np.full((len(runs), windows.size), np.nan)
    t_end = np.full_like(values, np.nan)
    for row, (w, t, v) in enumerate(runs):
        col = np.searchsorted(windows, w)
        values[row, col] = v
        t_end[row, col] = np.where(np.isfinite(v), t, np.nan)
    mean, low, high, n = column_intervals(values, metric_info(metric).domain)
    keep = n > 0
    if not keep.any():
        return None
    with np.errstate(invalid="ignore"):
        day = np.nanmean(t_end[:, keep], axis=0) / 24.0
    band = n[keep] >= 2
    return pl.DataFrame(
        {
            "window": windows[keep].astype(np.int64),
            "day": day,
            "mean": mean[keep],
            "low": np.where(band, low[keep], np.nan),
            "high": np.where(band, high[keep], np.nan),
            "n": n[keep].astype(np.int64),
        }
    ).with_columns(pl.col("low", "high").fill_nan(None))


# ---------------------------------------------------------------- Lorenz curves per seed


def arm_lorenz(jobs: Sequence[Job]) -> tuple[np.ndarray | None, list[str]]:
    """Each job's last-window Lorenz curve (:func:`reports.inequality.lorenz` of its impressions
    per catalog item), one row per seed on the exact grid ``k / n`` of item shares, and notes on
    jobs left out (no file, no impressions, a catalog size unlike the arm's first job)."""
    curves: list[np.ndarray] = []
    notes: list[str] = []
    for job in jobs:
        counts, note = last_window_exposure(job)
        if counts is None:
            notes.append(note or f"{job.name}: no item exposure")
        elif counts.sum() == 0:
            notes.append(f"{job.name}: no impressions in the last window")
        elif curves and counts.size + 1 != curves[0].size:
            notes.append(f"{job.name}: catalog of {counts.size} items, not {curves[0].size - 1}")
        else:
            curves.append(lorenz(counts)[1])
    return (np.vstack(curves) if curves else None), notes


def gini_of_lorenz(curve: np.ndarray) -> float:
    """The Gini coefficient of a Lorenz curve on the grid ``k / n``: ``1 − (1/n) Σ (L_{k−1} + L_k)``.

    Equal to the metric's ``G = Σ_k (2k − n − 1) x_(k) / (n Σ x)`` for the curve of ``x``, and
    linear in the curve: the Gini of the mean of several seeds' curves is the mean of their
    Ginis. So the mean curve drawn for an arm has exactly the Gini printed in its legend (the
    mean over its seeds of ``metrics.parquet``'s ``gini_exposure``), when every seed has a curve.
    """
    n = curve.size - 1
    return float(1.0 - (curve[:-1] + curve[1:]).sum() / n)


def _vertices(*curves: np.ndarray) -> np.ndarray:
    """Indices where any of the curves (same grid) changes slope: drawing only these points
    is exact (the curves are linear in between), and far smaller for large catalogs."""
    n = curves[0].size
    if n <= 2:
        return np.arange(n)
    bends = np.zeros(n - 2, dtype=bool)
    for y in curves:
        slope = np.diff(y)
        bends |= ~np.isclose(slope[1:], slope[:-1], rtol=1e-9, atol=1e-12)
    return np.concatenate([[0], np.flatnonzero(bends) + 1, [n - 1]])


# ---------------------------------------------------------------- formatting


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def fmt_delta(v: float, kind: str) -> str:
    """A signed difference: percentage points for shares."""
    if not math.isfinite(v):
        return "–"
    if kind == "pct":
        return f"{v * 100:+.1f} pp"
    if kind == "num0":
        return f"{v:+,.0f}"
    if kind == "num1":
        return f"{v:+,.1f}"
    if kind == "ms":
        return f"{v:+,.0f} ms"
    if kind == "hours":
        return f"{v:+,.1f} h"
    if kind == "prob":
        return f"{v:+.3g}"
    return f"{v:+.3f}"


def fmt_diff(pair: Paired, kind: str) -> str:
    """A paired difference ``+Δ [low, high]`` (ends without "pp"), or ``+Δ (seed s)``."""
    bound = (lambda v: f"{v * 100:+.1f}") if kind == "pct" else None
    return difference_text(pair, lambda v: fmt_delta(v, kind), bound)


def _names(items: Sequence[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    items = list(items)
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def shell_command(overrides: Sequence[str], program: str = "recloop") -> str:
    """``recloop`` plus the overrides, each value shell-quoted (the whole override when its key
    is not a plain word)."""
    parts = [program]
    for o in overrides:
        key, sep, value = o.partition("=")
        if sep and key and shlex.quote(key) == key:
            parts.append(f"{key}={shlex.quote(value)}")
        else:
            parts.append(shlex.quote(o))
    return " ".join(parts)


def _color(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def _rgba(hex_color: str, alpha: float) -> str:
    h = hex_color.lstrip("#")
    r, g, b = (int(h[k : k + 2], 16) for k in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


def _layout(fig: go.Figure, height: int = FIG_HEIGHT) -> go.Figure:
    fig.update_layout(
        template="plotly_white",
        height=height,
        margin={"l": 60, "r": 30, "t": 20, "b": 50},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0},
    )
    return fig


# ---------------------------------------------------------------- the finding first


def _question(sweep: Sweep, comp: Comparison) -> str:
    """The study's ``study_question``, else which arms are compared with which."""
    if sweep.question:
        return sweep.question
    others = comp.arms[1:]
    if not others:
        return f"What does {comp.baseline} deliver?"
    if len(others) == 1:
        return f"How does {others[0]} compare with {comp.baseline}?"
    named = _names(others) if len(others) <= 3 else f"the {len(others)} arms"
    return f"How do {named} compare with {comp.baseline}?"


def _seeds_phrase(counts: Sequence[int]) -> str:
    low, high = min(counts), max(counts)
    return f"{low} seeds" if low == high else f"{low}–{high} seeds"


def _utility_sentence(comp: Comparison) -> str:
    """What the arms delivered against the baseline, paired by seed; honest about one seed."""
    base, label, kind = comp.baseline, metric_info(UTILITY).label, metric_info(UTILITY).kind
    diffs = {a: v.diff for a, v in comp.values[UTILITY].items() if v.diff is not None}
    if not diffs:
        return f"One arm only ({base}): nothing to compare it with."
    tested = {a: d for a, d in diffs.items() if d.n >= 2}
    single = {a: d for a, d in diffs.items() if d.n == 1}
    parts: list[str] = []
    if tested:
        more = [a for a, d in tested.items() if d.significant and d.mean > 0]
        less = [a for a, d in tested.items() if d.significant and d.mean < 0]
        same = [a for a in tested if a not in more and a not in less]
        if more:
            best = max(more, key=lambda a: tested[a].mean)
            parts.append(
                f"{_names(more)} delivered significantly more {label} than {base} "
                f"({best}: {fmt_diff(tested[best], kind)}, {p_text(tested[best].p)})"
            )
        if less:
            parts.append(f"{_names(less)} significantly less")
        if same:
            with_p = [
                f"{a} ({fmt_delta(tested[a].mean, kind)}, {p_text(tested[a].p)})" for a in same
            ]
            parts.append(f"{_names(with_p)} did not differ significantly from {base} in {label}")
        sentence = f"Paired by seed over {_seeds_phrase([d.n for d in tested.values()])}: "
        sentence += "; ".join(parts) + "."
    else:
        sentence = ""
    if single:
        clauses = [
            f"{a} delivered {format_metric(abs(d.mean), kind)} "
            f"{'more' if d.mean > 0 else 'less'} {label} than {base}"
            if d.mean != 0
            else f"{a} delivered the same {label} as {base}"
            for a, d in single.items()
        ]
        seeds = {d.seeds[0] for d in single.values()}
        where = f"On seed {seeds.pop()}, " if len(seeds) == 1 else "On single seeds, "
        sentence += (" " if sentence else "") + where + "; ".join(clauses)
        sentence += f"; one seed — no interval, run more seeds: {MORE_SEEDS}."
    apart = [a for a, d in diffs.items() if d.n == 0]
    if apart:
        sentence += f" {_names(apart)}: no seed in common with {base}, no difference."
    return sentence.strip()


def _exposure_sentence(comp: Comparison) -> str:
    """Which arm spread exposure widest and which concentrated it most, in the final window."""
    parts = []
    for i, metric in enumerate((COVERAGE, GINI)):
        info = metric_info(metric)
        means = {a: v.value.mean for a, v in comp.values[metric].items()}
        means = {a: m for a, m in means.items() if math.isfinite(m)}
        if len(means) < 2:
            continue
        low, high = min(means, key=means.get), max(means, key=means.get)
        verb = " ranged" if i == 0 else ""  # "coverage ranged from … and Gini from …"
        parts.append(
            f"{info.label}{verb} from {format_metric(means[low], info.kind)} ({low}) to "
            f"{format_metric(means[high], info.kind)} ({high})"
        )
    if not parts:
        return ""
    mean = " (means over seeds)" if max(comp.n_seeds.values()) >= 2 else ""
    return f"In the {FINAL}{mean}, " + " and ".join(parts) + "."


def _diff_line(value: ArmValue, kind: str) -> str:
    if value.diff is None:
        return '<div class="diff">baseline</div>'
    d = value.diff
    # the line breaks between the difference and its p-value, never inside either
    text = f'<span class="nowrap">{_esc(f"Δ {fmt_diff(d, kind)}")}</span>'
    if d.n >= 2:
        p = f"{p_text(d.p)}{' *' if d.significant else ''}"
        text += f' · <span class="nowrap">{_esc(p)}</span>'
    sig = " sig" if d.significant else ""
    return f'<div class="diff{sig}">{text}</div>'


def _headline_table(comp: Comparison) -> str:
    metrics = [m for m in HEADLINE_METRICS if comp.shown(m)]
    head = "".join(f"<th>{_esc(metric_info(m).title)}</th>" for m in metrics)
    rows = []
    for arm in comp.arms:
        cells = [f"<td>{_esc(arm)}</td>", f'<td class="num">{comp.n_seeds[arm]}</td>']
        for metric in metrics:
            value, kind = comp.values[metric][arm], metric_info(metric).kind
            cells.append(
                f'<td class="num"><div>{_esc(fmt_interval(value.value, kind))}</div>'
                f"{_diff_line(value, kind)}</td>"
            )
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return (
        f'<div class="table-scroll"><table class="headline-table"><thead><tr><th>Arm</th><th>Seeds</th>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def _method_caption(comp: Comparison) -> str:
    base = _esc(comp.baseline)
    if comp.max_pairs < 2 and max(comp.n_seeds.values(), default=0) < 2:
        return (
            '<p class="caption"><b>1 seed: no interval.</b> Each value is the arm\'s single '
            f"job in its {FINAL}; Δ is the arm minus <code>{base}</code> on that seed — one "
            f"observation, not a test. Run more seeds (<code>{MORE_SEEDS}</code>) for intervals "
            "and paired tests.</p>"
        )
    return (
        f"<p class=\"caption\">Values in each job's {FINAL} (a cumulative metric: the run's "
        f"total), mean across the arm's seeds as <b>mean [low, high]</b>: {_esc(METHOD)}. "
        f"<b>Δ</b>: the arm minus <code>{base}</code> on the same seed, averaged over the seeds "
        "both finished, with its interval (cut to the range a difference can take) and the "
        f"paired t-test (scipy.stats.ttest_rel); highlighted * : p &lt; {ALPHA} (not corrected "
        "for the number of comparisons). Shares in %, their differences in percentage points "
        "(pp).</p>"
    )


def _headline(sweep: Sweep, comp: Comparison) -> str:
    sentences = [_utility_sentence(comp), _exposure_sentence(comp)]
    answer = " ".join(_esc(s) for s in sentences if s)
    unfinished = [j for j in sweep.jobs if j.status != FINISHED]
    if unfinished:
        answer += (
            f" {len(unfinished)} of {len(sweep.jobs)} jobs did not finish and are left out "
            '(<a href="#problems">listed below</a>).'
        )
    return (
        f'<p class="question">{_esc(_question(sweep, comp))}</p>'
        f'<p class="answer">{answer}</p>'
        f"{_headline_table(comp)}{_method_caption(comp)}"
    )


# ---------------------------------------------------------------- figures


def axis_range(info: Metric, values: np.ndarray) -> list[float] | None:
    """The y range of a panel of ``info``: its whole range when bounded (2% padding), zoomed
    in but still inside it when the data fill less than :data:`ZOOM_BELOW` of it; from the
    bound to the data for a half-open range; None (plotly's autorange) otherwise."""
    low, high = info.domain
    data = values[np.isfinite(values)]
    if info.log_axis or data.size == 0 or (low is None and high is None):
        return None
    dmin, dmax = float(data.min()), float(data.max())
    if low is not None and high is not None:
        span = dmax - dmin
        if span >= ZOOM_BELOW * (high - low):
            a, b = low, high
        else:
            margin = max(0.15 * span, 0.01 * (high - low))
            # stay anchored at a bound the data are close to: a share near 0 keeps its 0
            a = low if dmin - low <= 2 * max(span, margin) else max(low, dmin - margin)
            b = high if high - dmax <= 2 * max(span, margin) else min(high, dmax + margin)
    elif low is not None:
        a, b = low, max(dmax, low + 1e-9)
    else:
        a, b = min(dmin, high - 1e-9), high
    pad = 0.02 * (b - a)
    return [a - pad, b + pad]


def _band(
    x: np.ndarray, low: np.ndarray, high: np.ndarray, color: str, group: str, name: str
) -> go.Scatter:
    """A shaded band from ``low`` to ``high`` over ``x`` (one closed polygon, no legend entry)."""
    return go.Scatter(
        x=np.concatenate([x, x[::-1]]),
        y=np.concatenate([high, low[::-1]]),
        fill="toself",
        fillcolor=_rgba(color, 0.18),
        line={"width": 0},
        mode="lines",
        hoverinfo="skip",
        showlegend=False,
        legendgroup=group,
        name=name,
    )


def _series_figure(sweep: Sweep, metric: str) -> go.Figure | None:
    info = metric_info(metric)
    kind = info.kind
    fig = go.Figure()
    fmt = ".1%" if kind == "pct" else (".3g" if kind == "prob" else ".3f")
    shown: list[np.ndarray] = []
    for i, arm in enumerate(sweep.finished_arms):
        series = arm_series(sweep.jobs_of(arm, FINISHED), metric)
        if series is None:
            continue
        color, name = _color(i), _esc(arm)
        band = series.filter(pl.col("low").is_not_null())
        if info.log_axis:  # a log axis cannot draw a band reaching 0
            band = band.filter(pl.col("low") > 0)
        if band.height:
            low, high = band["low"].to_numpy(), band["high"].to_numpy()
            day = band["day"].to_numpy()
            fig.add_trace(_band(day, low, high, color, f"arm{i}", f"{name} interval"))
            shown += [low, high]
        shown.append(series["mean"].to_numpy())
        fig.add_trace(
            go.Scatter(
                x=series["day"].to_list(),
                y=series["mean"].to_list(),
                customdata=series["n"].to_list(),
                name=name,
                legendgroup=f"arm{i}",
                mode="lines+markers" if series.height <= 60 else "lines",
                line={"color": color, "width": 2},
                hovertemplate=f"day %{{x:.2f}}: %{{y:{fmt}}} (n=%{{customdata}})",
            )
        )
    if not fig.data:
        return None
    fig.update_xaxes(title_text="simulated day (end of window)", rangemode="tozero")
    fig.update_yaxes(
        title_text=info.title,
        tickformat=".0%" if kind == "pct" else None,
        type="log" if info.log_axis else None,
        range=axis_range(info, np.concatenate(shown)),
    )
    _layout(fig).update_layout(hovermode="x unified")
    return fig


def has_serving(sweep: Sweep) -> bool:
    """Has any finished job serving worth showing (:func:`reports.run_report.serving_reasons`
    on its config and metrics)?"""
    return any(
        j.metrics is not None and serving_reasons(j.metrics, read_config(j.path))
        for j in sweep.finished
    )


def _shortcut_section(sweep: Sweep, comp: Comparison) -> str:
    """The serving study's headline: each arm minus the reference arm on the same seed, for the
    quality of what users were shown and for the catalog, with how much traffic the arm's
    shortcuts took (fallback, cache)."""
    base = comp.baseline
    cost = [m for m in SHORTCUT_COST if m in comp.values and comp.shown(m)]
    feedback = [m for m in SHORTCUT_FEEDBACK if m in comp.values and comp.shown(m)]
    context = [m for m in SHORTCUT_CONTEXT if m in comp.values and comp.shown(m)]
    if base is None or len(comp.arms) < 2 or not (cost or feedback):
        return ""

    def table(deltas: Sequence[str]) -> str:
        """Arm, the traffic its shortcuts took (context), then each Δ against the reference."""
        head = "".join(f"<th>{_esc(metric_info(m).title)}</th>" for m in context)
        head += "".join(f"<th>Δ {_esc(metric_info(m).title)}</th>" for m in deltas)
        rows = []
        for arm in comp.arms[1:]:
            cells = [f"<td>{_esc(arm)}</td>"]
            for metric in context:
                kind = metric_info(metric).kind
                value = fmt_interval(comp.values[metric][arm].value, kind)
                cells.append(f'<td class="num">{_esc(value)}</td>')
            for metric in deltas:
                line = _diff_line(comp.values[metric][arm], metric_info(metric).kind)
                cells.append(f'<td class="num">{line}</td>')
            rows.append(f"<tr>{''.join(cells)}</tr>")
        return (
            f'<div class="table-scroll"><table class="headline-table"><thead><tr><th>Arm</th>'
            f"{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
        )

    drift = comp.values.get("popularity_drift", {})
    fed = [
        a
        for a in comp.arms[1:]
        if a in drift
        and drift[a].diff is not None
        and drift[a].diff.significant
        and drift[a].diff.mean > 0
    ]
    if "popularity_drift" not in feedback:
        verdict = ""
    elif fed:
        verdict = (
            f" Popularity drift rose significantly against {base} in {_names(fed)}: their "
            "shortcuts fed popular items back into training."
        )
    else:
        verdict = (
            f" No arm's popularity drift rose significantly against {base} "
            f"(paired t-test, p < {ALPHA})."
        )
    tables = ""
    if feedback:
        tables += f"<h3>What it feeds back into the catalog</h3>{table(feedback)}"
    if cost:
        tables += f"<h3>What it costs in quality</h3>{table(cost)}"
    return (
        '<h2 id="shortcuts">Serving shortcuts: their cost and their feedback</h2>'
        f'<p class="answer">Each arm against <code>{_esc(base)}</code> (the reference arm) on '
        "the same seeds, which share users, arrivals and coin flips: what the shortcut does to "
        "the catalog (exposure Gini, popularity drift) and what it costs in quality (utility of "
        f"shown items, CTR, the model's true NDCG).{_esc(verdict)}</p>"
        f"{tables}"
        '<p class="caption">Fallback share and cache hit rate: the arm\'s final-window values '
        "(the cumulative fallback share is the run's total). Δ: the arm minus the reference on "
        "the same seed, with its interval and paired test, as in the table above.</p>"
    )


def _series_section(sweep: Sweep, metrics: Sequence[str] = SERIES_METRICS) -> str:
    parts = [
        '<p class="caption">One line per arm: the mean across its seeds in each window; the '
        f"shaded band is its interval ({_esc(METHOD)}). Axes span each metric's range, zoomed "
        "in (never past it) when the values fill a small part of it.</p>"
    ]
    for metric in metrics:
        fig = _series_figure(sweep, metric)
        if fig is None:
            continue  # no arm has a value (a model metric of model-free arms)
        info = metric_info(metric)
        parts.append(
            f'<section><h3>{_esc(info.title)}</h3><p class="caption">{_esc(info.description)}.</p>'
            f"{figure_html(fig, f'fig-ts-{metric}')}</section>"
        )
    return "".join(parts)


def _tradeoff_section(comp: Comparison) -> str:
    fig = go.Figure()
    tops: list[float] = []
    for i, arm in enumerate(comp.arms):
        cov, util = comp.values[COVERAGE][arm].value, comp.values[UTILITY][arm].value
        if not (math.isfinite(cov.mean) and math.isfinite(util.mean)):
            continue
        name = _esc(arm)
        tops.append(util.high if util.has_interval else util.mean)
        fig.add_trace(
            go.Scatter(
                x=[cov.mean],
                y=[util.mean],
                name=name,
                text=[name],
                mode="markers+text",
                textposition="top center",
                marker={"color": _color(i), "size": 11},
                error_x=error_bar(cov),
                error_y=error_bar(util),
                customdata=[[cov.n]],
                hovertemplate="exposure coverage %{x:.1%}<br>cumulative utility %{y:,.1f}"
                "<br>seeds %{customdata[0]}",
            )
        )
    if not fig.data:
        return '<p class="caption">No arm has both final exposure coverage and utility.</p>'
    fig.update_xaxes(
        title_text=f"exposure coverage ({FINAL})", tickformat=".0%", range=[-0.02, 1.02]
    )
    fig.update_yaxes(title_text=f"cumulative utility ({FINAL})", range=[0, max(tops) * 1.12])
    _layout(fig, FIG_HEIGHT + 100).update_layout(showlegend=False)
    caption = (
        '<p class="caption">One point per arm: mean across seeds, with error bars from '
        f"{_esc(METHOD)}. Up and to the right is better on both: more of the catalog seen, more "
        "relevance delivered.</p>"
    )
    return caption + figure_html(fig, "fig-tradeoff")


def _lorenz_section(sweep: Sweep, comp: Comparison) -> str:
    fig = equality_figure()
    notes: list[str] = []
    kind = metric_info(GINI).kind
    for i, arm in enumerate(comp.arms):
        curves, arm_notes = arm_lorenz(sweep.jobs_of(arm, FINISHED))
        notes += arm_notes
        if curves is None:
            continue
        n = curves.shape[1] - 1
        mean, low, high = curves.mean(axis=0), curves.min(axis=0), curves.max(axis=0)
        keep = _vertices(mean, low, high)
        x = (np.arange(n + 1) / n)[keep]
        color, group = _color(i), f"arm{i}"
        if curves.shape[0] >= 2:
            name = f"{_esc(arm)} range across seeds"
            fig.add_trace(_band(x, low[keep], high[keep], color, group, name))
        # the table's number for this arm: mean over its seeds of metrics.parquet's Gini
        gini = format_metric(comp.values[GINI][arm].value.mean, kind)
        fig.add_trace(
            go.Scatter(
                x=x,
                y=mean[keep],
                name=f"{_esc(arm)}: Gini {gini}",
                legendgroup=group,
                mode="lines",
                line={"color": color, "width": 2},
                hovertemplate="%{x:.1%} of items get %{y:.1%} of impressions",
            )
        )
    note_html = "".join(f'<p class="caption">{_esc(n)}</p>' for n in notes)
    if len(fig.data) == 1:
        return note_html + '<p class="caption">No item exposure to draw Lorenz curves.</p>'
    fig.update_xaxes(
        title_text="cumulative share of items (fewest impressions first)",
        tickformat=".0%",
        range=[-0.01, 1.01],
    )
    fig.update_yaxes(
        title_text="cumulative share of impressions", tickformat=".0%", range=[-0.01, 1.01]
    )
    _layout(fig, FIG_HEIGHT + 120).update_layout(
        legend={
            "x": 0.02,
            "y": 0.98,
            "xanchor": "left",
            "yanchor": "top",  # _layout anchors legends at the bottom: hang this one from the top
            "orientation": "v",
            "bgcolor": "rgba(255,255,255,0.8)",
        }
    )
    caption = (
        '<p class="caption">Each seed\'s Lorenz curve of impressions per catalog item in its last '
        "window (items never shown included); the line is the mean curve across the arm's "
        "seeds, the shaded band the range across them (lowest to highest seed). The further a "
        "curve sags below the diagonal, the more exposure is concentrated on few items. The "
        "Gini in the legend is the arm's final-window exposure Gini, mean over its seeds, as in "
        "the tables (the Gini of the mean curve: Gini is linear in the curve).</p>"
    )
    return caption + note_html + figure_html(fig, "fig-lorenz")


# ---------------------------------------------------------------- the full table


def _final_table(comp: Comparison) -> str:
    base = comp.baseline
    tested = comp.max_pairs >= 2
    n_cols = 6 if tested else 4
    rows = []
    for metric in comp.metrics:
        if not comp.shown(metric):
            continue  # no arm has a value (a model metric of model-free arms, older runs)
        info = metric_info(metric)
        kind = info.kind
        rows.append(
            f'<tr class="group"><th colspan="{n_cols}">{_esc(info.title)} '
            f"<span>— {_esc(info.description)}</span></th></tr>"
        )
        for arm in comp.arms:
            value = comp.values[metric][arm]
            cells = [
                f"<td>{_esc(arm)}</td>",
                f'<td class="num">{value.value.n}</td>',
                f'<td class="num">{_esc(fmt_interval(value.value, kind))}</td>',
            ]
            d = value.diff
            if d is None:
                cells.append(f'<td colspan="{n_cols - 3}">baseline</td>')
                rows.append(f'<tr class="baseline">{"".join(cells)}</tr>')
                continue
            sig = " sig" if d.significant else ""
            cells.append(f'<td class="num{sig}">{_esc(fmt_diff(d, kind))}</td>')
            if tested:
                star = " *" if d.significant else ""
                cells.append(f'<td class="num{sig}">{_esc(p_text(d.p))}{star}</td>')
                cells.append(f'<td class="num">{d.n}</td>')
            rows.append(f"<tr>{''.join(cells)}</tr>")
    if tested:
        head = (
            "<tr><th>Arm</th><th>n</th><th>Mean [interval]</th>"
            f"<th>Δ vs {_esc(base)} [interval]</th><th>p (paired t)</th><th>pairs</th></tr>"
        )
    else:
        head = (
            "<tr><th>Arm</th><th>n</th><th>Value (1 seed: no interval)</th>"
            f"<th>Δ vs {_esc(base)} on the same seed</th></tr>"
        )
    return (
        _method_caption(comp)
        + f'<table class="final"><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table>'
    )


def _problems_section(sweep: Sweep) -> str:
    bad = [j for j in sweep.jobs if j.status != FINISHED]
    if not bad:
        return f'<p class="ok">All {len(sweep.jobs)} jobs finished.</p>'
    rows = []
    for job in bad:
        detail = _esc(job.error or job.status)
        if job.traceback:
            detail += (
                f"<details><summary>traceback</summary><pre>{_esc(job.traceback)}</pre></details>"
            )
        rows.append(
            f"<tr><td><code>{_esc(job.name)}</code></td>"
            f"<td>{_esc(job.arm) if job.arm else 'unknown'}</td>"
            f"<td>{_esc(job.seed) if job.seed is not None else '?'}</td>"
            f'<td class="status-{job.status}">{job.status}</td><td>{detail}</td></tr>'
        )
    return (
        f"<p>{len(bad)} of {len(sweep.jobs)} jobs did not finish; they are left out of the "
        "comparison above.</p>"
        '<table class="problems"><thead><tr><th>Job folder</th><th>Arm</th><th>Seed</th>'
        f"<th>Status</th><th>Error</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _config_text(job: Job) -> str:
    for path in (job.path / "config.yaml", job.path / ".hydra" / "config.yaml"):
        if path.is_file():
            try:
                return path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                return f"(unreadable {path.name}: {exc})"
    return "(config.yaml missing)"


def _arms_section(sweep: Sweep) -> str:
    parts = []
    for arm in sweep.arms:
        jobs = sweep.jobs_of(arm)
        finished = [j for j in jobs if j.status == FINISHED]
        rep = (finished or jobs)[0]
        items = []
        for job in jobs:
            text = f"seed {_esc('?' if job.seed is None else job.seed)} — <code>{_esc(job.name)}</code> — "
            text += f'<span class="status-{job.status}">{job.status}</span>'
            if (job.path / REPORT_NAME).is_file():
                href = _esc(f"{quote(job.name)}/{REPORT_NAME}")
                text += f' — <a href="{href}">report</a>'
            items.append(f"<li>{text}</li>")
        if rep.overrides is None:
            command = '<p class="caption">No .hydra/overrides.yaml: command unknown.</p>'
        else:
            command = (
                f'<p class="caption">Command for seed {_esc("?" if rep.seed is None else rep.seed)}:</p>'
                f'<code class="cmd">{_esc(shell_command(rep.overrides))}</code>'
            )
        tag = " (baseline)" if arm == sweep.baseline else ""
        parts.append(
            f"<section><h3>{_esc(arm)}{tag}</h3>{command}"
            f'<ul class="jobs">{"".join(items)}</ul>'
            f"<details><summary>Resolved config (<code>{_esc(rep.name)}/config.yaml</code>)"
            f"</summary><pre>{_esc(_config_text(rep))}</pre></details></section>"
        )
    unknown = [j for j in sweep.jobs if j.arm is None]
    if unknown:
        names = ", ".join(f"<code>{_esc(j.name)}</code>" for j in unknown)
        parts.append(f'<p class="caption">Jobs with unknown arm (no policy recorded): {names}</p>')
    return "".join(parts)


NAV = {
    "trials": "Trials (Optuna)",
    "tradeoffs": "Trade-offs: the Pareto front",
    "weights": "Weights: do they move what they claim?",
    "horizons": "Short run vs long run",
    "cold-start": "Cold start",
    "retention": "Retention",
    "series": "Over time",
    "tradeoff": "Trade-off: utility vs exposure coverage",
    "lorenz": "Lorenz curves",
    "final": "Final window: every metric",
    "problems": "Failed and incomplete jobs",
    "arms": "Arms: commands and configs",
}


def _meta(sweep: Sweep) -> str:
    n_done = len(sweep.finished)
    n_failed = sum(j.status == FAILED for j in sweep.jobs)
    n_incomplete = sum(j.status == INCOMPLETE for j in sweep.jobs)
    meta = (
        f"Sweep folder <code>{_esc(sweep.path)}</code><br>"
        f"<b>{len(sweep.arms)}</b> arms · <b>{len(sweep.jobs)}</b> jobs: "
        f"<b>{n_done}</b> finished, <b>{n_failed}</b> failed, <b>{n_incomplete}</b> incomplete"
    )
    if sweep.baseline:
        meta += f" · baseline arm <code>{_esc(sweep.baseline)}</code>"
    if sweep.command is not None:
        meta += (
            "<br>Sweep command, launcher settings included (multirun.yaml): "
            f"<code>{_esc(shell_command(sweep.command, 'recloop -m'))}</code>"
        )
    if sweep.shared_overrides:
        shared = ", ".join(f"<code>{_esc(o)}</code>" for o in sweep.shared_overrides)
        meta += f"<br>Shared by every job (not in the arm labels): {shared}"
    return f'<p class="meta">{meta}</p>'


def build_sweep_report(sweep_dir: Path, baseline: str | None = None) -> Path:
    """Write ``sweep_dir/report.html`` comparing the sweep's arms and return its path; the
    page loads the sweep's shared ``plotly.min.js`` (written beside it when missing).

    Works on interrupted or partly failed sweeps: unfinished jobs are listed, never hidden; with
    no finished job the page lists the failures and has no figures.

    Raises
    ------
    SweepReportError
        When ``sweep_dir`` has no job sub-folders, or ``baseline`` is not an arm with finished
        jobs.
    """
    sweep_dir = Path(sweep_dir)
    sweep = load_sweep(sweep_dir, baseline)
    chosen = chosen_arm(sweep) if baseline is None else None
    if chosen is not None and chosen != sweep.baseline:  # Optuna: the chosen trial is the baseline
        sweep = load_sweep(sweep_dir, chosen)
    study = load_optuna_study(sweep)
    if sweep.finished:
        arms = sweep.finished_arms
        serving = has_serving(sweep)
        metrics = list(TABLE_METRICS)
        if serving:
            metrics += [*SERVING_TABLE_METRICS, *(m for m in SHORTCUT_COST if m not in metrics)]
        finals = job_finals(sweep, metrics)
        comp = compare(finals, arms, sweep.baseline, metrics)
        top = _headline(sweep, comp) + (_shortcut_section(sweep, comp) if serving else "")
        series = SERIES_METRICS + (SERVING_SERIES_METRICS if serving else ())
        tradeoffs = tradeoffs_section(comp, finals)
        weights = weight_sweep_section(sweep)
        horizons = horizon_section(sweep) if tradeoffs else ""
        cold_start = cold_start_sweep_section(sweep)
        retention = retention_sweep_section(sweep)
        body = (
            f"{tradeoffs}{weights}{horizons}{cold_start}{retention}"
            f'<h2 id="series">{NAV["series"]}</h2>{_series_section(sweep, series)}'
            f'<h2 id="tradeoff">{NAV["tradeoff"]}</h2>{_tradeoff_section(comp)}'
            f'<h2 id="lorenz">Exposure concentration in the last window: Lorenz curves</h2>'
            f"{_lorenz_section(sweep, comp)}"
            f'<h2 id="final">{NAV["final"]}</h2>{_final_table(comp)}'
        )
        nav = ["tradeoffs"] * bool(tradeoffs) + ["weights"] * bool(weights)
        nav += ["horizons"] * bool(horizons) + ["cold-start"] * bool(cold_start)
        nav += ["retention"] * bool(retention)
        nav += ["series", "tradeoff", "lorenz", "final"]
        if (
            study is not None
        ):  # trials are jobs: the finding is the chosen trial, not a table of all
            question = sweep.question or "Which trial of the search does best, and what drives it?"
            top = (
                f'<p class="question">{_esc(question)}</p>'
                f'<h2 id="trials">{NAV["trials"]}</h2>{trials_section(study)}'
            )
            nav.insert(0, "trials")
    else:
        top = '<p class="status-failed answer">No job finished: nothing to compare.</p>'
        body, nav = "", []
    nav_html = "".join(f'<li><a href="#{k}">{NAV[k]}</a></li>' for k in [*nav, "problems", "arms"])
    page_body = f"""<h1>{_esc(sweep.name)}</h1>
<p class="subtitle">recloop sweep report</p>
{top}
{_meta(sweep)}
<nav><ul>{nav_html}</ul></nav>
{body}
<h2 id="problems">{NAV["problems"]}</h2>
{_problems_section(sweep)}
<h2 id="arms">{NAV["arms"]}</h2>
{_arms_section(sweep)}
<footer>Produced by recloop-report: <code>recloop-report {_esc(sweep_dir)}</code> rebuilds this
page and comparison.md/.csv from the jobs' files (summary.json, metrics.parquet,
item_exposure.parquet, status.json, .hydra/).</footer>
"""
    shared_plotlyjs(sweep_dir)
    title = f"{sweep.name} — recloop sweep report"
    return write_page(
        sweep_dir / REPORT_NAME,
        title,
        CSS + SWEEP_CSS + TRIALS_CSS,
        page_body,
        plotly_src="plotly.min.js",
    )
