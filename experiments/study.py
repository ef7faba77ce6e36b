"""Named studies: the end-of-sweep comparison of the jobs' summaries.

:class:`StudyComparison` is a hydra callback: when a multirun ends it reads every job under the
sweep directory (files only, like the reports) and writes ``comparison.csv`` (one row per
finished job), ``comparison.md`` (per arm: mean ± standard deviation across seeds, and the
utility gain over greedy paired by seed) and the sweep's ``report.html``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from reports.metric_catalog import metric_info
from reports.sweep_report import FINISHED, SweepReportError, build_sweep_report, load_sweep

log = logging.getLogger("recloop")

# (summary section, metric column): the column label is the catalog label plus the section,
# the format the catalog's text format
COMPARED: tuple[tuple[str, str], ...] = (
    ("final", "coverage_exposure"),
    ("final", "gini_exposure"),
    ("final", "popularity_drift"),
    ("mean", "homogenization"),
    ("mean", "ctr"),
    ("final", "cumulative_utility"),
    ("mean", "model_ndcg"),
    ("final", "model_ndcg"),
)


def collect_summaries(sweep_dir: Path) -> pl.DataFrame:
    """One row per finished job under ``sweep_dir``, labelled by arm.

    An arm is the policy plus the overrides that set a job apart from the others
    (:func:`reports.sweep_report.label_arms`); the seed is the replicate.
    """
    try:
        sweep = load_sweep(sweep_dir)
    except SweepReportError:
        return pl.DataFrame()
    rows: list[dict[str, Any]] = []
    for job in sweep.jobs:
        if job.status != FINISHED or job.summary is None:
            continue
        row = {"job": job.path.name, "policy": job.arm, "seed": job.seed}
        for section, metric in COMPARED:
            value = job.summary[section].get(metric)
            row[f"{section}_{metric}"] = np.nan if value is None else float(value)
        rows.append(row)
    if not rows:
        return pl.DataFrame()
    return pl.DataFrame(rows).sort("policy", "seed")


BASELINE = "greedy"  # paired comparisons are against this policy on the same seed


def comparison_table(jobs: pl.DataFrame, order: list[str] | None = None) -> pl.DataFrame:
    """Per policy variant: number of seeds and mean/std of every compared metric.

    When the sweep has the ``greedy`` baseline, ``utility_gain`` is each job's cumulative true
    utility minus greedy's on the same seed (policies with one seed face the same users: a
    paired difference is far less noisy than comparing the two means).
    """
    columns = [f"{s}_{m}" for s, m in COMPARED]
    baseline = jobs.filter(pl.col("policy") == BASELINE).select(
        "seed", pl.col("final_cumulative_utility").alias("_base")
    )
    jobs = jobs.join(baseline, on="seed", how="left").with_columns(
        (pl.col("final_cumulative_utility") - pl.col("_base")).alias("utility_gain")
    )
    table = jobs.group_by("policy").agg(
        pl.len().alias("n_seeds"),
        *[pl.col(c).mean().alias(f"{c}__mean") for c in [*columns, "utility_gain"]],
        *[pl.col(c).std().alias(f"{c}__std") for c in [*columns, "utility_gain"]],
    )
    rank = {name: i for i, name in enumerate(order or [])}
    base = pl.col("policy").str.split(" [").list.first()  # a variant sorts with its policy
    return (
        table.with_columns(base.replace_strict(rank, default=len(rank)).alias("_order"))
        .sort("_order", "policy")
        .drop("_order")
    )


def _cell(mean: float | None, std: float | None, fmt: str) -> str:
    if mean is None or np.isnan(mean):
        return "–"
    text = fmt.format(mean)
    if std is not None and not np.isnan(std):
        text += " ± " + fmt.format(std).lstrip("+")
    return text


def to_markdown(table: pl.DataFrame, title: str) -> str:
    paired = table["utility_gain__mean"].is_not_null().any()
    header = ["policy", "seeds", *[f"{metric_info(m).label} ({s})" for s, m in COMPARED]]
    if paired:
        header.append(f"utility gain vs {BASELINE} (paired by seed)")
    lines = [f"# {title}", "", "| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for row in table.iter_rows(named=True):
        cells = [row["policy"], str(row["n_seeds"])]
        for section, metric in COMPARED:
            key = f"{section}_{metric}"
            fmt = metric_info(metric).text_format
            cells.append(_cell(row[f"{key}__mean"], row[f"{key}__std"], fmt))
        if paired:
            cells.append(_cell(row["utility_gain__mean"], row["utility_gain__std"], "{:+,.0f}"))
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Mean ± standard deviation across seeds; final = the last snapshot window."]
    return "\n".join(lines) + "\n"


def write_comparison(sweep_dir: Path, title: str, order: list[str] | None = None) -> Path | None:
    jobs = collect_summaries(sweep_dir)
    if jobs.is_empty():
        log.warning("no finished job under %s: no comparison written", sweep_dir)
        return None
    jobs.write_csv(sweep_dir / "comparison.csv")
    path = sweep_dir / "comparison.md"
    path.write_text(to_markdown(comparison_table(jobs, order), title))
    return path


class StudyComparison(Callback):
    """Hydra callback: when the sweep ends, write its comparison table and its report."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        params = config.hydra.sweeper.get("params") or {}
        order = [p.strip() for p in str(params.get("policy", "")).split(",") if p.strip()]
        path = write_comparison(sweep_dir, str(config.get("study_name", "study")), order)
        if path is not None:
            print(path.read_text())
            print(f"comparison: {path}")
        try:
            print(f"sweep report: {build_sweep_report(sweep_dir)}")
        except SweepReportError as exc:
            log.warning("no sweep report: %s", exc)
