"""The sweep report is built from a sweep folder's files alone: hand-made sweeps in tmp_path.

The main sweep has 3 arms x 3 seeds (4 windows, a 20-item catalog), one failed job (status.json)
and one interrupted job (no summary.json). Expected numbers are recomputed here with plain
numpy/scipy from the arrays the sweep was written from: t-intervals from ``scipy.stats.t``, then
cut to the metric's range by hand.
"""

from __future__ import annotations

import base64
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
from hypothesis import given
from hypothesis import strategies as st
from plotly.offline import get_plotlyjs
from scipy import stats

from reports.cli import main
from reports.inequality import lorenz
from reports.metric_catalog import CATALOG, METRICS
from reports.run_report import ReportError
from reports.sweep_folder import (
    FAILED,
    FINISHED,
    INCOMPLETE,
    SweepReportError,
    is_sweep_dir,
    load_sweep,
)
from reports.sweep_report import (
    _series_figure,
    arm_lorenz,
    arm_series,
    axis_range,
    build_sweep_report,
    gini_of_lorenz,
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
        "gini_exposure": [0.99, 0.93, 0.98],  # near 1: the raw t-interval passes 1 and is cut
    },
}
STUDY = "exploration"
QUESTION = "Does exploring pay off in utility and exposure?"
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
        "mean": {
            k: float(np.nanmean(v)) if np.isfinite(v).any() else None for k, v in metrics.items()
        },
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
            config = (
                f"seed: {seed}\npolicy:\n  name: {policy}\n  arm: {arm}\n"
                f"study_name: {STUDY}\nstudy_question: {QUESTION}\n"
            )
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


def _cells(row: str) -> list[tuple[str, str]]:
    """(td class, text without tags) of each cell of a table row."""
    cells = re.findall(r'<td(?: class="([^"]*)")?[^>]*>(.*?)</td>', row, re.S)
    return [(c, html.unescape(re.sub(r"<[^>]+>", " ", text)).strip()) for c, text in cells]


def _final_rows(page: str) -> dict[tuple[str, str], list[tuple[str, str]]]:
    """(metric label, arm) -> [(td class, text), ...] of the final-window table."""
    table = page.split('<table class="final">')[1].split("</table>")[0]
    rows: dict[tuple[str, str], list[tuple[str, str]]] = {}
    group = ""
    for attrs, body in re.findall(r"<tr([^>]*)>(.*?)</tr>", table, re.S):
        if 'class="group"' in attrs:
            group = html.unescape(re.sub(r"<[^>]+>", "", body)).split(" — ")[0].strip()
            continue
        cells = _cells(body)
        if cells:
            rows[(group, cells[0][1])] = cells[1:]
    return rows


def _headline_rows(page: str) -> dict[str, dict[str, tuple[str, str]]]:
    """arm -> column title -> (value text, difference line) of the headline table."""
    table = page.split('<table class="headline-table">')[1].split("</table>")[0]
    titles = [html.unescape(t) for t in re.findall(r"<th>(.*?)</th>", table)]
    rows = {}
    for body in re.findall(r"<tr>(.*?)</tr>", table.split("<tbody>")[1], re.S):
        cells = re.findall(r"<td[^>]*>(.*?)</td>", body, re.S)
        parts = [
            [
                html.unescape(re.sub(r"<[^>]+>", "", d))
                for d in re.findall(r"<div[^>]*>(.*?)</div>", c)
            ]
            or [c]
            for c in cells
        ]
        rows[html.unescape(cells[0])] = {
            t: (p[0], p[1] if len(p) > 1 else "") for t, p in zip(titles, parts, strict=True)
        }
    return rows


def _answer(page: str) -> str:
    return html.unescape(
        re.sub(r"<[^>]+>", "", page.split('<p class="answer">')[1].split("</p>")[0])
    )


def _numbers(text: str) -> list[float]:
    """Every number in ``text`` ("1,234", "-0.5", "+12.0"); none glued to a letter or a %."""
    return [float(s.replace(",", "")) for s in re.findall(r"[-+]?\d[\d,]*(?:\.\d+)?", text)]


def _decode(obj: Any) -> Any:
    """Plotly's JSON with its base64 typed arrays (``{"dtype", "bdata"}``) as numpy arrays."""
    if isinstance(obj, dict):
        if {"dtype", "bdata"} <= set(obj):
            return np.frombuffer(base64.b64decode(obj["bdata"]), dtype=np.dtype(obj["dtype"]))
        return {k: _decode(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_decode(v) for v in obj]
    return obj


def figure(page: str, div_id: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The traces and layout the page hands to ``Plotly.newPlot`` for ``div_id``."""
    match = re.search(r'Plotly\.newPlot\(\s*"' + re.escape(div_id) + r'",\s*', page)
    assert match, div_id
    decoder = json.JSONDecoder()
    data, end = decoder.raw_decode(page, match.end())
    layout, _ = decoder.raw_decode(page[end:].lstrip().removeprefix(",").lstrip())
    return _decode(data), _decode(layout)


def _cut(low: float, high: float, domain: tuple[float | None, float | None]) -> list[float]:
    a, b = domain
    return [low if a is None else max(low, a), high if b is None else min(high, b)]


def _expected_stats(metric: str, arm: str) -> dict[str, Any]:
    """Mean and cut interval across seeds, and the paired difference to greedy, from the inputs."""
    domain = CATALOG[metric].domain
    a = np.array([_finals(arm, s)[metric] for s in SEEDS])
    b = np.array([_finals(GREEDY, s)[metric] for s in SEEDS])
    raw = stats.t.interval(0.95, a.size - 1, loc=a.mean(), scale=stats.sem(a))
    d = a - b
    draw = (
        stats.t.interval(0.95, d.size - 1, loc=d.mean(), scale=stats.sem(d))
        if arm != GREEDY
        else (np.nan, np.nan)
    )
    width = None if None in domain else domain[1] - domain[0]
    ddomain = (None, None) if width is None else (-width, width)
    return {
        "mean": a.mean(),
        "raw": raw,
        "ci": _cut(*raw, domain),
        "diff": d.mean(),
        "dci": _cut(*draw, ddomain),
        "p": stats.ttest_rel(a, b).pvalue,
    }


# ------------------------------------------------------------------ arms and jobs


def test_arms_labelled_by_distinguishing_overrides(sweep_dir: Path) -> None:
    sweep = load_sweep(sweep_dir)
    assert sweep.arms == [GREEDY, SOFT01, SOFT10]  # baseline greedy first
    assert sweep.baseline == GREEDY
    assert sweep.shared_overrides == SHARED
    assert (sweep.name, sweep.question) == (STUDY, QUESTION)
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


def test_labels_agree_with_the_comparison(sweep_dir: Path) -> None:
    from reports.comparison import collect_summaries

    study = collect_summaries(sweep_dir)
    ours = {(j.name, j.arm) for j in load_sweep(sweep_dir).finished}
    assert set(zip(study["job"].to_list(), study["arm"].to_list(), strict=True)) == ours


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
    assert (sweep.name, sweep.question) == ("sweep", None)  # no study in the configs


# ------------------------------------------------------------------ the headline


def test_headline_comes_first_and_names_the_study(page: str) -> None:
    assert f"<title>{STUDY} — recloop sweep report</title>" in page
    body = page.split("<main")[1]
    assert re.match(r"[^>]*>\s*<h1>exploration</h1>", body)
    first = [
        body.index('<p class="question">'),
        body.index('<p class="answer">'),
        body.index('<table class="headline-table">'),
        body.index('class="meta"'),
        body.index('id="fig-ts-coverage_exposure"'),
        body.index('id="fig-tradeoff"'),
        body.index('id="fig-lorenz"'),
        body.index('<table class="final">'),
        body.index('id="problems"'),
        body.index('id="arms"'),
    ]
    assert first == sorted(first)
    assert html.escape(QUESTION) in body.split('<p class="answer">')[0]
    assert "00-" not in page.split("</title>")[0]  # not the time folder


def test_headline_answer_is_honest_about_significance(page: str) -> None:
    good, none = (
        _expected_stats("cumulative_utility", SOFT01),
        _expected_stats("cumulative_utility", SOFT10),
    )
    assert good["p"] < 0.05 < none["p"]  # the data are built that way
    lo, hi = good["dci"]
    expected = (
        f"Paired by seed over 3 seeds: {SOFT01} delivered significantly more cumulative "
        f"utility than greedy ({SOFT01}: {good['diff']:+,.0f} [{lo:+,.0f}, {hi:+,.0f}], "
        f"p = {good['p']:.3f}); {SOFT10} ({none['diff']:+,.0f}, p = {none['p']:.3f}) did not "
        "differ significantly from greedy in cumulative utility."
    )
    answer = _answer(page)
    assert answer.startswith(expected)
    cov = {a: np.mean([_finals(a, s)["coverage_exposure"] for s in SEEDS]) for a in ARMS}
    gini = {a: np.mean([_finals(a, s)["gini_exposure"] for s in SEEDS]) for a in ARMS}
    lo_c, hi_c = min(cov, key=cov.get), max(cov, key=cov.get)
    lo_g, hi_g = min(gini, key=gini.get), max(gini, key=gini.get)
    assert (
        f"In the final window (means over seeds), exposure coverage ranged from {cov[lo_c]:.1%} "
        f"({lo_c}) to {cov[hi_c]:.1%} ({hi_c}) and exposure Gini from {gini[lo_g]:.3f} ({lo_g}) "
        f"to {gini[hi_g]:.3f} ({hi_g})."
    ) in answer
    assert answer.endswith("2 of 11 jobs did not finish and are left out (listed below).")


def test_headline_table_is_the_final_tables_numbers(page: str) -> None:
    head, final = _headline_rows(page), _final_rows(page)
    assert list(head) == [GREEDY, SOFT01, SOFT10]
    titles = ["Arm", "Seeds", "Cumulative utility", "Exposure coverage", "Exposure Gini"]
    assert list(head[GREEDY]) == titles  # no arm has a model NDCG: no column
    for arm in ARMS:
        assert head[arm]["Seeds"][0] == "3"
        for title in titles[2:]:
            value, diff = head[arm][title]
            assert value == final[(title, arm)][1][1]
            if arm == GREEDY:
                assert diff == "baseline"
            else:
                delta, p = final[(title, arm)][2][1], final[(title, arm)][3][1]
                assert diff == f"Δ {delta} · {p}"
    assert head[SOFT01]["Cumulative utility"][1].endswith(" *")  # significant
    assert not head[SOFT10]["Cumulative utility"][1].endswith("*")


def test_question_falls_back_to_the_arms(tmp_path: Path) -> None:
    for i, (policy, arm, seed) in enumerate(
        [("greedy", GREEDY, 0), ("softmax", SOFT01, 0), ("greedy", GREEDY, 1)]
    ):
        ov = [f"policy={policy}", f"seed={seed}"]
        counts = _last_window_counts(arm, seed)
        config = "study_name: quickstart\n" if i == 2 else "a: 1\n"  # from any job
        _write_finished(
            tmp_path / f"{i}", policy, seed, ov, counts, _metric_rows(arm, seed), config
        )
    page = build_sweep_report(tmp_path).read_text(encoding="utf-8")
    assert "<h1>quickstart</h1>" in page
    assert '<p class="question">How does softmax compare with greedy?</p>' in page


def test_single_seed_has_no_interval_and_says_so(tmp_path: Path) -> None:
    for i, (policy, arm) in enumerate((("greedy", GREEDY), ("softmax", SOFT01))):
        ov = [f"policy={policy}", "seed=0"]
        counts = _last_window_counts(arm, 0)
        _write_finished(tmp_path / f"{i}", policy, 0, ov, counts, _metric_rows(arm, 0), "a: 1\n")
    page = build_sweep_report(tmp_path).read_text(encoding="utf-8")
    rows = _final_rows(page)
    assert rows[("Utility", "greedy")] == [("num", "1"), ("num", "0.300"), ("", "baseline")]
    assert rows[("Utility", "softmax")] == [
        ("num", "1"),
        ("num", "0.400"),
        ("num", "+0.100 (seed 0)"),
    ]
    # the single-seed utility gain, in words and in both tables
    assert _answer(page).startswith(
        "On seed 0, softmax delivered 15 more cumulative utility than greedy; one seed — no "
        "interval, run more seeds: seed=0,1,2."
    )
    assert _headline_rows(page)["softmax"]["Cumulative utility"] == ("55", "Δ +15 (seed 0)")
    assert rows[("Cumulative utility", "softmax")][2] == ("num", "+15 (seed 0)")
    assert "1 seed: no interval." in page
    # no column of dashes: no p, no pairs, no interval header
    assert "p (paired t)" not in page and "<th>pairs</th>" not in page
    assert "<h1>sweep</h1>" in page and "<title>sweep — recloop sweep report</title>" in page


# ------------------------------------------------------------------ the final table


def test_final_table_numbers(page: str) -> None:
    rows = _final_rows(page)
    for label, metric, unit, scale in (
        ("Utility", "utility", 1e-3, 1.0),
        ("Exposure coverage", "coverage_exposure", 1e-1, 100.0),  # percent / pp
        ("Cumulative utility", "cumulative_utility", 1.0, 1.0),  # whole numbers
        ("CTR", "ctr", 1e-1, 100.0),
        ("Exposure Gini", "gini_exposure", 1e-3, 1.0),
        ("Homogenization", "homogenization", 1e-3, 1.0),
    ):
        tol = unit / 2 + 1e-9
        for arm in (SOFT01, SOFT10):
            exp = _expected_stats(metric, arm)
            (_, n), (_, mean_text), (_, diff), (_, p), (_, pairs) = rows[(label, arm)]
            assert n == "3" and pairs == "3"
            expected = [exp["mean"], *exp["ci"]]
            assert _numbers(mean_text) == pytest.approx([v * scale for v in expected], abs=tol)
            assert _numbers(diff) == pytest.approx(
                [v * scale for v in (exp["diff"], *exp["dci"])], abs=tol
            )
            if exp["p"] >= 0.001:
                assert _numbers(p) == pytest.approx([exp["p"]], abs=5e-4 + 1e-9)
            else:
                assert p.startswith("p < 0.001")
        assert rows[(label, GREEDY)][2] == ("", "baseline")


def test_interval_near_a_bound_is_cut(page: str) -> None:
    exp = _expected_stats("gini_exposure", SOFT10)
    assert exp["raw"][1] > 1.0  # the raw t-interval claims a Gini above 1
    mean_text = _final_rows(page)[("Exposure Gini", SOFT10)][1][1]
    assert mean_text == f"{exp['mean']:.3f} [{exp['ci'][0]:.3f}, 1.000]"


def test_significant_cells_marked(page: str) -> None:
    rows = _final_rows(page)
    util_good, util_none = rows[("Utility", SOFT01)], rows[("Utility", SOFT10)]
    assert _expected_stats("utility", SOFT01)["p"] < 0.05  # the data are built that way
    assert _expected_stats("utility", SOFT10)["p"] > 0.05
    assert all("sig" in cls for cls, _ in util_good[2:4]) and util_good[3][1].endswith("*")
    assert not any("sig" in cls for cls, _ in util_none) and "*" not in util_none[3][1]


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
        raw = stats.t.interval(0.95, 2, loc=x.mean(), scale=stats.sem(x))
        expected = (x.mean(), *_cut(*raw, (0.0, 1.0)))
        assert (row["mean"], row["low"], row["high"]) == pytest.approx(expected)
    one_seed = arm_series(sweep.jobs_of(SOFT01, FINISHED)[:1], "utility")
    assert one_seed["low"].null_count() == N_WINDOWS  # a single seed: no band


# ------------------------------------------------------------------ figures


def test_bands_and_axes_stay_in_each_metrics_range(page: str) -> None:
    seen = 0
    for metric in re.findall(r'id="fig-ts-([a-z0-9_]+)"', page):
        low, high = CATALOG[metric].domain
        data, layout = figure(page, f"fig-ts-{metric}")
        for trace in data:
            y = np.asarray(trace["y"], dtype=np.float64)
            assert low is None or y.min() >= low, (metric, trace["name"])
            assert high is None or y.max() <= high, (metric, trace["name"])
            seen += trace.get("fill") == "toself"
        a, b = layout["yaxis"]["range"]
        pad = 0.021 * (b - a) / 1.04
        assert low is None or a >= low - pad, metric
        assert high is None or b <= high + pad, metric
    assert seen >= 3 * 5  # a band per arm in most panels


def test_tradeoff_error_bars_stay_in_range(page: str) -> None:
    data, layout = figure(page, "fig-tradeoff")
    assert layout["xaxis"]["range"] == [-0.02, 1.02] and layout["yaxis"]["range"][0] == 0
    for trace, arm in zip(data, ARMS, strict=True):
        cov = _expected_stats("coverage_exposure", arm)
        util = _expected_stats("cumulative_utility", arm)
        x, y = trace["x"][0], trace["y"][0]
        assert (x, y) == pytest.approx((cov["mean"], util["mean"]))
        ex, ey = trace["error_x"], trace["error_y"]
        assert ex["symmetric"] is False
        assert (x - ex["arrayminus"][0], x + ex["array"][0]) == pytest.approx(cov["ci"])
        assert (y - ey["arrayminus"][0], y + ey["array"][0]) == pytest.approx(util["ci"])
        assert 0 <= x - ex["arrayminus"][0] and x + ex["array"][0] <= 1


def test_log_axis_metric_panel(sweep_dir: Path) -> None:
    """A log-axis metric (min propensity) is drawn on a log axis left to plotly's autorange,
    its band only where the interval stays above 0 (a log axis cannot show 0)."""
    sweep = load_sweep(sweep_dir)
    fig = _series_figure(sweep, "min_propensity")
    assert fig.layout.yaxis.type == "log" and fig.layout.yaxis.range is None
    bands = {t.name: t for t in fig.data if t.fill == "toself"}
    assert bands and all(np.min(t.y) > 0 for t in bands.values())
    cut_at_zero = 0
    for arm in ARMS:
        series = arm_series(sweep.jobs_of(arm, FINISHED), "min_propensity")
        kept = series.filter(pl.col("low") > 0)
        cut_at_zero += kept.height < series.height
        band = bands.get(f"{html.escape(arm)} interval")
        assert (band is None) == (kept.height == 0)
        if band is not None:
            np.testing.assert_allclose(band.x[: kept.height], kept["day"].to_numpy())
    assert cut_at_zero  # the case that matters: some interval reaches 0


@given(
    st.sampled_from([m for m in METRICS if not m.log_axis]),
    st.lists(st.floats(0, 1, allow_nan=False), min_size=1, max_size=20),
)
def test_axis_range_lies_in_the_domain_and_holds_the_data(metric, shares) -> None:
    low, high = metric.domain
    top = 1.0 if high is None else high
    bottom = -top if low is None else low
    values = np.array([bottom + s * (top - bottom) for s in shares])
    span = axis_range(metric, values)
    if low is None and high is None:
        assert span is None
        return
    a, b = span
    width = b - a
    assert a <= values.min() and values.max() <= b
    assert low is None or a >= low - 0.021 * width
    assert high is None or b <= high + 0.021 * width


# ------------------------------------------------------------------ Lorenz


def test_lorenz_curves_are_per_seed(sweep_dir: Path) -> None:
    sweep = load_sweep(sweep_dir)
    for arm in ARMS:
        curves, notes = arm_lorenz(sweep.jobs_of(arm, FINISHED))
        assert notes == []
        # each job's last window, plus its one impression at the horizon (item 0)
        expected = [
            lorenz(_last_window_counts(arm, s) + np.eye(N_ITEMS, dtype=int)[0])[1] for s in SEEDS
        ]
        np.testing.assert_allclose(curves, expected)


def test_lorenz_mean_curve_band_and_legend(sweep_dir: Path, page: str) -> None:
    sweep = load_sweep(sweep_dir)
    data, _ = figure(page, "fig-lorenz")
    lines = {t["name"]: t for t in data if t.get("fill") != "toself"}
    bands = [t for t in data if t.get("fill") == "toself"]
    final = _final_rows(page)
    head = _headline_rows(page)
    assert len(bands) == len(ARMS)
    for arm in ARMS:
        gini = np.mean([_finals(arm, s)["gini_exposure"] for s in SEEDS])
        table = final[("Exposure Gini", arm)][1][1].split(" [")[0]
        assert table == head[arm]["Exposure Gini"][0].split(" [")[0] == f"{gini:.3f}"
        line = lines[f"{html.escape(arm)}: Gini {table}"]
        curves, _ = arm_lorenz(sweep.jobs_of(arm, FINISHED))
        grid = np.arange(N_ITEMS + 1) / N_ITEMS
        # the drawn points are exact points of the mean curve, and drawing straight lines
        # between them gives the mean curve everywhere on the grid
        np.testing.assert_allclose(np.interp(grid, line["x"], line["y"]), curves.mean(axis=0))
    for band, arm in zip(bands, ARMS, strict=True):
        curves, _ = arm_lorenz(sweep.jobs_of(arm, FINISHED))
        x, y = np.asarray(band["x"]), np.asarray(band["y"])
        half = x.size // 2
        grid = np.arange(N_ITEMS + 1) / N_ITEMS
        np.testing.assert_allclose(np.interp(grid, x[:half], y[:half]), curves.max(axis=0))
        np.testing.assert_allclose(
            np.interp(grid, x[half:][::-1], y[half:][::-1]), curves.min(axis=0)
        )
        assert 0 <= y.min() and y.max() <= 1


def test_lorenz_of_real_runs_has_the_metrics_gini(tmp_path: Path) -> None:
    """Two tiny runs: each seed's curve drawn from item_exposure.parquet has exactly the Gini of
    metrics.parquet's last window (sim.inequality.gini), and the mean curve the legend's Gini."""
    from conftest import tiny_config

    from experiments.run import run

    for seed in (0, 1):
        run(tiny_config("policy=epsilon_greedy", seed=seed), tmp_path / f"{seed}")
        (tmp_path / f"{seed}" / ".hydra").mkdir()
        (tmp_path / f"{seed}" / ".hydra" / "overrides.yaml").write_text(f"- seed={seed}\n")
    sweep = load_sweep(tmp_path)
    jobs = sweep.jobs_of("epsilon_greedy", FINISHED)
    curves, notes = arm_lorenz(jobs)
    assert notes == [] and curves.shape[0] == 2
    metric = [float(pl.read_parquet(j.path / "metrics.parquet")["gini_exposure"][-1]) for j in jobs]
    for curve, value in zip(curves, metric, strict=True):
        assert gini_of_lorenz(curve) == pytest.approx(value, abs=1e-12)
    assert gini_of_lorenz(curves.mean(axis=0)) == pytest.approx(np.mean(metric), abs=1e-12)
    page = build_sweep_report(tmp_path).read_text(encoding="utf-8")
    names = [t["name"] for t in figure(page, "fig-lorenz")[0]]
    assert f"epsilon_greedy: Gini {np.mean(metric):.3f}" in names


# ------------------------------------------------------------------ the page


def test_page_loads_the_sweeps_shared_plotlyjs(sweep_dir: Path, page: str) -> None:
    bundle = get_plotlyjs()
    assert bundle.splitlines()[1] not in page  # the "plotly.js vX.Y.Z" banner: not inlined
    head = page.split("</head>")[0]
    assert head.count('<script type="text/javascript" src="plotly.min.js"></script>') == 1
    assert (sweep_dir / "plotly.min.js").read_text(encoding="utf-8") == bundle
    assert len(re.findall(r"<script[^>]*\bsrc\s*=", page)) == 1
    assert "<link" not in page and "https://" not in page and "cdn.plot.ly" not in page


def test_page_content(page: str, sweep_dir: Path) -> None:
    assert "<b>3</b> arms" in page
    assert "<b>11</b> jobs: <b>9</b> finished, <b>1</b> failed, <b>1</b> incomplete" in page
    for metric in TS_FIGS:
        assert f'id="fig-ts-{metric}"' in page
    assert 'id="fig-ts-model_ndcg"' not in page  # no job has a model NDCG
    assert 'id="fig-tradeoff"' in page and 'id="fig-lorenz"' in page
    assert 'href="0_greedy_seed0/report.html"' in page
    assert 'href="1_greedy_seed1/report.html"' not in page  # no report there
    assert page.count("<details><summary>Resolved config") == 3
    assert "config config" not in page


def test_panels_and_rows_without_values_are_hidden(tmp_path: Path) -> None:
    """Model NDCG NaN in every job (no model): no column, row or panel. Exploration share 0 in
    every job is a real value: kept."""
    for i, (policy, arm) in enumerate((("greedy", GREEDY), ("random", SOFT01))):
        for seed in (0, 1):
            metrics = _metric_rows(arm, seed)
            metrics["model_ndcg"] = [float("nan")] * N_WINDOWS
            metrics["exploration_share"] = [0.0] * N_WINDOWS
            ov = [f"policy={policy}", f"seed={seed}"]
            counts = _last_window_counts(arm, seed)
            _write_finished(tmp_path / f"{i}{seed}", policy, seed, ov, counts, metrics, "a: 1\n")
    page = build_sweep_report(tmp_path).read_text(encoding="utf-8")
    assert "Model true NDCG" not in page and 'id="fig-ts-model_ndcg"' not in page
    assert 'id="fig-ts-exploration_share"' in page
    assert _final_rows(page)[("Exploration share", "random")][1] == ("num", "0.0% [0.0%, 0.0%]")
    # one arm with a model: the column, row and panel are back, "–" for the other arm
    job = tmp_path / "00"
    frame = pl.read_parquet(job / "metrics.parquet")
    frame.with_columns(model_ndcg=pl.Series([np.nan, 0.3, 0.35, 0.4])).write_parquet(
        job / "metrics.parquet"
    )
    page = build_sweep_report(tmp_path).read_text(encoding="utf-8")
    head = _headline_rows(page)
    assert head["greedy"]["Model true NDCG"][0] == "0.400"
    assert head["random"]["Model true NDCG"] == ("–", "Δ –")
    assert 'id="fig-ts-model_ndcg"' in page


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
    config = (
        'policy:\n  name: "<script>alert(1)</script>"  # </pre><script>alert(3)</script>\n'
        'study_name: "<i>s</i>"\nstudy_question: "<img src=y onerror=alert(4)>"\n'
    )
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
    assert "alert(1)</script>" not in page and "<script>alert" not in page
    assert "<img" not in page and "<b>evil" not in page and "</pre><script>" not in page
    assert "<i>s</i>" not in page and "&lt;i&gt;s&lt;/i&gt;" in page
    # every script is plotly's: the shared bundle in the head, then one per figure
    scripts = re.findall(r"<script[^>]*>(.*?)</script>", page, re.S)
    assert scripts[0] == "" and len(scripts) == 1 + page.count('class="plotly-graph-div"')
    assert all(body.strip().startswith("window.PLOTLYENV") for body in scripts[1:])
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=alert(2)&gt;" in page
    assert 'href="0_%3Cb%3Eevil/report.html"' in page


# ------------------------------------------------------------------ edge cases and CLI


def test_is_sweep_dir(sweep_dir: Path, tmp_path: Path) -> None:
    assert is_sweep_dir(sweep_dir)
    assert not is_sweep_dir(sweep_dir / "0_greedy_seed0")  # a run
    assert not is_sweep_dir(tmp_path)  # empty
    (tmp_path / "a" / ".hydra").mkdir(parents=True)
    assert is_sweep_dir(tmp_path)  # no multirun.yaml, but a job folder
    (tmp_path / "summary.json").write_text("{}")
    assert not is_sweep_dir(tmp_path)


def test_cli_on_sweep_rebuilds_report_and_comparison(
    sweep_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    written = [sweep_dir / name for name in ("report.html", "comparison.md", "comparison.csv")]
    for path in written:
        path.unlink(missing_ok=True)
    monkeypatch.chdir(sweep_dir.parent)
    assert main([sweep_dir.name]) == 0  # a relative argument: absolute paths printed
    assert capsys.readouterr().out.splitlines() == [str(p.resolve()) for p in written]
    assert all(p.is_file() for p in written) and not (sweep_dir / ".report.html.tmp").exists()
    assert main([str(sweep_dir), "--baseline", SOFT10]) == 0
    assert f"<th>Δ vs {SOFT10} [interval]</th>" in written[0].read_text(encoding="utf-8")
    assert f"cumulative utility gain vs {SOFT10}" in written[1].read_text(encoding="utf-8")
    capsys.readouterr()
    assert main([str(sweep_dir), "--baseline", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("recloop-report: error: baseline arm 'nope'") and err.count("\n") == 1
    main([str(sweep_dir)])  # leave the default baseline for the other tests


def test_comparison_md_shows_the_reports_numbers(sweep_dir: Path, page: str) -> None:
    from reports.comparison import write_comparison

    text = write_comparison(sweep_dir, "x").read_text(encoding="utf-8")
    header, _, *rows = [line for line in text.splitlines() if line.startswith("| ")]
    columns = [c.strip() for c in header.strip("|").split("|")]
    final = _final_rows(page)
    for row in rows:
        cells = dict(zip(columns, (c.strip() for c in row.strip("|").split("|")), strict=True))
        arm = cells["arm"]
        for metric in ("gini_exposure", "coverage_exposure"):
            info = CATALOG[metric]
            assert cells[f"{info.label} (final window)"] == final[(info.title, arm)][1][1]


def test_cli_on_run_inside_sweep_still_builds_run_report(
    sweep_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = sweep_dir / "1_greedy_seed1"
    assert main([str(run)]) == 0
    assert capsys.readouterr().out.strip() == str((run / "report.html").resolve())
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
    assert capsys.readouterr().out.splitlines() == [str(tmp_path / "report.html")]
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "RuntimeError: boom" in page and "MemoryError: out of memory" in page
    assert "No job finished" in page and 'id="fig-' not in page
    assert "<b>0</b> finished, <b>2</b> failed, <b>1</b> incomplete" in page
    rows = re.findall(r"<tr><td><code>(.*?)</code></td><td>(.*?)</td>", page)
    assert rows == [("0", "greedy"), ("1", "greedy"), ("2", "unknown")]
    assert not (tmp_path / "comparison.md").exists()


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
    assert "One arm only (greedy): nothing to compare it with." in _answer(page)


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


def test_sweep_command_keeps_the_launcher_and_drops_mode_and_folder(tmp_path: Path) -> None:
    """The page's sweep command re-runs the sweep on the same launcher: hydra's own overrides
    from multirun.yaml (the launcher and its settings) come first; -m implies hydra.mode and the
    folder is shown on its own line."""
    _write_sweep(tmp_path)
    multirun = yaml.safe_load((tmp_path / "multirun.yaml").read_text())
    multirun["hydra"]["overrides"]["hydra"] = [
        "hydra.mode=MULTIRUN",
        "hydra/launcher=ray_cluster",
        "+hydra.launcher.ray.init.address=10.0.0.5:6379",
        f"hydra.sweep.dir={tmp_path}",
    ]
    (tmp_path / "multirun.yaml").write_text(yaml.safe_dump(multirun))
    page = build_sweep_report(tmp_path).read_text(encoding="utf-8")
    shown = html.unescape(re.search(r"Sweep command[^:]*: <code>(.*?)</code>", page).group(1))
    assert shlex.split(shown) == [
        "recloop",
        "-m",
        "hydra/launcher=ray_cluster",
        "+hydra.launcher.ray.init.address=10.0.0.5:6379",
        *SHARED,
        "policy=greedy,softmax",
    ]


def test_arms_of_an_added_config_group_are_labelled_by_the_choice() -> None:
    """A study whose arms are ``+group=choice`` configs using several policies (multi_objective's
    ``+mo_arm``): the choice names the arm; a plain policy sweep keeps its policy labels."""
    from reports.sweep_folder import FINISHED, Job, label_arms

    def job(policy: str, overrides: list[str]) -> Job:
        return Job(Path(f"/x/{policy}"), FINISHED, overrides, policy, 0)

    study = [
        job("greedy", ["+study=multi_objective", "+mo_arm=greedy", "seed=0"]),
        job("scalarized", ["+study=multi_objective", "+mo_arm=revenue_100", "seed=0"]),
        job("constrained", ["+study=multi_objective", "+mo_arm=guard_floor", "seed=0"]),
    ]
    assert label_arms(study) == ["+study=multi_objective", "seed=0"]
    assert [j.arm for j in study] == [
        "+mo_arm=greedy",
        "+mo_arm=revenue_100",
        "+mo_arm=guard_floor",
    ]
    plain = [
        job("greedy", ["policy=greedy", "seed=0"]),
        job("softmax", ["policy=softmax", "seed=0"]),
    ]
    label_arms(plain)
    assert [j.arm for j in plain] == ["greedy", "softmax"]
    mixed = [  # an added group beside a key override: the policy stays in the label
        job("greedy", ["+mo_arm=greedy", "seed=0"]),
        job("softmax", ["+mo_arm=x", "policy.selector.temperature=0.5", "seed=0"]),
    ]
    label_arms(mixed)
    assert [j.arm for j in mixed] == [
        "greedy [+mo_arm=greedy]",
        "softmax [+mo_arm=x, policy.selector.temperature=0.5]",
    ]
