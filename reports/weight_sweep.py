"""Weight sweeps of the scalarized reranker: does each weight move what it claims, monotonically,
and where does its utility cost accelerate?

An arm's weights are read from its config (``policy.rerank.weights``, ``policy/rerank=
scalarized``); an arm without a reranker (``policy.rerank`` = identity: the model's order) is
the all-relevance point, weight 0 on every other objective (the scalarized order by calibrated
relevance is the model's order: the calibration is monotone). A sweep of objective ``o`` is the
largest set of arms whose weights agree on every objective but ``o`` and take at least three
values of ``o``. Each objective claims a metric (:data:`CLAIMS`): revenue → cumulative revenue,
diversity → content diversity, fairness → creator exposure Gini (lower), relevance → CTR.

For each sweep, in weight order: the claimed metric and the final cumulative true utility (mean
across seeds with its interval, :mod:`reports.intervals`), the step to the next weight in both,
and the utility given up per unit of the claimed metric gained on that step (the marginal cost).
"Monotone" means the claimed metric's means move in the claimed direction at every step; the
cost "accelerates" at the first step whose marginal cost is more than twice that of the first step that
cost utility at all (steps that gained utility set no reference).
Reads the jobs' ``metrics.parquet`` and config only.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import plotly.graph_objects as go

from reports.comparison import fmt_interval, job_finals
from reports.intervals import Interval, mean_interval
from reports.metric_catalog import metric_info
from reports.page import FIG_HEIGHT, figure_html
from reports.run_report import read_config
from reports.sweep_folder import FINISHED, Sweep

UTILITY = "cumulative_utility"
# objective -> (the metric it claims to move, +1 = up is the claim, -1 = down)
CLAIMS: dict[str, tuple[str, int]] = {
    "revenue": ("cum_revenue", 1),  # the run's total: a final window's revenue is one day's noise
    "diversity": ("content_diversity", 1),
    "fairness": ("creator_gini_exposure", -1),
    "relevance": ("ctr", 1),
}
ACCELERATION = 2.0  # a step costs "more" when its marginal cost exceeds this × the first step's


def arm_weights(sweep: Sweep) -> dict[str, dict[str, float]]:
    """Each finished arm's scalarization weights (relevance-only for a reranker-free arm);
    arms with another reranker are left out."""
    out: dict[str, dict[str, float]] = {}
    for arm in sweep.finished_arms:
        job = sweep.jobs_of(arm, FINISHED)[0]
        policy = (read_config(job.path) or {}).get("policy") or {}
        rerank = policy.get("rerank") or {}
        weights = rerank.get("weights")
        if isinstance(weights, Mapping):
            try:
                out[arm] = {str(k): float(v) for k, v in weights.items()}
            except (TypeError, ValueError):
                continue
        elif (
            _target(rerank).endswith(".Identity")
            and _target(policy.get("selector")).endswith(".Greedy")
            and (policy.get("intervention") or {}).get("kind", "none") == "none"
        ):
            out[arm] = {"relevance": 1.0}
    return out


def _target(node: Any) -> str:
    return str(node.get("_target_", "")) if isinstance(node, Mapping) else ""


@dataclass(frozen=True)
class Step:
    """One weight setting of a sweep."""

    weight: float
    arm: str
    claimed: Interval
    utility: Interval


@dataclass(frozen=True)
class WeightSweep:
    objective: str
    metric: str
    direction: int
    fixed: dict[str, float]  # the other objectives' weights, shared by every step
    steps: list[Step]

    @property
    def monotone(self) -> bool:
        means = np.array([s.claimed.mean for s in self.steps])
        return bool(np.all(self.direction * np.diff(means) > 0))

    @property
    def spearman(self) -> float:
        w = [s.weight for s in self.steps]
        m = [s.claimed.mean for s in self.steps]
        if len(set(m)) < 2:
            return math.nan
        from scipy import stats  # lazily: start-up time

        return float(stats.spearmanr(w, m).statistic)

    def marginal_costs(self) -> list[float]:
        """Utility given up per unit of the claimed metric gained (in its claimed direction), for
        each step to the next weight; NaN where the claimed metric did not move that way."""
        out = []
        for a, b in zip(self.steps, self.steps[1:], strict=False):
            gain = self.direction * (b.claimed.mean - a.claimed.mean)
            loss = a.utility.mean - b.utility.mean
            out.append(loss / gain if gain > 0 else math.nan)
        return out

    @property
    def accelerates_at(self) -> int | None:
        """Index of the first step (into :meth:`marginal_costs`) costing more than
        ``ACCELERATION`` × the first step that cost utility at all (None: never). Steps before
        that one gained utility while moving the claimed metric, and set no reference."""
        costs = self.marginal_costs()
        positive = [i for i, c in enumerate(costs) if math.isfinite(c) and c > 0]
        if not positive:
            return None
        first = positive[0]
        for i in positive[1:]:
            if costs[i] > ACCELERATION * costs[first]:
                return i
        return None


def _others(weights: Mapping[str, float], objective: str) -> tuple[tuple[str, float], ...]:
    return tuple(sorted((k, v) for k, v in weights.items() if k != objective and v != 0.0))


def weight_sweeps(sweep: Sweep) -> list[WeightSweep]:
    """Every objective's sweep in ``sweep`` (see the module docstring)."""
    weights = arm_weights(sweep)
    if len(weights) < 3:
        return []
    metrics = sorted({m for m, _ in CLAIMS.values()} | {UTILITY})
    finals = job_finals(sweep, metrics)
    out = []
    for objective, (metric, direction) in CLAIMS.items():
        if metric not in finals.columns or finals[metric].null_count() == finals.height:
            continue
        groups: dict[tuple, dict[float, str]] = {}
        for arm, w in weights.items():
            groups.setdefault(_others(w, objective), {}).setdefault(w.get(objective, 0.0), arm)
        fixed, by_weight = max(groups.items(), key=lambda kv: (len(kv[1]), -len(kv[0])))
        if len(by_weight) < 3:
            continue
        steps = []
        for weight in sorted(by_weight):
            arm = by_weight[weight]
            rows = finals.filter(finals["arm"] == arm)
            claimed = mean_interval(rows[metric].to_list(), metric_info(metric).domain)
            utility = mean_interval(rows[UTILITY].to_list(), metric_info(UTILITY).domain)
            steps.append(Step(weight, arm, claimed, utility))
        out.append(WeightSweep(objective, metric, direction, dict(fixed), steps))
    return out


def _iv(iv: Interval, metric: str) -> str:
    return fmt_interval(iv, metric_info(metric).kind)


def _number(x: float) -> str:
    """A plain number for the page (no exponent): 4 significant digits, thousands separated."""
    if abs(x) >= 100:
        return f"{x:,.0f}"
    digits = max(0, 3 - math.floor(math.log10(abs(x)))) if x else 0
    return f"{x:,.{digits}f}"


def _cost_text(cost: float, before: Step, after: Step) -> str:
    """The step's marginal cost, or what happened when it has none."""
    if math.isfinite(cost) and cost > 0:
        return _number(cost)
    if math.isfinite(cost):
        return "none: utility rose"
    return "– (the claimed metric did not move that way)"


def _bars(intervals: list[Interval]) -> dict[str, Any]:
    """Asymmetric error bars to each interval's ends (none where a value has no interval)."""
    return {
        "type": "data",
        "symmetric": False,
        "array": [iv.high - iv.mean if iv.has_interval else 0 for iv in intervals],
        "arrayminus": [iv.mean - iv.low if iv.has_interval else 0 for iv in intervals],
    }


def _figure(ws: WeightSweep) -> go.Figure:
    x = [s.claimed.mean for s in ws.steps]
    y = [s.utility.mean for s in ws.steps]
    fig = go.Figure(
        go.Scatter(
            x=x,
            y=y,
            mode="lines+markers+text",
            text=[f"w={s.weight:g}" for s in ws.steps],
            textposition="top center",
            error_x=_bars([s.claimed for s in ws.steps]),
            error_y=_bars([s.utility for s in ws.steps]),
            customdata=[[s.arm] for s in ws.steps],
            hovertemplate="%{customdata[0]}<br>%{x:.4g}, utility %{y:,.0f}<extra></extra>",
        )
    )
    at = ws.accelerates_at
    if at is not None:
        s = ws.steps[at]
        fig.add_annotation(
            x=s.claimed.mean, y=s.utility.mean, text="cost accelerates", showarrow=True, ay=40
        )
    fig.update_xaxes(title_text=f"{metric_info(ws.metric).title} (final window)")
    fig.update_yaxes(title_text=f"{metric_info(UTILITY).title} (final window)")
    fig.update_layout(
        height=FIG_HEIGHT, margin={"l": 70, "r": 30, "t": 30, "b": 60}, showlegend=False
    )
    return fig


def weight_sweep_section(sweep: Sweep) -> str:
    """The "Weights" section of the sweep report ("" without a weight sweep)."""
    sweeps = weight_sweeps(sweep)
    if not sweeps:
        return ""
    parts = ['<h2 id="weights">Do the weights move what they claim?</h2>']
    for ws in sweeps:
        title = metric_info(ws.metric).title
        way = "up" if ws.direction > 0 else "down"
        costs = ws.marginal_costs()
        at = ws.accelerates_at
        verdict = (
            f"Raising the {ws.objective} weight moves {title} {way} at every step"
            if ws.monotone
            else f"Raising the {ws.objective} weight does not move {title} {way} at every step"
        )
        verdict += f" (Spearman ρ of weight and mean = {ws.spearman:+.2f})."
        if at is not None:
            verdict += (
                f" The utility given up per unit gained more than doubles on the step to "
                f"w={ws.steps[at + 1].weight:g}: past w={ws.steps[at].weight:g} the cost accelerates."
            )
        rows = []
        for i, s in enumerate(ws.steps):
            cost = "–" if i == 0 else _cost_text(costs[i - 1], ws.steps[i - 1], s)
            rows.append(
                f'<tr><td class="num">{s.weight:g}</td><td>{html.escape(s.arm)}</td>'
                f'<td class="num">{html.escape(_iv(s.claimed, ws.metric))}</td>'
                f'<td class="num">{html.escape(_iv(s.utility, UTILITY))}</td>'
                f'<td class="num">{cost}</td></tr>'
            )
        fixed = ", ".join(f"{k} {v:g}" for k, v in sorted(ws.fixed.items())) or "none"
        parts.append(
            f"<h3>{html.escape(ws.objective)} weight</h3>"
            f'<p class="answer">{html.escape(verdict)}</p>'
            '<div class="table-scroll"><table class="headline-table"><thead><tr>'
            f"<th>Weight</th><th>Arm</th><th>{html.escape(title)}</th>"
            f"<th>{html.escape(metric_info(UTILITY).title)}</th>"
            "<th>Utility given up per unit gained (step from the row above)</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table></div>"
            f"{figure_html(_figure(ws), f'fig-weights-{ws.objective}')}"
            f'<p class="caption">Other weights fixed at: {html.escape(fixed)}. Final-window '
            "means across seeds with their intervals; the marginal cost is the drop in mean "
            "cumulative utility divided by the gain in the claimed metric on that step.</p>"
        )
    return "".join(parts)


__all__ = ["CLAIMS", "WeightSweep", "arm_weights", "weight_sweep_section", "weight_sweeps"]
