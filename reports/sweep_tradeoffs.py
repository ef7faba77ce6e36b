"""The sweep report's "Trade-offs" section: the Pareto front of the arms on named objectives.

Each arm's value of an objective is the sweep comparison's (:mod:`reports.comparison`): its
final-window value (a running total's final window is the run's total), mean across seeds with
the interval of :mod:`reports.intervals`. Dominance (:mod:`reports.pareto`) is **by means**; an
arm is also marked *dominated beyond seed noise* by an arm that dominates it by means and is
better on at least one objective by a paired difference on the same seeds that is significant
(``scipy.stats.ttest_rel``, p below :data:`reports.comparison.ALPHA`, as the report's other
paired tests).

Shown when the sweep has at least :data:`MIN_ARMS` arms and some arm has the revenue metric.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import plotly.graph_objects as go
import polars as pl
from plotly.colors import qualitative

from reports.comparison import (
    ALPHA,
    FINAL,
    Comparison,
    Paired,
    fmt_interval,
    p_text,
    paired_difference,
)
from reports.intervals import METHOD, Interval, error_bar
from reports.metric_catalog import metric_info
from reports.page import FIG_HEIGHT, figure_html
from reports.pareto import dominators, front

# the objectives of the front: true utility delivered, revenue, exposure fairness over creators
OBJECTIVES: tuple[str, ...] = ("cumulative_utility", "cum_revenue", "creator_gini_exposure")
CONTEXT: tuple[str, ...] = ("coverage_exposure",)  # shown in the table, not an objective
REVENUE = "cum_revenue"
MIN_ARMS = 3
# the two charts: (div id, x metric, y metric)
CHARTS: tuple[tuple[str, str, str], ...] = (
    ("fig-pareto-revenue", "cum_revenue", "cumulative_utility"),
    ("fig-pareto-creators", "creator_gini_exposure", "cumulative_utility"),
)
DOMINATED_COLOR = "#8a8a8a"
PALETTE: tuple[str, ...] = tuple(qualitative.D3) + tuple(qualitative.Dark24)


@dataclass(frozen=True)
class Tradeoffs:
    """The front of a comparison: per arm its objective means, who dominates it by means and
    who beyond seed noise (each with the paired differences behind it)."""

    arms: list[str]  # arms with every objective finite, in the comparison's order
    left_out: list[str]  # arms lacking an objective
    means: dict[str, tuple[float, ...]]
    by_means: dict[str, list[str]]
    beyond_noise: dict[str, list[str]]
    paired: dict[tuple[str, str], dict[str, Paired]]  # (dominator, arm) -> objective -> diff

    @property
    def front(self) -> list[str]:
        return [a for a in self.arms if not self.by_means[a]]


def _higher(metric: str) -> bool:
    return metric_info(metric).direction != "lower"


def _by_seed(finals: pl.DataFrame, arm: str, metric: str) -> dict[Any, float]:
    """The arm's final value per seed (jobs sharing a seed averaged), as the comparison pairs."""
    rows = finals.filter(
        (pl.col("arm") == arm) & pl.col("seed").is_not_null() & pl.col(metric).is_not_null()
    )
    grouped = rows.group_by("seed").agg(pl.col(metric).mean()).sort("seed")
    return dict(zip(grouped["seed"].to_list(), grouped[metric].to_list(), strict=True))


def tradeoffs(
    comp: Comparison, finals: pl.DataFrame, objectives: Sequence[str] = OBJECTIVES
) -> Tradeoffs:
    """Dominance among ``comp``'s arms on ``objectives`` (each in ``comp`` and ``finals``)."""
    higher = [_higher(m) for m in objectives]
    means = {a: tuple(comp.values[m][a].value.mean for m in objectives) for a in comp.arms}
    arms = [a for a in comp.arms if all(math.isfinite(v) for v in means[a])]
    left_out = [a for a in comp.arms if a not in arms]
    means = {a: means[a] for a in arms}
    by_means = dominators(means, higher)
    paired: dict[tuple[str, str], dict[str, Paired]] = {}
    beyond: dict[str, list[str]] = {a: [] for a in arms}
    for arm in arms:
        for other in by_means[arm]:
            diffs = {
                metric: paired_difference(
                    _by_seed(finals, other, metric),
                    _by_seed(finals, arm, metric),
                    metric_info(metric).domain,
                )
                for metric in objectives
            }
            paired[(other, arm)] = diffs
            if any(
                d.significant and (d.mean > 0 if up else d.mean < 0)
                for d, up in zip(diffs.values(), higher, strict=True)
            ):
                beyond[arm].append(other)
    return Tradeoffs(arms, left_out, means, by_means, beyond, paired)


def shows_tradeoffs(comp: Comparison) -> bool:
    """The section's condition: at least :data:`MIN_ARMS` arms, some with a revenue value."""
    return (
        len(comp.arms) >= MIN_ARMS
        and REVENUE in comp.values
        and comp.shown(REVENUE)
        and all(m in comp.values for m in OBJECTIVES)
    )


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _interval(iv: Interval, metric: str) -> str:
    return fmt_interval(iv, metric_info(metric).kind)


def _hover(metric: str) -> str:
    kind = metric_info(metric).kind
    return ".1%" if kind == "pct" else ",.0f" if kind == "num0" else ".3f"


def _chart(comp: Comparison, result: Tradeoffs, x_metric: str, y_metric: str) -> go.Figure:
    """Each arm a point (mean over seeds) with its intervals on both axes; dominated arms (on
    all the objectives, by means) hollow and grey; the line joins the arms no other arm beats
    on both of this chart's axes (its two-objective front), left to right."""
    fig = go.Figure()
    x_info, y_info = metric_info(x_metric), metric_info(y_metric)
    xy = {a: (comp.values[x_metric][a].value, comp.values[y_metric][a].value) for a in result.arms}
    pair_front = front(
        {a: (x.mean, y.mean) for a, (x, y) in xy.items()}, [_higher(x_metric), _higher(y_metric)]
    )
    line = sorted(pair_front, key=lambda a: (xy[a][0].mean, result.arms.index(a)))
    fig.add_trace(
        go.Scatter(
            x=[xy[a][0].mean for a in line],
            y=[xy[a][1].mean for a in line],
            name=f"front on {x_info.label} and {y_info.label}",
            mode="lines",
            line={"color": "#333", "dash": "dot", "width": 2.5},
            hoverinfo="skip",
            meta={"front": line},
        )
    )
    for i, arm in enumerate(result.arms):
        x, y = xy[arm]
        dominated = bool(result.by_means[arm])
        color = PALETTE[i % len(PALETTE)]
        bars = _rgba(DOMINATED_COLOR, 0.9) if dominated else color
        fig.add_trace(
            go.Scatter(
                x=[x.mean],
                y=[y.mean],
                name=_esc(arm) + (" — dominated" if dominated else ""),
                mode="markers",
                marker={  # hollow and grey when dominated (open symbols take the color)
                    "color": DOMINATED_COLOR if dominated else color,
                    "size": 13 if dominated else 12,
                    "symbol": "circle-open" if dominated else "circle",
                    "line": {"width": 2.5},
                },
                error_x={**error_bar(x), "color": bars, "thickness": 1.5},
                error_y={**error_bar(y), "color": bars, "thickness": 1.5},
                meta={"arm": arm, "dominated": dominated},
                hovertemplate=f"{x_info.label} %{{x:{_hover(x_metric)}}}<br>"
                f"{y_info.label} %{{y:{_hover(y_metric)}}}<extra>{_esc(arm)}</extra>",
            )
        )
    better_x = "right" if _higher(x_metric) else "left"
    fig.update_xaxes(
        title_text=f"{x_info.label} ({FINAL}) — better to the {better_x}",
        tickformat=".0%" if x_info.kind == "pct" else None,
    )
    fig.update_yaxes(title_text=f"{y_info.label} ({FINAL}) — better up")
    fig.update_layout(
        template="plotly_white",
        height=FIG_HEIGHT + 160,
        margin={"l": 60, "r": 30, "t": 20, "b": 50},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0},
    )
    return fig


def _rgba(hex_color: str, alpha: float) -> str:
    h = hex_color.lstrip("#")
    r, g, b = (int(h[k : k + 2], 16) for k in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


def _significant_on(result: Tradeoffs, other: str, arm: str) -> str:
    """``other (creator exposure Gini, p = 0.012; …)``: the objectives on which ``other`` is
    better than ``arm`` by a significant paired difference."""
    parts = [
        f"{metric_info(m).label}, {p_text(d.p)}"
        for m, d in result.paired[(other, arm)].items()
        if d.significant and (d.mean > 0 if _higher(m) else d.mean < 0)
    ]
    return f"{other} ({'; '.join(parts)})"


def _status(result: Tradeoffs, arm: str) -> tuple[str, str]:
    by = result.by_means[arm]
    if not by:
        return "on the front", ""
    noise = [_significant_on(result, other, arm) for other in result.beyond_noise[arm]]
    return (
        "dominated by " + ", ".join(by),
        ("by " + ", ".join(noise)) if noise else "no (within seed noise)",
    )


def _value_cell(iv: Interval, metric: str) -> str:
    """The mean, and its interval on a second line: the text of :func:`_interval` split."""
    text = _interval(iv, metric)
    mean, sep, rest = text.partition(" [")
    second = f'<div class="ci">[{_esc(rest)}</div>' if sep else ""
    return f'<td class="num"><div>{_esc(mean)}</div>{second}</td>'


def _table(comp: Comparison, result: Tradeoffs) -> str:
    columns = [*OBJECTIVES, *(m for m in CONTEXT if m in comp.values and comp.shown(m))]
    head = "".join(
        f"<th>{_esc(metric_info(m).title)} {'↑' if _higher(m) else '↓'}</th>" for m in columns
    )
    rows = []
    for arm in [*result.arms, *result.left_out]:
        cells = [f"<td>{_esc(arm)}</td>", f'<td class="num">{comp.n_seeds[arm]}</td>']
        cells += [_value_cell(comp.values[m][arm].value, m) for m in columns]
        if arm in result.left_out:
            cells.append("<td>not compared: an objective has no value</td>")
        else:
            status, noise = _status(result, arm)
            detail = f'<div class="ci">beyond seed noise: {_esc(noise)}</div>' if noise else ""
            cells.append(f"<td><div>{_esc(status)}</div>{detail}</td>")
        cls = ' class="dominated"' if result.by_means.get(arm) else ""
        rows.append(f"<tr{cls}>{''.join(cells)}</tr>")
    return (
        '<div class="table-scroll"><table class="pareto"><thead><tr><th>Arm</th><th>Seeds</th>'
        f"{head}<th>Pareto front (by means)</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def _sentence(result: Tradeoffs) -> str:
    front_arms = result.front
    labels = [metric_info(m).label for m in OBJECTIVES]
    text = (
        f"On {labels[0]}, {labels[1]} and {labels[2]} together (means over seeds, "
        f"{FINAL}), {len(front_arms)} of {len(result.arms)} arms are on the Pareto front — no "
        f"other arm is at least as good on all three and better on one: "
        f"{', '.join(front_arms)}."
    )
    dominated = [a for a in result.arms if result.by_means[a]]
    noisy = [a for a in dominated if result.beyond_noise[a]]
    if dominated:
        text += (
            f" {len(dominated)} dominated by means; {len(noisy)} of them also beyond seed noise "
            f"(a significant paired difference on at least one objective, p < {ALPHA})."
        )
    return text


def tradeoffs_section(comp: Comparison, finals: pl.DataFrame) -> str:
    """The section's HTML (heading included), or "" when :func:`shows_tradeoffs` is False."""
    if not shows_tradeoffs(comp):
        return ""
    result = tradeoffs(comp, finals)
    if len(result.arms) < 2:
        return ""
    charts = "".join(figure_html(_chart(comp, result, x, y), div_id) for div_id, x, y in CHARTS)
    caption = (
        f'<p class="caption">Each arm is a point at its mean over seeds ({FINAL}; the cumulative '
        "utility and revenue are the run's totals), with error bars in both directions from "
        f"{_esc(METHOD)}. Hollow grey points are arms dominated on all three objectives by "
        "means (the table says by which arm, and whether beyond seed noise); the dotted line joins the arms no other arm "
        "beats on both axes of that chart. Dominance is by means: two arms whose intervals "
        "overlap may swap places on other seeds; beyond seed noise, a dominating arm is also "
        f"better on at least one objective by a significant paired difference (paired by seed, p &lt; {ALPHA}).</p>"
    )
    return (
        '<h2 id="tradeoffs">Trade-offs</h2>'
        f'<p class="tradeoffs-text">{_esc(_sentence(result))}</p>'
        f"{_table(comp, result)}{caption}{charts}"
    )
