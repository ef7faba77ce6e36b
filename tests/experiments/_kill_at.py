"""``python tests/experiments/_kill_at.py PHASE N RECLOOP_ARGS...``: run ``recloop`` (through
``experiments.cli.main``) and SIGKILL this very process at the ``N``-th call of ``PHASE``; a
test's kill injection, so that production code carries no hook.

Phases (what is wrapped, where the kill falls):

* ``serve`` — ``Simulation._serve_batch``: right after the N-th serving batch was served and
  buffered (the state has moved on, nothing of it is on disk yet);
* ``write`` — ``write_parquet_atomic`` (log partitions, the final snapshots, the run's parquet
  outputs): after the temp file is written whole, before the rename;
* ``midwrite`` — the same writer: half of the Parquet bytes in the temp file, then the kill;
* ``fit`` — ``ServingPolicy.fit``: after the scorer has trained, before the deployment is built
  (the round's partitions are written, its checkpoint not yet);
* ``checkpoint`` — ``save_checkpoint``'s ``pickle.dump``: half of the state in its temp file;
* ``metrics`` — the metrics pass after the simulation: entering ``measure_log`` or one of the
  per-window measures it calls (``gini``, ``mean_jaccard``, ``slate_diversity``);
* ``report`` — ``build_run_report``: entering a figure (``figure_html``) or the page write.

``PHASE`` ``count`` runs to the end and writes the number of calls of every phase as JSON to
the path given by ``KILL_AT_COUNTS``.
"""

from __future__ import annotations

import atexit
import io
import json
import os
import pickle
import signal
import sys
from collections import Counter
from collections.abc import Callable
from typing import Any

import experiments.cli
import experiments.run
import policies.policy
import reports.run_report
import sim.checkpoint
import sim.engine
import sim.event_log
import sim.metrics

PHASES = ("serve", "write", "midwrite", "fit", "checkpoint", "metrics", "report")
CALLS: Counter[str] = Counter()


def _die() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def _hit(phase: str, target: str, n: int) -> bool:
    """Count a call of ``phase`` (``write`` and ``midwrite`` share one count); is it the one?"""
    key = "write" if phase == "midwrite" else phase
    CALLS[key] += 1
    return (target == phase or (target == "midwrite" and key == "write")) and CALLS[key] == n


def _patch(owner: Any, name: str, make: Callable[[Callable[..., Any]], Callable[..., Any]]) -> None:
    setattr(owner, name, make(getattr(owner, name)))


def install(target: str, n: int) -> None:
    """Wrap every phase's functions: count their calls, kill at the ``n``-th of ``target``."""

    def serve(original):
        def wrapped(self, *args, **kwargs):
            result = original(self, *args, **kwargs)
            if _hit("serve", target, n):
                _die()
            return result

        return wrapped

    def write(original):
        def wrapped(df, path):
            if _hit("write", target, n):
                tmp = path.with_name(f".{path.name}.tmp")
                tmp.parent.mkdir(parents=True, exist_ok=True)
                if target == "write":
                    df.write_parquet(tmp, statistics=True)
                else:
                    buffer = io.BytesIO()
                    df.write_parquet(buffer, statistics=True)
                    data = buffer.getvalue()
                    tmp.write_bytes(data[: len(data) // 2])
                _die()
            return original(df, path)

        return wrapped

    def fit(original):
        def wrapped(self, interactions, version):
            if _hit("fit", target, n):
                self.scorer.fit(interactions, version)
                _die()
            return original(self, interactions, version)

        return wrapped

    def dump(original):
        def wrapped(obj, f, *args, **kwargs):
            if _hit("checkpoint", target, n):
                data = pickle.dumps(obj, *args, **kwargs)
                f.write(data[: len(data) // 2])
                f.flush()
                _die()
            return original(obj, f, *args, **kwargs)

        return wrapped

    def entering(phase):
        def make(original):
            def wrapped(*args, **kwargs):
                if _hit(phase, target, n):
                    _die()
                return original(*args, **kwargs)

            return wrapped

        return make

    _patch(sim.engine.Simulation, "_serve_batch", serve)
    writer = sim.event_log.write_parquet_atomic
    for module in list(sys.modules.values()):  # every module that imported it by name
        if getattr(module, "write_parquet_atomic", None) is writer:
            _patch(module, "write_parquet_atomic", write)
    _patch(policies.policy.ServingPolicy, "fit", fit)
    sim.checkpoint.pickle = _PickleWith(dump(pickle.dump))
    _patch(experiments.run, "measure_log", entering("metrics"))
    for name in ("gini", "mean_jaccard", "slate_diversity"):
        _patch(sim.metrics, name, entering("metrics"))
    _patch(reports.run_report, "figure_html", entering("report"))
    _patch(reports.run_report, "write_page", entering("report"))


class _PickleWith:
    """``pickle`` as ``sim.checkpoint`` sees it, with ``dump`` wrapped."""

    def __init__(self, dump: Callable[..., Any]) -> None:
        self.dump = dump

    def __getattr__(self, name: str) -> Any:
        return getattr(pickle, name)


def main() -> None:
    phase, n, *args = sys.argv[1:]
    if phase not in (*PHASES, "count"):
        raise SystemExit(f"_kill_at.py: unknown phase {phase!r} (one of {', '.join(PHASES)})")
    install(phase, int(n))
    if phase == "count":
        path = os.environ["KILL_AT_COUNTS"]
        atexit.register(lambda: open(path, "w").write(json.dumps(dict(CALLS))))
    sys.argv = ["recloop", *args]
    experiments.cli.main()


if __name__ == "__main__":
    main()
