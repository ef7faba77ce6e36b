"""The closed loop at scale: wall time, throughput, peak memory and where the time goes.

    python benchmarks/loop.py --workload S [--days N] [--policy NAME] [--no-raw] [--floor] [--out DIR]

Workloads (greedy ALS, 64 factors, slate 10, daily retraining):

    S: 10,000 users × 5,000 items × 60 days
    M: 100,000 users × 20,000 items × 30 days
    L: 1,000,000 users × 100,000 items × 1 day

Prints wall time, requests/s, peak RSS, and the split of the run's time into ALS fitting,
serving (candidate scoring/top-K and slate selection), user responses, logging, metrics and the
rest (engine).

**Raw floor** (on unless ``--no-raw``), measured in the same process on the same deployed factors
and the same requests, and taken out of the run's own times:

* ``raw_topk``: after every batch the ALS model serves, implicit's fused top-K kernel
  (``implicit.cpu.topk.topk``) on the deployed float32 factors for the batch's warm users, with
  ``k = n_candidates + the user's filtered count`` and no filtering: the cost of scoring and
  ranking, nothing else. The kernel takes one ``k`` per call, so the requests are sorted by their
  ``k`` and sent in calls of ``RAW_CHUNK`` (each at its largest ``k``: a few ranks more than
  some of its requests need), on one thread — the fastest way to call it here (measured: on 2
  cores implicit's default of every core is up to 4× slower for calls of 100–300 requests, and
  calls of a few requests pay a fixed cost each). Cold users (served by the popularity
  fallback, no scoring) are left out of it.
* ``implicit_fit``: after every ALS fit, a fresh ``AlternatingLeastSquares`` with the same
  settings fitted on the same click matrix (one BLAS thread, implicit's own threads).

It prints ``serve / raw_topk`` and ``fit / implicit_fit``. ``--floor`` then replays the unavoidable model work on the run's own logs — the
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


def config(workload: str, seed: int = 0, days: int | None = None, policy: str = "greedy") -> dict:
    """The workload's run config, composed by hydra from ``configs/`` (greedy ALS, 64 factors)."""
    from hydra import compose, initialize_config_module
    from omegaconf import OmegaConf

    w = WORKLOADS[workload]
    overrides = [
        f"seed={seed}",
        f"world.n_users={w['n_users']}",
        f"world.n_items={w['n_items']}",
        f"policy={policy}",
        "policy.scorer.factors=64",
        f"sim.days={w['days'] if days is None else days}",
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


RAW_CHUNK = 256  # requests per kernel call of the raw floor, sorted by k


class RawFloor:
    """Times implicit's raw kernels beside the run (see the module docstring): patches
    ``ALSModel.retrieve`` and ``ALSScorer.fit`` of this process only."""

    def __init__(self) -> None:
        self.topk_s = 0.0
        self.fit_s = 0.0
        self.topk_requests = 0
        self.fits = 0

    def install(self) -> None:
        from implicit.cpu.als import AlternatingLeastSquares
        from implicit.cpu.topk import topk

        from policies.als import ALSScorer
        from policies.models import ALSModel

        retrieve, fit, floor = ALSModel.retrieve, ALSScorer.fit, self

        def timed_retrieve(model, user_ids, n, filter_rows):
            out = retrieve(model, user_ids, n, filter_rows)
            warm = ~model.cold[user_ids]
            n_items = model.item_factors.shape[0]
            ks = np.minimum(n + np.diff(filter_rows.indptr), n_items)[warm]
            by_k = np.argsort(ks, kind="stable")
            queries = model.user_factors[user_ids[warm]][by_k]
            ks = ks[by_k]
            items = np.ascontiguousarray(model.item_factors, dtype=np.float32)
            groups = [
                (
                    int(ks[lo : lo + RAW_CHUNK].max()),
                    np.ascontiguousarray(queries[lo : lo + RAW_CHUNK]),
                )
                for lo in range(0, ks.size, RAW_CHUNK)
            ]
            start = time.perf_counter()
            for k, query in groups:
                topk(items, query, k, num_threads=1)
            floor.topk_s += time.perf_counter() - start
            floor.topk_requests += int(warm.sum())
            return out

        def timed_fit(scorer, interactions, version):
            out = fit(scorer, interactions, version)
            with threadpool_limits(1, "blas"):
                plain = AlternatingLeastSquares(
                    factors=scorer.factors,
                    regularization=scorer.regularization,
                    alpha=scorer.alpha,
                    iterations=scorer.iterations,
                    random_state=int(scorer.random_state),
                    num_threads=scorer.num_threads,
                    calculate_training_loss=False,
                )
                clicks = interactions.clicks
                start = time.perf_counter()
                plain.fit(clicks, show_progress=False)
                floor.fit_s += time.perf_counter() - start
            floor.fits += 1
            return out

        ALSModel.retrieve = timed_retrieve
        ALSScorer.fit = timed_fit


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--workload", choices=sorted(WORKLOADS), default="S")
    ap.add_argument("--days", type=int, default=None, help="override the workload's days")
    ap.add_argument("--policy", default="greedy", help="policy preset (default: greedy)")
    ap.add_argument("--no-raw", action="store_true", help="skip the raw top-K / fit floor")
    ap.add_argument("--floor", action="store_true", help="also measure the floor on the same logs")
    ap.add_argument("--out", type=Path, default=None, help="keep the run here (default: temp)")
    args = ap.parse_args()

    from experiments.run import run

    raw = None
    if not args.no_raw:
        raw = RawFloor()
        raw.install()
    cfg = config(args.workload, days=args.days, policy=args.policy)
    out = args.out or Path(tempfile.mkdtemp(prefix=f"recloop-bench-{args.workload}-"))
    run_dir = out / "run"
    start = time.perf_counter()
    summary = run(cfg, run_dir)
    wall = time.perf_counter() - start
    run_peak_rss = peak_rss_mb()  # before the floor replay, which holds its own copies
    t = dict(summary["timing_seconds"])
    if raw is not None:  # the raw kernels ran inside serve and fit: take them out again
        t["serve"] -= raw.topk_s
        t["fit"] -= raw.fit_s
        wall -= raw.topk_s + raw.fit_s
    t["metrics"] += t.pop("quality", 0.0)  # the truth-side model_ndcg probe is a metric too
    accounted = sum(t[k] for k in ("fit", "serve", "respond", "log", "metrics"))
    result = {
        "workload": args.workload,
        **WORKLOADS[args.workload],
        "days": cfg["sim"]["days"],
        "policy": args.policy,
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
        "serve_us_per_request": round(t["serve"] / summary["n_requests"] * 1e6, 1),
        "blas": [(p.get("internal_api"), p.get("num_threads")) for p in threadpool_info()],
    }
    if raw is not None:
        result["raw_s"] = {"topk": round(raw.topk_s, 2), "implicit_fit": round(raw.fit_s, 2)}
        result["raw_topk_requests"] = raw.topk_requests
        if raw.topk_s > 0:
            result["serve_over_raw_topk"] = round(t["serve"] / raw.topk_s, 2)
        if raw.fit_s > 0:
            result["fit_over_implicit_fit"] = round(t["fit"] / raw.fit_s, 2)
    if args.floor:
        fl = floor_seconds(run_dir, cfg)
        result["floor_s"] = {k: round(v, 1) for k, v in fl.items()}
        result["total_over_floor"] = round(wall / fl["total"], 2)
    print(json.dumps(result, indent=2))
    if args.out is None:
        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
