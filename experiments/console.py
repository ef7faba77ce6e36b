"""Terminal output: a progress bar over simulated days and the final summary table."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from reports.metric_catalog import metric_info

# metric columns shown, in order; labels and formats come from the metric catalog
SUMMARY_ROWS = (
    "coverage_exposure",
    "coverage_clicks",
    "gini_exposure",
    "gini_clicks",
    "popularity_drift",
    "homogenization",
    "utility",
    "ctr",
    "long_tail_share",
    "top1pct_exposure_share",
    "exploration_share",
)


@contextmanager
def day_progress(
    enabled: bool, console: Console, days: float
) -> Iterator[Callable[[float, float], None]]:
    """Yields a ``progress(now_hours, horizon_hours)`` callback drawing a bar over ``days``."""
    if not enabled or not console.is_terminal:
        yield lambda now, horizon: None
        return
    with Progress(
        TextColumn("[bold]simulating"),
        BarColumn(),
        TextColumn("day {task.completed:.0f}/{task.total:.0f}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as bar:
        task = bar.add_task("days", total=days)

        def update(now: float, horizon: float) -> None:
            bar.update(task, completed=now / 24.0, total=horizon / 24.0)

        yield update


def summary_table(summary: dict[str, Any]) -> Table:
    """The run's metrics: the final window's value and, for a per-window rate only, the mean
    over windows (a running total or a count has no mean: "–")."""
    table = Table(title=f"recloop — {summary['policy']} (seed {summary['seed']})")
    table.add_column("metric")
    table.add_column("final window", justify="right")
    table.add_column("mean over windows", justify="right")
    for key in SUMMARY_ROWS:
        info = metric_info(key)
        mean = summary["mean"].get(key) if info.per_window else None
        table.add_row(info.label, info.text(summary["final"].get(key)), info.text(mean))
    table.caption = (
        f"{summary['n_requests']:,} requests, {summary['n_impressions']:,} impressions, "
        f"{summary['n_clicks']:,} clicks over {summary['days']} days; "
        f"{summary['timing_seconds']['total']:.1f} s"
    )
    return table
