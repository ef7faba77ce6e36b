"""The reports open in a real headless browser: no console errors, no failed requests, every
figure drawn by plotly. Uses Debian's chromium through the playwright package (no browser
download). Skipped where either is missing, except in CI (``CI=true``), where .ci/run installs
chromium and a skip would hide a broken page."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from experiments.run import run
from reports.sweep_report import build_sweep_report

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _browser_or_skip():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    missing = sync_playwright is None or not Path(CHROMIUM).exists()
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail("CI must have chromium and playwright for the browser test")
        pytest.skip("needs Debian's chromium and the playwright package")
    return sync_playwright


def open_page(html: Path, screenshot: Path, script: str | None = None) -> dict:
    """Load ``html`` headless; return console errors, failed requests and figure counts, and
    what ``script`` (a JavaScript function, when given) returns under ``"evaluated"``."""
    sync_playwright = _browser_or_skip()
    errors: list[str] = []
    failed: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        page = browser.new_page(viewport={"width": 1300, "height": 900})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("requestfailed", lambda r: failed.append(r.url))
        page.goto(html.as_uri())
        page.wait_for_selector(".plotly-graph-div .main-svg", timeout=30_000)
        page.wait_for_load_state("networkidle")
        divs = page.locator(".plotly-graph-div").count()
        drawn = page.locator(".plotly-graph-div .main-svg").first.evaluate(
            "() => document.querySelectorAll('.plotly-graph-div').length === "
            "Array.from(document.querySelectorAll('.plotly-graph-div'))"
            ".filter(d => d.querySelector('.main-svg')).length"
        )
        evaluated = page.evaluate(script) if script else None
        page.screenshot(path=str(screenshot), full_page=True)
        browser.close()
    return {
        "errors": errors,
        "failed": failed,
        "divs": divs,
        "all_drawn": drawn,
        "evaluated": evaluated,
    }


@pytest.mark.slow
def test_sweep_report_renders_in_a_browser(tmp_path):
    from conftest import tiny_config

    sweep = tmp_path / "sweep"
    for i, (policy, seed) in enumerate(
        [("greedy", 0), ("greedy", 1), ("random", 0), ("random", 1)]
    ):
        overrides = {"seed": seed, "policy.name": policy}
        if policy == "random":
            overrides |= {"policy.scorer": "random", "policy.selector": "uniform"}
        job = sweep / str(i)
        run(tiny_config(**overrides, **{"report.enabled": True}), job)
        (job / ".hydra").mkdir()
        (job / ".hydra" / "overrides.yaml").write_text(f"- policy={policy}\n- seed={seed}\n")
    (sweep / "4").mkdir()
    (sweep / "4" / "status.json").write_text('{"status": "failed", "error": "RuntimeError: boom"}')
    report = build_sweep_report(sweep)
    shot = tmp_path / "sweep.png"
    seen = open_page(report, shot)
    assert seen["errors"] == [] and seen["failed"] == []
    assert seen["divs"] >= 5 and seen["all_drawn"]
    assert shot.stat().st_size > 10_000
    run_seen = open_page(sweep / "0" / "report.html", tmp_path / "run.png")
    assert run_seen["errors"] == [] and run_seen["failed"] == [] and run_seen["all_drawn"]


# Every plotted metric series of a page: its catalog column (the trace's meta), the y values
# plotly drew and the y axis it drew them on, as plotly laid it out.
PLOTTED_AXES = """() => Array.from(document.querySelectorAll('.plotly-graph-div')).flatMap(gd =>
  gd._fullData.filter(t => t.meta && t.meta.column).map(t => {
    const axis = gd._fullLayout[(t.yaxis || 'y').replace('y', 'yaxis')];
    return {figure: gd.id, column: t.meta.column, type: axis.type, range: axis.range,
            y: Array.from(t.y).filter(v => v !== null && Number.isFinite(v))};
  }))"""


def _assert_axes_within_domains(plotted: list[dict]) -> None:
    """Each bounded metric's axis stays in its catalog domain (up to the report's edge padding)
    and shows every value drawn; a log axis is used where the catalog asks for one."""
    from reports.metric_catalog import CATALOG
    from reports.run_report import PAD

    assert plotted
    for series in plotted:
        info = CATALOG[series["column"]]
        lo, hi = series["range"]
        values = series["y"]
        where = (series["figure"], series["column"], series["range"])
        assert series["type"] == ("log" if info.log_axis else "linear"), where
        if info.log_axis:  # range in log10 units
            lo, hi = 10**lo, 10**hi
            assert all(lo <= v <= hi for v in values), where
            assert hi <= 10 ** (PAD * 10), where  # a propensity axis ends near 1
            continue
        slack = PAD * (hi - lo) / (1 + 2 * PAD) + 1e-9  # the padding beyond the domain
        low, high = info.domain
        assert low is None or lo >= low - slack, where
        assert high is None or hi <= high + slack, where
        assert all(lo <= v <= hi for v in values), where


@pytest.mark.slow
def test_run_reports_axes_in_a_browser(tmp_path):
    """A run on its own (ε-greedy: every panel drawn) and two jobs of a sweep (greedy, random:
    panels replaced by a line, one shared plotly.min.js): no console error, no failed request,
    every figure drawn, and no plotted axis of a bounded metric leaves its range."""
    from conftest import tiny_config

    single = tmp_path / "single"
    run(tiny_config("policy=epsilon_greedy", **{"report.enabled": True}), single)
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / "multirun.yaml").write_text("hydra: {}\n")
    for i, preset in enumerate(["greedy", "random"]):
        run(tiny_config(f"policy={preset}", **{"report.enabled": True}), sweep / str(i))
    assert [p.name for p in tmp_path.rglob("*.js")] == ["plotly.min.js"]
    plotted = {}
    for run_dir in (single, sweep / "0", sweep / "1"):
        seen = open_page(run_dir / "report.html", tmp_path / f"{run_dir.name}.png", PLOTTED_AXES)
        assert seen["errors"] == [] and seen["failed"] == [], run_dir
        assert seen["all_drawn"] and seen["divs"] >= 6, run_dir
        _assert_axes_within_domains(seen["evaluated"])
        plotted[run_dir] = {s["column"] for s in seen["evaluated"]}
    assert {"min_propensity", "model_ndcg", "coverage_exposure", "ctr"} <= plotted[single]
    assert "model_ndcg" not in plotted[sweep / "1"]  # random: no model to score
