"""What a job of an Optuna study returns: its objective, with a revenue floor as a constraint.

hydra's Optuna sweeper (``hydra/sweeper=optuna``, the ``optuna`` extra) optimizes the value the
task function returns. A study asks for one with two top-level keys (``configs/study/
tune_weights.yaml``); an ordinary run sets neither, returns nothing and writes nothing more:

- ``study_objective``: a column of ``metrics.parquet``; the trial's objective is its value in the
  run's last window (``cumulative_utility``: the true utility delivered over the whole run).
- ``study_revenue_floor``: a trial is *feasible* when the mean over windows of
  ``revenue_per_request`` is at least this (null: every trial is feasible). Optional
  ``study_floor_metric`` puts the floor on another per-window metric (tests use ``ctr``).

The constraint is folded into the returned value (the sweeper's samplers take one number): a
feasible trial returns its objective; an infeasible one returns ``-shortfall``, its relative
shortfall ``(floor − revenue) / floor`` in (0, 1]. The objective metric must be non-negative
(``cumulative_utility`` is a sum of relevances in (0, 1)), so every feasible trial ranks above
every infeasible one, and among infeasible trials the one closest to the floor ranks highest,
which steers the sampler toward the feasible region rather than leaving it a flat penalty.

A run without a ``revenue_per_request`` column (a metrics version before it) cannot be checked:
the trial returns its objective unconstrained, ``feasible`` is null in ``objective.json`` and
the sweep report says the floor was not applied. A failed job returns NaN (Optuna marks the
trial failed). Every trial runs on the same seed(s) the study fixes (common random numbers).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import polars as pl

from reports.optuna_study import OBJECTIVE_FILE
from sim.atomic_write import atomic_path

CONSTRAINT_METRIC = "revenue_per_request"
RULE = "feasible: the objective; infeasible: -(floor - revenue) / floor, below every feasible trial"


@dataclass(frozen=True)
class TrialOutcome:
    """One trial's objective, constraint and the value returned to the sweeper."""

    objective_metric: str
    objective: float  # the metric in the run's last window
    constraint_metric: str
    floor: float | None
    constraint_value: float | None  # mean over windows; None when the column is missing
    feasible: bool | None  # None: the floor could not be checked (or there is none: True)
    returned: float  # what the sweeper optimizes
    note: str | None = None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["rule"] = RULE
        return {
            k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in data.items()
        }


def objective_settings(cfg: Mapping[str, Any]) -> tuple[str, float | None, str] | None:
    """``(metric, floor, floor metric)`` when the config asks for an objective, else None (an
    ordinary run)."""
    metric = cfg.get("study_objective")
    if metric is None:
        return None
    floor = cfg.get("study_revenue_floor")
    on = cfg.get("study_floor_metric") or CONSTRAINT_METRIC
    return str(metric), None if floor is None else float(floor), str(on)


def check_objective(cfg: Mapping[str, Any], metric_columns: tuple[str, ...]) -> None:
    """Raise ``ValueError`` naming the key when the study's objective settings are unusable."""
    settings = objective_settings(cfg)
    if settings is None:
        if cfg.get("study_revenue_floor") is not None:
            raise ValueError(
                f"study_revenue_floor={cfg.get('study_revenue_floor')}: needs study_objective "
                "(the metric the trials maximize)"
            )
        return
    metric, floor, on = settings
    names = ", ".join(c for c in metric_columns if c not in ("window", "t_start", "t_end"))
    if metric not in metric_columns:
        raise ValueError(f"study_objective={metric}: not a metric; choose one of {names}")
    if on != CONSTRAINT_METRIC and on not in metric_columns:
        # revenue_per_request may be missing from an older metrics version: handled per run
        raise ValueError(f"study_floor_metric={on}: not a metric; choose one of {names}")
    if floor is not None and not (math.isfinite(floor) and floor > 0):
        raise ValueError(f"study_revenue_floor={floor}: must be a positive number or null")


def trial_outcome(
    metrics: pl.DataFrame, metric: str, floor: float | None, on: str = CONSTRAINT_METRIC
) -> TrialOutcome:
    """The outcome of a finished run from its ``metrics.parquet`` (see the module docstring):
    the floor applies to the mean over windows of ``on`` (NaN windows left out)."""
    values = metrics.sort("window")[metric].cast(pl.Float64).fill_null(float("nan"))
    objective = float(values[-1]) if len(values) else float("nan")
    constraint = None
    if on in metrics.columns:
        col = metrics[on].cast(pl.Float64).fill_nan(None).drop_nulls()
        constraint = float(col.mean()) if len(col) else None
    note = None
    if floor is None:
        feasible: bool | None = True
        returned = objective
    elif constraint is None:
        feasible, returned = None, objective
        note = f"no {on} measured: the floor was not applied"
    elif constraint >= floor:
        feasible, returned = True, objective
    else:
        feasible, returned = False, -(floor - constraint) / floor
    return TrialOutcome(metric, objective, on, floor, constraint, feasible, returned, note)


def job_objective(cfg: Mapping[str, Any], out_dir: Path) -> float | None:
    """For a study with an objective: write ``objective.json`` in the job's folder and return the
    value for the sweeper; None (and nothing written) for an ordinary run."""
    settings = objective_settings(cfg)
    if settings is None:
        return None
    metric, floor, on = settings
    outcome = trial_outcome(pl.read_parquet(Path(out_dir) / "metrics.parquet"), metric, floor, on)
    path = Path(out_dir) / OBJECTIVE_FILE
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(outcome.to_json(), indent=2) + "\n")
    return outcome.returned
