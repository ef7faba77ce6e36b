"""Weight sweeps of the scalarized reranker in the sweep report: arms grouped by the weight that
varies, monotonicity, the marginal utility cost per unit gained and where it accelerates,
against numbers computed by hand from the jobs' metrics."""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml

from reports.sweep_folder import FINISHED, Job, Sweep
from reports.weight_sweep import arm_weights, weight_sweep_section, weight_sweeps

GREEDY = {"selector": {"_target_": "policies.selection.Greedy"}}


def _job(root: Path, arm: str, seed: int, rerank: dict, finals: dict[str, float]) -> Job:
    path = root / f"{arm}_seed{seed}"
    path.mkdir(parents=True)
    config = {"policy": {**GREEDY, "rerank": rerank}}
    (path / "config.yaml").write_text(yaml.safe_dump(config))
    metrics = pl.DataFrame({k: [float("nan"), v] for k, v in finals.items()})
    return Job(path, FINISHED, [], arm, seed, {}, metrics, arm=arm)


# revenue weight -> (revenue per request, cumulative utility), per seed (3 seeds)
REVENUE = {0.0: (1.00, 1000.0), 0.5: (1.20, 990.0), 1.0: (1.35, 975.0), 2.0: (1.45, 900.0)}
NOISE = (-0.01, 0.0, 0.01)


@pytest.fixture
def sweep(tmp_path) -> Sweep:
    jobs = []
    for w, (rev, util) in REVENUE.items():
        arm = "greedy" if w == 0 else f"rev{w:g}"
        rerank = (
            {"_target_": "policies.rerank.Identity"}
            if w == 0
            else {"_target_": "x.Scalarized", "weights": {"relevance": 1.0, "revenue": w}}
        )
        for seed, e in enumerate(NOISE):
            finals = {
                "cum_revenue": rev + e,
                "cumulative_utility": util + 10 * e,
                "content_diversity": 0.9,
                "ctr": 0.2,
                "creator_gini_exposure": 0.5,
            }
            jobs.append(_job(tmp_path, arm, seed, rerank, finals))
    # an arm of another reranker is not part of any sweep
    jobs.append(_job(tmp_path, "other", 0, {"_target_": "x.Learned"}, {"ctr": 0.1}))
    arms = list(dict.fromkeys(j.arm for j in jobs))
    return Sweep(tmp_path, jobs, arms, "greedy")


def test_weights_are_read_from_configs(sweep):
    w = arm_weights(sweep)
    assert w["greedy"] == {"relevance": 1.0}
    assert w["rev2"] == {"relevance": 1.0, "revenue": 2.0}
    assert "other" not in w


def test_revenue_sweep_is_monotone_and_costs_match_hand_computation(sweep):
    (ws,) = [s for s in weight_sweeps(sweep) if s.objective == "revenue"]
    assert [s.weight for s in ws.steps] == [0.0, 0.5, 1.0, 2.0]
    assert [s.arm for s in ws.steps] == ["greedy", "rev0.5", "rev1", "rev2"]
    for step, (rev, util) in zip(ws.steps, REVENUE.values(), strict=True):
        np.testing.assert_allclose(step.claimed.mean, rev, rtol=1e-12)
        np.testing.assert_allclose(step.utility.mean, util, rtol=1e-12)
    assert ws.monotone and ws.spearman == pytest.approx(1.0)
    revs, utils = zip(*REVENUE.values(), strict=True)
    expected = [(utils[i] - utils[i + 1]) / (revs[i + 1] - revs[i]) for i in range(3)]
    np.testing.assert_allclose(ws.marginal_costs(), expected, rtol=1e-9)
    # 50, 100, 750 per unit: the step to w=2 is the first to cost more than twice the first
    assert ws.accelerates_at == 2
    page = html.unescape(weight_sweep_section(sweep))
    assert "Raising the revenue weight moves" in page and "at every step" in page
    assert "past w=1 the cost accelerates" in page
    assert "cost accelerates" in page


def test_no_section_without_three_settings(tmp_path):
    jobs = [
        _job(tmp_path, "greedy", 0, {"_target_": "policies.rerank.Identity"}, {"ctr": 0.2}),
        _job(tmp_path, "r1", 0, {"_target_": "x", "weights": {"revenue": 1.0}}, {"ctr": 0.2}),
    ]
    assert weight_sweep_section(Sweep(tmp_path, jobs, ["greedy", "r1"], "greedy")) == ""


def test_acceleration_is_measured_from_the_first_step_that_costs_utility():
    """The revenue sweep of the multi_objective study in shape: the first step gains utility, the
    next two cost ~0.008 and ~0.006 per unit, the fourth ~0.034: it accelerates there."""
    from reports.intervals import Interval
    from reports.weight_sweep import Step, WeightSweep

    points = [(0, 607021, 28182), (0.25, 946126, 30471), (0.5, 1135254, 28981)]
    points += [(1, 1383373, 27384), (2, 1483689, 23930), (4, 1495197, 21699)]
    steps = [
        Step(w, f"a{w}", Interval(rev, rev, rev, 1), Interval(u, u, u, 1)) for w, rev, u in points
    ]
    ws = WeightSweep("revenue", "cum_revenue", 1, {"relevance": 1.0}, steps)
    costs = ws.marginal_costs()
    assert costs[0] < 0  # utility rose on the first step
    expected = [
        (points[i][2] - points[i + 1][2]) / (points[i + 1][1] - points[i][1]) for i in range(5)
    ]
    np.testing.assert_allclose(costs, expected)
    assert ws.monotone
    assert ws.accelerates_at == 3  # 0.0344 > 2 x 0.00788 (the step 0.25 -> 0.5)
