"""Round-boundary checkpoints: the whole :class:`sim.state.SimulationState`, pickled, so a run
killed mid-way can continue (``recloop --resume RUN_DIR``, :mod:`experiments.resume`).

:func:`run_with_checkpoints` runs a simulation one round at a time (``Simulation.run(until=...)``
pauses right after a retrain cut-off has written its log round and fitted its model) and, at
every pause, replaces ``RUN_DIR/checkpoint/state.pkl`` atomically (a temp file, then
``os.replace``): only the latest round is kept, and a kill while writing leaves the previous
checkpoint whole. Pausing and continuing is byte-identical to an uninterrupted run
(tests/sim/test_state.py), so checkpointing changes no output.
"""

from __future__ import annotations

import logging
import os
import pickle
import time
from dataclasses import dataclass
from pathlib import Path

from sim.atomic_write import atomic_path, write_error
from sim.engine import Simulation
from sim.state import SimulationState

CHECKPOINT_DIR = "checkpoint"
CHECKPOINT_FILE = "state.pkl"
FORMAT_VERSION = 1
log = logging.getLogger("recloop")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read (missing, another format version, not ours)."""


@dataclass
class Checkpoint:
    """What ``state.pkl`` holds: the format version, the number of log rounds written (rounds
    ``0 .. log_round - 1`` are complete), the simulated hour of the pause and the state."""

    format_version: int
    log_round: int
    hours: float
    state: SimulationState


def checkpoint_path(run_dir: Path) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR / CHECKPOINT_FILE


def save_checkpoint(state: SimulationState, run_dir: Path) -> Path:
    """Write ``state`` to ``run_dir/checkpoint/state.pkl`` atomically; returns the path."""
    path = checkpoint_path(run_dir)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise write_error(exc, path.parent) from exc
    data = Checkpoint(FORMAT_VERSION, state.counters.log_round, float(state.now), state)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        pickle.dump(data, f, protocol=pickle.HIGHEST_PROTOCOL)
        f.flush()
        os.fsync(f.fileno())
    return path


def load_checkpoint(run_dir: Path) -> Checkpoint:
    """The checkpoint of ``run_dir``; :class:`CheckpointError` when there is none usable."""
    path = checkpoint_path(run_dir)
    if not path.is_file():
        raise CheckpointError(f"{path}: no checkpoint")
    try:
        with open(path, "rb") as f:
            data = pickle.load(f)
    except Exception as exc:  # truncated or foreign: one line, not a traceback
        raise CheckpointError(f"{path}: unreadable checkpoint ({type(exc).__name__})") from None
    if not isinstance(data, Checkpoint):
        raise CheckpointError(f"{path}: not a recloop checkpoint")
    if data.format_version != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format {data.format_version}, this recloop reads {FORMAT_VERSION}"
        )
    return data


def remove_checkpoint(run_dir: Path) -> None:
    """Delete the checkpoint folder (the run is complete: nothing left to resume)."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    for p in folder.glob("*"):  # state.pkl and a temp file a failed write left
        p.unlink()
    if folder.is_dir():
        folder.rmdir()


def run_with_checkpoints(simulation: Simulation, run_dir: Path | None) -> None:
    """Run ``simulation`` to its end, checkpointing into ``run_dir`` at every round boundary
    (``None``: no checkpoints, one uninterrupted ``run()``). Checkpoint time is added to
    ``stats.seconds["checkpoint"]`` (a timing: not part of any compared output).

    A state that does not pickle must not cost the run: a warning says so, the checkpoint is
    removed and the run goes on without checkpoints."""
    if run_dir is None:
        simulation.run()
        return
    state = simulation.state
    seconds = state.stats.seconds
    while not state.done:
        simulation.run(until=state.now)  # the next cut-off after the current pause
        if not state.done:
            start = time.perf_counter()
            try:
                save_checkpoint(state, run_dir)
            except (pickle.PicklingError, AttributeError, TypeError) as exc:
                log.warning("no checkpoints for this run (its state does not pickle: %s)", exc)
                remove_checkpoint(run_dir)
                simulation.run()
                return
            seconds["checkpoint"] = seconds.get("checkpoint", 0.0) + time.perf_counter() - start
