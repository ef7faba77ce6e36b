"""The reports open in a real headless browser: no console errors, no failed requests, every
figure drawn by plotly, and — read from the page's own plot data — every band and error bar of a
2-seed sweep inside its metric's range and every Lorenz legend Gini equal to the table's. Uses
Debian's chromium through the playwright package (no browser download). Skipped where either is
missing, except in CI (``CI=true``), where .ci/run installs chromium and a skip would hide a
broken page."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from experiments.run import run
from reports.metric_catalog import CATALOG
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
# Everything the assertions need, read in the page: each figure's traces and axis ranges as
# plotly holds them, the script sources, and the exposure Gini text of each arm in the headline
# table and in the final table. Numpy arrays reach plotly as base64 typed arrays ({dtype,
# bdata}), which stay encoded in ``div.data``: decoded here, so no array reads as empty.
READ_PAGE = """() => {
  const TYPES = {f8: Float64Array, f4: Float32Array, i1: Int8Array, u1: Uint8Array,
                 i2: Int16Array, u2: Uint16Array, i4: Int32Array, u4: Uint32Array};
  const arr = v => {
    if (v == null) return [];
    if (v.bdata === undefined) return Array.from(v);
    const bytes = Uint8Array.from(atob(v.bdata), c => c.charCodeAt(0));
    return Array.from(new TYPES[v.dtype](bytes.buffer));
  };
  const bar = e => (e && e.visible ? {plus: arr(e.array), minus: arr(e.arrayminus)} : null);
  const figures = {};
  for (const div of document.querySelectorAll('.plotly-graph-div')) {
    figures[div.id] = {
      traces: div.data.map(t => ({name: t.name, fill: t.fill || null, x: arr(t.x), y: arr(t.y),
                                  ex: bar(t.error_x), ey: bar(t.error_y)})),
      xrange: arr(div.layout.xaxis && div.layout.xaxis.range),
      yrange: arr(div.layout.yaxis && div.layout.yaxis.range),
      ylog: !!(div.layout.yaxis && div.layout.yaxis.type === 'log'),
    };
  }
  const text = el => el.textContent.trim();
  const head = document.querySelector('table.headline-table');
  const col = Array.from(head.querySelectorAll('thead th')).map(text).indexOf('Exposure Gini');
  const headline = {};
  for (const tr of head.querySelectorAll('tbody tr')) {
    const cells = tr.querySelectorAll('td');
    headline[text(cells[0])] = text(cells[col].querySelector('div'));
  }
  const final = {};
  let group = '';
  for (const tr of document.querySelectorAll('table.final tbody tr')) {
    if (tr.classList.contains('group')) { group = text(tr).split(' — ')[0]; continue; }
    const cells = tr.querySelectorAll('td');
    if (group === 'Exposure Gini') final[text(cells[0])] = text(cells[2]);
  }
  const scripts = Array.from(document.scripts);
  return {figures, headline, final,
          sources: scripts.filter(s => s.src).map(s => s.src),
          longest_inline: Math.max(...scripts.filter(s => !s.src).map(s => s.text.length)),
          plotly: typeof window.Plotly};
}"""


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


def open_page(
    html: Path, screenshot: Path, read: str | None = None, script: str | None = None
) -> dict[str, Any]:
    """Load ``html`` headless; return console errors, failed and all requests, figure counts
    and, with ``read`` (or ``script``), what that JavaScript function returns in the page
    (under ``"page"`` and ``"evaluated"``)."""
    sync_playwright = _browser_or_skip()
    errors: list[str] = []
    failed: list[str] = []
    requests: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        page = browser.new_page(viewport={"width": 1300, "height": 900})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("requestfailed", lambda r: failed.append(r.url))
        page.on("request", lambda r: requests.append(r.url))
        page.goto(html.as_uri())
        page.wait_for_selector(".plotly-graph-div .main-svg", timeout=30_000)
        page.wait_for_load_state("networkidle")
        divs = page.locator(".plotly-graph-div").count()
        drawn = page.locator(".plotly-graph-div .main-svg").first.evaluate(
            "() => document.querySelectorAll('.plotly-graph-div').length === "
            "Array.from(document.querySelectorAll('.plotly-graph-div'))"
            ".filter(d => d.querySelector('.main-svg')).length"
        )
        js = read or script
        seen = page.evaluate(js) if js else None
        page.screenshot(path=str(screenshot), full_page=True)
        browser.close()
    return {
        "errors": errors,
        "failed": failed,
        "requests": requests,
        "divs": divs,
        "all_drawn": drawn,
        "page": seen,
        "evaluated": seen,
    }


def _inside(values: list[float], low: float | None, high: float | None) -> bool:
    return all((low is None or v >= low) and (high is None or v <= high) for v in values)


def _check_ranges(figures: dict[str, Any], check: Callable[[bool, str], None]) -> int:
    """Every trace of every metric panel inside its metric's range, every axis too (2% padding);
    the trade-off's error bars inside coverage 0–100% and utility ≥ 0; the Lorenz bands in
    [0, 1]. Returns the number of bands and error bars checked."""
    checked = 0
    for div_id, fig in figures.items():
        if div_id.startswith("fig-ts-"):
            metric = CATALOG[div_id.removeprefix("fig-ts-")]
            low, high = metric.domain
            for trace in fig["traces"]:
                check(len(trace["y"]) > 0, f"{div_id} {trace['name']}: no data read")
                check(_inside(trace["y"], low, high), f"{div_id} {trace['name']}")
                checked += trace["fill"] == "toself"
            a, b = fig["yrange"]
            pad = 0.021 * (b - a)
            if not fig["ylog"]:
                check(_inside([a + pad, b - pad], low, high), f"{div_id} axis {a}..{b}")
    tradeoff = figures["fig-tradeoff"]
    check(tradeoff["xrange"] == [-0.02, 1.02], "trade-off x axis 0–100%")
    for trace in tradeoff["traces"]:
        (x,), (y,) = trace["x"], trace["y"]
        ex, ey = trace["ex"], trace["ey"]
        check(ex is not None and ey is not None, f"error bars of {trace['name']}")
        check(_inside([x - ex["minus"][0], x + ex["plus"][0]], 0.0, 1.0), trace["name"])
        check(_inside([y - ey["minus"][0]], 0.0, None), trace["name"])
        checked += 2
    for trace in figures["fig-lorenz"]["traces"]:
        check(len(trace["y"]) > 1, f"Lorenz {trace['name']}: no data read")
        check(_inside(trace["y"], 0.0, 1.0), f"Lorenz {trace['name']}")
        checked += trace["fill"] == "toself"
    return checked


@pytest.mark.slow
def test_sweep_report_in_a_browser_stays_in_range_and_agrees_with_its_tables(tmp_path):
    from conftest import tiny_config

    sweep = tmp_path / "sweep"
    arms = ("greedy", "epsilon_greedy")
    for i, (policy, seed) in enumerate((p, s) for p in arms for s in (0, 1)):
        job = sweep / f"{i}_{policy}_seed{seed}"
        run(tiny_config(f"policy={policy}", seed=seed, **{"report.enabled": True}), job)
        (job / ".hydra").mkdir()
        (job / ".hydra" / "overrides.yaml").write_text(f"- policy={policy}\n- seed={seed}\n")
    (sweep / "4").mkdir()
    (sweep / "4" / "status.json").write_text('{"status": "failed", "error": "RuntimeError: boom"}')
    report = build_sweep_report(sweep)
    shot = tmp_path / "sweep.png"
    seen = open_page(report, shot, READ_PAGE)
    assert seen["errors"] == [] and seen["failed"] == []
    assert seen["divs"] >= 5 and seen["all_drawn"]
    assert shot.stat().st_size > 10_000
    page = seen["page"]
    # plotly from the sweep's one shared copy, not inlined
    shared = (sweep / "plotly.min.js").as_uri()
    assert page["sources"] == [shared] and shared in seen["requests"]
    assert page["plotly"] == "object" and page["longest_inline"] < 1_000_000

    problems: list[str] = []
    checked = _check_ranges(page["figures"], lambda ok, what: ok or problems.append(what))
    assert problems == []
    assert checked >= 8  # bands of 2-seed arms in every panel, 4 error bars, 2 Lorenz bands

    legend = {
        name.split(": Gini ")[0]: name.split(": Gini ")[1]
        for t in page["figures"]["fig-lorenz"]["traces"]
        if ": Gini " in (name := t["name"])
    }
    assert set(legend) == set(arms)
    for arm in arms:
        table = page["final"][arm].split(" [")[0]
        assert legend[arm] == table == page["headline"][arm].split(" [")[0]

    run_seen = open_page(sweep / "0_greedy_seed0" / "report.html", tmp_path / "run.png")
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
