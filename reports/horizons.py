"""Short run vs long run: an arm's effect in the first window a model serves against its effect
at the end of the run, both paired with the baseline arm on the same seeds.

A one-shot offline evaluation or a one-window A/B test measures a ranking change on the model
that exists today; the closed loop then trains the next models on what that change showed. The
first window served by a model (window ``early``: every job's first window whose deployed
``model_version`` is ≥ 0; the first model of every arm was trained on the same bootstrap log,
so the ALS model is the same and the difference there is the ranking change alone) and the last
window (after the arm's own logs trained many models) can differ in sign or in size. This module
finds the early window, computes both paired differences (:func:`reports.comparison.
paired_difference`, the same statistics as the headline table) and marks the pairs whose sign
reverses. It reads the jobs' ``metrics.parquet`` only.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from reports.comparison import ALPHA, Paired, p_text, paired_difference
from reports.metric_catalog import metric_info
from reports.sweep_folder import FINISHED, Sweep, metric_values

# What a guardrail or a weight may trade: click-through and delivered utility (short-run costs),
# and what the loop learns from (diversity, concentration), where each metric exists.
HORIZON_METRICS = (
    "ctr",
    "utility",
    "revenue_per_request",
    "content_diversity",
    "creator_gini_exposure",
    "coverage_exposure",
)


@dataclass(frozen=True)
class Horizon:
    """One arm's effect on one metric at the early and at the final window."""

    arm: str
    metric: str
    early: Paired
    final: Paired

    @property
    def reverses(self) -> bool:
        """The two mean differences have opposite signs (both nonzero)."""
        a, b = self.early.mean, self.final.mean
        return math.isfinite(a) and math.isfinite(b) and a * b < 0

    @property
    def reverses_significantly(self) -> bool:
        return self.reverses and self.early.significant and self.final.significant


def early_window(sweep: Sweep) -> int | None:
    """The first window in which every finished job's deployed model is a trained one
    (``model_version`` ≥ 0), or None when some job never deploys one."""
    first = []
    for job in sweep.finished:
        version = metric_values(job, "model_version")
        if version is None:
            return None
        trained = np.flatnonzero(np.nan_to_num(version, nan=-1.0) >= 0)
        if trained.size == 0:
            return None
        first.append(int(trained[0]))
    return max(first) if first else None


def _per_seed(sweep: Sweep, arm: str, metric: str, window: int | None) -> dict[Any, float]:
    """The arm's value of ``metric`` per seed at ``window`` (None: the job's last window); jobs
    sharing a seed are averaged, missing values left out."""
    found: dict[Any, list[float]] = {}
    for job in sweep.jobs_of(arm, FINISHED):
        if job.seed is None:
            continue
        values = metric_values(job, metric)
        if values is None or values.size == 0:
            continue
        w = values.size - 1 if window is None else window
        if w >= values.size or not math.isfinite(values[w]):
            continue
        found.setdefault(job.seed, []).append(float(values[w]))
    return {seed: float(np.mean(v)) for seed, v in found.items()}


def horizon_effects(
    sweep: Sweep, metrics: Sequence[str] = HORIZON_METRICS
) -> tuple[int | None, list[Horizon]]:
    """The early window and, for every arm but the baseline and every metric any job has, the
    paired difference to the baseline there and at the final window."""
    window, base = early_window(sweep), sweep.baseline
    if window is None or base is None:
        return window, []
    out = []
    for metric in metrics:
        if not any(metric_values(j, metric) is not None for j in sweep.finished):
            continue
        domain = metric_info(metric).domain
        early_base = _per_seed(sweep, base, metric, window)
        final_base = _per_seed(sweep, base, metric, None)
        for arm in sweep.finished_arms:
            if arm == base:
                continue
            early = paired_difference(_per_seed(sweep, arm, metric, window), early_base, domain)
            final = paired_difference(_per_seed(sweep, arm, metric, None), final_base, domain)
            if early.n or final.n:
                out.append(Horizon(arm, metric, early, final))
    return window, out


def _signed(metric: str, value: float) -> str:
    """A signed difference in the metric's format: shares in points, counts whole."""
    if not math.isfinite(value):
        return "–"
    kind = metric_info(metric).kind
    if kind == "pct":
        return f"{value * 100:+.2f} pp"
    if kind == "num0":
        return f"{value:+,.0f}"
    if kind == "num1":
        return f"{value:+,.1f}"
    return f"{value:+.4f}"


def _cell(metric: str, pair: Paired) -> str:
    if pair.n == 0:
        return "–"
    text = _signed(metric, pair.mean)
    if pair.n >= 2 and math.isfinite(pair.low):
        text += f" [{_signed(metric, pair.low)}, {_signed(metric, pair.high)}]"
        text += f" · {p_text(pair.p)}{' *' if pair.significant else ''}"
    return html.escape(text)


def horizon_section(sweep: Sweep, metrics: Sequence[str] = HORIZON_METRICS) -> str:
    """The "Short run vs long run" section of the sweep report ("" when there is nothing to
    compare: no baseline, one arm, or a job without a trained model)."""
    window, effects = horizon_effects(sweep, metrics)
    if window is None or not effects:
        return ""
    base = html.escape(str(sweep.baseline))
    significant = [h for h in effects if h.reverses_significantly]
    reversed_ = [h for h in effects if h.reverses]
    if significant:
        listed = "; ".join(
            f"{h.arm}: {metric_info(h.metric).title} {_signed(h.metric, h.early.mean)} in "
            f"window {window}, {_signed(h.metric, h.final.mean)} at the end"
            for h in significant
        )
        answer = (
            f"The effect reverses sign between the first model-served window and the end of the "
            f"run, significantly at both ends (p < {ALPHA}), for {listed}."
        )
    elif reversed_ and max(max(h.early.n, h.final.n) for h in effects) < 2:
        answer = (
            f"{len(reversed_)} arm–metric pairs change sign between window {window} and the end "
            "of the run; with one seed per arm there is no test: these are one seed's signs, not "
            "a finding (run more seeds)."
        )
    elif reversed_:
        answer = (
            f"{len(reversed_)} arm–metric pairs change sign between window {window} and the end "
            f"of the run, none significantly at both ends (p < {ALPHA}): with these seeds the "
            "long-run effect is not shown to differ in sign from the one-window effect."
        )
    else:
        answer = (
            f"No arm's effect changes sign between window {window} and the end of the run; "
            "compare the sizes in the table."
        )
    rows = []
    for h in effects:
        mark = "reverses" if h.reverses else ""
        if h.reverses_significantly:
            mark = "<strong>reverses *</strong>"
        rows.append(
            f"<tr><td>{html.escape(h.arm)}</td><td>{html.escape(metric_info(h.metric).title)}</td>"
            f'<td class="num">{_cell(h.metric, h.early)}</td>'
            f'<td class="num">{_cell(h.metric, h.final)}</td><td>{mark}</td></tr>'
        )
    return (
        '<h2 id="horizons">Short run vs long run</h2>'
        f'<p class="answer">{html.escape(answer)}</p>'
        '<div class="table-scroll"><table class="headline-table"><thead><tr><th>Arm</th>'
        f"<th>Metric</th><th>Δ in window {window} (first model-served)</th><th>Δ final window"
        "</th><th></th></tr></thead><tbody>"
        f"{''.join(rows)}</tbody></table></div>"
        f'<p class="caption">Each arm minus <code>{base}</code> on the same seed, mean with its '
        f"interval and paired t-test, in window {window} — the first window every job serves "
        "from a trained model; every arm's first ALS model is trained on the same bootstrap log, "
        "so this is the ranking change alone, what a one-window test would measure — and in the "
        "final window, after the arm's own logs trained every later model. * p < "
        f"{ALPHA} at both ends.</p>"
    )


__all__ = ["HORIZON_METRICS", "Horizon", "early_window", "horizon_effects", "horizon_section"]
