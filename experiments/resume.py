"""``recloop --resume RUN_DIR``: continue a killed run from its last round checkpoint.

The run's ``config.yaml`` is parsed again, ``checkpoint/state.pkl`` (:mod:`sim.checkpoint`) is
loaded, every log partition of a round after the checkpoint's last complete one is deleted (the
kill may have come while a later round was being written) together with any temp file, and the
simulation continues from the checkpoint to the end, checkpointing as it goes, then writes
metrics, summary and report. Pausing and continuing is byte-identical to an uninterrupted run,
so the resumed run's files equal those of a run never killed (but timings). A run killed before
its first checkpoint starts over (its partitions are discarded); one killed while writing its
outputs (a checkpoint is left) simulates its last round again and rewrites them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from experiments.config import ConfigError, parse_config
from experiments.run import build_simulation, write_outputs
from sim.checkpoint import (
    CheckpointError,
    checkpoint_path,
    load_checkpoint,
    remove_checkpoint,
    run_with_checkpoints,
)

RESUME_FLAG = "--resume"
_ROUND = re.compile(r"round=(\d+)")


def finished(run_dir: Path) -> bool:
    """Does ``run_dir/summary.json`` say the run is complete, with no checkpoint left? (A
    checkpoint outlives summary.json only when the run was killed while finishing, in its
    report or before the checkpoint's removal: its outputs are then to be written again.)"""
    try:
        summary = json.loads((run_dir / "summary.json").read_text())
    except (OSError, ValueError):
        return False
    complete = isinstance(summary, dict) and summary.get("status") == "complete"
    return complete and not checkpoint_path(run_dir).exists()


def discard_after(log_root: Path, log_round: int) -> list[Path]:
    """Delete the partitions of rounds ``>= log_round`` and temp files under ``log_root``;
    returns what was deleted."""
    gone: list[Path] = []
    if not log_root.is_dir():
        return gone
    for path in sorted(log_root.rglob("round=*")):
        match = _ROUND.fullmatch(path.name)
        if path.is_dir() and match and int(match.group(1)) >= log_round:
            shutil.rmtree(path)
            gone.append(path)
    for path in sorted(log_root.rglob(".*.tmp")):
        path.unlink()
        gone.append(path)
    return gone


def _config_name(run_dir: Path) -> str:
    hydra_file = run_dir / ".hydra" / "hydra.yaml"
    if hydra_file.is_file():
        name = OmegaConf.select(OmegaConf.load(hydra_file), "hydra.job.config_name")
        if name:
            return str(name)
    return "config"


def continue_run(
    run_dir: Path,
    progress: Callable[[float, float], None] | None = None,
    announce: bool = True,
) -> dict[str, Any]:
    """Continue the interrupted run in ``run_dir`` from its checkpoint to the end and write its
    outputs (from the start when no checkpoint was written yet); returns the summary.
    :class:`ConfigError` when the folder is not a run or its files cannot be read.

    Every ``timing_seconds`` entry of the summary then covers the resumed part only (what this
    process spent; the killed attempt's seconds are gone with it), and ``resumed_at_day`` says
    from which simulated day."""
    config_file = run_dir / "config.yaml"
    if not config_file.is_file():
        raise ConfigError(f"{RESUME_FLAG} {run_dir}: no config.yaml (not a run directory)")
    checkpoint = None  # none written yet (killed in the first round): start over
    if checkpoint_path(run_dir).exists():
        try:
            checkpoint = load_checkpoint(run_dir)
        except CheckpointError as exc:
            raise ConfigError(f"{RESUME_FLAG}: {exc}") from None
    try:
        cfg = OmegaConf.load(config_file)
    except Exception as exc:  # truncated or not YAML: one line naming the file
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(
            f"{RESUME_FLAG}: {config_file}: not a readable config ({reason})"
        ) from None
    if not isinstance(cfg, DictConfig):
        raise ConfigError(f"{RESUME_FLAG}: {config_file}: not a mapping of config keys")
    if cfg.get("runner", "run") != "run":
        raise ConfigError(f"{RESUME_FLAG} {run_dir}: runner={cfg.get('runner')} cannot resume")
    try:
        rc = parse_config(cfg)
    except ConfigError as exc:  # a hand-edited or foreign config.yaml: say which file
        raise ConfigError(f"{RESUME_FLAG}: {config_file}: {exc}") from None
    os.environ["RECLOOP_RESUME"] = "1"  # tells the overwrite refusal this directory is ours
    log_root = run_dir / "logs"
    discard_after(log_root, 0 if checkpoint is None else checkpoint.log_round)
    for stale in run_dir.glob(".*.tmp"):  # a kill during write_outputs
        stale.unlink()
    if announce and checkpoint is None:
        print(f"recloop: resuming {run_dir} from the start (no round checkpoint yet)", flush=True)
    elif announce:
        print(
            f"recloop: resuming {run_dir} from round {checkpoint.log_round} "
            f"(simulated day {checkpoint.hours / 24:g} of {rc.sim.days:g})",
            flush=True,
        )
    started = time.perf_counter()
    if checkpoint is not None:
        seconds = checkpoint.state.stats.seconds  # the killed attempt's timings: not this process's
        for key in seconds:
            seconds[key] = 0.0
        seconds["resumed_at_day"] = checkpoint.hours / 24
    state = None if checkpoint is None else checkpoint.state
    simulation = build_simulation(rc, log_root, progress=progress, state=state)
    run_with_checkpoints(simulation, run_dir)
    summary = write_outputs(rc, simulation, run_dir, started, _config_name(run_dir))
    remove_checkpoint(run_dir)
    status = run_dir / "status.json"  # the interrupted attempt's status: no longer true
    if status.is_file():
        status.unlink()
    return summary


def resume(run_dir: Path) -> int:
    """Continue the run in ``run_dir``, or the sweep when ``run_dir`` holds ``multirun.yaml``
    (:mod:`experiments.resume_sweep`); the exit code (0: done, 2: nothing to resume)."""
    run_dir = Path(run_dir).resolve()
    if not run_dir.is_dir():
        raise ConfigError(f"{RESUME_FLAG} {run_dir}: not a directory")
    if (run_dir / "multirun.yaml").is_file():
        from experiments.resume_sweep import resume_sweep

        return resume_sweep(run_dir)
    if finished(run_dir):
        print(f"recloop: {run_dir} is finished (summary.json status complete); nothing to resume")
        return 0
    continue_run(run_dir)
    print(f"run directory: {run_dir}")
    return 0
