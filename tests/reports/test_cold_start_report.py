"""The Cold start sections of the run report and the sweep report.

The run report: a tiny living run gets the section, a fixed world none; every number in its
table is the summary's value formatted; the hand-off histogram is drawn from
``cold_start_items.parquet`` with the summary's median marked. The sweep report: hand-made run
folders (the layers that produce these values are built elsewhere), and every effect in the
table against scipy's paired t-interval on the same per-seed values.
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

from reports.cold_start_section import ALWAYS_SHOWN, RUN_ROWS
from reports.metric_catalog import format_metric
from reports.run_report import build_run_report
from reports.sweep_cold_start import OUTCOMES, cold_start_effects
from reports.sweep_folder import load_sweep
from reports.sweep_report import build_sweep_report

LIVING = {
    "world.item_arrival_rate": 15,
    "world.item_lifetime_days": 20,
    "world.user_arrival_rate": 30,
    "report.enabled": True,
}


def _section(page: str, anchor: str = "cold-start") -> str:
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
def living_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from conftest import tiny_config

    from experiments.run import run

    out = tmp_path_factory.mktemp("living") / "run"
    run(tiny_config(**LIVING), out)
    return out


def test_living_run_has_the_section_and_its_numbers_are_the_summary_values(living_run: Path):
    summary = json.loads((living_run / "summary.json").read_text())
    block = summary["cold_start"]
    assert block["new_items"] > 0 and block["new_users"] > 0
    page = (living_run / "report.html").read_text(encoding="utf-8")
    section = _section(page)
    for div in ("fig-cold-start-exposure", "fig-cold-start-utility", "fig-cold-start-survival"):
        assert f'id="{div}"' in section, div
    table = section.split('<table class="cold-start">')[1].split("</table>")[0]
    rows = _cells(table)
    shown = 0
    for key, label, kind in RUN_ROWS:
        title = label[:1].upper() + label[1:]
        if block.get(key) is None and not key.startswith(ALWAYS_SHOWN):
            assert title not in rows, key  # a layer that was off: no row
            continue
        assert rows[title] == [format_metric(block.get(key), kind)], key
        shown += block.get(key) is not None
    assert shown >= 4
    assert rows["Median time to first click (Kaplan–Meier)"] == [
        format_metric(block["first_click_median_h"], "hours")  # "–" when not reached
    ]
    # the per-window table: first, final and mean of each newcomer column from metrics.parquet
    m = pl.read_parquet(living_run / "metrics.parquet").sort("window")
    window_rows = _cells(section.split('<table class="metrics">')[1].split("</table>")[0])
    values = m["new_user_utility"].to_numpy()
    assert window_rows["New-user utility"][1:] == [
        format_metric(values[0], "num"),
        format_metric(values[-1], "num"),
        format_metric(np.nanmean(values), "num"),
    ]
    # the survival curve: the file's steps, from (0, 1)
    survival = pl.read_parquet(living_run / "cold_start_survival.parquet")
    impressions = survival.filter(pl.col("event") == "first_impression")
    assert impressions["survival"].is_sorted(descending=True)
    items = pl.read_parquet(living_run / "cold_start_items.parquet")
    assert items.height == block["new_items"]
    duration = items["first_impression_h"].fill_null(items["end_t"] - items["arrival_t"])
    first = impressions["hours"][0]
    assert impressions["at_risk"][0] == int((duration >= first).sum())


def test_handoff_histogram_marks_the_summary_median(living_run: Path, tmp_path: Path):
    """Hand-made jumps (the item-rank probe is another layer): the histogram draws them and its
    median line and label are the summary's value."""
    run = tmp_path / "run"
    import shutil

    shutil.copytree(living_run, run)
    items = pl.read_parquet(run / "cold_start_items.parquet")
    jumps = np.linspace(-0.3, 0.5, items.height)
    items.with_columns(jump_rank=pl.Series(jumps)).write_parquet(run / "cold_start_items.parquet")
    summary = json.loads((run / "summary.json").read_text())
    median = float(np.median(jumps))
    summary["cold_start"] |= {
        "handoff_count": items.height,
        "handoff_median_jump_rank": median,
        "handoff_median_abs_jump_rank": float(np.median(np.abs(jumps))),
    }
    (run / "summary.json").write_text(json.dumps(summary))
    section = _section(build_run_report(run).read_text(encoding="utf-8"))
    assert 'id="fig-cold-start-jump"' in section
    assert f"median {format_metric(median, 'signed')}" in section
    figure = section.split('id="fig-cold-start-jump"')[1]
    assert re.search(r'"x0":\s*' + re.escape(repr(median)), figure)


def test_fixed_world_has_no_section(run_tiny) -> None:
    out = run_tiny("fixed", **{"report.enabled": True})
    page = (out / "report.html").read_text(encoding="utf-8")
    assert 'id="cold-start"' not in page
    summary = json.loads((out / "summary.json").read_text())
    assert "cold_start" not in summary
    assert not (out / "cold_start_items.parquet").exists()
    m = pl.read_parquet(out / "metrics.parquet")
    assert m["new_user_utility"].is_nan().all() and m["new_items_arrived"].is_nan().all()


# ---------------------------------------------------------------- sweep

SEEDS = (0, 1, 2)
# per arm and seed, in OUTCOMES order: (first_click_rmst_7d_h, first_click_within_7d,
# new_user_utility, established_utility, |jump|)
ARMS = {
    "greedy": [
        (160.0, 0.03, 0.20, 0.30, 0.40),
        (165.0, 0.02, 0.22, 0.31, 0.45),
        (150.0, 0.06, 0.21, 0.29, 0.50),
    ],
    "content": [
        (120.0, 0.40, 0.25, 0.30, 0.10),
        (135.0, 0.35, 0.26, 0.30, 0.12),
        (None, 0.45, 0.24, 0.28, 0.08),
    ],
    "all": [
        (60.0, 0.70, 0.30, 0.27, 0.05),
        (72.0, 0.66, 0.31, 0.29, 0.06),
        (65.0, 0.75, 0.33, 0.26, 0.07),
    ],
}


def _write_sweep(root: Path, living: bool = True) -> Path:
    num = 0
    for arm, per_seed in ARMS.items():
        for seed, (click, within, new_u, est, jump) in zip(SEEDS, per_seed, strict=True):
            # two windows' values whose mean is the table's: the section averages over windows
            metrics = {
                "utility": [0.3] * N_WINDOWS,
                "coverage_exposure": [0.5] * N_WINDOWS,
                "new_user_utility": [new_u - 0.01, new_u + 0.01, float("nan"), new_u],
                "established_utility": [est + 0.02, est - 0.02, est, est],
            }
            job = root / f"{num}_{arm}_seed{seed}"
            _write_finished(
                job,
                arm,
                seed,
                [f"policy={arm}", f"seed={seed}"],
                np.ones(20, dtype=np.int64),
                metrics,
                f"seed: {seed}\npolicy:\n  name: {arm}\n",
            )
            if living:
                summary = json.loads((job / "summary.json").read_text())
                summary["cold_start"] = {
                    "first_click_rmst_7d_h": click,
                    "first_click_within_7d": within,
                    "handoff_median_abs_jump_rank": jump,
                }
                (job / "summary.json").write_text(json.dumps(summary))
            num += 1
    return root


def _expected(arm: str, index: int) -> tuple[float, float, float, int]:
    pairs = [
        (a[index], b[index])
        for a, b in zip(ARMS[arm], ARMS["greedy"], strict=True)
        if a[index] is not None and b[index] is not None
    ]
    a = np.array([p[0] for p in pairs])
    b = np.array([p[1] for p in pairs])
    d = a - b
    low, high = stats.t.interval(0.95, d.size - 1, loc=d.mean(), scale=stats.sem(d))
    return d.mean(), low, high, d.size


def test_sweep_effects_match_scipy(tmp_path: Path) -> None:
    sweep = load_sweep(_write_sweep(tmp_path / "sweep"))
    assert sweep.baseline == "greedy"
    effects = cold_start_effects(sweep)
    assert set(effects) == {"content", "all"}
    for arm in effects:
        for index, outcome in enumerate(OUTCOMES):
            pair = effects[arm][outcome.key]
            mean, low, high, n = _expected(arm, index)
            assert pair.n == n, (arm, outcome.key)
            np.testing.assert_allclose([pair.mean, pair.low, pair.high], [mean, low, high])
    # the seed without a value drops out of that outcome only
    assert effects["content"]["first_click_rmst_7d_h"].n == 2
    assert effects["content"]["new_user_utility"].n == 3


def test_sweep_section_table_and_forest_plot(tmp_path: Path) -> None:
    page = build_sweep_report(_write_sweep(tmp_path / "sweep")).read_text(encoding="utf-8")
    assert '<a href="#cold-start">Cold start</a>' in page
    section = _section(page)
    rows = _cells(section.split("<tbody>")[1].split("</tbody>")[0])
    assert set(rows) == {"content", "all"}
    mean, low, high, _ = _expected("all", 2)
    text = rows["all"][2]
    assert text.startswith(f"{mean:+.3f} [{low:+.3f}, {high:+.3f}]"), text
    mean, low, high, _ = _expected("content", 0)
    assert rows["content"][0].startswith(f"{mean:+,.1f} [{low:+,.1f}, {high:+,.1f}]")
    assert 'id="fig-cold-start-effects"' in section


def test_no_sweep_section_without_arrivals(tmp_path: Path) -> None:
    page = build_sweep_report(_write_sweep(tmp_path / "sweep", living=False)).read_text(
        encoding="utf-8"
    )
    assert 'id="cold-start"' not in page


READ_COLD_START = """() => {
  const TYPES = {f8: Float64Array, f4: Float32Array, i4: Int32Array};
  const arr = v => (v == null ? [] : v.bdata === undefined ? Array.from(v)
    : Array.from(new TYPES[v.dtype](Uint8Array.from(atob(v.bdata), c => c.charCodeAt(0)).buffer)));
  const out = {};
  for (const div of document.querySelectorAll('.plotly-graph-div')) {
    if (div.id.startsWith('fig-cold-start')) {
      out[div.id] = {drawn: !!div.querySelector('.main-svg'),
                     traces: div.data.map(t => ({name: t.name, x: arr(t.x), y: arr(t.y)}))};
    }
  }
  return out;
}"""


@pytest.mark.slow
def test_cold_start_section_draws_in_a_browser(living_run: Path, tmp_path: Path) -> None:
    from test_browser import open_page

    seen = open_page(living_run / "report.html", tmp_path / "run.png", READ_COLD_START)
    assert seen["errors"] == [] and seen["failed"] == []
    figures = seen["page"]
    assert set(figures) >= {
        "fig-cold-start-exposure",
        "fig-cold-start-utility",
        "fig-cold-start-survival",
    }
    assert all(f["drawn"] for f in figures.values())
    survival = pl.read_parquet(living_run / "cold_start_survival.parquet")
    for trace in figures["fig-cold-start-survival"]["traces"]:
        event = "first_click" if "click" in trace["name"] else "first_impression"
        steps = survival.filter(pl.col("event") == event).sort("hours")
        assert trace["x"][0] == 0.0 and trace["y"][0] == 1.0
        np.testing.assert_allclose(trace["y"][1 : steps.height + 1], steps["survival"].to_numpy())
        np.testing.assert_allclose(trace["x"][1 : steps.height + 1], steps["hours"].to_numpy())
