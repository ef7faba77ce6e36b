"""The short-run vs long-run table: the early window, the paired differences there and at the
end, and the sign-reversal verdict, against an independent computation (scipy's paired t-test)."""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import polars as pl
from scipy import stats

from reports.horizons import early_window, horizon_effects, horizon_section
from reports.sweep_folder import FINISHED, Job, Sweep


def _job(arm: str, seed: int, ctr: list[float], versions: list[int]) -> Job:
    metrics = pl.DataFrame({"window": list(range(len(ctr))), "ctr": ctr, "model_version": versions})
    return Job(Path(f"/x/{arm}_{seed}"), FINISHED, [], arm, seed, {}, metrics, arm=arm)


def _sweep(jobs: list[Job]) -> Sweep:
    arms = list(dict.fromkeys(j.arm for j in jobs))
    return Sweep(Path("/x"), jobs, arms, arms[0])


BASE = {0: [0.10, 0.20, 0.21, 0.22], 1: [0.11, 0.19, 0.20, 0.23], 2: [0.09, 0.21, 0.22, 0.21]}
# the arm costs CTR in window 1 (the first model-served one) and gains it at the end
ARM = {0: [0.10, 0.15, 0.22, 0.27], 1: [0.11, 0.13, 0.21, 0.29], 2: [0.09, 0.16, 0.23, 0.26]}


def _example(versions=(-1, 0, 1, 2)) -> Sweep:
    jobs = [_job("base", s, BASE[s], list(versions)) for s in BASE]
    jobs += [_job("floor", s, ARM[s], list(versions)) for s in ARM]
    return _sweep(jobs)


def test_early_window_is_the_first_window_every_job_serves_a_trained_model():
    assert early_window(_example()) == 1
    sweep = _example()
    sweep.jobs[0].metrics = sweep.jobs[0].metrics.with_columns(
        pl.Series("model_version", [-1, -1, 0, 1])
    )
    assert early_window(sweep) == 2  # the slowest job decides
    never = _example((-1, -1, -1, -1))
    assert early_window(never) is None
    assert horizon_section(never) == ""


def test_paired_differences_and_reversal_match_scipy():
    window, effects = horizon_effects(_example(), metrics=("ctr",))
    assert window == 1
    (h,) = effects
    for w, pair in ((1, h.early), (3, h.final)):
        a = np.array([ARM[s][w] for s in (0, 1, 2)])
        b = np.array([BASE[s][w] for s in (0, 1, 2)])
        d = a - b
        assert pair.n == 3
        np.testing.assert_allclose(pair.mean, d.mean(), rtol=1e-12)
        np.testing.assert_allclose(pair.p, stats.ttest_rel(a, b).pvalue, rtol=1e-9)
        half = stats.t.ppf(0.975, 2) * d.std(ddof=1) / np.sqrt(3)
        np.testing.assert_allclose([pair.low, pair.high], [d.mean() - half, d.mean() + half])
    assert h.early.mean < 0 < h.final.mean and h.reverses
    assert h.reverses_significantly == (h.early.p < 0.05 and h.final.p < 0.05)
    page = horizon_section(_example(), metrics=("ctr",))
    assert "Short run vs long run" in page and "window 1" in page
    assert ("reverses *" in page) == h.reverses_significantly


def test_no_reversal_is_said_when_signs_agree():
    same = {s: [v + 0.01 for v in BASE[s]] for s in BASE}
    jobs = [_job("base", s, BASE[s], [-1, 0, 1, 2]) for s in BASE]
    jobs += [_job("better", s, same[s], [-1, 0, 1, 2]) for s in same]
    _, effects = horizon_effects(_sweep(jobs), metrics=("ctr",))
    assert not effects[0].reverses
    page = html.unescape(horizon_section(_sweep(jobs), metrics=("ctr",)))
    assert "No arm's effect changes sign" in page


def test_one_seed_says_there_is_no_test():
    jobs = [_job("base", 0, BASE[0], [-1, 0, 1, 2]), _job("floor", 0, ARM[0], [-1, 0, 1, 2])]
    page = html.unescape(horizon_section(_sweep(jobs), metrics=("ctr",)))
    assert "with one seed per arm there is no test" in page
