"""The run report's time panels are built as plain dicts and written without plotly's validation
(:func:`reports.run_report._time_figure`, :func:`reports.page.figure_dict`): plotly's validator
must accept every one of them and change nothing, whatever the panel's kind (one axis or two,
stacked, log scale, columns missing from an older run), and the traces must carry the metrics'
own values."""

from __future__ import annotations

import base64

import numpy as np
import plotly.graph_objects as go
import polars as pl
import pytest

from reports.metric_catalog import metric_info
from reports.run_report import (
    COLD_START_PANELS,
    OBJECTIVE_PANELS,
    PANELS,
    RETENTION_PANELS,
    SERVING_PANELS,
    _time_figure,
)

ALL_PANELS = (*PANELS, *SERVING_PANELS, *OBJECTIVE_PANELS, *COLD_START_PANELS, *RETENTION_PANELS)


def _metrics(n_windows: int, seed: int = 0) -> pl.DataFrame:
    """Every panel column over ``n_windows`` windows: shares in [0, 1], log-axis metrics over
    five orders of magnitude, a missing value in each."""
    rng = np.random.default_rng(seed)
    columns = {c for p in ALL_PANELS for c in (*p.left, *p.right)}
    data: dict[str, object] = {
        "window": np.arange(n_windows),
        "t_end": 24.0 * np.arange(1, n_windows + 1),
    }
    for c in sorted(columns):
        v = (
            10.0 ** rng.uniform(-4, 1, n_windows)
            if metric_info(c).log_axis
            else rng.random(n_windows)
        )
        v[rng.integers(n_windows)] = np.nan
        data[c] = v
    return pl.DataFrame(data)


def _decode(spec: dict[str, str]) -> np.ndarray:
    return np.frombuffer(base64.b64decode(spec["bdata"]), dtype=np.dtype(spec["dtype"]))


@pytest.mark.parametrize("n_windows", [1, 12, 80])  # 80: lines without markers
@pytest.mark.parametrize("panel", ALL_PANELS, ids=lambda p: p.div_id)
def test_a_panel_dict_is_what_plotly_validates_it_to(panel, n_windows):
    m = _metrics(n_windows)
    fig = _time_figure(panel, m, np.array([1.0, 2.5, 7.0]))
    assert go.Figure(fig).to_dict() == fig  # validation would change nothing: no bad key
    traces = fig["data"]
    assert [t["meta"]["column"] for t in traces] == [*panel.left, *panel.right]
    for t in traces:
        want = m[t["meta"]["column"]].to_numpy()
        np.testing.assert_array_equal(_decode(t["y"]), want)  # NaN where the metric is missing
        np.testing.assert_array_equal(_decode(t["x"]), m["t_end"].to_numpy() / 24.0)
        assert t["yaxis"] == ("y2" if t["meta"]["column"] in panel.right else "y")
    assert ("yaxis2" in fig["layout"]) == bool(panel.right)
    assert [s["x0"] for s in fig["layout"]["shapes"]] == [1.0, 2.5, 7.0]


@pytest.mark.parametrize("panel", [p for p in ALL_PANELS if p.right], ids=lambda p: p.div_id)
def test_an_older_run_without_a_panels_right_columns_still_validates(panel):
    m = _metrics(5).drop(list(panel.right))
    fig = _time_figure(panel, m, np.array([]))
    assert go.Figure(fig).to_dict() == fig
    assert [t["meta"]["column"] for t in fig["data"]] == list(panel.left)
