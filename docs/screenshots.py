"""Screenshots of report pages for the README (headless Debian chromium through playwright).

    .venv/bin/python docs/screenshots.py PAGE.html OUT.png [--height 900] [--full]

Takes the top ``--height`` pixels of the page at 1280 px width (a laptop screen) (what a reader sees first), or
the whole page with ``--full``; waits until every plotly figure is drawn. The README's
*Reading the reports* images are made with it from the runs named there.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from playwright.sync_api import sync_playwright

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def screenshot(page_path: Path, out: Path, height: int = 900, full: bool = False) -> Path:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": height})
        page.goto(Path(page_path).resolve().as_uri())
        page.wait_for_load_state("networkidle")
        page.wait_for_function(
            "() => Array.from(document.querySelectorAll('.plotly-graph-div'))"
            ".every(d => d.querySelector('.main-svg'))",
            timeout=60_000,
        )
        page.screenshot(path=str(out), full_page=full)
        browser.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("page", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--height", type=int, default=900)
    parser.add_argument("--full", action="store_true")
    args = parser.parse_args()
    path = screenshot(args.page, args.out, args.height, args.full)
    print(f"{path} ({path.stat().st_size / 1e3:.0f} kB)")


if __name__ == "__main__":
    main()
