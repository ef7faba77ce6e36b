"""The closed loop at scale: wall time, throughput, peak memory and where the time goes.

    python benchmarks/loop.py --workload S [--floor] [--out DIR]

Workloads (greedy ALS, 64 factors, slate 10, daily retraining):

    S: 10,000 users × 5,000 items × 60 days
    M: 100,000 users × 20,000 items × 30 days
    L: 1,000,000 users × 100,000 items × 1 day

Prints wall time, requests/s, peak RSS, and the split of the run's time into ALS fitting,
serving (candidate scoring/top-K and slate selection), user responses, logging, metrics and the
rest (engine). ``--floor`` then replays the unavoidable model work on the run's own logs — the
same ALS fits, and ``implicit``'s batched ``recommend`` for every logged request — and reports
``total / floor``. Run each workload in its own process (peak RSS is per process). Not a test.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl
from threadpoolctl import threadpool_info, threadpool_limits

WORKLOADS = {
    "S": {"n_users": 10_000, "n_items": 5_000, "days": 60},
    "M": {"n_users": 100_000, "n_items": 20_000, "days": 30},
    "L": {"n_users": 1_000_000, "n_items": 100_000, "days": 1},
}


def config(workload: str, seed: int = 0) -> dict:
    """The workload's run config, composed by hydra from ``configs/`` (greedy ALS, 64 factors)."""
    from hydra import compose, initialize_config_module
    from omegaconf import OmegaConf

    w = WORKLOADS[workload]
    overrides = [
        f"seed={seed}",
        f"world.n_users={w['n_users']}",
        f"world.n_items={w['n_items']}",
        "policy=greedy",
        "policy.scorer.factors=64",
        f"sim.days={w['days']}",
        "report.enabled=false",
        "progress=false",
    ]
    with initialize_config_module(config_module="configs", version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    return OmegaConf.to_container(cfg, resolve=True)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def floor_seconds(run_dir: Path, cfg: dict) -> dict[str, float]:
    """The unavoidable model work on the run's own logs: the same fits and a batched top-K."""
    from implicit.cpu.als import AlternatingLeastSquares

    from policies.interactions import Interactions
    from sim.event_log import logged_rounds, scan_table

    n_users, n_items = cfg["world"]["n_users"], cfg["world"]["n_items"]
    impressions = scan_table(run_dir / "logs", "impressions")
    users_seen: list[np.ndarray] = []
    items_seen: list[np.ndarray] = []
    fit = score = 0.0
    model = None
    for rnd in logged_rounds(run_dir / "logs", "impressions"):
        shown = (
            impressions.filter(pl.col("round") == rnd)
            .select("request_id", "user_id", "item_id", "clicked", "model_version")
            .collect()
        )
        served = shown.filter(pl.col("model_version") >= 0)
        if model is not None and served.height:
            req_users = served.unique("request_id", keep="first", maintain_order=True)["user_id"]
            clicks = Interactions.from_pairs(
                np.concatenate(users_seen), np.concatenate(items_seen), n_users, n_items
            ).clicks
            start = time.perf_counter()
            ids = req_users.to_numpy()
            for lo in range(0, ids.size, 8192):  # implicit's own batched recommend
                batch = ids[lo : lo + 8192]
                model.recommend(batch, clicks[batch], N=10, filter_already_liked_items=True)
            score += time.perf_counter() - start
        clicked = shown.filter(pl.col("clicked"))
        users_seen.append(clicked["user_id"].to_numpy())
        items_seen.append(clicked["item_id"].to_numpy())
        inter = Interactions.from_pairs(
            np.concatenate(users_seen), np.concatenate(items_seen), n_users, n_items
        )
        start = time.perf_counter()
        with threadpool_limits(1, "blas"):
            model = AlternatingLeastSquares(
                factors=64, regularization=0.05, alpha=10.0, iterations=10, random_state=0
            )
            model.fit(inter.clicks, show_progress=False)
        fit += time.perf_counter() - start
    return {"fit": fit, "score": score, "total": fit + score}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--workload", choices=sorted(WORKLOADS), default="S")
    ap.add_argument("--floor", action="store_true", help="also measure the floor on the same logs")
    ap.add_argument("--out", type=Path, default=None, help="keep the run here (default: temp)")
    args = ap.parse_args()

    from experiments.run import run

    cfg = config(args.workload)
    out = args.out or Path(tempfile.mkdtemp(prefix=f"recloop-bench-{args.workload}-"))
    run_dir = out / "run"
    start = time.perf_counter()
    summary = run(cfg, run_dir)
    wall = time.perf_counter() - start
    run_peak_rss = peak_rss_mb()  # before the floor replay, which holds its own copies
    t = dict(summary["timing_seconds"])
    t["metrics"] += t.pop("quality", 0.0)  # the truth-side model_ndcg probe is a metric too
    accounted = sum(t[k] for k in ("fit", "serve", "respond", "log", "metrics"))
    result = {
        "workload": args.workload,
        **WORKLOADS[args.workload],
        "wall_s": round(wall, 1),
        "requests": summary["n_requests"],
        "impressions": summary["n_impressions"],
        "requests_per_s": round(summary["n_requests"] / wall),
        "peak_rss_mb": round(run_peak_rss),
        "peak_rss_bytes_per_impression": round(run_peak_rss * 2**20 / summary["n_impressions"]),
        "split_s": {
            **{k: round(t[k], 1) for k in ("fit", "serve", "respond", "log", "metrics")},
            "engine_and_rest": round(wall - accounted, 1),
        },
        "blas": [(p.get("internal_api"), p.get("num_threads")) for p in threadpool_info()],
    }
    if args.floor:
        fl = floor_seconds(run_dir, cfg)
        result["floor_s"] = {k: round(v, 1) for k, v in fl.items()}
        result["total_over_floor"] = round(wall / fl["total"], 2)
    print(json.dumps(result, indent=2))
    if args.out is None:
        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
