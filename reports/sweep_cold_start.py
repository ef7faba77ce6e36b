"""The sweep report's "Cold start" section: each arm's effect against the baseline arm (the
study's ``study_baseline``, e.g. the arm without any cold-start layer), paired by seed, on

* new items' mean time to first click within 7 days (``summary.json``
  ``cold_start.first_click_rmst_7d_h``: the restricted mean of the Kaplan–Meier curve, an item
  not clicked within 7 days counting 168 h; unlike the median it exists when most new items are
  never clicked, as under greedy) and the share clicked within 7 days
  (``cold_start.first_click_within_7d``),
* new users' early utility (mean over windows of ``new_user_utility``, ``metrics.parquet``),
* established users' utility (mean over windows of ``established_utility``: the cost of the
  cold-start layers to everyone else),
* the median hand-off |jump| in rank percentile (``cold_start.handoff_median_abs_jump_rank``).

Each effect is the mean difference with its 95% t-interval over seeds
(:func:`reports.comparison.paired_difference`, the statistics of the headline table). The
section is shown when some finished job has a ``cold_start`` block (its world had arrivals).
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from reports.comparison import (
    Paired,
    difference_text,
    fmt_interval,
    p_text,
    paired_difference,
)
from reports.intervals import Interval, error_bar, mean_interval
from reports.metric_catalog import format_metric
from reports.page import COLORS, FIG_HEIGHT, figure_html
from reports.sweep_folder import FINISHED, Job, Sweep, metric_values


@dataclass(frozen=True)
class Outcome:
    """One compared quantity: where a job's value comes from and how it is printed."""

    key: str
    label: str
    source: str  # "summary": a cold_start key; "windows": mean over windows of a metric column
    kind: str  # page format of a difference
    short: str  # the forest plot's panel title
    domain: tuple[float | None, float | None] = (0.0, 1.0)  # where a level lies (its interval)


OUTCOMES: tuple[Outcome, ...] = (
    Outcome("first_click_rmst_7d_h", "new items: mean hours to first click (within 7 d)",
            "summary", "num1", "new items: h to 1st click", (0.0, 168.0)),
    Outcome("first_click_within_7d", "new items: share clicked within 7 days", "summary",
            "signed", "new items: clicked ≤ 7 d"),
    Outcome("new_user_utility", "new users: utility in their first requests", "windows",
            "signed", "new users' utility"),
    Outcome("established_utility", "established users: utility", "windows", "signed",
            "established users' utility"),
    Outcome("handoff_median_abs_jump_rank", "median hand-off |jump| (rank percentile)",
            "summary", "signed", "hand-off |jump|"),
)  # fmt: skip


def job_value(job: Job, outcome: Outcome) -> float:
    """The job's value of ``outcome`` (NaN when it has none)."""
    if outcome.source == "summary":
        block = (job.summary or {}).get("cold_start") or {}
        value = block.get(outcome.key)
        return math.nan if value is None else float(value)
    values = metric_values(job, outcome.key)
    if values is None or not np.isfinite(values).any():
        return math.nan
    return float(np.nanmean(values))


def _per_seed(sweep: Sweep, arm: str, outcome: Outcome) -> dict[Any, float]:
    """The arm's value per seed (jobs sharing a seed averaged, missing values left out)."""
    found: dict[Any, list[float]] = {}
    for job in sweep.jobs_of(arm, FINISHED):
        value = job_value(job, outcome)
        if job.seed is not None and math.isfinite(value):
            found.setdefault(job.seed, []).append(value)
    return {seed: float(np.mean(v)) for seed, v in found.items()}


def cold_start_effects(sweep: Sweep) -> dict[str, dict[str, Paired]]:
    """``{arm: {outcome key: arm − baseline paired by seed}}`` for every finished arm but the
    baseline; empty without a baseline or without a job that had arrivals."""
    base = sweep.baseline
    if base is None or not has_cold_start(sweep):
        return {}
    reference = {o.key: _per_seed(sweep, base, o) for o in OUTCOMES}
    return {
        arm: {
            o.key: paired_difference(_per_seed(sweep, arm, o), reference[o.key]) for o in OUTCOMES
        }
        for arm in sweep.finished_arms
        if arm != base
    }


def arm_values(sweep: Sweep) -> dict[str, dict[str, Interval]]:
    """``{arm: {outcome key: mean over seeds with its t-interval}}`` for every finished arm, the
    baseline first: the levels behind the differences (the hand-off jump exists only for arms
    whose new items get clicked, so its difference to a baseline that shows none is empty)."""
    if not has_cold_start(sweep):
        return {}
    arms = sorted(sweep.finished_arms, key=lambda arm: arm != sweep.baseline)
    return {
        arm: {o.key: mean_interval(_per_seed(sweep, arm, o).values(), o.domain) for o in OUTCOMES}
        for arm in arms
    }


def has_cold_start(sweep: Sweep) -> bool:
    return any(isinstance((j.summary or {}).get("cold_start"), dict) for j in sweep.finished)


def _cell(pair: Paired, kind: str) -> str:
    if pair.n == 0:
        return "–"
    if pair.n >= 2 and pair.mean == 0 and pair.low == 0 and pair.high == 0:
        return "0 (identical on every seed)"  # the layer does not touch this outcome
    text = difference_text(pair, lambda v: _signed(v, kind))
    if pair.n >= 2:
        text += f" · {p_text(pair.p)}{' *' if pair.significant else ''}"
    return text


def _signed(value: float, kind: str) -> str:
    text = format_metric(value, kind)
    return text if text.startswith(("+", "-", "–")) else f"+{text}"


def _figure(effects: dict[str, dict[str, Paired]]) -> go.Figure:
    """A forest plot: one panel per outcome, one point per arm with its interval, 0 marked."""
    arms = list(effects)
    fig = make_subplots(
        rows=1,
        cols=len(OUTCOMES),
        shared_yaxes=True,
        subplot_titles=[o.short for o in OUTCOMES],
        horizontal_spacing=0.04,
    )
    for col, outcome in enumerate(OUTCOMES, start=1):
        for i, arm in enumerate(arms):
            pair = effects[arm][outcome.key]
            if pair.n == 0 or not math.isfinite(pair.mean):
                continue
            iv = Interval(pair.mean, pair.low, pair.high, pair.n)
            fig.add_trace(
                go.Scatter(
                    x=[pair.mean],
                    y=[arm],
                    mode="markers",
                    marker={"color": COLORS[i % len(COLORS)], "size": 9},
                    error_x=error_bar(iv),
                    name=arm,
                    legendgroup=arm,
                    showlegend=col == 1,
                ),
                row=1,
                col=col,
            )
        fig.add_vline(x=0.0, line={"dash": "dot", "color": "#888"}, row=1, col=col)
    fig.update_layout(
        height=max(FIG_HEIGHT, 60 * len(arms) + 150),
        margin={"l": 140, "r": 20, "t": 60, "b": 40},
        template="plotly_white",
        showlegend=False,
    )
    fig.update_annotations(font_size=11)
    return fig


def cold_start_sweep_section(sweep: Sweep) -> str:
    """The section ("" when the sweep's runs had no arrivals or there is no other arm)."""
    effects = cold_start_effects(sweep)
    if not effects:
        return ""
    base = html.escape(str(sweep.baseline))
    head = "".join(f"<th>{html.escape(o.label)} (Δ)</th>" for o in OUTCOMES)
    rows = []
    for arm, pairs in effects.items():
        cells = "".join(
            f'<td class="num">{html.escape(_cell(pairs[o.key], o.kind))}</td>' for o in OUTCOMES
        )
        rows.append(f"<tr><td>{html.escape(arm)}</td>{cells}</tr>")
    levels = []
    for arm, values in arm_values(sweep).items():
        cells = "".join(
            f'<td class="num">{html.escape(fmt_interval(values[o.key], _level_kind(o.kind)))}</td>'
            for o in OUTCOMES
        )
        levels.append(f"<tr><td>{html.escape(arm)}</td>{cells}</tr>")
    level_head = "".join(f"<th>{html.escape(o.label)}</th>" for o in OUTCOMES)
    return (
        '<h2 id="cold-start">Cold start</h2>'
        '<div class="table-scroll"><table class="headline-table cold-start-effects"><thead><tr>'
        f"<th>Arm</th>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
        f'<p class="caption">Each arm minus <code>{base}</code> on the same seed: the mean '
        "difference with its 95% t-interval and paired t-test (* p &lt; 0.05), or one seed's "
        "difference. The time to first click is the restricted mean within 7 days of the "
        "Kaplan–Meier curve of new items (an item not clicked within 7 days counts 168 h) and "
        "the share is 1 − S(7 days), both from each job's summary.json (cold_start); the "
        "hand-off jump is the median over handed-off items of the change in rank percentile at "
        "an item's first training click; the utilities are means over windows of "
        "metrics.parquet's new_user_utility and established_utility. Lower is better for the "
        "time to first click and the hand-off jump, higher for the rest.</p>"
        f"{figure_html(_figure(effects), 'fig-cold-start-effects')}"
        '<div class="table-scroll"><table class="headline-table cold-start-levels"><thead><tr>'
        f"<th>Arm</th>{level_head}</tr></thead><tbody>{''.join(levels)}</tbody></table></div>"
        '<p class="caption">Each arm\'s own values: the mean over its seeds with the 95% '
        "t-interval (a seed without the value — no handed-off item — is left out; – when no "
        "seed has it).</p>"
    )


def _level_kind(kind: str) -> str:
    """The page format of a level for a difference format (levels are not signed)."""
    return "num" if kind == "signed" else kind


__all__ = ["OUTCOMES", "arm_values", "cold_start_effects", "cold_start_sweep_section", "job_value"]
