"""The serving study in the sweep report: the study's reference arm (``study_baseline``) is the
baseline, and the "Serving shortcuts" table's paired differences equal an independent numpy /
scipy computation. A hand-made sweep (``test_sweep_report``'s job writer) of 3 arms x 3 seeds
whose first arm is not the reference."""

from __future__ import annotations

import html
import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy import stats
from test_sweep_report import N_WINDOWS, _write_finished

from reports.comparison import write_comparison
from reports.sweep_folder import load_sweep
from reports.sweep_report import build_sweep_report

SEEDS = (0, 1, 2)
ARMS = ("servers_budget", "unlimited", "cache")  # job order: the reference is not first
REF = "+serving_arm=unlimited"
# final-window values by arm, seeds 0, 1, 2
FINALS = {
    "utility": {
        "servers_budget": [0.30, 0.28, 0.31],
        "unlimited": [0.35, 0.34, 0.37],
        "cache": [0.34, 0.35, 0.36],
    },
    "ctr": {
        "servers_budget": [0.050, 0.047, 0.052],
        "unlimited": [0.060, 0.058, 0.061],
        "cache": [0.059, 0.060, 0.058],
    },
    "model_ndcg": {
        "servers_budget": [0.20, 0.22, 0.21],
        "unlimited": [0.26, 0.25, 0.27],
        "cache": [0.25, 0.26, 0.25],
    },
    "gini_exposure": {
        "servers_budget": [0.80, 0.82, 0.79],
        "unlimited": [0.70, 0.71, 0.69],
        "cache": [0.71, 0.70, 0.70],
    },
    "popularity_drift": {
        "servers_budget": [0.20, 0.25, 0.22],
        "unlimited": [0.10, 0.11, 0.12],
        "cache": [0.10, 0.12, 0.11],
    },
    "cum_fallback_share": {
        "servers_budget": [0.15, 0.18, 0.16],
        "unlimited": [0.0, 0.0, 0.0],
        "cache": [0.0, 0.0, 0.0],
    },
    "cache_hit_rate": {
        "servers_budget": [0.0, 0.0, 0.0],
        "unlimited": [0.0, 0.0, 0.0],
        "cache": [0.3, 0.32, 0.31],
    },
}
OTHERS = ("coverage_exposure", "cumulative_utility", "homogenization", "latency_p99_ms")


def _metrics(arm: str, seed: int) -> dict[str, list[float]]:
    rng = np.random.default_rng([seed, ARMS.index(arm)])
    rows = {m: [by_arm[arm][seed]] * N_WINDOWS for m, by_arm in FINALS.items()}
    rows |= {m: list(rng.uniform(0.1, 0.9, N_WINDOWS)) for m in OTHERS}
    rows["fallback_share_budget"] = rows["cum_fallback_share"]
    return rows


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("serving_sweep")
    multirun = {"hydra": {"overrides": {"task": ["+study=serving"]}}}
    (root / "multirun.yaml").write_text(yaml.safe_dump(multirun))
    num = 0
    for arm in ARMS:
        for seed in SEEDS:
            job = root / f"{num}_{arm}_seed{seed}"
            overrides = ["+study=serving", f"+serving_arm={arm}", f"seed={seed}"]
            config = (
                f"seed: {seed}\npolicy:\n  name: greedy\nstudy_name: serving\n"
                "study_baseline: serving_arm=unlimited\n"
                "serving:\n  model_servers: null\n  latency_budget_ms: null\n  cache_ttl_hours: 0\n"
            )
            counts = np.full(20, 3, dtype=np.int64)
            _write_finished(job, "greedy", seed, overrides, counts, _metrics(arm, seed), config)
            num += 1
    return root


def _paired(metric: str, arm: str) -> tuple[float, float, float]:
    """Mean of arm − reference by seed and its 95% t-interval (none of these reach the cut)."""
    d = np.array(FINALS[metric][arm]) - np.array(FINALS[metric]["unlimited"])
    half = stats.t.ppf(0.975, d.size - 1) * d.std(ddof=1) / math.sqrt(d.size)
    return d.mean(), d.mean() - half, d.mean() + half


def test_the_study_reference_is_the_baseline(sweep_dir: Path) -> None:
    sweep = load_sweep(sweep_dir)
    assert sweep.study_baseline == "serving_arm=unlimited"
    assert sweep.baseline == REF and sweep.arms[0] == REF
    # one policy whose arms are config-group choices: the label is the choice, the policy shared
    assert all(arm.startswith("+serving_arm=") for arm in sweep.arms)
    assert sweep.shared_overrides == ["+study=serving", "policy=greedy"]
    # an explicit baseline still wins
    assert load_sweep(sweep_dir, "+serving_arm=cache").baseline == ("+serving_arm=cache")


def test_comparison_md_against_the_reference(sweep_dir: Path) -> None:
    text = write_comparison(sweep_dir).read_text(encoding="utf-8")
    assert f"gain vs {REF}" in text
    assert "cumulative fallback share (final window)" in text  # shortcuts used: shown


def test_shortcut_table_paired_differences(sweep_dir: Path) -> None:
    page = html.unescape(build_sweep_report(sweep_dir).read_text(encoding="utf-8"))
    start = page.index('<h2 id="shortcuts">')
    section = page[start : page.index('<p class="caption">', start)]
    assert f"against {REF}" in section or f"against <code>{REF}</code>" in section
    # two tables (feedback on the catalog, then quality cost), one row per arm in each
    assert section.count("<table") == 2
    assert section.index("<h3>What it feeds back into the catalog") < section.index(
        "<h3>What it costs in quality"
    )
    rows: dict[str, str] = {}
    for r in section.split("<tr><td>")[1:]:
        arm = r.split("</td>")[0]
        rows[arm] = rows.get(arm, "") + r
    assert set(rows) == {"+serving_arm=servers_budget", "+serving_arm=cache"}
    for arm in ("servers_budget", "cache"):
        row = rows[f"+serving_arm={arm}"]
        for metric in ("utility", "model_ndcg", "gini_exposure", "popularity_drift"):
            mean, low, high = _paired(metric, arm)
            assert f"Δ {mean:+.3f} [{low:+.3f}, {high:+.3f}]" in row, (arm, metric)
        mean, low, high = _paired("ctr", arm)  # a share: percentage points
        assert f"Δ {mean * 100:+.1f} pp [{low * 100:+.1f}, {high * 100:+.1f}]" in row
    # the verdict on popularity drift names the arm whose drift rose significantly
    d = np.array(FINALS["popularity_drift"]["servers_budget"]) - np.array(
        FINALS["popularity_drift"]["unlimited"]
    )
    assert stats.ttest_rel(d, np.zeros(3)).pvalue < 0.05
    assert "rose significantly against" in section
    assert "+serving_arm=servers_budget: their shortcuts" in section


def test_serving_series_and_table_rows(sweep_dir: Path) -> None:
    page = build_sweep_report(sweep_dir).read_text(encoding="utf-8")
    assert 'id="fig-ts-cache_hit_rate"' in page
    assert 'id="fig-ts-fallback_share_budget"' in page
    assert 'id="fig-ts-reranker_auc"' not in page  # no arm has a value
