"""The HTML page every report shares: style, figure embedding and the page itself.

Each figure is embedded without plotly.js; the page loads it once, in the head. A single run's
page inlines it (one self-contained file). The pages of a sweep share one copy: the sweep folder
gets ``plotly.min.js`` (:func:`shared_plotlyjs`) and the sweep report and every job's report load
it by a relative path, so a 30-job sweep holds one 4.6 MB bundle instead of 31, and the folder
still opens offline (moved or copied whole).
"""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio
from _plotly_utils.utils import convert_to_base64
from plotly.offline import get_plotlyjs

from reports.atomic_write import atomic_path

FIG_HEIGHT = 350
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd")

CSS = """
body { margin: 0; background: #fafafa; color: #222;
  font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
  line-height: 1.45; }
.container { max-width: 1000px; margin: 0 auto; padding: 1.5rem 1.25rem 3rem; background: #fff; }
h1 { font-size: 1.6rem; margin-bottom: 0.3rem; }
h2 { font-size: 1.25rem; margin-top: 2.2rem; border-bottom: 1px solid #ddd; padding-bottom: .2rem; }
h3 { font-size: 1.05rem; margin: 1.6rem 0 0.2rem; }
.headline { font-size: 1.1rem; }
.meta, .caption, footer { color: #555; font-size: 0.9rem; }
table { border-collapse: collapse; margin: 0.6rem 0; font-size: 0.92rem; }
th, td { padding: 0.3rem 0.7rem; border-bottom: 1px solid #e5e5e5; text-align: left; }
th { background: #f3f3f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
pre { background: #f6f6f6; padding: 0.8rem; overflow-x: auto; font-size: 0.85rem; }
footer { margin-top: 3rem; border-top: 1px solid #ddd; padding-top: 0.6rem; }
"""


def figure_html(fig: go.Figure | dict[str, Any], div_id: str) -> str:
    """The figure as a ``<div>`` (plotly.js not included: :func:`write_page` inlines it once).
    A plain dict (:func:`figure_dict`) is written as it is, without plotly's validation."""
    return pio.to_html(
        fig,
        validate=not isinstance(fig, dict),
        full_html=False,
        include_plotlyjs=False,
        div_id=div_id,
        config={"displaylogo": False, "responsive": True},
    )


def plain_template(name: str = "plotly_white") -> dict[str, Any]:
    """A plotly template as the dict a validated figure carries in ``layout.template`` (built
    once; shared read-only by every :func:`figure_dict`)."""
    if name not in _TEMPLATES:  # as validation lays it out (its keys in plotly's order)
        _TEMPLATES[name] = go.Figure().update_layout(template=name).to_dict()["layout"]["template"]
    return _TEMPLATES[name]


_TEMPLATES: dict[str, dict[str, Any]] = {}


def figure_dict(data: list[dict[str, Any]], layout: dict[str, Any]) -> dict[str, Any]:
    """A figure as a plain dict, ready for :func:`figure_html` without plotly's validation
    (which costs tens of milliseconds a figure): numpy arrays become plotly's typed-array specs
    as ``go.Figure.to_dict`` makes them. The caller builds what a validated figure would hold
    (``tests/reports/test_figure_dicts.py`` checks that plotly's validator leaves it unchanged)."""
    fig = {"data": data, "layout": layout}
    convert_to_base64(data)
    return fig


PLOTLY_JS = "plotly.min.js"


def shared_plotlyjs(folder: Path) -> Path:
    """``folder/plotly.min.js``: plotly.js written once (atomically, so parallel jobs of a sweep
    can race for it) and rewritten only when it is not this plotly's bundle."""
    path = Path(folder) / PLOTLY_JS
    bundle = get_plotlyjs()
    if path.is_file() and path.stat().st_size == len(bundle.encode("utf-8")):
        if path.read_text(encoding="utf-8") == bundle:
            return path
    with atomic_path(path, tag=str(os.getpid())) as tmp:
        tmp.write_text(bundle, encoding="utf-8")
    return path


def write_page(path: Path, title: str, css: str, body: str, plotly_src: str | None = None) -> Path:
    """Write a page atomically: plotly.js once in the head, then ``body`` (already-escaped HTML)
    in the container. Returns ``path``.

    ``plotly_src`` None inlines plotly.js (a self-contained page); otherwise it is the relative
    URL of a shared copy (``plotly.min.js``, ``../plotly.min.js``) that the caller has written
    with :func:`shared_plotlyjs`.
    """
    if plotly_src is None:
        script = f'<script type="text/javascript">{get_plotlyjs()}</script>'
    else:
        script = f'<script type="text/javascript" src="{html.escape(plotly_src)}"></script>'
    page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<style>{css}</style>
{script}
</head>
<body>
<main class="container">
{body}</main>
</body>
</html>
"""
    with atomic_path(path) as tmp:  # readers never see a half-written page; no temp file left
        tmp.write_text(page, encoding="utf-8")
    return path
