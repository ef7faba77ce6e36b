"""The sweep report is built from a sweep folder's files alone: hand-made sweeps in tmp_path.

The main sweep has 3 arms x 3 seeds (4 windows, a 20-item catalog), one failed job (status.json)
and one interrupted job (no summary.json). Expected numbers are recomputed here with plain
numpy/scipy from the arrays the sweep was written from.
"""

from __future__ import annotations

import html
import json
import re
import shlex
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import yaml
from plotly.offline import get_plotlyjs
from scipy import stats

from reports.cli import main
from reports.run_report import ReportError
from reports.sweep_report import (
    FAILED,
    FINISHED,
    INCOMPLETE,
    SweepReportError,
    arm_series,
    build_sweep_report,
    is_sweep_dir,
    load_sweep,
    mean_ci,
    paired_difference,
    pooled_last_window_exposure,
    shell_command,
)

N_ITEMS = 20
N_WINDOWS = 4
HORIZON = 24.0 * N_WINDOWS
SEEDS = (0, 1, 2)
GREEDY, SOFT01, SOFT10 = (
    "greedy",
    "softmax [policy.temperature=0.1]",
    "softmax [policy.temperature=1.0]",
)
ARMS: dict[str, tuple[str, list[str]]] = {  # label -> (policy, the overrides that tell it apart)
    GREEDY: ("greedy", []),
    SOFT01: ("softmax", ["policy.temperature=0.1"]),
    SOFT10: ("softmax", ["policy.temperature=1.0"]),
}
SHARED = ["+study=exploration", "sim.days=4"]  # on every job: not part of any label
FAIL_ERROR = "RuntimeError: fault injected at hour 30 <debug.fail_at_hour>"

# final-window values by arm, seed 0, 1, 2 (other metrics are random, see _finals)
FINAL_FIXED: dict[str, dict[str, list[float]]] = {
    GREEDY: {
        "utility": [0.30, 0.35, 0.32],
        "coverage_exposure": [0.20, 0.25, 0.15],
        "cumulative_utility": [40.0, 45.0, 42.0],
    },
    SOFT01: {  # clearly better utility and coverage on every seed: significant
        "utility": [0.40, 0.46, 0.41],
        "coverage_exposure": [0.50, 0.56, 0.44],
        "cumulative_utility": [55.0, 61.0, 50.0],
    },
    SOFT10: {  # no consistent difference: not significant
        "utility": [0.33, 0.31, 0.32],
        "coverage_exposure": [0.22, 0.21, 0.19],
        "cumulative_utility": [41.0, 44.0, 43.0],
    },
}
FLOAT_COLUMNS = (
    "coverage_exposure",
    "coverage_clicks",
    "gini_exposure",
    "gini_clicks",
    "popularity_percentile",
    "popularity_drift",
    "homogenization",
    "utility",
    "utility_clicked",
    "cumulative_utility",
    "ctr",
    "long_tail_share",
    "top1pct_exposure_share",
    "intra_list_diversity",
    "exploration_share",
    "min_propensity",
    "cum_coverage_exposure",
    "cum_gini_exposure",
)
TS_FIGS = (
    "coverage_exposure",
    "gini_exposure",
    "popularity_drift",
    "utility",
    "ctr",
    "homogenization",
    "cumulative_utility",
    "exploration_share",
)
NO_EXPLORATION_COLUMN = (SOFT10, 2)  # an older run: metrics.parquet lacks exploration_share


def _last_window_counts(arm: str, seed: int) -> np.ndarray:
    """Impressions per item in the job's last window (before the one at the horizon)."""
    counts = np.zeros(N_ITEMS, dtype=np.int64)
    if arm == GREEDY:  # seeds 0, 1 pile onto item 0, seed 2 onto item 1
        counts[0 if seed < 2 else 1] = 10
    else:
        counts[:] = np.random.default_rng([seed, list(ARMS).index(arm)]).poisson(4, N_ITEMS)
    return counts


def _finals(arm: str, seed: int) -> dict[str, float]:
    rng = np.random.default_rng([seed, list(ARMS).index(arm), 99])
    finals = {c: float(rng.uniform(0.1, 0.9)) for c in FLOAT_COLUMNS}
    finals.update({m: v[seed] for m, v in FINAL_FIXED[arm].items()})
    return finals


def _metric_rows(arm: str, seed: int) -> dict[str, list[float]]:
    """Per-window values ending at the job's final values; homogenization is NaN in window 0."""
    rows = {}
    for col, final in _finals(arm, seed).items():
        if col == "cumulative_utility":
            rows[col] = [final * (w + 1) / N_WINDOWS for w in range(N_WINDOWS)]
        else:
            rows[col] = [final - 0.02 * (N_WINDOWS - 1 - w) for w in range(N_WINDOWS)]
    rows["homogenization"][0] = float("nan")
    return rows


def _write_hydra(job: Path, overrides: list[str], policy: str, seed: int) -> None:
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    config = {"seed": seed, "policy": {"name": policy}, "sim": {"days": 4}}
    (job / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))


def _write_finished(
    job: Path,
    policy: str,
    seed: int,
    overrides: list[str],
    last_counts: np.ndarray,
    metrics: dict[str, list[float]],
    config_text: str,
) -> None:
    _write_hydra(job, overrides, policy, seed)
    rng = np.random.default_rng(seed)
    t, items = [], []
    for w in range(N_WINDOWS - 1):  # earlier windows: random items
        n = 60
        t.append(24.0 * w + np.sort(rng.uniform(0, 24, n)) * 0.999)
        items.append(rng.integers(0, N_ITEMS, n))
    last = np.repeat(np.arange(N_ITEMS), last_counts)
    t.append(24.0 * (N_WINDOWS - 1) + np.sort(rng.uniform(0, 24, last.size)) * 0.999)
    items.append(last)
    t.append(np.array([HORIZON]))  # at the horizon: belongs to the last window
    items.append(np.array([0]))
    imp = pl.DataFrame({"t": np.concatenate(t), "item_id": np.concatenate(items).astype(np.int32)})
    imp = imp.with_columns(model_version=(pl.col("t") // 24).cast(pl.Int32) - 1)
    part = job / "logs" / "impressions" / "round=0000" / "part.parquet"
    part.parent.mkdir(parents=True)
    imp.write_parquet(part)
    (  # written by the run beside the log: impressions per (window, item), last window closed
        imp.with_columns(window=(pl.col("t") // 24).clip(0, N_WINDOWS - 1).cast(pl.Int32))
        .group_by("window", "item_id")
        .agg(impressions=pl.len().cast(pl.Int64), clicks=pl.lit(0, pl.Int64))
        .sort("window", "item_id")
        .write_parquet(job / "item_exposure.parquet")
    )
    bounds = {
        "window": list(range(N_WINDOWS)),
        "t_start": [24.0 * w for w in range(N_WINDOWS)],
        "t_end": [24.0 * (w + 1) for w in range(N_WINDOWS)],
    }
    pl.DataFrame(bounds).write_parquet(job / "logs" / "snapshots.parquet")
    counts = {"n_requests": [30] * N_WINDOWS, "n_impressions": [60] * N_WINDOWS}
    counts |= {"n_clicks": [6] * N_WINDOWS, "model_version": [-1, 0, 1, 2]}
    pl.DataFrame(bounds | metrics | counts).write_parquet(job / "metrics.parquet")
    final = {k: (None if np.isnan(v[-1]) else v[-1]) for k, v in metrics.items()}
    summary = {
        "status": "complete",
        "policy": policy,
        "seed": seed,
        "catalog_size": N_ITEMS,
        "n_windows": N_WINDOWS,
        "n_requests": 120,
        "n_impressions": int(imp.height),
        "n_clicks": 24,
        "final": final,
        "mean": {k: float(np.nanmean(v)) for k, v in metrics.items()},
    }
    (job / "summary.json").write_text(json.dumps(summary))
    (job / "config.yaml").write_text(config_text)


def _overrides(policy: str, extra: list[str], seed: int, num: int) -> list[str]:
    return [
        SHARED[0],
        f"policy={policy}",
        *extra,
        SHARED[1],
        f"seed={seed}",
        f"hydra.job.num={num}",
    ]


def _write_sweep(root: Path) -> dict[str, Any]:
    """The main sweep; returns what the tests check against."""
    multirun = {"hydra": {"overrides": {"task": [*SHARED, "policy=greedy,softmax"]}}}
    (root / "multirun.yaml").write_text(yaml.safe_dump(multirun))
    num = 0
    for arm, (policy, extra) in ARMS.items():
        for seed in SEEDS:
            job = root / f"{num}_{policy}_seed{seed}"
            metrics = _metric_rows(arm, seed)
            if (arm, seed) == NO_EXPLORATION_COLUMN:
                del metrics["exploration_share"]
            config = f"seed: {seed}\npolicy:\n  name: {policy}\n  arm: {arm}\n"
            overrides = _overrides(policy, extra, seed, num)
            _write_finished(
                job, policy, seed, overrides, _last_window_counts(arm, seed), metrics, config
            )
            num += 1
    (root / "0_greedy_seed0" / "report.html").write_text("<html>run report</html>")
    # failed: the 0.1 softmax arm on a fourth seed
    failed = root / f"{num}_softmax_seed3"
    _write_hydra(failed, _overrides("softmax", ARMS[SOFT01][1], 3, num), "softmax", 3)
    status = {"status": "failed", "error": FAIL_ERROR, "traceback": "Traceback ...\nline 2"}
    (failed / "status.json").write_text(json.dumps(status))
    # interrupted: partial logs, no summary.json, no status.json
    incomplete = root / f"{num + 1}_greedy_seed4"
    _write_hydra(incomplete, _overrides("greedy", [], 4, num + 1), "greedy", 4)
    (incomplete / "logs" / "impressions").mkdir(parents=True)
    return {"failed": failed.name, "incomplete": incomplete.name}


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sweep")
    _write_sweep(root)
    return root


@pytest.fixture(scope="module")
def page(sweep_dir: Path) -> str:
    return build_sweep_report(sweep_dir).read_text(encoding="utf-8")


def _final_rows(page: str) -> dict[tuple[str, str], list[tuple[str, str]]]:
    """(metric label, arm) -> [(td class, text), ...] of the final-window table."""
    table = page.split('<table class="final">')[1].split("</table>")[0]
    rows: dict[tuple[str, str], list[tuple[str, str]]] = {}
    group = ""
    for attrs, body in re.findall(r"<tr([^>]*)>(.*?)</tr>", table, re.S):
        if 'class="group"' in attrs:
            group = html.unescape(re.sub(r"<[^>]+>", "", body)).split(" — ")[0].strip()
            continue
        cells = re.findall(r'<td(?: class="([^"]*)")?[^>]*>(.*?)</td>', body, re.S)
        if cells:
            arm = html.unescape(cells[0][1])
            rows[(group, arm)] = [(c, html.unescape(text)) for c, text in cells[1:]]
    return rows


def _numbers(text: str) -> list[float]:
    return [float(s.replace(",", "")) for s in re.findall(r"[-+]?\d[\d,]*\.\d+", text)]


def _expected_stats(metric: str, arm: str) -> dict[str, float]:
    """Mean/CI across seeds and the paired difference to greedy, computed from the inputs."""
    a = np.array([_finals(arm, s)[metric] for s in SEEDS])
    b = np.array([_finals(GREEDY, s)[metric] for s in SEEDS])
    lo, hi = stats.t.interval(0.95, a.size - 1, loc=a.mean(), scale=stats.sem(a))
    d = a - b
    dlo, dhi = stats.t.interval(0.95, d.size - 1, loc=d.mean(), scale=stats.sem(d))
    return {
        "mean": a.mean(),
        "half": (hi - lo) / 2,
        "diff": d.mean(),
        "dlo": dlo,
        "dhi": dhi,
        "p": stats.ttest_rel(a, b).pvalue,
    }


# ------------------------------------------------------------------ arms and jobs


def test_arms_labelled_by_distinguishing_overrides(sweep_dir: Path) -> None:
    sweep = load_sweep(sweep_dir)
    assert sweep.arms == [GREEDY, SOFT01, SOFT10]  # baseline greedy first
    assert sweep.baseline == GREEDY
    assert sweep.shared_overrides == SHARED
    by_name = {j.name: j for j in sweep.jobs}
    assert [j.name for j in sweep.jobs][:3] == [
        "0_greedy_seed0",
        "1_greedy_seed1",
        "2_greedy_seed2",
    ]
    assert [j.name for j in sweep.jobs][-2:] == ["9_softmax_seed3", "10_greedy_seed4"]
    for arm in ARMS:
        assert [j.seed for j in sweep.jobs_of(arm, FINISHED)] == list(SEEDS)
    failed, incomplete = by_name["9_softmax_seed3"], by_name["10_greedy_seed4"]
    assert (failed.status, failed.arm, failed.seed, failed.error) == (FAILED, SOFT01, 3, FAIL_ERROR)
    assert (incomplete.status, incomplete.arm, incomplete.seed) == (INCOMPLETE, GREEDY, 4)


def test_labels_agree_with_study_comparison(sweep_dir: Path) -> None:
    from experiments.study import collect_summaries  # the rule the report reimplements

    study = collect_summaries(sweep_dir)
    ours = {(j.name, j.arm) for j in load_sweep(sweep_dir).finished}
    assert set(zip(study["job"].to_list(), study["policy"].to_list(), strict=True)) == ours


def test_baseline_choice(sweep_dir: Path) -> None:
    assert load_sweep(sweep_dir, baseline=SOFT10).arms == [SOFT10, GREEDY, SOFT01]
    with pytest.raises(SweepReportError, match="'softmax' not among"):
        load_sweep(sweep_dir, baseline="softmax")  # two softmax arms: ambiguous
    with pytest.raises(SweepReportError, match="nope"):
        load_sweep(sweep_dir, baseline="nope")


def test_no_greedy_baseline_is_first_arm(tmp_path: Path) -> None:
    for i, (temp, seed) in enumerate([("0.5", 0), ("0.1", 0), ("0.5", 1)]):
        job = tmp_path / f"{i}"
        extra = [f"policy.temperature={temp}"]
        metrics = _metric_rows(SOFT01, seed)
        counts = _last_window_counts(SOFT01, seed)
        _write_finished(
            job, "softmax", seed, _overrides("softmax", extra, seed, i), counts, metrics, "x: 1\n"
        )
    sweep = load_sweep(tmp_path)
    assert sweep.arms == ["softmax [policy.temperature=0.5]", "softmax [policy.temperature=0.1]"]
    assert sweep.baseline == "softmax [policy.temperature=0.5]"


# ------------------------------------------------------------------ statistics


def test_mean_ci_and_paired_difference_match_scipy() -> None:
    rng = np.random.default_rng(5)
    a, b = rng.normal(1, 0.3, 6), rng.normal(0.8, 0.3, 6)
    ci = mean_ci([*a, None, float("nan")])  # missing values are dropped
    lo, hi = stats.t.interval(0.95, 5, loc=a.mean(), scale=stats.sem(a))
    assert (ci.n, ci.mean, ci.half) == (6, pytest.approx(a.mean()), pytest.approx((hi - lo) / 2))
    one = mean_ci([0.4])
    assert one.n == 1 and one.mean == 0.4 and np.isnan(one.half)

    seeds_a = {s: v for s, v in enumerate(a)} | {10: 5.0}  # seed 10 has no baseline: unpaired
    seeds_b = {s: v for s, v in enumerate(b)} | {11: 5.0}
    pair = paired_difference(seeds_a, seeds_b)
    d = a - b
    dlo, dhi = stats.t.interval(0.95, 5, loc=d.mean(), scale=stats.sem(d))
    assert pair.n == 6
    assert (pair.mean, pair.low, pair.high) == pytest.approx((d.mean(), dlo, dhi))
    assert pair.p == pytest.approx(stats.ttest_rel(a, b).pvalue)
    few = paired_difference({0: 1.0, 1: 2.0}, {0: 0.5, 2: 1.0})
    assert few.n == 1 and np.isnan(few.mean) and np.isnan(few.p) and not few.significant


def test_final_table_numbers(page: str) -> None:
    rows = _final_rows(page)
    for label, metric, unit, scale in (
        ("Utility", "utility", 1e-3, 1.0),
        ("Exposure coverage", "coverage_exposure", 1e-1, 100.0),  # percent / pp
        ("Cumulative utility", "cumulative_utility", 1e-1, 1.0),
        ("CTR", "ctr", 1e-1, 100.0),
    ):
        tol = unit / 2 + 1e-9
        for arm in (SOFT01, SOFT10):
            exp = _expected_stats(metric, arm)
            (_, n), (_, mean_text), (_, diff), (_, ci), (_, p), (_, pairs) = rows[(label, arm)]
            assert n == "3" and pairs == "3"
            assert _numbers(mean_text) == pytest.approx(
                [exp["mean"] * scale, exp["half"] * scale], abs=tol
            )
            assert _numbers(diff) == pytest.approx([exp["diff"] * scale], abs=tol)
            assert _numbers(ci) == pytest.approx([exp["dlo"] * scale, exp["dhi"] * scale], abs=tol)
            if exp["p"] >= 0.001:
                assert _numbers(p) == pytest.approx([exp["p"]], abs=5e-4 + 1e-9)
            else:
                assert p.startswith("< 0.001")
        assert rows[(label, GREEDY)][2] == ("", "baseline")


def test_significant_cells_marked(page: str) -> None:
    rows = _final_rows(page)
    util_good, util_none = rows[("Utility", SOFT01)], rows[("Utility", SOFT10)]
    assert _expected_stats("utility", SOFT01)["p"] < 0.05  # the data are built that way
    assert _expected_stats("utility", SOFT10)["p"] > 0.05
    assert all("sig" in cls for cls, _ in util_good[2:5]) and util_good[4][1].endswith("*")
    assert not any("sig" in cls for cls, _ in util_none) and "*" not in util_none[4][1]


def test_metric_missing_in_one_run_is_skipped(sweep_dir: Path, page: str) -> None:
    sweep = load_sweep(sweep_dir)
    arm, seed = NO_EXPLORATION_COLUMN
    assert _final_rows(page)[("Exploration share", arm)][0] == ("num", "2")
    series = arm_series(sweep.jobs_of(arm, FINISHED), "exploration_share")
    assert series is not None and series["n"].to_list() == [2] * N_WINDOWS
    others = [s for s in SEEDS if s != seed]
    expected = np.mean([_metric_rows(arm, s)["exploration_share"] for s in others], axis=0)
    np.testing.assert_allclose(series["mean"].to_numpy(), expected)


def test_time_series_mean_and_band(sweep_dir: Path) -> None:
    sweep = load_sweep(sweep_dir)
    series = arm_series(sweep.jobs_of(SOFT01, FINISHED), "homogenization")
    values = np.array([_metric_rows(SOFT01, s)["homogenization"] for s in SEEDS])
    # window 0 is NaN in every seed: no point there; x is t_end / 24
    assert series["window"].to_list() == [1, 2, 3]
    assert series["day"].to_list() == [2.0, 3.0, 4.0]
    assert series["n"].to_list() == [3, 3, 3]
    for row, w in zip(series.iter_rows(named=True), (1, 2, 3), strict=True):
        x = values[:, w]
        lo, hi = stats.t.interval(0.95, 2, loc=x.mean(), scale=stats.sem(x))
        assert (row["mean"], row["low"], row["high"]) == pytest.approx((x.mean(), lo, hi))
    one_seed = arm_series(sweep.jobs_of(SOFT01, FINISHED)[:1], "utility")
    assert one_seed["low"].null_count() == N_WINDOWS  # a single seed: no band


# ------------------------------------------------------------------ Lorenz


def test_pooled_last_window_exposure_and_gini(sweep_dir: Path, page: str) -> None:
    sweep = load_sweep(sweep_dir)
    pooled, notes = pooled_last_window_exposure(sweep.jobs_of(GREEDY, FINISHED))
    expected = np.zeros(N_ITEMS, dtype=np.int64)
    expected[0] = 10 + 10 + 3  # seeds 0 and 1, plus one impression at the horizon per job
    expected[1] = 10
    assert notes == []
    np.testing.assert_array_equal(pooled, expected)
    for arm in (SOFT01, SOFT10):
        pooled, _ = pooled_last_window_exposure(sweep.jobs_of(arm, FINISHED))
        counts = sum(_last_window_counts(arm, s) for s in SEEDS) + 3 * np.eye(N_ITEMS)[0]
        np.testing.assert_array_equal(pooled, counts)
    # the legend prints the arm's mean final exposure Gini from metrics.parquet (the table's)
    for arm in ARMS:
        g = np.mean([_finals(arm, s)["gini_exposure"] for s in SEEDS])
        assert f"{html.escape(arm)}: Gini {g:.3f}" in page


# ------------------------------------------------------------------ the page


def test_page_is_self_contained(page: str) -> None:
    bundle = get_plotlyjs()
    assert page.count(bundle) == 1
    assert page.count(bundle.splitlines()[1]) == 1  # the "plotly.js vX.Y.Z" banner
    assert page.index(bundle) < page.index("</head>")
    rest = page.replace(bundle, "")
    assert not re.search(r"<script[^>]*\bsrc\s*=", rest)
    assert "<link" not in rest and "https://" not in rest and "cdn.plot.ly" not in rest


def test_page_content(page: str, sweep_dir: Path) -> None:
    assert "<title>recloop sweep report — " in page
    assert "<b>3</b> arms" in page
    assert "<b>11</b> jobs: <b>9</b> finished, <b>1</b> failed, <b>1</b> incomplete" in page
    for metric in TS_FIGS:
        assert f'id="fig-ts-{metric}"' in page
    assert 'id="fig-tradeoff"' in page and 'id="fig-lorenz"' in page
    ids = ["final", "fig-ts-coverage_exposure", "fig-tradeoff", "fig-lorenz", "problems", "arms"]
    positions = [page.index(f'id="{i}"') for i in ids]
    assert positions == sorted(positions)
    assert 'href="0_greedy_seed0/report.html"' in page
    assert 'href="1_greedy_seed1/report.html"' not in page  # no report there
    assert page.count("<details><summary>Resolved config") == 3


def test_failed_and_incomplete_jobs_listed(page: str) -> None:
    section = page.split('id="problems"')[1].split('id="arms"')[0]
    rows = re.findall(r"<tr><td><code>(.*?)</code></td><td>(.*?)</td><td>(.*?)</td>", section)
    assert rows == [("9_softmax_seed3", SOFT01, "3"), ("10_greedy_seed4", GREEDY, "4")]
    assert html.escape(FAIL_ERROR) in section and FAIL_ERROR not in section
    assert "incomplete (no summary.json)" in section
    assert "Traceback ..." in section


def test_arm_commands(page: str) -> None:
    section = page.split('id="arms"')[1]
    commands = [html.unescape(c) for c in re.findall(r'<code class="cmd">(.*?)</code>', section)]
    assert len(commands) == 3
    first = {}
    for arm, (policy, extra) in ARMS.items():
        first[arm] = ["recloop", *_overrides(policy, extra, 0, list(ARMS).index(arm) * 3)]
    assert [shlex.split(c) for c in commands] == list(first.values())
    assert shell_command(["sim.name=a b", "+x=[1,2]", "we ird=1"]) == (
        "recloop sim.name='a b' +x='[1,2]' 'we ird=1'"
    )


def test_html_escaping_of_file_strings(tmp_path: Path) -> None:
    evil = "<script>alert(1)</script>"
    job = tmp_path / "0_<b>evil"
    metrics = _metric_rows(GREEDY, 0)
    config = 'policy:\n  name: "<script>alert(1)</script>"  # </pre><script>alert(3)</script>\n'
    _write_finished(
        job, evil, 0, [f"policy={evil}", "seed=0"], _last_window_counts(GREEDY, 0), metrics, config
    )
    _write_finished(
        tmp_path / "1_x",
        evil,
        1,
        [f"policy={evil}", "seed=1"],
        _last_window_counts(GREEDY, 1),
        metrics,
        config,
    )
    failed = tmp_path / "2_failed"
    _write_hydra(failed, [f"policy={evil}", "seed=2"], evil, 2)
    status = {"status": "failed", "error": "ValueError: <img src=x onerror=alert(2)>"}
    (failed / "status.json").write_text(json.dumps(status))
    (job / "report.html").write_text("run")
    page = build_sweep_report(tmp_path).read_text(encoding="utf-8")
    rest = page.replace(get_plotlyjs(), "")
    assert "alert(1)</script>" not in rest and "<script>alert" not in rest
    assert "<img" not in rest and "<b>evil" not in rest and "</pre><script>" not in rest
    # every script left is plotly's: the emptied bundle in the head, then one per figure
    scripts = re.findall(r"<script[^>]*>(.*?)</script>", rest, re.S)
    assert scripts[0] == "" and len(scripts) == 1 + rest.count('class="plotly-graph-div"')
    assert all(body.strip().startswith("window.PLOTLYENV") for body in scripts[1:])
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in rest
    assert "&lt;img src=x onerror=alert(2)&gt;" in rest
    assert 'href="0_%3Cb%3Eevil/report.html"' in rest


# ------------------------------------------------------------------ edge cases and CLI


def test_is_sweep_dir(sweep_dir: Path, tmp_path: Path) -> None:
    assert is_sweep_dir(sweep_dir)
    assert not is_sweep_dir(sweep_dir / "0_greedy_seed0")  # a run
    assert not is_sweep_dir(tmp_path)  # empty
    (tmp_path / "a" / ".hydra").mkdir(parents=True)
    assert is_sweep_dir(tmp_path)  # no multirun.yaml, but a job folder
    (tmp_path / "summary.json").write_text("{}")
    assert not is_sweep_dir(tmp_path)


def test_cli_on_sweep(sweep_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = sweep_dir / "report.html"
    report.unlink(missing_ok=True)
    assert main([str(sweep_dir)]) == 0
    assert capsys.readouterr().out.strip() == str(report)
    assert report.is_file() and not (sweep_dir / ".report.html.tmp").exists()
    assert main([str(sweep_dir), "--baseline", SOFT10]) == 0
    assert f"<th>Δ vs {SOFT10}</th>" in report.read_text(encoding="utf-8")
    capsys.readouterr()
    assert main([str(sweep_dir), "--baseline", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("recloop-report: error: baseline arm 'nope'") and err.count("\n") == 1


def test_cli_on_run_inside_sweep_still_builds_run_report(
    sweep_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = sweep_dir / "1_greedy_seed1"
    assert main([str(run)]) == 0
    assert "recloop run report — greedy (seed 1)" in (run / "report.html").read_text()
    (run / "report.html").unlink()


def test_cli_sweep_with_only_failures(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for i, error in enumerate(["RuntimeError: boom", "MemoryError: out of memory"]):
        job = tmp_path / f"{i}"
        _write_hydra(job, ["policy=greedy", f"seed={i}"], "greedy", i)
        (job / "status.json").write_text(json.dumps({"status": "failed", "error": error}))
    (tmp_path / "2").mkdir()  # created, never started
    (tmp_path / "multirun.yaml").write_text("hydra: {}\n")
    assert main([str(tmp_path)]) == 0
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "RuntimeError: boom" in page and "MemoryError: out of memory" in page
    assert "No job finished" in page and 'id="fig-' not in page
    assert "<b>0</b> finished, <b>2</b> failed, <b>1</b> incomplete" in page
    rows = re.findall(r"<tr><td><code>(.*?)</code></td><td>(.*?)</td>", page)
    assert rows == [("0", "greedy"), ("1", "greedy"), ("2", "unknown")]


def test_cli_all_finished_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for seed in (0, 1):
        ov = ["policy=greedy", f"seed={seed}"]
        counts = _last_window_counts(GREEDY, seed)
        _write_finished(
            tmp_path / f"{seed}", "greedy", seed, ov, counts, _metric_rows(GREEDY, seed), "a: 1\n"
        )
    assert main([str(tmp_path)]) == 0
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "All 2 jobs finished." in page


def test_single_seed_has_no_interval(tmp_path: Path) -> None:
    for i, (policy, arm) in enumerate((("greedy", GREEDY), ("softmax", SOFT01))):
        ov = [f"policy={policy}", "seed=0"]
        counts = _last_window_counts(arm, 0)
        _write_finished(tmp_path / f"{i}", policy, 0, ov, counts, _metric_rows(arm, 0), "a: 1\n")
    rows = _final_rows(build_sweep_report(tmp_path).read_text(encoding="utf-8"))
    assert rows[("Utility", "greedy")][:2] == [("num", "1"), ("num", "0.300")]  # n=1: no ±
    assert rows[("Utility", "softmax")] == [("num", "1"), ("num", "0.400")] + [("num", "–")] * 3 + [
        ("num", "1")
    ]


def test_cli_empty_dir_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("recloop-report: error: not a finished run:") and err.count("\n") == 1
    assert not (tmp_path / "report.html").exists()
    (tmp_path / "multirun.yaml").write_text("hydra: {}\n")  # a sweep with no job folders
    with pytest.raises(SweepReportError, match="no job sub-folders"):
        build_sweep_report(tmp_path)
    assert issubclass(SweepReportError, ReportError)
    assert main([str(tmp_path)]) == 2
    assert "no job sub-folders" in capsys.readouterr().err
