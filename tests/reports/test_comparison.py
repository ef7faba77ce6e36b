"""The comparison of arms (``reports.comparison``): its statistics against scipy, the properties
of its intervals, and ``comparison.md`` / ``.csv`` from hand-made sweeps in tmp_path."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from scipy import stats

from reports.comparison import (
    COMPARED,
    collect_summaries,
    comparison_table,
    paired_difference,
    to_markdown,
    write_comparison,
)
from reports.inequality import lorenz
from reports.intervals import difference_domain, mean_interval
from reports.metric_catalog import METRICS
from reports.sweep_report import gini_of_lorenz
from sim.inequality import gini

BOUNDED = [m.domain for m in METRICS if None not in m.domain]
DOMAINS = st.sampled_from(sorted({m.domain for m in METRICS}, key=str))


# ------------------------------------------------------------------ statistics


def test_paired_difference_matches_scipy() -> None:
    rng = np.random.default_rng(5)
    a, b = rng.normal(1, 0.3, 6), rng.normal(0.8, 0.3, 6)
    seeds_a = {s: v for s, v in enumerate(a)} | {10: 5.0}  # seed 10 has no baseline: unpaired
    seeds_b = {s: v for s, v in enumerate(b)} | {11: 5.0, 3: float("nan")}  # seed 3: no value
    pair = paired_difference(seeds_a, seeds_b)
    keep = np.arange(6) != 3
    d = (a - b)[keep]
    low, high = stats.t.interval(0.95, d.size - 1, loc=d.mean(), scale=stats.sem(d))
    assert (pair.n, pair.seeds) == (5, (0, 1, 2, 4, 5))
    assert (pair.mean, pair.low, pair.high) == pytest.approx((d.mean(), low, high))
    assert pair.p == pytest.approx(stats.ttest_rel(a[keep], b[keep]).pvalue)
    assert pair.significant == (pair.p < 0.05)


def test_paired_difference_is_cut_to_the_range_of_a_difference() -> None:
    arm, base = {0: 0.98, 1: 0.70, 2: 0.99}, {0: 0.01, 1: 0.02, 2: 0.0}  # shares
    d = np.array([0.97, 0.68, 0.99])
    low, high = stats.t.interval(0.95, 2, loc=d.mean(), scale=stats.sem(d))
    assert high > 1  # the raw interval claims a difference of shares above 100 points
    pair = paired_difference(arm, base, (0.0, 1.0))
    assert (pair.low, pair.high) == pytest.approx((low, 1.0))


def test_paired_difference_with_one_or_no_common_seed() -> None:
    one = paired_difference({0: 3.0, 1: 2.0}, {0: 1.0, 2: 1.0})
    assert (one.n, one.mean, one.seeds) == (1, 2.0, (0,))  # that seed's difference
    assert math.isnan(one.low) and math.isnan(one.high) and math.isnan(one.p)
    assert not one.significant
    none = paired_difference({0: 3.0}, {1: 1.0})
    assert none.n == 0 and math.isnan(none.mean) and not none.significant
    flat = paired_difference({0: 2.0, 1: 3.0}, {0: 1.0, 1: 2.0})  # same difference: no test
    assert (flat.mean, flat.low, flat.high) == (1.0, 1.0, 1.0) and math.isnan(flat.p)


@given(DOMAINS, st.lists(st.floats(0, 1), min_size=1, max_size=8))
def test_an_interval_lies_in_the_domain_and_contains_the_mean(domain, shares) -> None:
    low, high = domain
    lo = -1e3 if low is None else low
    hi = lo + 2e3 if high is None else high
    values = [lo + s * (hi - lo) for s in shares]
    iv = mean_interval(values, domain)
    assert iv.n == len(values) and iv.mean == pytest.approx(np.mean(values))
    if len(values) < 2:
        assert not iv.has_interval
        return
    assert iv.low <= iv.mean <= iv.high
    assert low is None or iv.low >= low
    assert high is None or iv.high <= high
    if np.std(values) > 0:  # uncut ends are scipy's
        raw = stats.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=stats.sem(values))
        assert iv.low == pytest.approx(raw[0]) or iv.low == low
        assert iv.high == pytest.approx(raw[1]) or iv.high == high


@given(
    st.sampled_from(BOUNDED),
    st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1)), min_size=2, max_size=8),
)
def test_a_paired_interval_lies_in_the_difference_domain(domain, pairs) -> None:
    low, high = domain
    arm = {s: low + a * (high - low) for s, (a, _) in enumerate(pairs)}
    base = {s: low + b * (high - low) for s, (_, b) in enumerate(pairs)}
    pair = paired_difference(arm, base, domain)
    d_low, d_high = difference_domain(domain)
    assert pair.n == len(pairs)
    assert d_low <= pair.low <= pair.mean <= pair.high <= d_high
    assume(np.ptp([arm[s] - base[s] for s in arm]) > 1e-9)
    assert 0 <= pair.p <= 1


# ------------------------------------------------------------------ Gini of a Lorenz curve


@given(st.lists(st.integers(0, 50), min_size=1, max_size=40))
def test_gini_of_the_lorenz_curve_is_the_metrics_gini(counts) -> None:
    x = np.array(counts)
    assume(x.sum() > 0)
    assert gini_of_lorenz(lorenz(x)[1]) == pytest.approx(gini(x), abs=1e-12)


@given(
    st.integers(1, 30).flatmap(
        lambda n: st.lists(
            st.lists(st.integers(0, 20), min_size=n, max_size=n).filter(lambda c: sum(c) > 0),
            min_size=1,
            max_size=5,
        )
    )
)
def test_the_gini_of_the_mean_curve_is_the_mean_gini(seeds) -> None:
    """Why an arm's legend can print the mean of its seeds' Ginis under its mean curve:
    ``G = 1 − (1/n) Σ (L_{k−1} + L_k)`` is linear in the curve (same catalog size n)."""
    curves = np.array([lorenz(np.array(c))[1] for c in seeds])
    expected = np.mean([gini(np.array(c)) for c in seeds])
    assert gini_of_lorenz(curves.mean(axis=0)) == pytest.approx(expected, abs=1e-12)


# ------------------------------------------------------------------ comparison.md / .csv


def _fake_sweep(root: Path, rows: list[tuple[str, int, float, list[float]]]) -> None:
    """One job per row: policy, seed, exposure coverage (every window), cumulative utility per
    window (a running total)."""
    for i, (policy, seed, coverage, utility) in enumerate(rows):
        job = root / f"{i}_{policy}_seed{seed}"
        job.mkdir(parents=True)
        n = len(utility)
        metrics = {
            "window": list(range(n)),
            "t_start": [24.0 * w for w in range(n)],
            "t_end": [24.0 * (w + 1) for w in range(n)],
            "coverage_exposure": [coverage] * n,
            "gini_exposure": [1 - coverage] * n,
            "ctr": [0.01 * (w + 1) for w in range(n)],
            "cumulative_utility": utility,
            "model_ndcg": [float("nan")] * n,  # no model
        }
        pl.DataFrame(metrics).write_parquet(job / "metrics.parquet")
        summary = {"status": "complete", "policy": policy, "seed": seed}
        (job / "summary.json").write_text(json.dumps(summary))
        (job / ".hydra").mkdir()
        (job / ".hydra" / "overrides.yaml").write_text(f"- policy={policy}\n- seed={seed}\n")
    (root / "broken_job").mkdir()  # a job that never started: skipped


def test_comparison_is_final_window_with_intervals_and_paired_gain(tmp_path: Path) -> None:
    _fake_sweep(
        tmp_path,
        [
            ("greedy", 0, 0.4, [10.0, 100.0]),
            ("greedy", 1, 0.5, [20.0, 140.0]),
            ("random", 0, 1.0, [5.0, 50.0]),
            ("random", 1, 0.9, [5.0, 60.0]),
        ],
    )
    jobs = collect_summaries(tmp_path)
    assert jobs.height == 4 and set(COMPARED) <= set(jobs.columns)
    table = comparison_table(jobs, order=["random", "greedy"])
    assert table.arms == ["greedy", "random"]  # the baseline first, then the sweep's order
    greedy, random = (table.values["cumulative_utility"][a] for a in ("greedy", "random"))
    # the final window (the running total), never the mean over windows (60, 80)
    assert greedy.value.mean == 120.0 and random.value.mean == 55.0
    low, high = stats.t.interval(0.95, 1, loc=120.0, scale=stats.sem([100.0, 140.0]))
    assert (greedy.value.low, greedy.value.high) == pytest.approx((max(low, 0.0), high))
    gain = random.diff
    d = np.array([50.0 - 100.0, 60.0 - 140.0])
    dlow, dhigh = stats.t.interval(0.95, 1, loc=d.mean(), scale=stats.sem(d))
    assert (gain.mean, gain.low, gain.high) == pytest.approx((-65.0, dlow, dhigh))
    assert gain.p == pytest.approx(stats.ttest_rel([50.0, 60.0], [100.0, 140.0]).pvalue)
    cov = table.values["coverage_exposure"]["random"].value
    assert cov.high <= 1.0 and cov.mean == pytest.approx(0.95)  # cut to 100%

    text = to_markdown(table, "exploration", "Does exploring pay off?")
    lines = text.splitlines()
    assert lines[:3] == ["# exploration", "", "Does exploring pay off?"]
    header = lines[4]
    assert "cumulative utility (final window)" in header and "CTR (final window)" in header
    assert "model true NDCG" not in header  # no arm has a model
    assert "mean" not in header.lower()
    assert "cumulative utility gain vs greedy (final window, paired by seed)" in header
    assert lines[6].startswith("| greedy | 2 | 120 [0, 374] | 45.0% [0.0%, 100.0%] |")
    assert lines[6].endswith("| baseline |")
    assert lines[7].endswith(f"| -65 [{dlow:+,.0f}, {dhigh:+,.0f}], p = {gain.p:.3f} |")
    assert "cut to the metric's range" in text


def test_single_seed_gain_is_that_seeds_difference(tmp_path: Path) -> None:
    _fake_sweep(
        tmp_path, [("greedy", 0, 0.4, [1.0, 100.0]), ("epsilon_greedy", 0, 0.6, [1.0, 111.5])]
    )
    path = write_comparison(tmp_path, "quickstart")
    assert path == tmp_path / "comparison.md"
    rows = [r for r in path.read_text().splitlines() if r.startswith("| ")][2:]
    assert rows[0].startswith("| greedy | 1 | 100 | 40.0% |") and rows[0].endswith("| baseline |")
    assert rows[1].endswith("| +12 (seed 0) |")  # 11.5 rounded by the catalog's format
    assert "[" not in rows[1]  # one seed: no interval anywhere
    csv = pl.read_csv(tmp_path / "comparison.csv")
    assert csv.columns[:4] == ["job", "arm", "policy", "seed"]
    assert "cumulative_utility_final_window" in csv.columns
    gains = dict(zip(csv["arm"], csv["cumulative_utility_gain"], strict=True))
    assert gains == {"greedy": 0.0, "epsilon_greedy": 11.5}
    assert set(csv["baseline"]) == {"greedy"}


def test_no_finished_job_writes_nothing(tmp_path: Path) -> None:
    (tmp_path / "0" / ".hydra").mkdir(parents=True)
    assert write_comparison(tmp_path, "x") is None
    assert not (tmp_path / "comparison.md").exists()
    assert write_comparison(tmp_path / "nowhere", "x") is None


def test_hostile_override_values_stay_in_one_cell(tmp_path: Path) -> None:
    """An arm label built from an override value with ``|``, a line break, backticks and HTML
    is escaped: every table row keeps its number of cells and nothing becomes markup."""
    _fake_sweep(tmp_path, [("greedy", 0, 0.4, [1.0, 100.0]), ("greedy", 1, 0.5, [1.0, 90.0])])
    hostile = "a|b\nc `x` <script>&"
    for job in sorted(tmp_path.glob("*_greedy_seed*")):
        seed = job.name.rpartition("seed")[2]
        overrides = [
            "policy=greedy",
            f"seed={seed}",
            f"+study_note={hostile if seed == '1' else 'ok'}",
        ]
        (job / ".hydra" / "overrides.yaml").write_text(json.dumps(overrides))
    path = write_comparison(tmp_path, "title | with\nbreak")
    text = path.read_text()
    rows = [r for r in text.splitlines() if r.startswith("|")]
    assert text.splitlines()[0] == "# title | with break"
    assert len(rows) == 4  # header, rule, two arms: the line break did not add a row
    unescaped = [len(r.replace("\\|", "").split("|")) for r in rows]
    assert len(set(unescaped)) == 1, rows  # every row has as many cells as the header
    assert "a\\|b c \\`x\\` &lt;script&gt;&amp;" in text
    assert "<script>" not in text and "\n c" not in text
