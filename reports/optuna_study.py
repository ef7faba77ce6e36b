"""An Optuna sweep read from its folder: the trials, the best feasible one, the sensitivity.

hydra's Optuna sweeper (``hydra/sweeper=optuna``) runs each trial as one job of the sweep, job
``N`` being trial ``N`` (it asks Optuna for trials in order and numbers the jobs the same way). It
keeps the study in memory and writes only ``optimization_results.yaml`` (best params and value)
at the end, and no ``multirun.yaml``. So everything here is read from the jobs' folders:

- the search space and the sampler from a job's ``.hydra/hydra.yaml`` (``hydra.sweeper``);
- a trial's parameter values from its ``.hydra/overrides.yaml`` (the searched keys);
- its objective, constraint and the value returned to Optuna from ``objective.json``, which the
  job writes (``experiments.objective``; reports import nothing of the simulator, so the
  file's fields are read by name).

**Sensitivity** (:func:`sensitivity`): the study object is not on disk, and Optuna's fANOVA
importance needs scikit-learn besides, so the page computes its own from the finished trials:
per searched parameter, (a) the *linear effect*: the coefficient of a least-squares fit of the
outcome on all parameters together, each scaled to its search range, i.e. the change in the
outcome from the low to the high end of that parameter with the others held fixed; (b) its share
of the summed absolute effects; (c) Spearman's rank correlation of the parameter with the
outcome (marginal, catches a monotone but non-linear effect). With few trials these are rough:
the fit needs more trials than parameters + 1, else its columns are NaN.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import yaml

from reports.markdown import md_cell, md_line
from reports.sweep_folder import FINISHED, OPTUNA_RESULTS, Job, Sweep, is_optuna, override_key

OBJECTIVE_FILE = "objective.json"  # written by each trial's job (experiments.objective)
RESULTS_FILE = OPTUNA_RESULTS  # written by the sweeper when the sweep ends


@dataclass(frozen=True)
class SearchParam:
    """One searched key: its spec as written (``interval(0, 2)``) and its bounds when numeric."""

    key: str
    spec: str
    low: float | None = None
    high: float | None = None


@dataclass
class OptunaStudy:
    """What the sweep folder tells about its Optuna study. ``trials`` are numbered by their job in
    this folder; with a persistent ``storage`` an earlier sweep already filled, Optuna's own
    trial numbers continue from there and ``results`` covers every sweep of the study."""

    space: list[SearchParam]
    fixed: dict[str, str]  # the sweeper's params that are not searched (e.g. seed)
    direction: str
    sampler: str
    sampler_seed: Any
    n_trials: int | None  # planned
    trials: pl.DataFrame  # :func:`trial_table`
    results: dict[str, Any] | None = None  # optimization_results.yaml
    jobs: dict[int, Job] = field(default_factory=dict)  # trial number → job
    storage: str | None = None  # hydra.sweeper.storage: a study that may span several sweeps
    objective_metric: str = "objective"  # from the trials' objective.json
    floor: float | None = None
    floor_metric: str = "revenue_per_request"

    @property
    def keys(self) -> list[str]:
        return [p.key for p in self.space]


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None


def _hydra(job: Job) -> Mapping[str, Any] | None:
    data = _read_yaml(job.path / ".hydra" / "hydra.yaml")
    hydra = data.get("hydra") if isinstance(data, Mapping) else None
    return hydra if isinstance(hydra, Mapping) else None


def is_optuna_sweep(sweep: Sweep) -> bool:
    """Did hydra's Optuna sweeper run this sweep? (:func:`reports.sweep_folder.is_optuna`)"""
    return is_optuna(sweep.path, sweep.jobs)


def parse_spec(key: str, spec: str) -> SearchParam | None:
    """``interval(0.0, 2.0)`` (optionally tagged, e.g. ``tag(log, interval(1, 5))``) → bounds;
    ``choice(…)``/``range(…)``/``a,b`` → a searched key without bounds; a plain value → None."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        (override,) = OverridesParser.create().parse_overrides([f"{key}={spec}"])
    except Exception:
        return None
    if not override.is_sweep_override():
        return None
    if override.is_interval_sweep():
        value = override.value()
        return SearchParam(key, spec, float(value.start), float(value.end))
    return SearchParam(key, spec)


def _number(value: str) -> float | str:
    try:
        return float(value)
    except ValueError:
        return value


def _trial_number(job: Job) -> int | None:
    hydra = _hydra(job)
    num = ((hydra or {}).get("job") or {}).get("num")
    if isinstance(num, int):
        return num
    head = job.name.partition("_")[0]
    return int(head) if head.isdigit() else None


def _objective(job: Job) -> dict[str, Any] | None:
    try:
        data = json.loads((job.path / OBJECTIVE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def trial_table(sweep: Sweep, space: Sequence[SearchParam]) -> pl.DataFrame:
    """One row per trial (job): ``trial``, ``job``, ``arm``, ``status``, one column per searched
    key (its value in the trial, float when numeric), ``objective`` (the metric, unpenalized),
    ``constraint`` (mean revenue per request; NaN when not measured), ``feasible`` (null when
    the floor could not be checked or the job did not finish), ``returned`` (the value Optuna
    got; NaN for a failed job) — sorted by trial number."""
    rows = []
    for job in sweep.jobs:
        number = _trial_number(job)
        if number is None:
            continue
        outcome = _objective(job) if job.status == FINISHED else None
        values = {override_key(o): o.partition("=")[2] for o in job.overrides or () if "=" in o}
        row: dict[str, Any] = {
            "trial": number,
            "job": job.name,
            "arm": job.arm,
            "status": job.status
            if outcome is not None or job.status != FINISHED
            else "no objective",
        }
        for p in space:
            row[p.key] = values.get(p.key)
        row["objective"] = _float((outcome or {}).get("objective"))
        row["constraint"] = _float((outcome or {}).get("constraint_value"))
        row["feasible"] = (outcome or {}).get("feasible")
        row["returned"] = _float((outcome or {}).get("returned"))
        rows.append(row)
    numeric = {
        p.key: all(_is_number(r[p.key]) for r in rows if r[p.key] is not None) for p in space
    }
    for r in rows:
        for p in space:
            if numeric[p.key] and r[p.key] is not None:
                r[p.key] = float(r[p.key])
    schema: dict[str, Any] = {
        "trial": pl.Int64,
        "job": pl.String,
        "arm": pl.String,
        "status": pl.String,
    }
    schema |= {p.key: pl.Float64 if numeric[p.key] else pl.String for p in space}
    schema |= {
        "objective": pl.Float64,
        "constraint": pl.Float64,
        "feasible": pl.Boolean,
        "returned": pl.Float64,
    }
    return pl.DataFrame(rows, schema=schema, orient="row").sort("trial")


def _is_number(value: Any) -> bool:
    return isinstance(_number(str(value)), float)


def best_feasible(trials: pl.DataFrame) -> dict[str, Any] | None:
    """The finished trial with the highest objective among those meeting the floor (``feasible``
    true, or null when the floor could not be checked); ties: the earlier trial."""
    ok = trials.filter(
        (pl.col("status") == FINISHED)
        & pl.col("objective").is_not_nan()
        & (pl.col("feasible").is_null() | pl.col("feasible"))
    )
    if ok.height == 0:
        return None
    return ok.sort(["objective", "trial"], descending=[True, False]).row(0, named=True)


def sensitivity(
    trials: pl.DataFrame, space: Sequence[SearchParam], outcome: str = "objective"
) -> pl.DataFrame:
    """Per numeric searched key: ``effect`` (low → high end of its range, others fixed, from
    one least-squares fit on every key), ``share`` (|effect| / Σ |effect|) and ``spearman``
    (rank correlation with ``outcome``), over the finished trials with a finite ``outcome``.
    ``n`` is the number of trials used. See the module docstring."""
    keys = [p for p in space if p.key in trials.columns and trials[p.key].dtype == pl.Float64]
    used = trials.filter(
        (pl.col("status") == FINISHED)
        & pl.col(outcome).is_not_nan()
        & pl.col(outcome).is_not_null()
    )
    for p in keys:
        used = used.filter(pl.col(p.key).is_not_null())
    y = used[outcome].to_numpy().astype(float)
    n, k = len(y), len(keys)
    x = np.empty((n, k))
    for j, p in enumerate(keys):
        col = used[p.key].to_numpy().astype(float)
        low = p.low if p.low is not None else (col.min() if n else 0.0)
        high = p.high if p.high is not None else (col.max() if n else 1.0)
        x[:, j] = (col - low) / (high - low) if high > low else 0.0
    effect = np.full(k, np.nan)
    if n > k + 1:
        design = np.column_stack([np.ones(n), x])
        coef, *_ = np.linalg.lstsq(design, y, rcond=None)
        effect = coef[1:]
    total = np.nansum(np.abs(effect))
    share = np.abs(effect) / total if total > 0 else np.full(k, np.nan)
    rho = np.array([_spearman(x[:, j], y) for j in range(k)])
    return pl.DataFrame(
        {
            "key": [p.key for p in keys],
            "n": [n] * k,
            "effect": effect,
            "share": share,
            "spearman": rho,
        },
        schema={
            "key": pl.String,
            "n": pl.Int64,
            "effect": pl.Float64,
            "share": pl.Float64,
            "spearman": pl.Float64,
        },
    )


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of the average ranks; NaN with < 3 points or a constant column."""
    if len(a) < 3:
        return float("nan")
    from scipy.stats import rankdata  # lazily: half a second of every recloop start-up

    ra, rb = rankdata(a), rankdata(b)
    sa, sb = ra.std(), rb.std()
    if sa == 0 or sb == 0:
        return float("nan")
    return float(((ra - ra.mean()) * (rb - rb.mean())).mean() / (sa * sb))


def load_optuna_study(sweep: Sweep) -> OptunaStudy | None:
    """The sweep's Optuna study, or None when the sweep did not run on the Optuna sweeper."""
    if not is_optuna_sweep(sweep):
        return None
    sweeper: Mapping[str, Any] = {}
    for job in sweep.jobs:
        hydra = _hydra(job)
        if hydra is not None and isinstance(hydra.get("sweeper"), Mapping):
            sweeper = hydra["sweeper"]
            break
    params = sweeper.get("params") or {}
    space, fixed = [], {}
    for key, spec in params.items():
        found = parse_spec(str(key), str(spec))
        if found is None:
            fixed[str(key)] = str(spec)
        else:
            space.append(found)
    sampler = sweeper.get("sampler") or {}
    results = _read_yaml(sweep.path / RESULTS_FILE)
    trials = trial_table(sweep, space)
    jobs = {n: j for j in sweep.jobs if (n := _trial_number(j)) is not None}
    n_trials = sweeper.get("n_trials")
    metric, floor, on = _objective_meta(jobs.values())
    return OptunaStudy(
        space,
        fixed,
        str(sweeper.get("direction", "?")),
        str(sampler.get("_target_", "?")).rpartition(".")[2],
        sampler.get("seed"),
        int(n_trials) if isinstance(n_trials, int) else None,
        trials,
        results if isinstance(results, dict) else None,
        jobs,
        None if sweeper.get("storage") is None else str(sweeper.get("storage")),
        metric,
        floor,
        on,
    )


def _objective_meta(jobs: Any) -> tuple[str, float | None, str]:
    """The objective metric, the floor and the metric it applies to, from the first trial with
    an ``objective.json``."""
    for job in jobs:
        data = _objective(job)
        if data is None:
            continue
        floor = data.get("floor")
        return (
            str(data.get("objective_metric", "objective")),
            None if floor is None else float(floor),
            str(data.get("constraint_metric") or "revenue_per_request"),
        )
    return "objective", None, "revenue_per_request"


def fmt_param(value: Any) -> str:
    """A trial's parameter value, short: ``0.3604`` (4 significant digits), ``41,130`` from a
    thousand on (no exponent), or the text."""
    if isinstance(value, float):
        if not math.isfinite(value):
            return "—"
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"
    return "—" if value is None else str(value)


TRIALS_CSV = "trials.csv"


def trials_markdown(study: OptunaStudy) -> str:
    """``comparison.md``'s Trials part: the chosen trial and one row per trial."""
    t = study.trials
    best = best_feasible(t)
    lines = ["", "## Trials (Optuna)", ""]
    if best is None:
        lines.append("No finished trial meets the floor.")
    else:
        chosen = md_line(", ".join(f"{p.key}={fmt_param(best[p.key])}" for p in study.space))
        lines.append(
            f"Chosen (best trial meeting the floor): trial {best['trial']} — {chosen}; "
            f"{study.objective_metric} {fmt_param(best['objective'])}, mean "
            f"{study.floor_metric} {fmt_param(best['constraint'])}."
        )
    floor = f"mean {study.floor_metric}"
    header = ["trial", *study.keys, study.objective_metric, floor, "feasible", "returned", "status"]
    header = [md_cell(h) for h in header]
    lines += ["", "| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for r in t.iter_rows(named=True):
        mark = " ←" if best is not None and r["trial"] == best["trial"] else ""
        feasible = {True: "yes", False: "no"}.get(r["feasible"], "not checked")
        cells = [
            f"{r['trial']}{mark}",
            *(fmt_param(r[k]) for k in study.keys),
            fmt_param(r["objective"]),
            fmt_param(r["constraint"]),
            feasible if r["status"] == FINISHED else "–",
            fmt_param(r["returned"]),
            str(r["status"]),
        ]
        lines.append("| " + " | ".join(map(md_cell, cells)) + " |")
    lines += [
        "",
        f"{study.objective_metric}: its value in the run's last window. Feasible: mean "
        f"{study.floor_metric} over windows ≥ {study.floor}. Returned: what Optuna optimized (the "
        "objective when feasible, else minus the relative shortfall). Every trial: "
        f"{TRIALS_CSV}; sensitivity per key: the sweep's report.html.",
    ]
    return "\n".join(lines) + "\n"


def chosen_arm(sweep: Sweep) -> str | None:
    """An Optuna sweep's chosen trial's arm (:func:`best_feasible`): the baseline its pages
    compare every other trial with, unless the study names one. None for other sweeps."""
    if sweep.study_baseline is not None:
        return None
    study = load_optuna_study(sweep)
    best = None if study is None else best_feasible(study.trials)
    return None if best is None else best["arm"]
