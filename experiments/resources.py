"""Refuse what cannot fit: a run's peak memory and disk, estimated from its config before anything
is allocated, against what the machine has.

Peak memory (bytes) is the sum of what a run holds at once, each term from the config alone:

* ``BASE_BYTES`` — the interpreter, numpy/scipy/polars/implicit/hydra loaded, simpy, the report;
* world arrays — every user's taste (``dim``) and per-user state, every item's taste, content
  (``content_dim``) and per-item state, float64, for the users and items there will be by the end
  (``user_arrival_rate``/``item_arrival_rate`` × days added);
* model factors — users × factors and items × factors, float32, deployed and in training, plus the
  ALS solver's copies (``FACTOR_COPIES``);
* a round's request, candidate and impression buffers — requests per round (``n_users ·
  sessions_per_day · retrain_every_hours/24``) × (``n_candidates + slate_size``) rows, held until
  the round's partitions are written (``ROW_BYTES`` per row, polars' copy included);
* the served batch's scores — up to ``SCORE_ROWS`` requests × items (float32) at once;
* the training log — every click of the run (``clicks_per_request`` of the policy's calibrated
  preset, :mod:`experiments.cost_calibration`) as log rows and the user × item matrix ALS fits on;
* the relevance-matrix probes — ``metrics.ndcg_users`` × items true and model scores.

The per-unit constants were calibrated by measuring peak RSS (``/usr/bin/time -v``) of runs of the
default greedy config at 300 × 150 (4 days), 2,000 × 1,000 (3 days) and 10,000 × 5,000 (2 days);
the estimate came out 7–10 % above the measured peak for each (a run's peak also moves with the
BLAS and Python builds); tests/experiments/test_resources.py checks that two of them stay within a
factor of ``STATED_FACTOR``. Disk is
:func:`experiments.cost_model.estimate_job`'s (calibrated bytes per request) plus the config record.
"""

from __future__ import annotations

import os
import resource
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from experiments.cost_model import config_value, estimate_job, fmt_bytes, policy_costs

BASE_BYTES = 220e6  # measured: ~150 MB after imports, 203 MB for a 300 × 150 run
USER_SCALARS = 12  # per-user float64 state besides the taste vector (rates, satisfaction, …)
ITEM_SCALARS = 12  # per-item float64 state (appeal, price, publish time, exposure counters, …)
FACTOR_COPIES = 4  # deployed, in training, solver workspace, serving copy
ROW_BYTES = 128  # one candidate/impression row in memory while its round is open (incl. the copy)
SCORE_ROWS = 512  # requests scored against the whole catalog at once (implicit's fused top-k)
CLICK_BYTES = 64  # one click in the training log (row) plus its share of the CSR/CSC matrices
PROBE_COPIES = 3  # true relevance, model scores and the ranking workspace per probed user
RECORD_BYTES = 200e3  # config.yaml, .hydra/, status.json, cli.log
BIG_BYTES = 1e9  # print the estimate when memory or disk exceeds this
STATED_FACTOR = 2.0  # estimate / measured peak RSS stays within [1/STATED_FACTOR, STATED_FACTOR]
SKIP_KEY = "debug.skip_resource_check"


@dataclass(frozen=True)
class ResourceEstimate:
    memory: float  # peak resident bytes
    disk: float  # bytes written
    parts: dict[str, float]  # memory by component, for the refusal line


def estimate_resources(cfg: Mapping[str, Any]) -> ResourceEstimate:
    """Peak memory and disk of one ``runner: run`` job, from its plain config dict alone."""

    def num(key: str, default: float) -> float:
        value = config_value(cfg, key, default)
        return float(default if value is None else value)

    days = num("sim.days", 30)
    users = num("world.n_users", 2000) + num("world.user_arrival_rate", 0) * days
    items = num("world.n_items", 1000) + num("world.item_arrival_rate", 0) * days
    dim = num("world.dim", 16)
    content = num("world.content_dim", 24)
    factors = num("policy.scorer.factors", 32) + 1  # implicit may add a bias column
    rate = num("world.sessions_per_day", 1.0)
    every = num("sim.retrain_every_hours", 24) or days * 24
    round_requests = users * rate * min(every, days * 24) / 24
    rows = num("policy.n_candidates", 30) + num("policy.slate_size", 10)
    batch = min(num("sim.max_batch_requests", 8192), round_requests)
    clicks = policy_costs(cfg)[0]["clicks_per_request"] * users * rate * days
    parts = {
        "base": BASE_BYTES,
        "world arrays": 8 * (users * (dim + USER_SCALARS) + items * (dim + content + ITEM_SCALARS)),
        "model factors": 4 * FACTOR_COPIES * factors * (users + items),
        "round buffers": ROW_BYTES * rows * round_requests,
        "batch scores": 4 * min(batch, SCORE_ROWS) * items,
        "training log": CLICK_BYTES * clicks,
        "relevance probes": 8 * PROBE_COPIES * num("metrics.ndcg_users", 200) * items,
    }
    return ResourceEstimate(sum(parts.values()), estimate_job(cfg).bytes + RECORD_BYTES, parts)


def _cgroup_memory() -> float | None:
    """Memory the cgroup (v2, else v1) still allows, if it sets a limit."""
    for limit_file, usage_file in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        (
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
            "/sys/fs/cgroup/memory/memory.usage_in_bytes",
        ),
    ):
        try:
            limit = Path(limit_file).read_text().strip()
            usage = float(Path(usage_file).read_text().strip())
        except (OSError, ValueError):
            continue
        if limit.isdigit() and float(limit) < 2**60:
            return max(0.0, float(limit) - usage)
    return None


def available_memory() -> tuple[float, str]:
    """The least of MemAvailable, the cgroup's remaining limit and ``ulimit -v``; and which."""
    found: list[tuple[float, str]] = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append((float(line.split()[1]) * 1024, "MemAvailable"))
    except OSError:
        pass
    cgroup = _cgroup_memory()
    if cgroup is not None:
        found.append((cgroup, "cgroup memory limit"))
    soft = resource.getrlimit(resource.RLIMIT_AS)[0]
    if soft != resource.RLIM_INFINITY:
        found.append((float(soft), "ulimit -v"))
    return min(found) if found else (float("inf"), "unknown")


def free_disk(out_dir: Path) -> float:
    """Free bytes on the filesystem that will hold ``out_dir`` (its nearest existing parent)."""
    path = Path(os.path.abspath(out_dir))
    while not path.exists() and path != path.parent:
        path = path.parent
    return float(shutil.disk_usage(path).free)


def check_resources(
    cfgs: Sequence[Mapping[str, Any]],
    out_dir: Path,
    overrides: Sequence[str] = (),
    at_once: int = 1,
) -> str | None:
    """Raise ``ValueError`` (one line naming the estimate and the limit) when ``at_once`` of the
    largest job's memory (jobs run in parallel on this machine; 0: elsewhere, memory unchecked)
    or the jobs' total disk exceeds what the machine has; return the estimate line when it is
    big (> 1 GB), else None. Jobs that set ``debug.skip_resource_check`` are not checked."""
    runs = [
        c for c in cfgs if c.get("runner", "run") == "run" and not config_value(c, SKIP_KEY, False)
    ]
    if not runs:
        return None
    estimates = [estimate_resources(c) for c in runs]
    worst = max(estimates, key=lambda e: e.memory)
    memory = worst.memory * max(at_once, 1)
    disk = sum(e.disk for e in estimates)
    memory_limit, source = available_memory() if at_once else (float("inf"), "")
    disk_limit = free_disk(out_dir)
    culprit = max((k for k in worst.parts if k != "base"), key=worst.parts.__getitem__)
    sizes = " ".join(o for o in overrides if o.startswith(("world.", "policy.", "sim.")))
    prefix = f"{sizes}: " if sizes else ""
    hint = f"set {SKIP_KEY}=true to run anyway"
    if memory > memory_limit:
        parallel = f" ({at_once} jobs at once)" if at_once > 1 else ""
        raise ValueError(
            f"{prefix}needs an estimated {fmt_bytes(memory)} of memory{parallel} (mostly "
            f"{culprit}, {fmt_bytes(worst.parts[culprit])}) but {fmt_bytes(memory_limit)} is "
            f"available ({source}); {hint}"
        )
    if disk > disk_limit:
        raise ValueError(
            f"{prefix}needs an estimated {fmt_bytes(disk)} of disk but {fmt_bytes(disk_limit)} "
            f"is free under {out_dir}; {hint}"
        )
    if memory > BIG_BYTES or disk > BIG_BYTES:
        limit = f" of {fmt_bytes(memory_limit)} available" if at_once else " per job"
        return (
            f"estimated peak memory {fmt_bytes(memory)}{limit}, "
            f"disk {fmt_bytes(disk)} of {fmt_bytes(disk_limit)} free"
        )
    return None
