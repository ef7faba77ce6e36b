"""The Retention sections of the run report and the sweep report.

The run report: a tiny run with engagement and conversions gets the section, a run without them
none; every number in its table is the summary's value formatted, the curves are the parquet's
shares, the lag histogram the logs' lags with the summary's mean and median marked. The sweep
report: hand-made job folders, every level and effect against scipy on the same per-seed values.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from scipy import stats
from test_sweep_report import N_WINDOWS, _write_finished

from reports.metric_catalog import format_metric
from reports.retention_section import RUN_ROWS, _curves_figure, _lag_figure, read_lags
from reports.sweep_folder import load_sweep
from reports.sweep_report import build_sweep_report
from reports.sweep_retention import OUTCOMES, arm_curve, arm_effects, arm_levels, arm_satiation

ENGAGED = {
    "world.churn": {"base_rate": 0.05, "sensitivity": 10.0},
    "world.return_rate": 0.3,
    "world.satiation": 0.3,
    "world.conversion": {"base": 0.2},
    "sim.days": 6,
    "report.enabled": True,
}


def _section(page: str, anchor: str = "retention") -> str:
    start = page.index(f'<h2 id="{anchor}">')
    nxt = page.find("<h2", start + 1)
    return page[start : nxt if nxt >= 0 else len(page)]


def _cells(table_html: str) -> dict[str, list[str]]:
    rows = {}
    for row in re.findall(r"<tr>(.*?)</tr>", table_html, re.S):
        cells = [
            " ".join(html.unescape(re.sub(r"<[^>]+>", " ", c)).split())
            for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
        ]
        if cells:
            rows[cells[0]] = cells[1:]
    return rows


@pytest.fixture(scope="module")
def engaged_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from conftest import tiny_config

    from experiments.run import run

    out = tmp_path_factory.mktemp("engaged") / "run"
    run(tiny_config(**ENGAGED), out)
    return out


def test_engaged_run_has_the_section_and_its_numbers_are_the_summary_values(engaged_run: Path):
    block = json.loads((engaged_run / "summary.json").read_text())["retention"]
    page = (engaged_run / "report.html").read_text(encoding="utf-8")
    section = _section(page)
    for div in (
        "fig-retention-curves",
        "fig-retention-active",
        "fig-retention-churn",
        "fig-retention-conversions",
        "fig-retention-conversion-rate",
        "fig-retention-satisfaction",
        "fig-retention-satiation",
        "fig-retention-lag",
    ):
        assert f'id="{div}"' in section, div
    rows = _cells(section.split('<table class="retention">')[1].split("</table>")[0])
    shown = 0
    for key, label, kind in RUN_ROWS:
        title = label[:1].upper() + label[1:]
        if block.get(key) is None:
            assert title not in rows, key  # retention_7d on a 6-day run
            continue
        assert rows[title] == [format_metric(block[key], kind)], key
        shown += 1
    assert shown >= 15 and block["retention_7d"] is None
    # the per-window table: the final window's values of metrics.parquet
    metrics = pl.read_parquet(engaged_run / "metrics.parquet")
    table = _cells(section.split('<table class="metrics">')[1].split("</table>")[0])
    assert table["Active users"][2] == format_metric(metrics["active_users"][-1], "int")
    assert table["Churn rate"][2] == format_metric(metrics["churn_rate"][-1], "pct")
    assert table["Conversion rate"][2] == format_metric(metrics["conversion_rate"][-1], "pct")


def test_curves_and_lags_are_the_files_values(engaged_run: Path) -> None:
    curves = pl.read_parquet(engaged_run / "retention_curves.parquet")
    fig = _curves_figure(curves)
    day0 = curves.filter((pl.col("cohort") == "active") & (pl.col("start_day") == 0)).sort("k")
    assert fig.data[0].name == "active on day 0"
    np.testing.assert_array_equal(fig.data[0].y, day0["share"].to_numpy())
    block = json.loads((engaged_run / "summary.json").read_text())["retention"]
    conv = pl.read_parquet(engaged_run / "logs" / "conversions" / "*" / "*.parquet")
    lags = read_lags(engaged_run)
    np.testing.assert_allclose(sorted(lags), np.sort((conv["t"] - conv["click_t"]).to_numpy()))
    fig = _lag_figure(lags, block["conversion_lag_mean_h"], block["conversion_lag_median_h"])
    marks = sorted(shape.x0 for shape in fig.layout.shapes)
    assert marks == sorted([block["conversion_lag_mean_h"], block["conversion_lag_median_h"]])


def test_run_without_engagement_has_no_section(run_tiny) -> None:
    out = run_tiny("plain", **{"report.enabled": True})
    page = (out / "report.html").read_text(encoding="utf-8")
    assert 'id="retention"' not in page
    assert "retention" not in json.loads((out / "summary.json").read_text())


# ---------------------------------------------------------------- sweep

SEEDS = (0, 1, 2)
# per arm and seed: (day-0 curve shares by day, long_term_utility_per_user, revenue_per_user,
# satisfaction_mean, conversion_rate)
ARMS = {
    "greedy": [
        ([1.0, 0.9, 0.8, 0.70], 2.0, 5.0, 0.20, 0.10),
        ([1.0, 0.9, 0.7, 0.60], 2.2, 5.5, 0.22, 0.12),
        ([1.0, 0.8, 0.7, 0.65], 1.9, 4.0, 0.21, 0.11),
    ],
    "explore": [
        ([1.0, 0.95, 0.9, 0.85], 2.1, 5.2, 0.25, 0.10),
        ([1.0, 0.90, 0.8, 0.80], 2.0, 6.0, 0.24, 0.13),
        ([1.0, 0.85, 0.8, 0.75], 2.3, None, 0.26, 0.12),
    ],
}


def _write_sweep(root: Path, engaged: bool = True) -> Path:
    num = 0
    for arm, per_seed in ARMS.items():
        for seed, (curve, utility, revenue, satisfaction, rate) in zip(
            SEEDS, per_seed, strict=True
        ):
            job = root / f"{num}_{arm}_seed{seed}"
            metrics = {"utility": [0.3] * N_WINDOWS, "coverage_exposure": [0.5] * N_WINDOWS}
            if engaged:
                metrics["satisfaction_mean"] = [satisfaction + 0.01 * w for w in range(N_WINDOWS)]
            _write_finished(
                job,
                arm,
                seed,
                [f"policy={arm}", f"seed={seed}"],
                np.ones(20, dtype=np.int64),
                metrics,
                f"seed: {seed}\npolicy:\n  name: {arm}\n",
            )
            if engaged:
                summary = json.loads((job / "summary.json").read_text())
                summary["retention"] = {
                    "long_term_utility_per_user": utility,
                    "revenue_per_user": revenue,
                    "satisfaction_mean": satisfaction,
                    "conversion_rate": rate,
                }
                (job / "summary.json").write_text(json.dumps(summary))
                n = 200
                pl.DataFrame(
                    {
                        "cohort": ["active"] * len(curve),
                        "start_day": [0] * len(curve),
                        "k": list(range(len(curve))),
                        "n_cohort": [n] * len(curve),
                        "n_active": [round(s * n) for s in curve],
                        "share": curve,
                    }
                ).write_parquet(job / "retention_curves.parquet")
            num += 1
    return root


def _value(arm: str, seed_index: int, index: int) -> float | None:
    row = ARMS[arm][seed_index]
    return row[0][-1] if index == 0 else row[index]


def _t_interval(x: np.ndarray) -> tuple[float, float]:
    return stats.t.interval(0.95, x.size - 1, loc=x.mean(), scale=stats.sem(x))


def test_levels_and_effects_match_scipy(tmp_path: Path) -> None:
    sweep = load_sweep(_write_sweep(tmp_path / "sweep"))
    assert sweep.baseline == "greedy"
    levels, effects = arm_levels(sweep), arm_effects(sweep)
    assert list(levels) == ["greedy", "explore"] and list(effects) == ["explore"]
    for index, outcome in enumerate(OUTCOMES):
        for arm in ARMS:
            x = np.array([v for s in range(3) if (v := _value(arm, s, index)) is not None])
            low, high = _t_interval(x)
            lo_dom, hi_dom = outcome.domain
            iv = levels[arm][outcome.key]
            np.testing.assert_allclose(
                [iv.mean, iv.low, iv.high],
                [x.mean(), max(low, lo_dom), min(high, np.inf if hi_dom is None else hi_dom)],
            )
        pairs = [
            (a, b)
            for s in range(3)
            if (a := _value("explore", s, index)) is not None
            and (b := _value("greedy", s, index)) is not None
        ]
        a, b = np.array(pairs).T
        pair = effects["explore"][outcome.key]
        low, high = _t_interval(a - b)
        np.testing.assert_allclose([pair.mean, pair.low, pair.high], [(a - b).mean(), low, high])
        np.testing.assert_allclose(pair.p, stats.ttest_rel(a, b).pvalue)
    assert effects["explore"]["revenue_per_user"].n == 2  # the seed without it drops out


def test_curve_band_is_the_t_interval_per_day(tmp_path: Path) -> None:
    sweep = load_sweep(_write_sweep(tmp_path / "sweep"))
    curve = arm_curve(sweep.jobs_of("explore", "finished"))
    shares = np.array([row[0] for row in ARMS["explore"]])
    np.testing.assert_allclose(curve["mean"], shares.mean(axis=0))
    for k in range(1, shares.shape[1]):
        low, high = _t_interval(shares[:, k])
        np.testing.assert_allclose([curve["low"][k], curve["high"][k]], [low, min(high, 1.0)])


def test_sweep_section_tables_and_figures(tmp_path: Path) -> None:
    sweep_dir = _write_sweep(tmp_path / "sweep")
    page = build_sweep_report(sweep_dir).read_text(encoding="utf-8")
    assert '<a href="#retention">Retention</a>' in page
    section = _section(page)
    levels = _cells(
        section.split('class="headline-table retention-levels"')[1].split("</table>")[0]
    )
    x = np.array([_value("greedy", s, 1) for s in range(3)])
    low, high = _t_interval(x)
    assert levels["greedy"][1] == f"{x.mean():.3f} [{max(low, 0):.3f}, {high:.3f}]"
    effects = _cells(section.split("retention-effects")[1].split("</table>")[0])
    a = np.array([_value("explore", s, 0) for s in range(3)])
    b = np.array([_value("greedy", s, 0) for s in range(3)])
    low, high = _t_interval(a - b)
    diff = f"{(a - b).mean() * 100:+.1f} pp [{low * 100:+.1f} pp, {high * 100:+.1f} pp]"
    assert effects["explore"][0].startswith(diff), effects["explore"][0]
    assert f"p = {stats.ttest_rel(a, b).pvalue:.3f}" in effects["explore"][0]
    assert 'id="fig-sweep-retention-curve"' in section
    assert 'id="fig-sweep-retention-satisfaction"' in section


def test_satiation_band_is_the_t_interval_of_the_jobs_day_rows(tmp_path: Path) -> None:
    sweep_dir = _write_sweep(tmp_path / "sweep")
    rng = np.random.default_rng(4)
    sated = {}
    for job in sorted(p for p in sweep_dir.iterdir() if p.is_dir()):
        values = rng.random(5) * 2
        sated[job.name] = values
        (job / "logs").mkdir(exist_ok=True)
        pl.DataFrame({"t": 24.0 * np.arange(5), "satiation_top_topic": values}).write_parquet(
            job / "logs" / "engagement_days.parquet"
        )
    sweep = load_sweep(sweep_dir)
    series = arm_satiation(sweep.jobs_of("explore", "finished"))
    x = np.array([v for name, v in sated.items() if "_explore_" in name])
    np.testing.assert_allclose(series["day"], np.arange(5))
    np.testing.assert_allclose(series["mean"], x.mean(axis=0))
    for d in range(5):
        low, high = _t_interval(x[:, d])
        np.testing.assert_allclose([series["low"][d], series["high"][d]], [max(low, 0.0), high])
    section = _section(build_sweep_report(sweep_dir).read_text(encoding="utf-8"))
    assert 'id="fig-sweep-retention-satiation"' in section
    assert 'id="fig-sweep-retention-ctr"' not in section  # these jobs' metrics have no ctr


def test_no_mechanism_panel_without_satiation(tmp_path: Path) -> None:
    section = _section(build_sweep_report(_write_sweep(tmp_path / "sweep")).read_text("utf-8"))
    assert 'id="fig-sweep-retention-satiation"' not in section


def test_no_sweep_section_without_engagement(tmp_path: Path) -> None:
    page = build_sweep_report(_write_sweep(tmp_path / "sweep", engaged=False)).read_text(
        encoding="utf-8"
    )
    assert 'id="retention"' not in page


READ_RETENTION = """() => {
  const TYPES = {f8: Float64Array, f4: Float32Array, i4: Int32Array, i8: BigInt64Array};
  const arr = v => (v == null ? [] : v.bdata === undefined ? Array.from(v)
    : Array.from(new TYPES[v.dtype](Uint8Array.from(atob(v.bdata), c => c.charCodeAt(0)).buffer),
                 Number));
  const out = {};
  for (const div of document.querySelectorAll('.plotly-graph-div')) {
    if (div.id.startsWith('fig-retention')) {
      out[div.id] = {drawn: !!div.querySelector('.main-svg'),
                     traces: div.data.map(t => ({name: t.name, meta: t.meta, x: arr(t.x),
                                                 y: arr(t.y)}))};
    }
  }
  return out;
}"""


@pytest.mark.slow
def test_retention_section_draws_in_a_browser(engaged_run: Path, tmp_path: Path) -> None:
    from test_browser import open_page

    seen = open_page(engaged_run / "report.html", tmp_path / "run.png", READ_RETENTION)
    assert seen["errors"] == [] and seen["failed"] == []
    figures = seen["page"]
    assert len(figures) == 8 and all(f["drawn"] for f in figures.values())
    metrics = pl.read_parquet(engaged_run / "metrics.parquet").sort("window")
    active = figures["fig-retention-active"]["traces"][0]
    np.testing.assert_allclose(active["y"], metrics["active_users"].to_numpy())
    np.testing.assert_allclose(active["x"], metrics["t_end"].to_numpy() / 24.0)
    days = pl.read_parquet(engaged_run / "logs" / "engagement_days.parquet").sort("t")
    drawn = {
        t["meta"]["column"]: t["y"]
        for t in figures["fig-retention-satisfaction"]["traces"]
        if t.get("meta")
    }
    for column in ("satisfaction_mean", "satisfaction_p10", "satisfaction_p50", "satisfaction_p90"):
        np.testing.assert_allclose(drawn[column], days[column].to_numpy())
    curves = pl.read_parquet(engaged_run / "retention_curves.parquet")
    day0 = curves.filter((pl.col("cohort") == "active") & (pl.col("start_day") == 0)).sort("k")
    np.testing.assert_allclose(
        figures["fig-retention-curves"]["traces"][0]["y"], day0["share"].to_numpy()
    )
