"""How long a sweep will take and how much disk it will use, before it starts.

A calibrated model of one job's wall time and disk, from quantities the config fixes:

* ``R`` — expected requests: ``n_users · sessions_per_day · days`` (sessions are Poisson with a
  per-user rate of mean ``sessions_per_day``);
* serving, logging, metrics and the model-quality probe cost ``serve_s`` seconds per request
  (per thousand catalog items: scoring is linear in the catalog);
* each retrain costs ``fit_s + fit_s_per_click · clicks_so_far``: ALS and friends refit on the
  whole log, so a long run's later retrains are the expensive ones. The clicks so far at the
  ``v``-th retrain are ``clicks_per_request · R · t_v / horizon``;
* a fixed ``job_overhead_s`` (hydra's job setup, the report) per job and ``sweep_overhead_s``
  per sweep (start-up, the sweep report);
* disk: ``bytes_per_request · R`` plus the report.

``serve_s``, ``fit_s``, ``fit_s_per_click``, ``clicks_per_request`` and ``bytes_per_request``
are per policy preset, measured on this kind of machine (2 cores) by
``benchmarks/calibrate_costs.py`` at two horizons (which separates the fixed from the
growing part of retraining); the numbers live in :mod:`experiments.cost_calibration`. A preset
that was not calibrated is estimated like the calibrated preset with the same selector, else
like ``greedy``, and the plan says so. World sizes far from the calibration world (2,000 users ×
1,000 items) are extrapolated linearly: expect a rougher estimate there.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from experiments import cost_calibration

CALIBRATION_ITEMS = 1000  # serve_s is per request at this catalog size


@dataclass(frozen=True)
class JobEstimate:
    seconds: float
    bytes: float
    requests: float
    calibrated_as: str | None  # the preset whose costs were used when this one has none


@dataclass(frozen=True)
class SweepEstimate:
    jobs: tuple[JobEstimate, ...]
    seconds: float  # sweep total, jobs run one after the other
    bytes: float
    uncalibrated: tuple[tuple[str, str], ...]  # (preset, estimated like)


def config_value(cfg: Mapping[str, Any], dotted: str, default: Any = None) -> Any:
    """``cfg["a"]["b"]`` for ``"a.b"`` in a plain config dict; ``default`` when a key is missing."""
    node: Any = cfg
    for key in dotted.split("."):
        if not isinstance(node, Mapping) or key not in node:
            return default
        node = node[key]
    return node


def _selector_name(cfg: Mapping[str, Any]) -> str:
    target = str(config_value(cfg, "policy.selector._target_", "") or "")
    return target.rpartition(".")[2]


ADDITIVE = ("serve_s", "fit_s", "fit_s_per_click", "clicks_per_request", "bytes_per_request")


def _preset_costs(cfg: Mapping[str, Any]) -> tuple[dict[str, float], str | None]:
    presets = {k: v for k, v in cost_calibration.PRESETS.items() if "+" not in k}
    name = str(config_value(cfg, "policy.name", "greedy"))
    if name in presets:
        return presets[name], None
    selector = _selector_name(cfg)
    for other, costs in presets.items():
        if costs.get("selector") == selector:
            return costs, other
    return presets["greedy"], "greedy"


def policy_costs(cfg: Mapping[str, Any]) -> tuple[dict[str, float], str | None]:
    """The calibrated costs of the job's preset, and the preset they were borrowed from (None
    when the preset itself was calibrated); plus, for each calibrated component variant
    (``greedy+rerank=learned``: a learned reranker, ``greedy+retrieve=mixed``: several
    retrievers) whose class the job uses, that variant's cost over its base preset."""
    costs, like = _preset_costs(cfg)
    presets = cost_calibration.PRESETS
    extra = {key: 0.0 for key in ADDITIVE}
    for variant, measured in presets.items():
        base, _, component = variant.partition("+")
        group = component.partition("=")[0]
        if not group or base not in presets:
            continue
        if config_value(cfg, f"policy.{group}._target_") == measured.get("target"):
            for key in ADDITIVE:
                extra[key] += measured[key] - presets[base][key]
    if any(extra.values()):
        costs = {**costs, **{k: max(costs[k] + extra[k], 0.0) for k in ADDITIVE}}
    return costs, like


def estimate_job(cfg: Mapping[str, Any]) -> JobEstimate:
    """Expected wall time (s) and disk (bytes) of one ``runner: run`` job."""
    costs, like = policy_costs(cfg)
    days = float(config_value(cfg, "sim.days", 30))
    horizon = days * 24.0
    n_users = float(config_value(cfg, "world.n_users", 2000))
    n_items = float(config_value(cfg, "world.n_items", 1000))
    rate = float(config_value(cfg, "world.sessions_per_day", 1.0))
    requests = n_users * rate * days
    every = float(config_value(cfg, "sim.retrain_every_hours", 24.0))
    train_hours = float(config_value(cfg, "sim.train_hours", 1.0))
    # retrains start at every, 2·every, … and must deploy before the horizon
    n_retrains = max(0, int((horizon - train_hours) // every)) if every > 0 else 0
    clicks_per_hour = costs["clicks_per_request"] * requests / horizon if horizon else 0.0
    clicks_at_retrains = clicks_per_hour * every * n_retrains * (n_retrains + 1) / 2.0
    seconds = (
        cost_calibration.JOB_OVERHEAD_S
        + requests * costs["serve_s"] * n_items / CALIBRATION_ITEMS
        + n_retrains * costs["fit_s"]
        + costs["fit_s_per_click"] * clicks_at_retrains
    )
    disk = cost_calibration.REPORT_BYTES + requests * costs["bytes_per_request"]
    return JobEstimate(seconds, disk, requests, like)


def estimate_sweep(cfgs: Sequence[Mapping[str, Any]]) -> SweepEstimate:
    jobs = tuple(estimate_job(c) for c in cfgs)
    uncalibrated = {
        (str(config_value(c, "policy.name")), j.calibrated_as)
        for c, j in zip(cfgs, jobs, strict=True)
        if j.calibrated_as is not None
    }
    return SweepEstimate(
        jobs,
        cost_calibration.SWEEP_OVERHEAD_S + sum(j.seconds for j in jobs),
        sum(j.bytes for j in jobs),
        tuple(sorted(uncalibrated)),  # type: ignore[arg-type]
    )


# How much longer each job takes when ``at_once`` jobs share this 2-core machine (the joblib
# launcher's default, one job per core): the exploration study (30 jobs × 90 days, 2026-12-03)
# took 12 min 38 s with 2 jobs at a time where the makespan of its calibrated job estimates is
# 11 min 02 s; 1.15 makes them agree (ALS fits and memory bandwidth are shared).
PARALLEL_SLOWDOWN = {1: 1.0, 2: 1.15}


def sweep_wall_seconds(est: SweepEstimate, at_once: int) -> float:
    """The sweep's wall time when ``at_once`` jobs run side by side (the joblib launcher hands
    each job, in launch order, to the first worker that is free): the list-scheduling makespan
    of the jobs' estimates, each stretched by :data:`PARALLEL_SLOWDOWN`."""
    if at_once <= 1:
        return est.seconds
    slowdown = PARALLEL_SLOWDOWN.get(at_once, max(PARALLEL_SLOWDOWN.values()))
    free = [0.0] * at_once
    for job in est.jobs:
        i = free.index(min(free))
        free[i] += job.seconds * slowdown
    return cost_calibration.SWEEP_OVERHEAD_S + max(free)


def fmt_duration(seconds: float) -> str:
    """``42 s``, ``3 min 05 s``, ``1 h 12 min``."""
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def fmt_bytes(n: float) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n:.0f} B"
