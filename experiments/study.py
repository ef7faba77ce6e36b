"""Named studies: the end-of-sweep comparison of the jobs' summaries.

:class:`StudyComparison` is a hydra callback: when a multirun ends it reads every job's
``summary.json`` under the sweep directory (files only, like the reports) and writes
``comparison.csv`` (one row per job) and ``comparison.md`` (per policy: mean ± standard deviation
across seeds), and prints the table.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger("recloop")

# (summary section, metric, column label, format)
COMPARED: tuple[tuple[str, str, str, str], ...] = (
    ("final", "coverage_exposure", "exposure coverage (final)", "{:.1%}"),
    ("final", "gini_exposure", "exposure Gini (final)", "{:.3f}"),
    ("final", "popularity_drift", "popularity drift (final)", "{:+.3f}"),
    ("mean", "homogenization", "homogenization (mean)", "{:.4f}"),
    ("mean", "ctr", "CTR (mean)", "{:.2%}"),
    ("final", "cumulative_utility", "cumulative true utility", "{:,.0f}"),
)


def variant(job_dir: Path, policy: str) -> str:
    """The job's label: its policy, plus the overrides that are not the seed or the study
    (e.g. ``epsilon_greedy [policy.epsilon=0.05]``), read from hydra's ``overrides.yaml``."""
    path = job_dir / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return policy
    overrides = [str(o) for o in (OmegaConf.load(path) or [])]
    extra = [
        o
        for o in overrides
        if o.partition("=")[0].lstrip("+~") not in ("seed", "policy", "study")
        and not o.startswith("hydra")
    ]
    return f"{policy} [{', '.join(extra)}]" if extra else policy


def collect_summaries(sweep_dir: Path) -> pl.DataFrame:
    """One row per finished job under ``sweep_dir`` (jobs without ``summary.json`` are skipped).

    ``policy`` is the job's variant label (see :func:`variant`), so jobs that differ in more than
    the seed are compared separately.
    """
    rows: list[dict[str, Any]] = []
    for path in sorted(sweep_dir.glob("*/summary.json")):
        summary = json.loads(path.read_text())
        label = variant(path.parent, summary["policy"])
        row = {"job": path.parent.name, "policy": label, "seed": summary["seed"]}
        for section, metric, _, _ in COMPARED:
            value = summary[section].get(metric)
            row[f"{section}_{metric}"] = np.nan if value is None else float(value)
        rows.append(row)
    if not rows:
        return pl.DataFrame()
    return pl.DataFrame(rows).sort("policy", "seed")


def comparison_table(jobs: pl.DataFrame, order: list[str] | None = None) -> pl.DataFrame:
    """Per policy: number of seeds and mean/std of every compared metric."""
    columns = [f"{s}_{m}" for s, m, _, _ in COMPARED]
    table = jobs.group_by("policy").agg(
        pl.len().alias("n_seeds"),
        *[pl.col(c).mean().alias(f"{c}__mean") for c in columns],
        *[pl.col(c).std().alias(f"{c}__std") for c in columns],
    )
    rank = {name: i for i, name in enumerate(order or [])}
    return (
        table.with_columns(pl.col("policy").replace_strict(rank, default=len(rank)).alias("_order"))
        .sort("_order", "policy")
        .drop("_order")
    )


def to_markdown(table: pl.DataFrame, title: str) -> str:
    header = ["policy", "seeds", *[label for _, _, label, _ in COMPARED]]
    lines = [f"# {title}", "", "| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for row in table.iter_rows(named=True):
        cells = [row["policy"], str(row["n_seeds"])]
        for section, metric, _, fmt in COMPARED:
            mean, std = row[f"{section}_{metric}__mean"], row[f"{section}_{metric}__std"]
            text = "–" if mean is None or np.isnan(mean) else fmt.format(mean)
            if std is not None and not np.isnan(std):
                text += " ± " + fmt.format(std).lstrip("+")
            cells.append(text)
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
    """Hydra callback: write the study's comparison when the sweep ends."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        params = config.hydra.sweeper.get("params") or {}
        order = [p.strip() for p in str(params.get("policy", "")).split(",") if p.strip()]
        path = write_comparison(sweep_dir, str(config.get("study_name", "study")), order)
        if path is not None:
            print(path.read_text())
            print(f"comparison: {path}")
