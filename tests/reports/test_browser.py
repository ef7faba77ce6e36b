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


def open_page(html: Path, screenshot: Path) -> dict:
    """Load ``html`` headless; return console errors, failed requests and figure counts."""
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
        page.screenshot(path=str(screenshot), full_page=True)
        browser.close()
    return {"errors": errors, "failed": failed, "divs": divs, "all_drawn": drawn}


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
