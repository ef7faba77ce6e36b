"""The metric catalog is the one list of metrics: tied to the columns ``sim.metrics`` writes and
used by every place that shows metrics."""

from __future__ import annotations

import math
import typing

import pytest

from experiments import console
from reports import comparison, run_report, sweep_report
from reports.metric_catalog import (
    CATALOG,
    METRICS,
    NOT_METRICS,
    Kind,
    format_metric,
    metric_info,
)
from sim.metrics import METRIC_COLUMNS
from sim.retention_metrics import RETENTION_COLUMNS


def test_every_entry_is_a_metric_column() -> None:
    assert set(CATALOG) <= set(METRIC_COLUMNS) | set(RETENTION_COLUMNS)
    assert len(CATALOG) == len(METRICS)  # one entry per column


def test_every_metric_column_has_an_entry_or_is_not_a_metric() -> None:
    columns = (*METRIC_COLUMNS, *RETENTION_COLUMNS)  # the latter only with engagement on
    missing = [c for c in columns if c not in CATALOG and c not in NOT_METRICS]
    assert missing == []
    assert not set(NOT_METRICS) & set(CATALOG)
    assert set(NOT_METRICS) <= set(METRIC_COLUMNS)


@pytest.mark.parametrize("entry", METRICS, ids=[m.column for m in METRICS])
def test_entry_is_well_formed(entry) -> None:
    assert entry.label and entry.label == entry.label.strip()
    assert entry.title[0].isupper() and entry.title[1:] == entry.label[1:]
    assert entry.description and entry.unit
    assert entry.direction in ("higher", "lower", "neutral")
    assert entry.kind in typing.get_args(Kind)
    value = 1234 if entry.kind == "int" else 0.1234
    assert entry.text(value) == entry.text_format.format(value)
    assert entry.text(None) == "–" and entry.text(math.nan) == "–"
    assert format_metric(value, entry.kind) != "–"
    # shares print as percentages in both places, signed metrics with a sign
    assert ("%" in entry.text_format) == (entry.kind == "pct")
    assert ("+" in entry.text_format) == (entry.kind == "signed")


def test_labels_are_unique() -> None:
    labels = [m.label for m in METRICS]
    assert len(labels) == len(set(labels))


def test_every_place_that_shows_metrics_uses_catalog_columns() -> None:
    shown = {
        "console": set(console.SUMMARY_ROWS),
        "comparison": set(comparison.COMPARED),
        "sweep headline": set(sweep_report.HEADLINE_METRICS),
        "run report table": set(run_report.KEY_METRICS),
        "run report panels": {c for p in run_report.PANELS for c in (*p.left, *p.right)},
        "sweep table": set(sweep_report.TABLE_METRICS),
        "sweep series": set(sweep_report.SERIES_METRICS),
    }
    for where, columns in shown.items():
        assert columns <= set(CATALOG), (where, columns - set(CATALOG))


def test_unknown_metric_is_named() -> None:
    with pytest.raises(KeyError, match="'nope' is not in the metric catalog"):
        metric_info("nope")


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (8.25, "8.2 ms"),
        (999.4, "999 ms"),
        (9999.0, "9,999 ms"),
        (34915.0, "34.9 s"),
        (146234.0, "146 s"),
        (1405100.0, "23.4 min"),
        (3.6e8, "100 h"),
    ],
)
def test_latencies_print_in_a_readable_unit(value, text) -> None:
    assert format_metric(value, "ms") == text
