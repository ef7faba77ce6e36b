"""A sweep's plan before it starts and one line per job as it ends.

Before the first job, :func:`plan_lines` prints the number of jobs and the cost model's estimate
of time and disk (:mod:`experiments.cost_model`), and how to make the sweep smaller. Hydra runs
the jobs; the :class:`SweepProgress` callback prints, when each ends, the running count and an
ETA: the cost model's estimate of the remaining jobs scaled by how the finished jobs compared
with their own estimates (so a sweep whose first jobs are its cheapest ones does not promise too
early an end).

The plan travels to the jobs in ``SWEEP_DIR/.recloop-plan.json`` (written when the sweep
starts), so the lines are right whether hydra runs the jobs in this process or, with the joblib
or Ray launchers, in others; the running count is read from the jobs' folders.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from experiments.cost_model import (
    SweepEstimate,
    config_value,
    estimate_sweep,
    fmt_bytes,
    fmt_duration,
    sweep_wall_seconds,
)
from sim.atomic_write import atomic_path

PLAN_FILE = ".recloop-plan.json"

# the plan of the sweep this process is about to launch (set by the CLI before hydra starts)
_PENDING: dict[str, Any] = {}


def _distinct(cfgs: Sequence[Mapping[str, Any]], key: str) -> list[Any]:
    seen: list[Any] = []
    for c in cfgs:
        value = config_value(c, key)
        if value not in seen:
            seen.append(value)
    return seen


def _flatten(cfg: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in cfg.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = repr(value)
    return flat


def sweep_shape(cfgs: Sequence[Mapping[str, Any]]) -> str:
    """``10 policies × 3 seeds`` or ``2 policies × 3 sim.retrain_every_hours × 3 seeds``: the
    number of values of every key the sweep varies (a policy preset counts once)."""
    flats = [_flatten(c) for c in cfgs]
    keys = [k for k in flats[0] if any(f.get(k) != flats[0][k] for f in flats[1:])]
    keys += [k for f in flats[1:] for k in f if k not in flats[0] and k not in keys]
    others = [k for k in keys if not k.startswith("policy.") and k != "seed"]
    parts = [(len(_distinct(cfgs, "policy.name")), "policies")]
    parts += [(len({f.get(k) for f in flats}), k) for k in others]
    parts.append((len(_distinct(cfgs, "seed")), "seeds"))
    if math.prod(n for n, _ in parts) != len(cfgs):
        # Keys that vary together (arms of a study such as +serving_arm=…), not a full grid.
        arms = {tuple(f.get(k) for k in keys if k != "seed") for f in flats}
        varied = ", ".join(others[:3]) + (", …" if len(others) > 3 else "")
        parts = [(len(arms), f"arms (varying {varied})" if varied else "arms"), parts[-1]]
    return " × ".join(f"{n} {name}" for n, name in parts if n > 1)


def _shrunk(cfgs: Sequence[Mapping[str, Any]], **changes: Any) -> list[dict[str, Any]]:
    out = []
    for c in cfgs:
        c = {k: dict(v) if isinstance(v, Mapping) else v for k, v in c.items()}
        for dotted, value in changes.items():
            section, _, key = dotted.partition("__")
            c[section][key] = value
        out.append(c)
    return out


def plan_lines(
    cfgs: Sequence[Mapping[str, Any]],
    name: str,
    arms: Sequence[str] | None = None,
    at_once: int = 1,
) -> tuple[list[str], SweepEstimate]:
    """What the sweep will do and cost, and how to make it smaller (lines to print).

    ``arms``: each job's arm when a study's arms are choices of an added config group
    (``+mo_arm=revenue_100``, row-aligned with ``cfgs``): the smaller sweep then names arms of
    that group, not policies (a policy override would not select arms). ``at_once``: jobs the
    launcher runs side by side on this machine (the joblib launcher: one per core)."""
    est = estimate_sweep(cfgs)
    wall = sweep_wall_seconds(est, at_once)
    how = "jobs run one after another" if at_once <= 1 else f"{at_once} jobs at a time"

    def smaller(subset: Sequence[Mapping[str, Any]]) -> str:
        return fmt_duration(sweep_wall_seconds(estimate_sweep(subset), at_once))

    policies = _distinct(cfgs, "policy.name")
    seeds = _distinct(cfgs, "seed")
    days = _distinct(cfgs, "sim.days")
    users = _distinct(cfgs, "world.n_users")
    items = _distinct(cfgs, "world.n_items")
    shape = sweep_shape(cfgs) if len(cfgs) > 1 else ""
    world = (
        f"{users[0]:,} users × {items[0]:,} items"
        if len(users) == 1 and len(items) == 1
        else "several world sizes"
    )
    horizon = f"{days[0]} simulated days" if len(days) == 1 else "several horizons"
    lines = [
        f"{name}: {len(cfgs)} job{'s' if len(cfgs) > 1 else ''}"
        f"{f' ({shape})' if shape else ''}, {horizon}{' each' if len(cfgs) > 1 else ''}, {world}",
        f"  estimate: {fmt_duration(wall)} and {fmt_bytes(est.bytes)} of disk "
        f"(cost model calibrated on 2 cores, {how})",
    ]
    for preset, like in est.uncalibrated:
        lines.append(f"  ({preset} has no calibrated cost: estimated like {like})")
    if wall > 120:
        tips = []
        if len(days) == 1 and days[0] > 10:
            d = max(10, days[0] // 3)
            tips.append(f"sim.days={d} (≈ {smaller(_shrunk(cfgs, sim__days=d))})")
        if len(seeds) > 1:
            first = [c for c in cfgs if config_value(c, "seed") == seeds[0]]
            tips.append(f"seed={seeds[0]} (≈ {smaller(first)})")
        distinct_arms = list(dict.fromkeys(arms)) if arms else []
        if len(distinct_arms) > 3:
            few_arms = distinct_arms[:3]
            subset = [c for c, a in zip(cfgs, arms, strict=True) if a in few_arms]
            key = few_arms[0].partition("=")[0]
            tips.append(
                f"{key}={','.join(a.partition('=')[2] for a in few_arms)} (≈ {smaller(subset)})"
            )
        elif len(policies) > 3:
            named = [p for p in ("greedy", "epsilon_greedy", "thompson") if p in policies]
            few = (named + [p for p in policies if p not in named])[:3]
            subset = [c for c in cfgs if config_value(c, "policy.name") in few]
            tips.append(f"policy={','.join(str(p) for p in few)} (≈ {smaller(subset)})")
        if tips:
            lines.append("  smaller: add " + ", or ".join(tips))
    return lines, est


def set_pending_plan(est: SweepEstimate) -> None:
    """Remember the plan for :meth:`SweepProgress.on_multirun_start` (same process)."""
    _PENDING.clear()
    _PENDING.update(
        {
            "n_jobs": len(est.jobs),
            "job_seconds": [j.seconds for j in est.jobs],
            "created": time.time(),
        }
    )


def _read_plan(sweep_dir: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((sweep_dir / PLAN_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _job_states(sweep_dir: Path) -> dict[str, str]:
    """Job folder name → ``finished`` / ``failed`` / ``interrupted`` for the jobs that ended."""
    states: dict[str, str] = {}
    for d in sweep_dir.iterdir():
        if not d.is_dir() or d.name.startswith("."):
            continue
        if (d / "summary.json").is_file():
            states[d.name] = "finished"
        elif (d / "status.json").is_file():
            try:
                states[d.name] = str(json.loads((d / "status.json").read_text())["status"])
            except (OSError, ValueError, KeyError, TypeError):
                states[d.name] = "failed"
    return states


def progress_line(
    sweep_dir: Path,
    job_name: str,
    job_seconds: float,
    plan: Mapping[str, Any] | None,
) -> str:
    """``[ 4/30] 3_ucb_seed0 finished in 1 min 52 s · 4 done (0 failed) · elapsed … · ETA …``;
    a resumed sweep's job complete before this launch (``recloop --resume SWEEP_DIR``):
    ``… 3_ucb_seed0 kept (complete) · …``."""
    states = _job_states(sweep_dir)
    state = states.get(job_name, "ended")
    summary = sweep_dir / job_name / "summary.json"
    kept = bool(
        plan and state == "finished" and summary.stat().st_mtime < float(plan.get("started", 0))
    )
    done = len(states)
    failed = sum(s != "finished" for s in states.values())
    n_jobs = int(plan["n_jobs"]) if plan else None
    head = f"[{done:>{len(str(n_jobs))}}/{n_jobs}]" if n_jobs else f"[{done}]"
    took = "kept (complete)" if kept else f"{state} in {fmt_duration(job_seconds)}"
    text = f"{head} {job_name} {took}"
    text += f" · {done} ended ({failed} failed)" if failed else ""
    if not plan:
        return text
    elapsed = time.time() - float(plan["started"])
    text += f" · elapsed {fmt_duration(elapsed)}"
    remaining = max(0, n_jobs - done) if n_jobs else 0
    if remaining == 0:
        return text
    estimates = list(plan.get("job_seconds") or [])
    if len(estimates) == n_jobs and done:
        # jobs end in launch order with hydra's launchers: the first `done` estimates are theirs
        spent = sum(estimates[:done])
        ratio = elapsed / spent if spent > 0 else 1.0
        eta = ratio * sum(estimates[done:])
    else:
        eta = elapsed / max(done, 1) * remaining
    finish = time.strftime("%H:%M", time.localtime(time.time() + eta))
    return text + f" · ETA {fmt_duration(eta)} (about {finish})"


class SweepProgress(Callback):
    """Hydra callback: the plan file when the sweep starts; a line when each job ends."""

    def __init__(self) -> None:
        self._job_started: float | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if not _PENDING:
            return
        sweep_dir = Path(str(config.hydra.sweep.dir)).resolve()
        sweep_dir.mkdir(parents=True, exist_ok=True)
        plan = {**_PENDING, "started": time.time()}
        with atomic_path(sweep_dir / PLAN_FILE) as tmp:
            tmp.write_text(json.dumps(plan), encoding="utf-8")

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._job_started = time.time()

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hc = HydraConfig.get()
        if hc.mode != RunMode.MULTIRUN:
            return
        out_dir = Path(hc.runtime.output_dir)
        sweep_dir = out_dir.parent
        seconds = time.time() - self._job_started if self._job_started else 0.0
        print(progress_line(sweep_dir, out_dir.name, seconds, _read_plan(sweep_dir)), flush=True)
