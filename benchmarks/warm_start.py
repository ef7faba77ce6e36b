"""Warm-started ALS with fewer iterations per retrain against a fresh fit: quality and fit time.

    python benchmarks/warm_start.py [--users 2000] [--items 1000] [--days 60] [--seeds 0 1 2]
                                    [--arms fresh10 warm3 warm5]

Each arm is one ``policy.scorer`` setting of the default greedy ALS policy, retrained daily:
``freshN`` = a new seeded initialization and ``N`` iterations at every retrain (``fresh10`` is
the default); ``warmN`` = ``policy.scorer.warm_start=true policy.scorer.iterations=N`` (each
retrain continues from the previous factors). Every arm runs every seed, one after the other in
this process. Printed per arm: the model's true NDCG@10 (``model_ndcg``, the truth-side probe at
each retrain) averaged over the run and over its last 30 days, the fit seconds, and per seed the
paired difference to the first arm — whether a difference is more than seed noise is read from
the spread of those paired differences. Not a test.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def arm_overrides(arm: str) -> list[str]:
    match = re.fullmatch(r"(fresh|warm)(\d+)", arm)
    if match is None:
        raise SystemExit(f"arm {arm!r}: expected freshN or warmN (N iterations)")
    kind, iterations = match.groups()
    return [
        f"policy.scorer.warm_start={'true' if kind == 'warm' else 'false'}",
        f"policy.scorer.iterations={iterations}",
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--users", type=int, default=2000)
    ap.add_argument("--items", type=int, default=1000)
    ap.add_argument("--days", type=int, default=60)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--arms", nargs="+", default=["fresh10", "warm3", "warm5"])
    args = ap.parse_args()

    from hydra import compose, initialize_config_module
    from omegaconf import OmegaConf

    from experiments.run import run

    rows = []
    for seed in args.seeds:
        for arm in args.arms:
            overrides = [
                f"seed={seed}",
                f"world.n_users={args.users}",
                f"world.n_items={args.items}",
                f"sim.days={args.days}",
                "policy=greedy",
                *arm_overrides(arm),
                "report.enabled=false",
                "progress=false",
            ]
            with initialize_config_module(config_module="configs", version_base="1.3"):
                cfg = OmegaConf.to_container(
                    compose(config_name="config", overrides=overrides), resolve=True
                )
            with tempfile.TemporaryDirectory(prefix="recloop-warm-") as tmp:
                start = time.perf_counter()
                summary = run(cfg, Path(tmp) / "run")
                wall = time.perf_counter() - start
                m = pl.read_parquet(Path(tmp) / "run" / "metrics.parquet")
            ndcg = m.filter(pl.col("model_ndcg").is_not_nan())
            last = ndcg.filter(pl.col("t_start") >= (args.days - 30) * 24.0)
            row = {
                "arm": arm,
                "seed": seed,
                "model_ndcg_mean": ndcg["model_ndcg"].mean(),
                "model_ndcg_last30": last["model_ndcg"].mean(),
                "utility_mean": m["utility"].mean(),
                "fit_s": summary["timing_seconds"]["fit"],
                "wall_s": wall,
            }
            rows.append(row)
            print(
                json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}),
                flush=True,
            )

    base = args.arms[0]
    print(
        f"\n{'arm':8s} {'ndcg (run)':>11s} {'ndcg (last 30 d)':>17s} {'fit s':>7s} "
        f"{'Δ ndcg vs ' + base + ' per seed':>30s}"
    )
    for arm in args.arms:
        mine = [r for r in rows if r["arm"] == arm]
        ref = {r["seed"]: r for r in rows if r["arm"] == base}
        diffs = [r["model_ndcg_mean"] - ref[r["seed"]]["model_ndcg_mean"] for r in mine]
        print(
            f"{arm:8s} {statistics.fmean(r['model_ndcg_mean'] for r in mine):11.4f} "
            f"{statistics.fmean(r['model_ndcg_last30'] for r in mine):17.4f} "
            f"{statistics.fmean(r['fit_s'] for r in mine):7.2f} "
            f"{' '.join(f'{d:+.4f}' for d in diffs):>30s}"
        )
    seeds_ndcg = [r["model_ndcg_mean"] for r in rows if r["arm"] == base]
    if len(seeds_ndcg) > 1:
        print(
            f"seed noise of {base} (sd of its run-mean NDCG over seeds): "
            f"{statistics.stdev(seeds_ndcg):.4f}"
        )


if __name__ == "__main__":
    main()
