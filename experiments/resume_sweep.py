"""``recloop --resume SWEEP_DIR``: continue a killed or Ctrl-C'd sweep in its own folder.

The sweep is launched again through hydra (:func:`experiments.cli.launch`) with the overrides
its ``multirun.yaml`` records, its launcher included (a joblib sweep stays parallel), any
``--config-dir`` it was given, and ``RECLOOP_RESUME=1`` (the refusal of a used folder stands
aside). ``SWEEP_DIR/.recloop-resume/`` marks the sweep as resuming while it runs (jobs on Ray or
SLURM do not see this process's environment). Hydra numbers and names the jobs as the first
time; each job then decides (:func:`prepare_job`, called by ``experiments.cli._app``):

- complete (``summary.json`` says so and no checkpoint is left): kept. Hydra has just rewritten
  its ``.hydra`` record; the original, backed up under ``SWEEP_DIR/.recloop-resume/`` before the
  launch (a backup left by a killed resume wins), is put back (bytes and mtimes), and the job
  returns its objective from disk;
- a checkpoint (killed, Ctrl-C'd, or failed after one): continued from it
  (:func:`experiments.resume.continue_run`);
- anything else (never started, killed before its first checkpoint, or failed): its folder is
  cleared but hydra's record and log, and it runs from the start.

Then hydra's end-of-sweep callback rebuilds ``comparison.md`` and the sweep report, and the exit
code follows :func:`experiments.cli.sweep_exit`. ``multirun.yaml`` is backed up and restored the same
way: the sweep's record keeps the command that started it. A sweep whose every job is complete, with its
comparison and report, is left alone (exit 0, nothing written).

Refused with one line: Optuna sweeps (the sampler's next trials depend on the earlier trials'
results, which hydra's Optuna sweeper keeps only in memory: rerun the study) and sweeps of a
runner other than ``run`` (their jobs have no checkpoints).
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from omegaconf import OmegaConf

from experiments.config import ConfigError
from experiments.resume import RESUME_FLAG, finished
from sim.checkpoint import CheckpointError, checkpoint_path, load_checkpoint

BACKUP_DIR = ".recloop-resume"  # multirun.yaml and the kept jobs' records while resuming
MULTIRUN_FILE = "multirun.yaml"
log = logging.getLogger("recloop")
_DROPPED = ("hydra.sweep.dir", "hydra.mode")  # set again below: the folder given, -m


def _records(job_dir: Path) -> list[Path]:
    """What hydra writes into a job folder before the job runs: its ``.hydra`` record and the
    job's log (appended)."""
    found = sorted((job_dir / ".hydra").glob("*")) if (job_dir / ".hydra").is_dir() else []
    return [*found, *sorted(job_dir.glob("*.log"))]


def resuming(sweep_dir: Path) -> bool:
    """Is ``sweep_dir`` being resumed? Its jobs ask the folder, not the environment: on a Ray
    cluster or under SLURM they do not run in this process's environment."""
    return (sweep_dir / BACKUP_DIR).is_dir()


def job_state(job_dir: Path) -> str:
    """``kept`` (complete), ``continue`` (a checkpoint to continue from) or ``run``."""
    if checkpoint_path(job_dir).is_file():
        return "continue"
    if finished(job_dir) and not (job_dir / "checkpoint").exists():
        return "kept"
    return "run"


def _backup(sweep_dir: Path, job_dir: Path) -> None:
    """Copy a complete job's records under ``BACKUP_DIR`` (mtimes kept). An existing backup
    wins: it was made before an earlier resume's hydra rewrote the records."""
    for path in _records(job_dir):
        copy = sweep_dir / BACKUP_DIR / path.relative_to(sweep_dir)
        if not copy.exists():
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, copy)


def _restore(sweep_dir: Path, job_dir: Path) -> None:
    """Put a kept job's backed-up records back as they were (bytes and mtimes)."""
    saved = sweep_dir / BACKUP_DIR / job_dir.relative_to(sweep_dir)
    if not saved.is_dir():
        return
    for copy in sorted(p for p in saved.rglob("*") if p.is_file()):
        target = job_dir / copy.relative_to(saved)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(copy, target)


def _clear(job_dir: Path) -> None:
    """Remove a job's earlier attempt (partial outputs, status.json), keeping hydra's record
    just written for this attempt and the job's log."""
    keep = {".hydra", *(p.name for p in job_dir.glob("*.log"))}
    for path in job_dir.iterdir():
        if path.name in keep:
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


def prepare_job(job_dir: Path, sweep_dir: Path) -> str:
    """In a resumed sweep, before the job at ``job_dir`` runs: what it does (:func:`job_state`);
    a kept job's records are restored, a job run from the start (also one whose checkpoint
    cannot be read) has its folder cleared."""
    state = job_state(job_dir)
    if state == "continue":
        try:
            load_checkpoint(job_dir)
        except CheckpointError as exc:  # a job of a sweep cannot stop to ask: start it again
            log.warning("%s; the job runs from the start", exc)
            state = "run"
    if state == "kept":
        _restore(sweep_dir, job_dir)
    elif state == "run":
        _clear(job_dir)
    return state


def sweep_argv(sweep_dir: Path) -> list[str]:
    """The ``recloop`` command line that launches the sweep of ``sweep_dir`` again."""
    record = OmegaConf.load(sweep_dir / MULTIRUN_FILE)
    hydra = record.get("hydra") or {}
    from experiments.cli import _parse_key, is_optuna

    if is_optuna(hydra):
        raise ConfigError(
            f"{RESUME_FLAG} {sweep_dir}: an Optuna sweep cannot resume (its sampler's state "
            "is not saved); run the study again into a new folder"
        )
    runner = record.get("runner", "run")
    if runner != "run":
        raise ConfigError(f"{RESUME_FLAG} {sweep_dir}: runner={runner} sweeps cannot resume")
    overrides = hydra.get("overrides") or {}
    task = [str(o) for o in overrides.get("task") or []]
    own = [str(o) for o in overrides.get("hydra") or [] if _parse_key(str(o)) not in _DROPPED]
    launcher = ((hydra.get("runtime") or {}).get("choices") or {}).get("hydra/launcher")
    if launcher and not any(_parse_key(o) == "hydra/launcher" for o in own):
        own.append(f"hydra/launcher={launcher}")  # the launcher it ran on, not today's default
    dirs: list[str] = []
    for source in (hydra.get("runtime") or {}).get("config_sources") or []:
        if source.get("provider") == "command-line" and source.get("schema") == "file":
            dirs += ["--config-dir", str(source.get("path"))]
    quote = "'" if '"' in str(sweep_dir) else '"'
    return [*dirs, "-m", *task, *own, f"hydra.sweep.dir={quote}{sweep_dir}{quote}"]


def resume_sweep(sweep_dir: Path) -> int:
    """Resume the sweep in ``sweep_dir``; the exit code (:func:`experiments.cli.launch`)."""
    from experiments.cli import RESUME_ENV, launch, precheck

    argv = sweep_argv(sweep_dir)
    plan = precheck(list(argv))
    n_jobs = len(plan.jobs) if plan is not None else 0
    jobs = sorted(p for p in sweep_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    states = {job: job_state(job) for job in jobs}
    kept = [job for job, state in states.items() if state == "kept"]
    resumed = [job for job, state in states.items() if state == "continue"]
    sweep_done = (sweep_dir / "comparison.md").is_file() and (sweep_dir / "report.html").is_file()
    if len(kept) >= n_jobs and sweep_done:
        print(f"recloop: every job of {sweep_dir} is complete; nothing to resume")
        return 0
    print(
        f"recloop: resuming the sweep in {sweep_dir}: {len(kept)} of {n_jobs} jobs complete "
        f"(kept), {len(resumed)} continue from their checkpoint, "
        f"{n_jobs - len(kept) - len(resumed)} run from the start",
        flush=True,
    )
    (sweep_dir / BACKUP_DIR).mkdir(exist_ok=True)  # marks the sweep as resuming (:func:`resuming`)
    record = sweep_dir / BACKUP_DIR / MULTIRUN_FILE  # an earlier resume's backup wins
    if not record.exists():
        shutil.copy2(sweep_dir / MULTIRUN_FILE, record)
    for job in kept:
        _backup(sweep_dir, job)
    os.environ[RESUME_ENV] = "1"  # the refusal of a used folder stands aside
    try:
        return launch(argv)
    finally:
        shutil.copy2(record, sweep_dir / MULTIRUN_FILE)  # hydra rewrote it: put the record back
        for job in kept:
            _restore(sweep_dir, job)
        shutil.rmtree(sweep_dir / BACKUP_DIR, ignore_errors=True)
