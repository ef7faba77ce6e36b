"""``recloop``: the hydra app. ``@hydra.main`` is a thin wrapper around :func:`experiments.run.run`.

Before hydra creates any output directory, :func:`precheck` composes the config of every job the
command line asks for (one for a run, the cartesian product for ``-m``) and validates it, so a bad
value stops the command with one line naming the key and value, exit code 2, and nothing written.
The same goes for a sweep on a Ray cluster that does not answer (:mod:`experiments.ray_cluster`).
A sweep's directory is made absolute before hydra starts, so jobs that run in other processes
or on other machines write where the sweep report looks.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import multiprocessing
import os
import re
import shutil
import signal
import sys
import tempfile
import traceback
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict
from rich.console import Console

from experiments.config import ConfigError, parse_config
from experiments.console import day_progress, summary_table
from experiments.objective import check_objective, job_objective
from experiments.run import RUN_FILES, RunDirectoryError, run
from reports.atomic_write import WriteError as ReportWriteError
from sim.atomic_write import WriteError, atomic_path
from sim.metrics import METRIC_COLUMNS

log = logging.getLogger("recloop")
GROUPS = ("world", "policy", "sim", "study")
EXIT_BAD_INPUT = 2


# Config directories added with --config-dir (a user's own components and studies), searched
# by the precheck's composition like hydra searches them for the run.
_SEARCH_DIRS: list[Path] = []


def group_options(group: str) -> list[str]:
    """Selectable options of a config group (files starting with ``_`` are internal bases),
    in the packaged configs and any ``--config-dir``."""
    folders = [files("configs") / group, *(d / group for d in _SEARCH_DIRS)]
    return sorted(
        {
            p.name.removesuffix(".yaml")
            for folder in folders
            if folder.is_dir()
            for p in folder.iterdir()
            if p.name.endswith(".yaml") and not p.name.startswith("_")
        }
    )


def _split_config_dirs(argv: list[str]) -> tuple[list[str], list[Path]]:
    """``argv`` without ``--config-dir DIR`` / ``--config-dir=DIR`` / ``-cd DIR``, and the dirs."""
    rest: list[str] = []
    dirs: list[Path] = []
    args = iter(argv)
    for arg in args:
        if arg in ("--config-dir", "-cd"):
            value = next(args, None)
            if value is None:
                raise ConfigError(f"{arg}: needs a directory")
            dirs.append(Path(value))
        elif arg.startswith("--config-dir="):
            dirs.append(Path(arg.partition("=")[2]))
        else:
            rest.append(arg)
    for d in dirs:
        if not d.is_dir():
            raise ConfigError(f"--config-dir {d}: not a directory")
    return rest, [d.resolve() for d in dirs]


def _parse(lines: list[str]) -> list[Any]:
    parser = OverridesParser.create()
    try:
        parsed = parser.parse_overrides(lines)
    except HydraException as exc:
        for line in lines:  # name the override at fault, not only the parser's complaint
            try:
                parser.parse_overrides([line])
            except HydraException:
                raise ConfigError(f"{line}: malformed override: {_first_line(exc)}") from None
        raise ConfigError(f"malformed override: {_first_line(exc)}") from None
    for override in parsed:
        if not override.get_key_element().lstrip("+~"):
            raise ConfigError(f"{override.input_line}: malformed override: no key before '='")
    return parsed


def _job_overrides(argv: list[str]) -> tuple[list[list[str]], bool] | None:
    """The override lists of every job ``argv`` describes and whether it is a multirun; ``None``
    when hydra should handle the command itself (``--help``, ``--cfg``, shell completion …)."""
    found = _expand(argv)
    return None if found is None else found[:2]


def _expand(argv: list[str]) -> tuple[list[list[str]], bool, DictConfig] | None:
    """:func:`_job_overrides`, plus the composition of the command line's fixed overrides with
    its ``hydra`` node (launcher, sweep dir …). For a single run that is its job's config too.

    A config may make itself a sweep (``hydra.mode: MULTIRUN`` with ``hydra.sweeper.params``, as
    the study configs do); its params are expanded like hydra's basic sweeper does, with the
    command line winning over the config for the same key.
    """
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    if any(a.startswith("-") and a not in ("-m", "--multirun") for a in argv):
        return None
    parsed = _parse([a for a in argv if not a.startswith("-")])
    _check_output_folders(parsed)
    # hydra's own settings (launcher, run dir …) are hydra's business, not the study's.
    ours = [o for o in parsed if not o.get_key_element().lstrip("+~").startswith("hydra")]
    fixed = [o.input_line for o in ours if not o.is_sweep_override()]
    hydra_settings = [o.input_line for o in parsed if o not in ours and not o.is_sweep_override()]
    full = _compose([*fixed, *hydra_settings], with_hydra=True)
    hydra_cfg = full.hydra
    multirun = any(a in ("-m", "--multirun") for a in argv) or hydra_cfg.mode == RunMode.MULTIRUN
    if not multirun:
        sweeps = [o for o in ours if o.is_sweep_override()]
        if sweeps:
            raise ConfigError(
                f"{sweeps[0].input_line}: a sweep needs -m/--multirun (recloop -m {sweeps[0].input_line})"
            )
        return [fixed], False, full
    given = {o.get_key_element().lstrip("+~") for o in ours}
    params = hydra_cfg.sweeper.get("params") or {}
    from_config = _parse([f"{k}={v}" for k, v in params.items() if k not in given])
    if is_optuna(hydra_cfg):
        return optuna_corner_jobs([*from_config, *ours]), True, full
    batches = BasicSweeper.split_arguments([*from_config, *ours], max_batch_size=None)
    return [job for batch in batches for job in batch], True, full


def _check_output_folders(parsed: list[Any]) -> None:
    """Refuse an empty output folder (``hydra.run.dir=``: hydra would write into the current
    folder). A key given twice is hydra's business: the last one wins."""
    for o in parsed:
        key = o.get_key_element().lstrip("+~")
        if key in (RUN_DIR_KEY, SWEEP_DIR_KEY) and not o.is_delete() and not str(o.value()).strip():
            raise ConfigError(
                f"{o.input_line}: must name a folder (empty writes into {Path.cwd()})"
            )


OPTUNA_SWEEPER = "hydra_optuna_sweeper"  # hydra/sweeper=optuna (the optuna extra)


def is_optuna(hydra_cfg: DictConfig | None) -> bool:
    """Does this sweep run on hydra's Optuna sweeper (trials are jobs)?"""
    if hydra_cfg is None:
        return False
    return OPTUNA_SWEEPER in str(hydra_cfg.get("sweeper", {}).get("_target_", ""))


def _candidates(override: Any) -> list[str]:
    """The values of one override the precheck tries: both ends of an interval, every value of
    a choice or range, the value itself when fixed."""
    if not override.is_sweep_override():
        return [override.get_value_element_as_str()]
    if override.is_interval_sweep():
        value = override.value()
        return [str(value.start), str(value.end)]
    return list(override.sweep_string_iterator())


def optuna_corner_jobs(overrides: list[Any]) -> list[list[str]]:
    """Jobs that cover the ends of an Optuna search space, for the precheck (Optuna picks the
    trials' values only while the sweep runs): job ``i`` sets every key to its ``i``-th
    candidate (:func:`_candidates`), or its last one when it has fewer. A bad bound then stops
    the command before any trial runs, like a bad value of a grid sweep."""
    values = [(o.get_key_element(), _candidates(o)) for o in overrides]
    n = max((len(v) for _, v in values), default=1)
    return [[f"{key}={v[min(i, len(v) - 1)]}" for key, v in values] for i in range(n)]


def _without_hydra(full: DictConfig) -> DictConfig:
    """A copy of a composition without its ``hydra`` node: what ``hydra.compose`` returns for
    the same overrides (hydra's settings change only that node)."""
    cfg = copy.deepcopy(full)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


def _compose(overrides: list[str], with_hydra: bool = False) -> DictConfig:
    from hydra import compose, initialize_config_module

    for line in overrides:
        key, _, value = line.partition("=")
        key = key.lstrip("+~")
        if key in GROUPS or (key.startswith("policy/") and key.count("/") == 1):
            options = group_options(key)
            if options and value not in options:
                raise ConfigError(
                    f"{key}={value}: unknown {key}; choose one of {', '.join(options)}"
                )
    if _SEARCH_DIRS:
        paths = ",".join(f"file://{d}" for d in _SEARCH_DIRS)
        overrides = [*overrides, f"hydra.searchpath=[{paths}]"]
    with initialize_config_module(config_module="configs", version_base="1.3"):
        try:
            return compose(
                config_name="config", overrides=overrides, return_hydra_config=with_hydra
            )
        except HydraException as exc:
            if "hydra/sweeper/optuna" in str(exc):
                raise ConfigError(
                    "hydra/sweeper=optuna: hydra-optuna-sweeper is not installed "
                    '(pip install -e ".[optuna]")'
                ) from None
            raise ConfigError(_composition_error(exc, overrides)) from None


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


@dataclass(frozen=True)
class Plan:
    """What the command line asks for: every job's composed config, whether it is a sweep, and
    hydra's own settings (launcher, sweep dir)."""

    jobs: list[DictConfig]
    multirun: bool
    hydra: DictConfig | None = None
    overrides: list[list[str]] | None = None  # each job's overrides (row-aligned with jobs)

    @property
    def arms(self) -> list[str] | None:
        """Each job's arm when every job adds exactly one choice of the same config group that
        varies across jobs (a study's arm group: ``+mo_arm=revenue_100``); else None."""
        if not self.overrides or len(self.overrides) < 2:
            return None
        found = []
        for overrides in self.overrides:
            added = [
                o
                for o in overrides
                if o.startswith("+")
                and "=" in o
                and "." not in o.partition("=")[0]
                and o.partition("=")[0] != "+study"
            ]
            if len(added) != 1:
                return None
            found.append(added[0])
        keys = {a.partition("=")[0] for a in found}
        return found if len(keys) == 1 and len(set(found)) > 1 else None

    @property
    def n_trials(self) -> int | None:
        """An Optuna sweep's number of trials (its jobs); None for other sweeps, whose jobs
        are :attr:`jobs` (an Optuna sweep's :attr:`jobs` are the corners the precheck tried)."""
        return int(self.hydra.sweeper.n_trials) if is_optuna(self.hydra) else None


def precheck(argv: list[str]) -> Plan | None:
    """Compose and validate every job of ``argv``; raise :class:`ConfigError` on the first bad one.

    Returns the composed config of every job (None when hydra handles the command itself).
    """
    argv, dirs = _split_config_dirs(argv)
    _SEARCH_DIRS[:] = dirs
    found = _expand(argv)
    if found is None:
        return None
    jobs, multirun, full = found
    hydra_cfg = full.hydra
    composed = []
    for overrides in jobs:
        # a single run's job is the composition _expand made (~0.3 s of a tiny run saved)
        cfg = _compose(overrides) if multirun else _without_hydra(full)
        composed.append(cfg)
        parse_config(cfg)
        _check_candidates(cfg)
        try:
            check_objective(cfg, METRIC_COLUMNS)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        if is_optuna(hydra_cfg) and cfg.get("study_objective") is None:
            raise ConfigError(
                "study_objective=null: an Optuna sweep needs the metric its trials return "
                "(e.g. study_objective=cumulative_utility)"
            )
        if is_optuna(hydra_cfg) and "max" not in str(hydra_cfg.sweeper.direction).lower():
            raise ConfigError(
                f"hydra.sweeper.direction={hydra_cfg.sweeper.direction}: the trials' objective "
                f"({cfg.get('study_objective')}) is maximized; use direction=maximize"
            )
        runner = cfg.get("runner", "run")
        if runner not in RUNNERS:
            raise ConfigError(f"runner={runner!r}: unknown; choose one of {', '.join(RUNNERS)}")
        if runner == "ope":
            from experiments.ope import check_ope

            check_ope(OmegaConf.to_container(cfg, resolve=True))
        elif runner == "bias_replay":
            from experiments.bias_replay import check_bias_replay

            try:
                check_bias_replay(OmegaConf.to_container(cfg, resolve=True))
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
    return Plan(composed, multirun, hydra_cfg, overrides=[list(o) for o in jobs])


def _check_candidates(cfg: DictConfig) -> None:
    """Refuse ``policy.n_candidates < policy.slate_size``: the policy would silently retrieve
    ``slate_size`` candidates while config.yaml records the smaller number."""
    policy = cfg.get("policy") or {}
    n, k = policy.get("n_candidates"), policy.get("slate_size")
    if isinstance(n, int) and isinstance(k, int) and n < k:
        raise ConfigError(
            f"policy.n_candidates={n}: smaller than policy.slate_size={k}; "
            "retrieve at least as many candidates as the slate shows"
        )


def _config_folder(section: str) -> str:
    """Where an unknown key's section lives: ``configs/policy/selector/`` for
    ``policy.selector``, else its top-level group's folder, else ``configs/config.yaml``."""
    parts = section.split(".") if section else []
    while parts:
        if (files("configs") / "/".join(parts)).is_dir():
            return "configs/" + "/".join(parts) + "/"
        parts.pop()
    return "configs/config.yaml"


def _did_you_mean(key: str) -> str:
    """``; did you mean policy?`` for a misspelt top-level key or config group, else ``""``."""
    import difflib

    top = OmegaConf.load(str(files("configs") / "config.yaml"))
    known = sorted({*GROUPS, *(str(k) for k in top if k not in ("defaults", "hydra"))})
    close = difflib.get_close_matches(key, known, n=1)
    return f"; did you mean {close[0]}?" if close else ""


def _composition_error(exc: HydraException, overrides: list[str]) -> str:
    """One line for hydra's multi-line composition errors, naming the override at fault."""
    text = f"{exc} {exc.__cause__}"
    if "not in struct" in text:
        for line in overrides:
            key = line.partition("=")[0].lstrip("+~")
            if f"'{key}'" in text:
                from policies.policy import MOVED_KEYS

                section, _, leaf = key.rpartition(".")
                if section == "policy" and leaf in MOVED_KEYS:
                    return f"{line}: moved to {MOVED_KEYS[leaf]} (nested config groups)"
                place = section or "the top level"
                hint = "" if section else _did_you_mean(key)
                return (
                    f"{line}: unknown key in {place} "
                    f"(see {_config_folder(section)} for the keys{hint})"
                )
    merging = re.match(r"Error merging override (\S+)", str(exc))
    if merging and exc.__cause__ is not None and "not in struct" not in text:
        # a typed hydra field given the wrong type: the override and omegaconf's reason
        return f"{merging.group(1)}: {_first_line(exc.__cause__)}"
    missing = re.search(r"Could not find '(hydra/[\w/]+)/([^']+)'", text)
    if missing:  # hydra/launcher=nope, hydra/sweeper=...: name the choices, as for policy=foo
        group, name = missing.groups()
        choices = _hydra_group_options(group)
        listed = f"; choose one of {', '.join(choices)}" if choices else ""
        return f"{group}={name}: unknown option{listed}"
    return _first_line(exc)


def _hydra_group_options(group: str) -> list[str]:
    """The options of a hydra config group (``hydra/launcher``: basic, joblib, ...), from the
    installed plugins' config search path."""
    from hydra.core.global_hydra import GlobalHydra

    hydra = GlobalHydra.instance()
    if not hydra.is_initialized():
        return []
    try:
        return sorted(
            o for o in hydra.config_loader().get_group_options(group) if not o.startswith("_")
        )
    except Exception:  # a listing is a courtesy: never let it hide the error itself
        return []


def record_failure(out_dir: Path, exc: BaseException) -> None:
    """Write ``status.json`` (``status: failed``, the error line and the traceback)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    status = {
        "status": "failed",
        "error": error_line(exc),
        "traceback": "".join(traceback.format_exception(exc)),
    }
    with atomic_path(out_dir / "status.json") as tmp:
        tmp.write_text(json.dumps(status, indent=2) + "\n")


def error_line(exc: BaseException) -> str:
    """One line for an unexpected exception: ``cannot write PATH: No space left on device`` for
    a failed output write (:mod:`sim.atomic_write` names the file), else its type and first
    line. simpy re-raises a process's exception as a copy without its ``filename`` (the
    original is its ``__cause__``): the chain is searched for the file."""
    found: BaseException | None = exc
    while found is not None and not (isinstance(found, OSError) and found.filename):
        found = found.__cause__
    if isinstance(found, OSError):
        verb = "cannot write " if isinstance(found, (WriteError, ReportWriteError)) else ""
        return f"{verb}{found.filename}: {found.strerror or _first_line(found)}"
    return f"{type(exc).__name__}: {_first_line(exc)}"


def keep_traceback(
    exc: BaseException, fallback_dir: Path | None = None, job_log: bool = True
) -> str:
    """Append ``exc``'s traceback to hydra's job log (the run's ``cli.log``; not with
    ``job_log`` False: after a sweep it is the last job's), else to ``fallback_dir/cli.log``,
    or when neither can be written (a full disk) to a new file in the temp folder; returns
    where it went, for the one-line message (or why it was not kept)."""
    text = "".join(traceback.format_exception(exc))
    handlers = logging.getLogger().handlers if job_log else []
    targets = [Path(h.baseFilename) for h in handlers if isinstance(h, logging.FileHandler)]
    if not targets and fallback_dir is not None:
        targets = [fallback_dir / "cli.log"]
    for path in targets:
        try:
            with open(path, "a", encoding="utf-8") as f:
                f.write(text)
            return str(path)
        except OSError:
            continue
    try:
        fd, name = tempfile.mkstemp(prefix="recloop-error-", suffix=".log")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        return name
    except OSError as err:
        return f"not kept: {err.strerror or err}"


def _discard_unstarted(out_dir: Path) -> None:
    """Remove a directory hydra created for a job that never started (only .hydra + its log)."""
    if out_dir.is_dir() and all(
        p.name == ".hydra" or p.suffix == ".log" for p in out_dir.iterdir()
    ):
        shutil.rmtree(out_dir)


# Jobs of this process's sweep that did not finish: failed (an exception, status.json) or
# refused (bad input found only when the job ran); the sweep's exit code says so.
_OUTCOMES: dict[str, int] = {"failed": 0, "refused": 0}
EXIT_JOBS_FAILED = 1
EXIT_FAILED = 1  # a run failed while running (a write error, a bug): one line, traceback kept


def _failed_on_disk(sweep_dir: Path | None) -> int:
    """Jobs under ``sweep_dir`` whose status.json says failed (jobs that ran in other processes
    or on other machines count too)."""
    if sweep_dir is None or not sweep_dir.is_dir():
        return 0
    count = 0
    for status in sweep_dir.glob("*/status.json"):
        try:
            count += json.loads(status.read_text()).get("status") == "failed"
        except (OSError, ValueError):
            count += 1  # unreadable: not a finished job either
    return count


def _given_sweep_dir(argv: list[str]) -> Path | None:
    """The ``hydra.sweep.dir`` hydra was given (made absolute by :func:`_absolute_sweep_dir`):
    where jobs run by other processes write, when none ran in this one."""
    for arg in argv:
        if _parse_key(arg) == SWEEP_DIR_KEY:
            value = arg.partition("=")[2].strip("'\"")
            return Path(value).resolve() if "${" not in value else None
    return None


def sweep_exit(plan: Plan) -> int:
    """After a sweep (its report written): one line on stderr saying how many jobs failed or
    were refused, and exit code 1 if any did, else 0."""
    sweep_dir = _ACTIVE.get("sweep_dir") or _given_sweep_dir(sys.argv[1:])
    if sweep_dir is None and plan.hydra is not None:
        try:
            sweep_dir = Path(str(plan.hydra.sweep.dir)).resolve()
        except Exception:
            sweep_dir = None
    from experiments.study import OUTPUT_ERRORS

    for exc in OUTPUT_ERRORS:  # the comparison or the sweep report could not be written
        where = keep_traceback(exc, fallback_dir=sweep_dir, job_log=False)
        print(f"recloop: error: {error_line(exc)} (traceback in {where})", file=sys.stderr)
    failed = max(_OUTCOMES["failed"], _failed_on_disk(sweep_dir))
    refused = _OUTCOMES["refused"]
    if not failed and not refused:
        return EXIT_FAILED if OUTPUT_ERRORS else 0
    total = plan.n_trials or len(plan.jobs)
    parts = [f"{n} {what}" for n, what in ((failed, "failed"), (refused, "refused")) if n]
    print(
        f"recloop: {' and '.join(parts)} of {total} jobs in {sweep_dir} "
        "(see each job's status.json or the error above)",
        file=sys.stderr,
    )
    return EXIT_JOBS_FAILED


# The job this process is running, for the Ctrl-C message: its folder and the simulated day.
_ACTIVE: dict[str, Any] = {}
EXIT_INTERRUPTED = 130  # the shell's convention for SIGINT


def _tracking(progress: Any, days: float) -> Any:
    """Wrap a ``progress(now, horizon)`` callback to remember the simulated day reached."""

    def update(now: float, horizon: float) -> None:
        _ACTIVE["day"] = now / 24.0
        progress(now, horizon)

    _ACTIVE.update(day=0.0, days=days)
    return update


def record_interrupted(out_dir: Path, day: float, days: float) -> None:
    """Write ``status.json`` (``status: interrupted`` and the simulated day reached)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    status = {
        "status": "interrupted",
        "error": f"interrupted ({'SIGTERM' if _TERMINATED else 'Ctrl-C'}) "
        f"at simulated day {day:.1f} of {days:g}",
        "day": round(day, 3),
        "days": days,
    }
    with atomic_path(out_dir / "status.json") as tmp:
        tmp.write_text(json.dumps(status, indent=2) + "\n")


def _failed_value(cfg: DictConfig) -> float | None:
    """What a failed job returns: NaN in a study with an objective (Optuna marks the trial
    failed and the sweep goes on), else nothing."""
    return float("nan") if cfg.get("study_objective") is not None else None


@hydra.main(config_path="pkg://configs", config_name="config", version_base="1.3")
def _app(cfg: DictConfig) -> float | None:
    """One job. Returns the study's objective when its config names one (the value hydra's
    Optuna sweeper optimizes, :mod:`experiments.objective`), else None."""
    hc = HydraConfig.get()
    out_dir = Path(hc.runtime.output_dir).resolve()
    multirun = hc.mode == RunMode.MULTIRUN
    console = _console()
    _ACTIVE.clear()
    _ACTIVE.update(out_dir=out_dir, multirun=multirun, running=True)
    if multirun and multiprocessing.current_process().name != "MainProcess":  # a joblib worker
        signal.signal(signal.SIGINT, _worker_sigint)
    if multirun:
        _ACTIVE["sweep_dir"] = Path(str(hc.sweep.dir)).resolve()
        _ACTIVE["study_name"] = str(cfg.get("study_name", "sweep"))
    try:
        runner = cfg.get("runner", "run")
        if runner != "run":  # a study with its own runs and page
            RUNNERS[runner](cfg, out_dir, console)
            return
        show = bool(cfg.get("progress", True)) and not multirun
        days = float(cfg.sim.days)
        action = None
        if multirun:
            from experiments.resume_sweep import prepare_job, resuming

            if resuming(_ACTIVE["sweep_dir"]):  # recloop --resume SWEEP_DIR
                action = prepare_job(out_dir, _ACTIVE["sweep_dir"])
                if action == "kept":
                    return job_objective(cfg, out_dir)
        with day_progress(show, console, days=days) as progress:
            if action == "continue":
                from experiments.resume import continue_run

                summary = continue_run(out_dir, _tracking(progress, days), announce=False)
            else:
                summary = run(
                    cfg,
                    out_dir,
                    progress=_tracking(progress, days),
                    config_name=hc.job.config_name or "config",
                )
        objective = job_objective(cfg, out_dir)
    except KeyboardInterrupt:
        if "day" in _ACTIVE:
            record_interrupted(out_dir, _ACTIVE["day"], _ACTIVE["days"])
        raise
    except (ConfigError, RunDirectoryError) as exc:
        _discard_unstarted(out_dir)
        print(f"recloop: error: {exc}", file=sys.stderr)
        if multirun:  # keep the sweep going; hydra would skip its end-of-sweep callbacks
            _OUTCOMES["refused"] += 1
            return _failed_value(cfg)
        sys.exit(EXIT_BAD_INPUT)
    except Exception as exc:
        if not multirun:  # one line; the traceback in the run's cli.log, not on the terminal
            where = keep_traceback(exc)
            with contextlib.suppress(OSError):  # as a sweep's job records it (not on a full disk)
                record_failure(out_dir, exc)
            print(f"recloop: error: {error_line(exc)} (traceback in {where})", file=sys.stderr)
            sys.exit(EXIT_FAILED)
        # A failed job must not take the sweep down (hydra then skips on_multirun_end): record
        # the failure in the job's own folder and let the sweep go on. One line here; the
        # traceback is in status.json (or, when that cannot be written, cli.log or a temp file).
        try:
            record_failure(out_dir, exc)
            where = str(out_dir / "status.json")
        except OSError:
            where = keep_traceback(exc)
        _OUTCOMES["failed"] += 1
        log.error("job %s failed: %s (traceback in %s)", hc.job.num, error_line(exc), where)
        return _failed_value(cfg)
    finally:
        _ACTIVE["running"] = False
        if sys.exc_info()[0] is not KeyboardInterrupt:
            _ACTIVE.pop("day", None)  # this job is over: a later Ctrl-C is not about it
    if multirun:  # the sweep prints one line per job (SweepProgress) and the comparison
        return objective
    console.print(summary_table(summary))
    print(f"run directory: {out_dir}")
    if (out_dir / "report.html").exists():
        print(f"report: {out_dir / 'report.html'}")
    return objective


def _console() -> Console:
    """rich console for tables; when stdout is a file or a pipe, wide enough not to wrap."""
    console = Console()
    if not console.is_terminal:
        console = Console(width=160)
    return console


def _on_interrupt() -> int:
    """Ctrl-C: one line saying where it stopped, the sweep's comparison and report for the
    jobs that finished; the exit code."""
    out_dir = _ACTIVE.get("out_dir")
    sweep_dir = _ACTIVE.get("sweep_dir") or _LAUNCHED.get("sweep_dir")
    multirun = bool(_ACTIVE.get("multirun")) or "sweep_dir" in _LAUNCHED
    where = ""
    if out_dir is not None and "day" in _ACTIVE:
        where = f" at day {_ACTIVE['day']:.0f}/{_ACTIVE['days']:g}"
    target = sweep_dir if multirun else out_dir
    if target is not None and (multirun or where):
        print(
            f"recloop: interrupted{where}; resume with: recloop --resume {target}", file=sys.stderr
        )
    else:
        print("recloop: interrupted", file=sys.stderr)
    if multirun and sweep_dir is not None and sweep_dir.is_dir():
        from reports.comparison import write_comparison
        from reports.sweep_report import SweepReportError, build_sweep_report

        try:
            comparison = write_comparison(sweep_dir, _ACTIVE.get("study_name", "sweep"))
            if comparison is not None:
                print(f"comparison of the finished jobs: {comparison}")
            print(f"sweep report of the finished jobs: {build_sweep_report(sweep_dir)}")
        except SweepReportError as exc:
            print(f"recloop: no sweep report: {exc}", file=sys.stderr)
        except KeyboardInterrupt:  # a second Ctrl-C: stop now
            pass
    return EXIT_INTERRUPTED


def _worker_sigint(signum: int, frame: Any) -> None:
    """Ctrl-C reaches a launcher's workers too (the terminal signals the whole group). A worker
    running a job stops it as Ctrl-C does (its status.json says interrupted); an idle worker
    ignores it — the launching process stops the pool — rather than print a traceback from
    wherever it was idling (loky's ``gc.collect()``)."""
    if _ACTIVE.get("running"):
        raise KeyboardInterrupt


EXIT_TERMINATED = 143  # 128 + SIGTERM, the shell's convention
_TERMINATED: list[int] = []


def _on_sigterm(signum: int, frame: Any) -> None:
    """SIGTERM (``kill``, a scheduler's pre-emption, ``docker stop``): stop as Ctrl-C does —
    the job's status.json says interrupted, one line says where, the checkpoint stays for
    ``--resume`` — rather than dying silently mid-write."""
    _TERMINATED.append(signum)
    raise KeyboardInterrupt


def _run_ope(cfg: DictConfig, out_dir: Path, console: Console) -> None:
    from experiments.ope import run_ope

    table = run_ope(cfg, out_dir)
    console.print(f"off-policy evaluation: {table.height} estimates in {out_dir / 'ope.parquet'}")
    console.print(f"summary: {out_dir / 'ope_summary.csv'}  page: {out_dir / 'ope.html'}")


def _run_bias_replay(cfg: DictConfig, out_dir: Path, console: Console) -> None:
    from experiments.bias_replay import check_bias_replay, run_bias_replay

    runs, users = check_bias_replay(OmegaConf.to_container(cfg, resolve=True))
    out_dir.mkdir(parents=True, exist_ok=True)
    table = run_bias_replay(runs, users, out_dir / "replay.csv")
    console.print(f"bias replay: {table.height} rows in {out_dir / 'replay.csv'}")


# What a job does, by the config's top-level ``runner`` key (study configs set it).
RUNNERS: dict[str, Any] = {"run": None, "ope": _run_ope, "bias_replay": _run_bias_replay}


PLAN_FLAG = "--plan"  # print the plan and the estimate, run nothing
CHECK_CLUSTER_FLAG = "--check-cluster"  # [=ADDRESS]: compare every Ray node's versions with ours
SWEEP_DIR_KEY = "hydra.sweep.dir"
RUN_DIR_KEY = "hydra.run.dir"


RESUME_ENV = "RECLOOP_RESUME"  # =1: re-entering a used folder is on purpose (a resume)
# What marks a folder as holding (part of) a run: hydra's record, a failure record, any output.
RUN_MARKERS = (".hydra", "status.json", *RUN_FILES)


def _holds_run(folder: Path) -> str | None:
    """The first thing in ``folder`` that shows a run used it, or None."""
    return next((name for name in RUN_MARKERS if (folder / name).exists()), None)


def check_fresh_folder(plan: Plan) -> None:
    """Refuse a run into a folder that already holds a run, and a sweep into a folder that
    already holds a sweep (``multirun.yaml`` or a job folder), before hydra writes its
    ``.hydra`` record there: a record is never overwritten. ``RECLOOP_RESUME=1`` skips this."""
    if plan.hydra is None or os.environ.get(RESUME_ENV) == "1":
        return
    key = "sweep" if plan.multirun else "run"
    try:
        folder = Path(str(plan.hydra[key].dir))
    except Exception:  # an interpolation only hydra's run can resolve: a fresh folder anyway
        return
    if not folder.is_dir():
        return
    if plan.multirun:
        if (folder / "multirun.yaml").exists():
            found = "multirun.yaml"
        elif _holds_run(folder):
            found = _holds_run(folder)
        else:
            jobs = sorted(p.name for p in folder.iterdir() if p.is_dir() and _holds_run(p))
            found = f"job folder {jobs[0]}/" if jobs else None
    else:
        found = _holds_run(folder)
        found = found and (f"{found}/" if (folder / found).is_dir() else found)
    if found:
        raise ConfigError(
            f"{folder} already holds a {key} ({found} exists); choose a new hydra.{key}.dir"
        )


def check_writable(plan: Plan) -> None:
    """Refuse an output folder that cannot be written, before hydra configures its log file
    there (which fails with a traceback, "Unable to configure handler 'file'"): the folder, or
    when it does not exist yet its nearest existing parent, must be a folder that accepts a new
    entry. Tried for real (a probe folder, removed at once): permission bits say nothing for
    root or a read-only mount."""
    if plan.hydra is None:
        return
    key = "sweep" if plan.multirun else "run"
    try:
        folder = Path(str(plan.hydra[key].dir)).absolute()
    except Exception:  # an interpolation only hydra's run can resolve
        return
    setting = f"hydra.{key}.dir={folder}"
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        what = "exists and is not a folder" if existing == folder else f"{existing} is not a folder"
        raise ConfigError(f"{setting}: {what}; choose another hydra.{key}.dir")
    try:
        probe = tempfile.mkdtemp(prefix=".recloop-probe-", dir=existing)
    except OSError as exc:
        where = "the folder" if existing == folder else f"its parent {existing}"
        raise ConfigError(
            f"{setting}: {where} is not writable ({exc.strerror or exc}); "
            f"choose another hydra.{key}.dir"
        ) from None
    os.rmdir(probe)


def _absolute_sweep_dir(plan: Plan, argv: list[str]) -> list[str]:
    """``argv`` with the sweep directory made absolute (resolved here, once): launchers run jobs
    in other processes and on other machines, whose working directory is not ours (a Ray
    worker's is where ``ray start`` ran)."""
    if not plan.multirun or plan.hydra is None:
        return argv
    try:
        sweep_dir = Path(str(plan.hydra.sweep.dir))
    except Exception:  # an interpolation only hydra's run can resolve: leave it to hydra
        return argv
    if sweep_dir.is_absolute():
        return argv
    path = str(Path.cwd() / sweep_dir)
    quote = "'" if '"' in path else '"'
    rest = [a for a in argv if _parse_key(a) != SWEEP_DIR_KEY]
    return [*rest, f"{SWEEP_DIR_KEY}={quote}{path}{quote}"]


def _parse_key(arg: str) -> str | None:
    if arg.startswith("-") or "=" not in arg:
        return None
    return arg.partition("=")[0].lstrip("+~")


SWEEP_LAUNCHER_ENV = "RECLOOP_SWEEP_LAUNCHER"


PARALLEL_MIN_SECONDS = 60.0  # estimated one-after-another time below which a sweep stays basic


def parallel_default(argv: list[str], plan: Plan | None) -> str | None:
    """The override that puts a sweep on every core: ``hydra/launcher=joblib`` (one job per core,
    ``n_jobs=-1``) when the sweep would otherwise run on hydra's basic launcher one job after
    another — no launcher chosen on the command line or by a study config — the machine has more
    than one core, the joblib launcher is installed and the cost model expects the jobs to take at
    least ``PARALLEL_MIN_SECONDS`` one after another (below that, starting joblib's worker
    processes, each importing recloop, costs more than it saves). Jobs write the same bytes on
    either launcher. ``hydra/launcher=basic`` on the command line, or
    ``RECLOOP_SWEEP_LAUNCHER=basic`` in the environment (the test suite's, which already runs on
    every core), keeps the basic one; ``RECLOOP_SWEEP_LAUNCHER=joblib`` picks joblib whatever the
    estimate. Optuna sweeps keep their own batching (``hydra.sweeper.n_jobs``)."""
    if plan is None or not plan.multirun or plan.hydra is None or is_optuna(plan.hydra):
        return None
    wanted = os.environ.get(SWEEP_LAUNCHER_ENV, "").strip().lower()
    if wanted == "basic":
        return None
    if any(_parse_key(a) == "hydra/launcher" for a in argv):
        return None
    if plan.hydra.runtime.choices.get("hydra/launcher") != "basic" or (os.cpu_count() or 1) < 2:
        return None
    import importlib.util

    if importlib.util.find_spec("hydra_plugins.hydra_joblib_launcher") is None:
        return None
    if wanted != "joblib" and all(c.get("runner", "run") == "run" for c in plan.jobs):
        from experiments.cost_model import estimate_sweep

        cfgs = [OmegaConf.to_container(c, resolve=True) for c in plan.jobs]
        if estimate_sweep(cfgs).seconds < PARALLEL_MIN_SECONDS:  # type: ignore[arg-type]
            return None
    return "hydra/launcher=joblib"


def at_once(plan: Plan) -> int:
    """Jobs of ``plan`` in this machine's memory at once: 1 (one run, or the basic launcher),
    the joblib launcher's workers, or 0 when they run elsewhere (Ray, SLURM)."""
    if not plan.multirun or plan.hydra is None:
        return 1
    target = str(plan.hydra.launcher.get("_target_", ""))
    if target.endswith("JoblibLauncher"):
        n_jobs = int(plan.hydra.launcher.get("n_jobs") or 1)
        return min(len(plan.jobs), (os.cpu_count() or 1) if n_jobs < 0 else n_jobs)
    if target.endswith(("BasicLauncher", "LocalLauncher")):
        return 1
    return 0


def _check_launcher(plan: Plan) -> None:
    """Before a sweep on a Ray cluster: the launcher is installed and its cluster answers
    (hydra-ray-launcher would retry an unreachable address forever)."""
    if not plan.multirun or plan.hydra is None:
        return
    target = str(plan.hydra.launcher.get("_target_", ""))
    if target.endswith(".SlurmLauncher") and shutil.which("sbatch") is None:
        # submitit would fail after seconds with a traceback and leave a sweep folder behind
        choice = plan.hydra.runtime.choices.get("hydra/launcher")
        raise ConfigError(
            f"hydra/launcher={choice}: no sbatch on this machine; submit from a SLURM login "
            "node (hydra/launcher=submitit_local runs the same machinery here)"
        )
    if target.endswith("JoblibLauncher"):
        _check_joblib_n_jobs(plan.hydra.launcher.get("n_jobs"))
    if "hydra_ray_launcher" not in target:
        return
    launcher = OmegaConf.to_container(plan.hydra.launcher, resolve=True)
    import importlib.util

    if importlib.util.find_spec("hydra_plugins.hydra_ray_launcher") is None:
        raise ConfigError(
            f"hydra/launcher={plan.hydra.runtime.choices.get('hydra/launcher')}: "
            'hydra-ray-launcher is not installed (pip install -e ".[ray]")'
        )
    from experiments.ray_cluster import check_address, launcher_address

    address = launcher_address(launcher)  # type: ignore[arg-type]
    if address is not None:  # hydra's ray.init runs in this process, with what this sets up
        check_address(address)


def _check_joblib_n_jobs(value: Any) -> None:
    """joblib's ``n_jobs``: a non-zero integer, negative counting back from the cores
    (-1: all); joblib itself fails only once the sweep folder exists, with a traceback."""
    cores = os.cpu_count() or 1
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"hydra.launcher.n_jobs={value!r}: must be an integer (-1: all cores)")
    if value == 0 or (value < 0 and cores + 1 + value < 1):
        raise ConfigError(
            f"hydra.launcher.n_jobs={value}: must be a positive number of parallel jobs, or "
            f"-1 .. -{cores} to count back from this machine's {cores} cores"
        )


def _check_resources(plan: Plan) -> None:
    """Refuse, before hydra writes anything, jobs whose estimated peak memory or disk exceeds
    what the machine has (experiments/resources.py); print the estimate when it is big."""
    from experiments.resources import check_resources

    if plan.hydra is None:
        return
    out_dir = Path(str(plan.hydra.sweep.dir if plan.multirun else plan.hydra.run.dir))
    cfgs = [OmegaConf.to_container(c, resolve=True) for c in plan.jobs]
    named = plan.overrides[0] if plan.overrides and not plan.multirun else ()
    try:
        line = check_resources(cfgs, out_dir, named, at_once(plan))  # type: ignore[arg-type]
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if line:
        print(f"recloop: {line}")


def _check_cluster(arg: str) -> int:
    """``recloop --check-cluster[=ADDRESS]`` (default: RAY_ADDRESS, else ``auto``)."""
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        raise ConfigError(f'{CHECK_CLUSTER_FLAG}: ray is not installed (pip install -e ".[ray]")')
    from experiments.ray_cluster import check_cluster

    address = arg.partition("=")[2] or os.environ.get("RAY_ADDRESS") or "auto"
    return check_cluster(address)


def _announce(plan: Plan, plan_only: bool = False) -> None:
    """Before a sweep of simulation jobs starts: its size and the cost model's estimate."""
    if plan_only and any(c.get("runner", "run") != "run" for c in plan.jobs):
        print(
            f"recloop: no estimate for runner={plan.jobs[0].get('runner')} (only for simulation runs)"
        )
        return
    if not (plan.multirun or plan_only) or any(c.get("runner", "run") != "run" for c in plan.jobs):
        return
    from experiments.sweep_progress import plan_lines, set_pending_plan

    cfgs = [OmegaConf.to_container(c, resolve=True) for c in plan.jobs]
    name = str(plan.jobs[0].get("study_name", "sweep")) if plan.multirun else "run"
    if plan.n_trials is not None:  # Optuna: n_trials jobs, costed like the first corner
        cfgs = [cfgs[0]] * plan.n_trials
    arms = None if plan.n_trials is not None else plan.arms
    side_by_side = max(1, at_once(plan))
    lines, estimate = plan_lines(cfgs, f"recloop {name}", arms, side_by_side)  # type: ignore[arg-type]
    if plan.n_trials is not None and plan.hydra is not None:
        lines.insert(1, "  " + optuna_line(plan.hydra, plan.jobs[0]))
    print("\n".join(lines), flush=True)
    set_pending_plan(estimate)


def optuna_line(hydra_cfg: DictConfig, cfg: DictConfig) -> str:
    """``Optuna sweeper: 20 trials (TPESampler, seed 0) maximizing cumulative_utility …``."""
    sweeper = hydra_cfg.sweeper
    params = {k: str(v) for k, v in (sweeper.get("params") or {}).items()}
    space = ", ".join(f"{k} ∈ {v}" for k, v in params.items() if "(" in v or "," in v)
    sampler = str(sweeper.sampler.get("_target_", "")).rpartition(".")[2] or "default sampler"
    seed = sweeper.sampler.get("seed")
    floor = cfg.get("study_revenue_floor")
    return (
        f"Optuna sweeper: {sweeper.n_trials} trials ({sampler}"
        f"{f', seed {seed}' if seed is not None else ''}, {sweeper.n_jobs} at a time) maximizing "
        f"{cfg.get('study_objective')}"
        f"{f' with revenue_per_request ≥ {floor}' if floor is not None else ''}"
        f"{f' over {space}' if space else ''}"
    )


def _resume(argv: list[str]) -> int:
    """``recloop --resume DIR`` (or ``--resume=DIR``), DIR a run or a sweep: :mod:`experiments.resume`."""
    from experiments.resume import resume

    value = argv[0].partition("=")[2]
    rest = argv[1:] if value else argv[2:]
    target = value or (argv[1] if len(argv) > 1 else "")
    try:
        if not target or rest:
            raise ConfigError("--resume takes one run or sweep directory and nothing else")
        return resume(Path(target))
    except ConfigError as exc:
        print(f"recloop: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"recloop: interrupted; recloop --resume {target} continues", file=sys.stderr)
        return EXIT_TERMINATED if _TERMINATED else EXIT_INTERRUPTED
    except Exception as exc:  # the traceback goes to a file, one line to the terminal
        where = keep_traceback(exc, fallback_dir=Path(target))
        print(f"recloop: error: {error_line(exc)} (traceback in {where})", file=sys.stderr)
        return EXIT_FAILED


def _without_internal(text: str) -> str:
    """hydra's list of config groups without internal bases (options starting with ``_``)."""
    lines = []
    for line in text.splitlines(keepends=True):
        if line.startswith("  _"):  # the long form: one option a line
            continue
        group, sep, options = line.partition(": ")
        if sep and not line.startswith(" "):
            kept = [o for o in options.rstrip("\n").split(", ") if not o.startswith("_")]
            line = f"{group}: {', '.join(kept)}" + ("\n" if line.endswith("\n") else "")
        lines.append(line)
    return "".join(lines)


def _hide_internal_options() -> None:
    """``recloop --help`` lists the selectable options only (not ``policy=_base``)."""
    from hydra._internal.hydra import Hydra

    original = Hydra.format_config_groups
    if getattr(original, "_recloop", False):
        return

    def format_config_groups(self: Any, *args: Any, **kwargs: Any) -> str:
        return _without_internal(original(self, *args, **kwargs))

    format_config_groups._recloop = True  # type: ignore[attr-defined]
    Hydra.format_config_groups = format_config_groups  # type: ignore[method-assign]


def _one_line_hydra_errors(plan: Plan) -> None:
    """Make hydra's own failures outside the job (writing its ``.hydra`` record or the job's
    folder on a full disk …) one line too, with the traceback kept like a job's
    (:func:`keep_traceback`); ``HYDRA_FULL_ERROR=1`` still shows hydra's full trace."""
    import hydra._internal.utils as hydra_utils
    from hydra.errors import CompactHydraException

    original = hydra_utils.run_and_report
    if getattr(original, "_recloop", False):
        return
    key = "sweep" if plan.multirun else "run"

    def run_and_report(func: Any) -> Any:
        try:
            return func()
        except CompactHydraException:
            return original(func)  # hydra's short messages for its own config errors
        except Exception as exc:
            if os.environ.get("HYDRA_FULL_ERROR") == "1":
                raise
            try:
                folder = f" while hydra wrote to {Path(str(plan.hydra[key].dir)).absolute()}"
            except Exception:
                folder = ""
            where = keep_traceback(exc)
            print(
                f"recloop: error: {error_line(exc)}{folder} (traceback in {where})", file=sys.stderr
            )
            sys.exit(EXIT_FAILED)

    run_and_report._recloop = True  # type: ignore[attr-defined]
    hydra_utils.run_and_report = run_and_report


def _known_mode(plan: Plan) -> None:
    """Let hydra take the run mode from the plan instead of composing the whole config once
    more to read it (``Hydra.get_mode``, ~0.25 s of a tiny run): the precheck composed the
    same overrides with the same ``hydra`` settings, so ``plan.hydra.mode`` is the value hydra
    would read (``tests/experiments/test_cli.py`` compares the two)."""
    from hydra._internal.hydra import Hydra

    _PLAN_MODE["mode"] = plan.hydra.mode if plan.hydra is not None else None
    original = Hydra.get_mode
    if getattr(original, "_recloop", False):
        return

    def get_mode(self: Any, config_name: str | None, overrides: list[str]) -> Any:
        if "mode" in _PLAN_MODE:
            return _PLAN_MODE.pop("mode")  # this launch's plan, once
        return original(self, config_name, overrides)

    get_mode._recloop = True  # type: ignore[attr-defined]
    Hydra.get_mode = get_mode  # type: ignore[method-assign]


_PLAN_MODE: dict[str, Any] = {}


def main() -> None:
    """Console entry point ``recloop``."""
    argv = sys.argv[1:]
    signal.signal(signal.SIGTERM, _on_sigterm)
    logging.raiseExceptions = False  # a full disk: no "--- Logging error ---" tracebacks
    if argv and argv[0].partition("=")[0] == "--resume":  # before hydra: a bare path is no override
        sys.exit(_resume(argv))
    _hide_internal_options()
    check = [a for a in argv if a.partition("=")[0] == CHECK_CLUSTER_FLAG]
    if check:
        try:
            sys.exit(_check_cluster(check[0]))
        except ConfigError as exc:
            print(f"recloop: error: {exc}", file=sys.stderr)
            sys.exit(EXIT_BAD_INPUT)
    plan_only = PLAN_FLAG in argv
    if plan_only:
        argv = [a for a in argv if a != PLAN_FLAG]
        sys.argv = [sys.argv[0], *argv]
    sys.exit(launch(argv, plan_only))


# The sweep this process launched (its absolute folder), for the Ctrl-C line when its jobs run
# in other processes (joblib, Ray, SLURM) and this one never ran a job; whether a SIGINT came.
_LAUNCHED: dict[str, Any] = {}


def _interruptible_joblib() -> None:
    """Ctrl-C during a joblib sweep: one line, not a traceback. The SIGINT reaches joblib's
    worker processes too; an idle one dies of it and joblib raises ``BrokenProcessPool``,
    which hydra prints as a traceback. Once this process has seen a SIGINT, the launcher's
    error becomes the ``KeyboardInterrupt`` it is (:func:`_on_interrupt`)."""
    import signal

    from hydra_plugins.hydra_joblib_launcher.joblib_launcher import JoblibLauncher

    def on_sigint(signum: int, frame: Any) -> None:
        _LAUNCHED["interrupted"] = True
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_sigint)
    # the killed workers' semaphores: multiprocessing's tracker would warn about them at exit
    quiet = "ignore:resource_tracker:UserWarning"
    os.environ["PYTHONWARNINGS"] = ",".join(filter(None, (os.environ.get("PYTHONWARNINGS"), quiet)))
    original = JoblibLauncher.launch
    if getattr(original, "_recloop", False):
        return

    def launch(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return original(self, *args, **kwargs)
        except Exception:
            if _LAUNCHED.get("interrupted"):
                raise KeyboardInterrupt from None
            raise

    launch._recloop = True  # type: ignore[attr-defined]
    JoblibLauncher.launch = launch  # type: ignore[method-assign]


def launch(argv: list[str], plan_only: bool = False) -> int:
    """Check the command line's jobs, run them through hydra and return the exit code: the
    body of ``recloop`` after its flags, also what ``recloop --resume SWEEP_DIR`` runs again
    (with ``RECLOOP_RESUME=1``)."""
    try:
        try:
            plan = precheck(argv)
            parallel = parallel_default(argv, plan)
            if parallel is not None:
                argv = [*argv, parallel]
                plan = precheck(argv)
            if plan is not None and not plan_only:
                check_fresh_folder(plan)
                check_writable(plan)
                _check_launcher(plan)
                _check_resources(plan)
                sys.argv = [sys.argv[0], *_absolute_sweep_dir(plan, argv)]
        except ConfigError as exc:
            print(f"recloop: error: {exc}", file=sys.stderr)
            return EXIT_BAD_INPUT
        if plan is not None and plan.multirun and not plan_only:
            sweep_dir = _given_sweep_dir(sys.argv[1:])
            if sweep_dir is not None:
                _LAUNCHED["sweep_dir"] = sweep_dir
            if plan.hydra is not None and "joblib" in str(plan.hydra.launcher.get("_target_")):
                _interruptible_joblib()
        if plan is not None:
            _announce(plan, plan_only)
        if plan_only:
            return 0
        if plan is not None:
            _one_line_hydra_errors(plan)
            _known_mode(plan)
        _app()
        if plan is not None and plan.multirun:
            return sweep_exit(plan)
        return 0
    except KeyboardInterrupt:
        code = _on_interrupt()
        return EXIT_TERMINATED if _TERMINATED else code
    except BrokenPipeError:  # `recloop … | head`: the reader is gone; stop without a traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    main()
