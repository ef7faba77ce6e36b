"""Terminal output: a progress bar over simulated days and the final summary table."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

SUMMARY_ROWS = (
    ("coverage_exposure", "exposure coverage", "{:.1%}"),
    ("coverage_clicks", "click coverage", "{:.1%}"),
    ("gini_exposure", "exposure Gini", "{:.3f}"),
    ("gini_clicks", "click Gini", "{:.3f}"),
    ("popularity_drift", "popularity drift", "{:+.3f}"),
    ("homogenization", "homogenization (Jaccard)", "{:.4f}"),
    ("utility", "utility (mean true relevance shown)", "{:.4f}"),
    ("ctr", "CTR", "{:.2%}"),
    ("long_tail_share", "long-tail share", "{:.1%}"),
    ("top1pct_exposure_share", "top-1% exposure share", "{:.1%}"),
    ("exploration_share", "exploration share", "{:.1%}"),
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
    table = Table(title=f"recloop — {summary['policy']} (seed {summary['seed']})")
    table.add_column("metric")
    table.add_column("final window", justify="right")
    table.add_column("mean over windows", justify="right")
    for key, label, fmt in SUMMARY_ROWS:
        final, mean = summary["final"].get(key), summary["mean"].get(key)
        table.add_row(
            label,
            "–" if final is None else fmt.format(final),
            "–" if mean is None else fmt.format(mean),
        )
    table.caption = (
        f"{summary['n_requests']:,} requests, {summary['n_impressions']:,} impressions, "
        f"{summary['n_clicks']:,} clicks over {summary['days']} days; "
        f"{summary['timing_seconds']['total']:.1f} s"
    )
    return table
