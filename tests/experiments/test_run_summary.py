"""summary.json and the terminal table: a mean over windows only where one means something."""

from __future__ import annotations

import io
import json

import numpy as np
import polars as pl
import pytest
from rich.console import Console

from experiments import console
from experiments.console import summary_table
from reports.metric_catalog import CATALOG
from sim.retention_metrics import RETENTION_COLUMNS

# Cumulative metrics and counts: a mean over windows of these is meaningless.
NOT_PER_WINDOW = {
    "cumulative_utility",
    "cum_coverage_exposure",
    "cum_gini_exposure",
    "cum_fallback_share",
    "cum_revenue",
    "n_requests",
    "n_impressions",
    "n_clicks",
    "new_items_arrived",
    "active_users",
    "conversions",
    "revenue",
}


def test_catalog_marks_cumulatives_and_counts_as_not_per_window():
    assert {c for c, m in CATALOG.items() if not m.per_window} == NOT_PER_WINDOW


def test_summary_means_only_per_window_rates(run_tiny):
    out = run_tiny()
    summary = json.loads((out / "summary.json").read_text())
    metrics = pl.read_parquet(out / "metrics.parquet")
    # (the retention columns exist only with engagement or conversions on)
    per_window = {c for c, m in CATALOG.items() if m.per_window} - set(RETENTION_COLUMNS)
    assert set(summary["mean"]) == per_window
    assert not NOT_PER_WINDOW & set(summary["mean"]) and "model_version" not in summary["mean"]
    for col, value in summary["mean"].items():
        x = metrics[col].cast(pl.Float64).fill_null(np.nan).to_numpy()
        x = x[~np.isnan(x)]
        if x.size == 0:
            assert value is None, col
        else:
            assert value == pytest.approx(float(np.sum(x) / x.size), rel=1e-12), col
    # the final values keep every metric, cumulatives included
    for col in (NOT_PER_WINDOW - set(RETENTION_COLUMNS)) | {"model_version"}:
        last = metrics[col][-1]
        if isinstance(last, float) and np.isnan(last):  # e.g. no fallback column in this log
            assert summary["final"][col] is None, col
        else:
            assert summary["final"][col] == pytest.approx(last), col


def _rows(text: str) -> dict[str, list[str]]:
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip("│┃ ").split("│")]
        if len(cells) == 3:
            rows[cells[0]] = cells[1:]
    return rows


def test_terminal_table_prints_no_mean_of_a_cumulative(monkeypatch):
    """Even from a summary.json that holds such means (written before they were dropped)."""
    monkeypatch.setattr(
        console, "SUMMARY_ROWS", ("ctr", "cumulative_utility", "n_clicks", "homogenization")
    )
    summary = {
        "policy": "greedy",
        "seed": 0,
        "final": {"ctr": 0.05, "cumulative_utility": 1234.0, "n_clicks": 40, "homogenization": 0},
        "mean": {"ctr": 0.0625, "cumulative_utility": 617.0, "n_clicks": 20},
        "n_requests": 10,
        "n_impressions": 50,
        "n_clicks": 80,
        "days": 2,
        "timing_seconds": {"total": 1.0},
    }
    buffer = io.StringIO()
    Console(file=buffer, width=120, force_terminal=False).print(summary_table(summary))
    text = buffer.getvalue()
    assert "final window" in text and "mean over windows" in text
    rows = _rows(text)
    assert rows["CTR"] == ["5.00%", "6.25%"]
    assert rows["cumulative utility"] == ["1,234", "–"]
    assert rows["clicks"] == ["40", "–"]
    assert rows["homogenization"] == ["0.0000", "–"]  # a rate without a mean: missing
    assert "617" not in text


# ------------------------------------------------------------------ a failed write


def _no_space(target: str, original):
    """``Path.write_text`` or ``write_bytes`` (``original``) failing like a full disk (ENOSPC)
    when writing ``target``'s temp file, after writing part of it (as a real full disk does)."""
    import errno

    def write(self, data, *args, **kwargs):
        if self.name == f".{target}.tmp":
            original(self, data[:100], *args, **kwargs)
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(self, data, *args, **kwargs)

    return write


def test_a_report_that_cannot_be_written_leaves_no_summary_and_no_temp_file(run_tiny, monkeypatch):
    """summary.json says complete only once the report is in place: a full disk while writing
    report.html leaves neither the page, its temp file nor summary.json, and the error names
    the page; the run is then not finished (resume's ``finished``)."""
    from pathlib import Path

    from experiments.resume import finished
    from reports.atomic_write import WriteError

    monkeypatch.setattr(Path, "write_text", _no_space("report.html", Path.write_text))
    with pytest.raises(WriteError) as info:
        run_tiny("run", report__enabled=True)
    out = info.value.filename
    assert out.endswith("/run/report.html") and info.value.strerror == "No space left on device"
    run_dir = Path(out).parent
    assert (run_dir / "metrics.parquet").is_file()
    assert not (run_dir / "summary.json").exists() and not (run_dir / "report.html").exists()
    assert not [p for p in run_dir.rglob("*") if p.name.endswith(".tmp")]
    assert not finished(run_dir)


def test_metrics_that_cannot_be_written_name_the_file(run_tiny, monkeypatch):
    """A full disk while writing metrics.parquet: the error names the file, no temp file and
    no summary.json are left."""
    from pathlib import Path

    from sim.atomic_write import WriteError

    monkeypatch.setattr(Path, "write_bytes", _no_space("metrics.parquet", Path.write_bytes))
    with pytest.raises(WriteError) as info:
        run_tiny("run")
    assert info.value.filename.endswith("/run/metrics.parquet")
    run_dir = Path(info.value.filename).parent
    assert (run_dir / "logs" / "impressions").is_dir()  # the partitions before it were written
    assert not (run_dir / "summary.json").exists()
    assert not [p for p in run_dir.rglob("*") if p.name.endswith(".tmp")]
