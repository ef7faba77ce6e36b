"""Reading a hydra sweep folder: its jobs, their arms and their final-window values.

A sweep folder holds ``multirun.yaml`` (hydra's, may be absent) and one sub-folder per job. A
job is *finished* (``summary.json`` with status ``complete``), *failed* (``status.json`` written by
``recloop`` when the job raised) or *incomplete* (neither: interrupted, or still running).

Jobs are grouped into **arms**: the policy name plus the overrides (from ``.hydra/overrides.yaml``)
that set the job apart from the other jobs of the sweep, leaving out the seed, the policy, the
study and hydra's own settings; overrides shared by every job are not part of the label
(``softmax [policy.temperature=0.1]`` or just ``greedy``). Seeds are the replicates of an arm;
arms are compared with the baseline arm paired by seed (:mod:`reports.comparison`): the one
asked for, else the study's ``study_baseline`` (e.g. the serving study's
``serving_arm=unlimited``), else greedy, else the first arm.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import yaml

from reports.files import ReportError, has_item_exposure, item_exposure, read_overrides

FINISHED, FAILED, INCOMPLETE = "finished", "failed", "incomplete"
DEFAULT_BASELINE = "greedy"
DEFAULT_NAME = "sweep"  # a sweep whose jobs' configs name no study (configs/config.yaml's too)
# ``study_baseline``: the arm every other is compared with, when the study names one — an arm
# label, a policy with one arm, or an arm override such as ``serving_arm=unlimited``
STUDY_KEYS = ("study_name", "study_question", "study_baseline")
# override keys that never name an arm: the replicate, the label's own policy, the study, hydra
IGNORED_KEYS = ("seed", "policy", "study")


class SweepReportError(ReportError):
    """The directory is not a usable sweep folder (e.g. it has no job sub-folders)."""


# ---------------------------------------------------------------- reading the sweep


@dataclass
class Job:
    """One job sub-folder of a sweep, read from its files."""

    path: Path
    status: str  # FINISHED, FAILED or INCOMPLETE
    overrides: list[str] | None  # .hydra/overrides.yaml; None when missing or unreadable
    policy: str | None
    seed: Any
    summary: dict[str, Any] | None = None
    metrics: pl.DataFrame | None = None
    error: str | None = None  # the error line (failed) or why the job counts as incomplete
    traceback: str | None = None
    arm: str | None = None
    study: dict[str, str] = field(default_factory=dict)  # study_name/study_question, if set

    @property
    def name(self) -> str:
        return self.path.name


@dataclass
class Sweep:
    """A sweep folder: its jobs (natural order of the folder names) and its arms."""

    path: Path
    jobs: list[Job]
    arms: list[str]  # every known arm; the baseline first, then by first appearance
    baseline: str | None  # None when no job finished
    command: list[str] | None = None  # the sweep's task overrides from multirun.yaml
    shared_overrides: list[str] = field(default_factory=list)
    name: str = DEFAULT_NAME  # the study's name (``study_name`` of the jobs' config)
    question: str | None = None  # the study's ``study_question``, when its config has one
    study_baseline: str | None = None  # the study's ``study_baseline``, when it names one

    def jobs_of(self, arm: str, status: str | None = None) -> list[Job]:
        found = [j for j in self.jobs if j.arm == arm and (status is None or j.status == status)]
        return sorted(found, key=lambda j: (_seed_key(j.seed), _natural_key(j.name)))

    @property
    def finished(self) -> list[Job]:
        return [j for j in self.jobs if j.status == FINISHED]

    @property
    def finished_arms(self) -> list[str]:
        return [a for a in self.arms if self.jobs_of(a, FINISHED)]


def _natural_key(name: str) -> list[Any]:
    """``2_x`` before ``10_x``: digit runs compare as numbers (types alternate str/int)."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def _seed_key(seed: Any) -> tuple[int, float, str]:
    if seed is None:
        return (2, 0.0, "")
    if isinstance(seed, int | float) and not isinstance(seed, bool):
        return (0, float(seed), "")
    return (1, 0.0, str(seed))


def _job_dirs(sweep_dir: Path) -> list[Path]:
    """Every non-hidden sub-folder (a job, whatever its name), in natural order."""
    dirs = [p for p in sweep_dir.iterdir() if p.is_dir() and not p.name.startswith(".")]
    return sorted(dirs, key=lambda p: _natural_key(p.name))


def _looks_like_job(path: Path) -> bool:
    return (
        (path / "summary.json").is_file()
        or (path / "status.json").is_file()
        or (path / ".hydra").is_dir()
    )


def is_sweep_dir(path: Path) -> bool:
    """True for a sweep folder: it has hydra's ``multirun.yaml``, or it has no ``summary.json``
    of its own and sub-folders that look like jobs (``summary.json``, ``status.json`` or
    ``.hydra/``)."""
    path = Path(path)
    if not path.is_dir():
        return False
    if (path / "multirun.yaml").is_file():
        return True
    if (path / "summary.json").exists():
        return False
    return any(_looks_like_job(d) for d in _job_dirs(path))


def _first_line(text: str) -> str:
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return lines[0] if lines else ""


def _read_yaml(path: Path) -> Any:
    """Parsed YAML (plain ``yaml.safe_load``: hydra interpolations stay strings), or None."""
    if not path.is_file():
        return None
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None


def override_key(override: str) -> str:
    """``+study=exploration`` → ``study``; ``~a.b`` → ``a.b``."""
    return override.partition("=")[0].strip().lstrip("+~")


def is_arm_override(override: str) -> bool:
    """Can this override tell arms apart? Not the seed, policy, study or hydra's settings."""
    key = override_key(override)
    return key not in IGNORED_KEYS and key != "hydra" and not key.startswith("hydra.")


def _override_value(overrides: Sequence[str] | None, key: str) -> str | None:
    for o in overrides or ():
        if override_key(o) == key and "=" in o:
            return o.partition("=")[2]
    return None


def _dig(data: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, Mapping):
            return None
        data = data.get(key)
    return data


def _as_seed(value: Any) -> Any:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value
    try:
        return int(str(value).strip())
    except ValueError:
        return str(value)


def _load_json(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    return data


def load_job(job_dir: Path) -> Job:
    """Read one job folder; never raises for a broken job (it becomes failed/incomplete)."""
    job_dir = Path(job_dir)
    overrides = read_overrides(job_dir)
    hydra_cfg = _read_yaml(job_dir / ".hydra" / "config.yaml")
    run_cfg = _read_yaml(job_dir / "config.yaml")
    summary: dict[str, Any] | None = None
    metrics: pl.DataFrame | None = None
    status, error, trace = INCOMPLETE, "incomplete (no summary.json)", None

    summary_path, status_path = job_dir / "summary.json", job_dir / "status.json"
    if summary_path.is_file():
        try:
            summary = _load_json(summary_path)
        except (OSError, ValueError) as exc:
            error = f"incomplete (unreadable summary.json: {_first_line(str(exc))})"
        else:
            if summary.get("status", "complete") != "complete":
                error = f"incomplete (summary.json status {summary.get('status')!r})"
            else:
                try:
                    metrics = pl.read_parquet(job_dir / "metrics.parquet").sort("window")
                except Exception as exc:  # missing or corrupt file: report it, never crash
                    error = f"incomplete (metrics.parquet unreadable: {_first_line(str(exc))})"
                else:
                    status, error = FINISHED, None
    elif status_path.is_file():
        status = FAILED
        try:
            data = _load_json(status_path)
        except (OSError, ValueError) as exc:
            error = f"failed (unreadable status.json: {_first_line(str(exc))})"
        else:
            if str(data.get("status", "failed")) == "interrupted":  # Ctrl-C (experiments.cli)
                status = INCOMPLETE
                error = _first_line(str(data.get("error") or "")) or "interrupted"
            elif str(data.get("status", "failed")) != "failed":
                status = INCOMPLETE
                error = f"incomplete (status.json status {data.get('status')!r})"
            else:
                error = _first_line(str(data.get("error") or "")) or "failed (no error recorded)"
                trace = str(data["traceback"]) if data.get("traceback") else None

    policy = next(
        (
            str(p)
            for p in (
                (summary or {}).get("policy"),
                _dig(hydra_cfg, "policy", "name"),
                _override_value(overrides, "policy"),
                _dig(run_cfg, "policy", "name"),
            )
            if p is not None and str(p) != ""
        ),
        None,
    )
    seed = next(
        (
            _as_seed(s)
            for s in (
                (summary or {}).get("seed"),
                _override_value(overrides, "seed"),
                _dig(hydra_cfg, "seed"),
                _dig(run_cfg, "seed"),
            )
            if s is not None
        ),
        None,
    )
    study = {
        key: str(value).strip()
        for key in STUDY_KEYS
        if (value := _first_set(_dig(run_cfg, key), _dig(hydra_cfg, key))) is not None
        and str(value).strip()
    }
    return Job(
        job_dir, status, overrides, policy, seed, summary, metrics, error, trace, None, study
    )


def _first_set(*values: Any) -> Any:
    return next((v for v in values if v is not None), None)


def study_of(jobs: Sequence[Job]) -> tuple[str, str | None]:
    """The study's name and question from the jobs' configs, finished jobs first (a study sets
    the same ``study_name``/``study_question`` on every job): ``("sweep", None)`` when unset."""
    ordered = sorted(jobs, key=lambda j: j.status != FINISHED)
    name = _first_set(*(j.study.get("study_name") for j in ordered))
    question = _first_set(*(j.study.get("study_question") for j in ordered))
    return name or DEFAULT_NAME, question


def study_baseline_of(jobs: Sequence[Job]) -> str | None:
    """The study's ``study_baseline`` from the jobs' configs (None when unset or null)."""
    ordered = sorted(jobs, key=lambda j: j.status != FINISHED)
    found = _first_set(*(j.study.get("study_baseline") for j in ordered))
    return None if found in (None, "None", "null") else found


def arm_overrides(jobs: Sequence[Job]) -> dict[str, set[str]]:
    """Each arm's overrides, normalized (:func:`normalized_override`), over its jobs."""
    found: dict[str, set[str]] = {}
    for job in jobs:
        if job.arm is not None:
            found.setdefault(job.arm, set()).update(
                normalized_override(o) for o in job.overrides or () if "=" in o
            )
    return found


def label_arms(jobs: Sequence[Job]) -> list[str]:
    """Set ``job.arm`` for every job whose policy is known; return the overrides shared by every
    job that has an ``overrides.yaml`` (none of them is part of a label).

    The label is the policy plus the job's remaining arm overrides in file order, e.g.
    ``softmax [policy.temperature=0.1]``; when every job has the same policy and its arm
    overrides all choose a config group (a study of one policy's arms, such as ``serving``'s
    ``+serving_arm=cache``), the label is those overrides alone and ``policy=<name>`` joins the
    shared overrides. When every job's arm overrides add a config group (``+group=choice``: a
    study's own arm group, such as ``multi_objective``'s ``+mo_arm=revenue_100``, whose arms use
    several policies), the label is those overrides alone too: the group choice names the arm,
    and its policy is in its config. Jobs of every
    status count when finding what is shared, so a failed job does not change the other arms'
    labels.
    """
    with_overrides = [j.overrides for j in jobs if j.overrides is not None]
    shared = set.intersection(*(set(o) for o in with_overrides)) if with_overrides else set()
    extras = {
        id(job): [o for o in job.overrides or () if is_arm_override(o) and o not in shared]
        for job in jobs
    }
    known = [j for j in jobs if j.policy is not None]
    one_policy = len({j.policy for j in known}) == 1 and all(
        extras[id(j)] and all("." not in override_key(o) for o in extras[id(j)]) for j in known
    )
    arm_groups = bool(known) and all(
        extras[id(j)]
        and all(o.startswith("+") and "." not in override_key(o) for o in extras[id(j)])
        for j in known
    )
    for job in jobs:
        extra = extras[id(job)]
        if job.policy is None:
            job.arm = None
        elif one_policy or arm_groups:
            job.arm = ", ".join(extra)
        else:
            job.arm = f"{job.policy} [{', '.join(extra)}]" if extra else job.policy
    first = with_overrides[0] if with_overrides else []
    found = [o for o in first if o in shared]
    return [*found, f"policy={known[0].policy}"] if one_policy else found


OPTUNA_SWEEPER = "hydra_optuna_sweeper"  # hydra/sweeper=optuna: trials are jobs
OPTUNA_RESULTS = "optimization_results.yaml"  # what that sweeper writes when the sweep ends


def is_optuna(sweep_dir: Path, jobs: Sequence[Job]) -> bool:
    """Did hydra's Optuna sweeper run these jobs? (It writes no ``multirun.yaml``: read the
    sweeper from the first job's ``.hydra/hydra.yaml``, or its ``optimization_results.yaml``.)"""
    if (Path(sweep_dir) / OPTUNA_RESULTS).is_file():
        return True
    for job in jobs:
        hydra = _dig(_read_yaml(job.path / ".hydra" / "hydra.yaml"), "hydra", "sweeper")
        if isinstance(hydra, Mapping):
            return OPTUNA_SWEEPER in str(hydra.get("_target_", ""))
    return False


def _short_value(value: str) -> str:
    try:
        number = float(value)
    except ValueError:
        return value
    return f"{number:.4g}" if "." in value or "e" in value.lower() else value


def shorten_trial_labels(jobs: Sequence[Job], shared: Sequence[str]) -> None:
    """An Optuna sweep's arms are its trials, labelled by the values Optuna drew (e.g.
    ``policy.rerank.weights.revenue=0.31415926535``): keep each key's last part and 4
    significant digits (``scalarized [revenue=0.3142]``), unless that would make two
    different trials' labels equal (then the full labels stay)."""
    keep = set(shared)
    full = {id(j): j.arm for j in jobs}
    extras = {
        id(j): [o for o in j.overrides or () if is_arm_override(o) and o not in keep and "=" in o]
        for j in jobs
    }
    leaves = [override_key(o) for e in extras.values() for o in e]
    unique = len({k.rpartition(".")[2] for k in set(leaves)}) == len(set(leaves))
    short: dict[int, str | None] = {}
    for job in jobs:
        if job.arm is None or not extras[id(job)]:
            short[id(job)] = job.arm
            continue
        parts = []
        for o in extras[id(job)]:
            key = override_key(o)
            parts.append(
                f"{key.rpartition('.')[2] if unique else key}={_short_value(o.partition('=')[2])}"
            )
        head = f"{job.policy} " if job.policy is not None else ""
        short[id(job)] = f"{head}[{', '.join(parts)}]"
    pairs = {(full[i], short[i]) for i in full}
    if len({s for _, s in pairs}) == len({f for f, _ in pairs}):
        for job in jobs:
            job.arm = short[id(job)]


def normalized_override(override: str) -> str:
    """``+serving_arm=unlimited`` → ``serving_arm=unlimited``: an override without its prefix."""
    return f"{override_key(override)}={override.partition('=')[2].strip()}"


def choose_baseline(
    arms: Sequence[str],
    policies: Mapping[str, str],
    wanted: str | None,
    overrides: Mapping[str, set[str]] | None = None,
) -> str:
    """The baseline arm: ``wanted`` (an arm label, a policy with exactly one arm, or an override
    ``key=value`` — prefix ``+``/``~`` optional — that exactly one arm has in ``overrides``, its
    arm overrides by arm), else ``greedy`` (or the first greedy arm), else the first arm."""
    if wanted is not None:
        if wanted in arms:
            return wanted
        by_policy = [a for a in arms if policies.get(a) == wanted]
        if len(by_policy) == 1:
            return by_policy[0]
        if "=" in wanted and overrides:
            key = normalized_override(wanted)
            by_override = [a for a in arms if key in overrides.get(a, set())]
            if len(by_override) == 1:
                return by_override[0]
        choices = ", ".join(repr(a) for a in arms) or "none"
        raise SweepReportError(
            f"baseline arm {wanted!r} not among the arms with finished jobs ({choices})"
        )
    if DEFAULT_BASELINE in arms:
        return DEFAULT_BASELINE
    greedy = [a for a in arms if policies.get(a) == DEFAULT_BASELINE]
    return greedy[0] if greedy else arms[0]


# hydra settings that do not belong in a command re-running the sweep: -m implies the mode, and
# the folder is stated on its own (a re-run writes a new one)
NOT_IN_COMMAND = ("hydra.mode", "hydra.sweep.dir", "hydra.run.dir")


def _sweep_command(sweep_dir: Path) -> list[str] | None:
    """The overrides that reproduce the sweep, from ``multirun.yaml``: hydra's own (the launcher
    and its settings, e.g. ``hydra/launcher=ray_cluster``), then the task's."""
    overrides = _dig(_read_yaml(sweep_dir / "multirun.yaml"), "hydra", "overrides")
    task = _dig(overrides, "task")
    if not isinstance(task, list):
        return None
    own = _dig(overrides, "hydra")
    own = [str(o) for o in own] if isinstance(own, list) else []
    launcher = [o for o in own if override_key(o) not in NOT_IN_COMMAND]
    return [*launcher, *(str(o) for o in task)]


def load_sweep(sweep_dir: Path, baseline: str | None = None) -> Sweep:
    """Read every job of ``sweep_dir`` and label the arms.

    Raises
    ------
    SweepReportError
        When the folder has no job sub-folders, or ``baseline`` is not an arm with finished jobs.
    """
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise SweepReportError(f"no such sweep directory: {sweep_dir}")
    dirs = _job_dirs(sweep_dir)
    if not dirs:
        raise SweepReportError(f"not a sweep: {sweep_dir} has no job sub-folders")
    jobs = [load_job(d) for d in dirs]
    shared = label_arms(jobs)
    if is_optuna(sweep_dir, jobs):
        shorten_trial_labels(jobs, shared)
    arms: list[str] = []
    for job in jobs:
        if job.arm is not None and job.arm not in arms:
            arms.append(job.arm)
    policies = {j.arm: j.policy for j in jobs if j.arm is not None and j.policy is not None}
    done = [a for a in arms if any(j.arm == a and j.status == FINISHED for j in jobs)]
    reference = study_baseline_of(jobs)
    base = None
    if done and baseline is None and reference is not None:
        try:  # the study's reference arm; if it did not finish, the default rule
            base = choose_baseline(done, policies, reference, arm_overrides(jobs))
        except SweepReportError:
            base = None
    if done and base is None:
        base = choose_baseline(done, policies, baseline)  # nothing to compare without
    if base is not None:
        arms.remove(base)
        arms.insert(0, base)
    name, question = study_of(jobs)
    return Sweep(
        sweep_dir, jobs, arms, base, _sweep_command(sweep_dir), shared, name, question, reference
    )


def metric_values(job: Job, metric: str) -> np.ndarray | None:
    """The job's per-window values of ``metric`` (NaN for null), None when the column is missing."""
    if job.metrics is None or metric not in job.metrics.columns:
        return None
    return job.metrics[metric].cast(pl.Float64).fill_null(float("nan")).to_numpy()


def final_value(job: Job, metric: str) -> float | None:
    """The metric in the job's last window (NaN if null there); None when the column is missing."""
    values = metric_values(job, metric)
    if values is None or values.size == 0:
        return None
    return float(values[-1])


def last_window_exposure(job: Job) -> tuple[np.ndarray | None, str | None]:
    """Impressions per catalog item in the job's last window (items never shown included), from
    ``item_exposure.parquet``; or None and why it cannot be read (a note for the page)."""
    n_items = (job.summary or {}).get("catalog_size")
    if not isinstance(n_items, int) or n_items <= 0:
        return None, f"{job.name}: no catalog_size in summary.json"
    if not has_item_exposure(job.path) or job.metrics is None or job.metrics.height == 0:
        return None, f"{job.name}: no item_exposure.parquet"
    try:
        return item_exposure(job.path, int(job.metrics["window"].max()), n_items), None
    except Exception as exc:  # a broken file must not take the page down
        return None, f"{job.name}: {_first_line(str(exc)) or type(exc).__name__}"
