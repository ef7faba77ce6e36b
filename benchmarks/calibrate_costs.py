"""Measure the cost model's per-preset constants and write ``experiments/cost_calibration.py``.

Runs every calibrated preset on the small world (2,000 users × 1,000 items, daily retraining,
seed 100 — not a study seed) at two horizons, in this process, one run at a time, and a tiny
sweep through the real CLI for the per-sweep overhead. Takes about 6 minutes on 2 cores; run
it with nothing else on the machine:

    .venv/bin/python benchmarks/calibrate_costs.py [--days 10 30] [--presets greedy,thompson]
        [--merge]

``--merge`` measures only ``--presets`` and keeps every other preset's constants, the job and
sweep overheads and the date line of the existing file (a new preset joins without re-measuring
the others, whose estimates the README quotes).

Per run it splits the wall time into: a per-request part (serving, responses, logging,
metrics), a per-retrain part (fit and the model-quality probe), and the rest (report, setup:
the job overhead). The two horizons separate each retrain's fixed cost from its cost per
training click (see :mod:`experiments.cost_model`).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl
from hydra import compose, initialize_config_module
from scipy.optimize import nnls

from experiments.run import run

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "experiments" / "cost_calibration.py"
PRESETS = (
    "greedy",
    "epsilon_greedy",
    "epsilon_decay",
    "softmax",
    "ucb",
    "thompson",
    "linucb",
    "lints",
    "item_boost",
    "random",
    "popularity",
    "oracle",
    "bpr",
    "lmf",
    "item_knn",
    "item_knn_bm25",
    # Component variants: greedy with one component swapped. The cost model adds their
    # difference to greedy onto any preset that uses the component (experiments.cost_model).
    "greedy+retrieve=mixed",
    "greedy+rerank=learned",
    # Multi-objective ranking (issue 16): full presets, since their arms tune the same classes.
    "scalarized",
    "constrained",
    "fair_exposure",
)


def measure(preset: str, days: int, workdir: Path) -> dict[str, float]:
    base, _, component = preset.partition("+")
    swap = [f"policy/{component}"] if component else []  # e.g. policy/rerank=learned
    with initialize_config_module(config_module="configs", version_base="1.3"):
        cfg = compose(
            config_name="config",
            overrides=[
                f"policy={base}",
                *swap,
                f"sim.days={days}",
                "seed=100",
                "progress=false",
            ],
        )
    out = workdir / f"{preset}_{days}"
    start = time.perf_counter()
    summary = run(cfg, out)
    wall = time.perf_counter() - start
    t = summary["timing_seconds"]
    retrain = t.get("fit", 0.0) + t.get("quality", 0.0)
    deployments = out / "logs" / "deployments.parquet"
    deployed = pl.read_parquet(deployments) if deployments.is_file() else pl.DataFrame()
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    report = (out / "report.html").stat().st_size if (out / "report.html").is_file() else 0
    row = {
        "preset": preset,
        "days": days,
        "wall": wall,
        "requests": summary["n_requests"],
        "clicks": summary["n_clicks"],
        "per_request_s": t["total"] - retrain,
        "retrain_s": retrain,
        "retrains": deployed.height,
        "train_clicks": int(deployed["n_train_clicks"].sum()) if deployed.height else 0,
        "overhead_s": wall - t["total"],
        "bytes": size - report,
        "selector": str(cfg.policy.selector._target_).rpartition(".")[2],
    }
    if component:  # the swapped component's class: how the cost model recognises it
        row["target"] = str(cfg.policy[component.partition("=")[0]]._target_)
    shutil.rmtree(out)
    print(json.dumps(row), flush=True)
    return row


def fit_preset(rows: list[dict[str, float]]) -> dict[str, float | str]:
    requests = np.array([r["requests"] for r in rows], dtype=float)
    serve_s = float(np.sum([r["per_request_s"] for r in rows]) / requests.sum())
    design = np.array([[r["retrains"], r["train_clicks"]] for r in rows], dtype=float)
    target = np.array([r["retrain_s"] for r in rows], dtype=float)
    if design[:, 0].max() == 0:  # no model: nothing to retrain
        fit_s, per_click = 0.0, 0.0
    else:
        (fit_s, per_click), _ = nnls(design, target)
    extra = {"target": rows[0]["target"]} if "target" in rows[0] else {}
    return {
        "selector": rows[0]["selector"],
        **extra,
        "serve_s": serve_s,
        "fit_s": float(fit_s),
        "fit_s_per_click": float(per_click),
        "clicks_per_request": float(np.sum([r["clicks"] for r in rows]) / requests.sum()),
        "bytes_per_request": float(np.sum([r["bytes"] for r in rows]) / requests.sum()),
    }


def sweep_overhead(workdir: Path) -> float:
    """Wall time of a two-job one-day sweep through the CLI minus its jobs' own run time."""
    out = workdir / "sweep"
    cmd = [
        str(Path(sys.executable).with_name("recloop")),
        "-m",
        "policy=random",
        "seed=0,1",
        "sim.days=1",
        "world.n_users=200",
        "world.n_items=100",
        f"hydra.sweep.dir={out}",
    ]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    wall = time.perf_counter() - start
    jobs = [json.loads(p.read_text()) for p in out.glob("*/summary.json")]
    return wall - sum(j["timing_seconds"]["total"] for j in jobs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, nargs=2, default=(10, 30))
    parser.add_argument("--presets", default=",".join(PRESETS))
    parser.add_argument("--merge", action="store_true", help="keep the other presets' constants")
    args = parser.parse_args()
    presets = [p for p in args.presets.split(",") if p]
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        rows = [measure(p, d, workdir) for p in presets for d in args.days]
        sweep_s = None if args.merge else sweep_overhead(workdir)
    fitted = {p: fit_preset([r for r in rows if r["preset"] == p]) for p in presets}
    report_bytes = 120_000  # a job's report.html with the sweep's shared plotly.min.js
    if args.merge:
        from experiments import cost_calibration as old

        kept = [ln for ln in OUT.read_text().splitlines()[3:] if ln.startswith("# ")]
        kept = kept[: next((i for i, ln in enumerate(kept) if "per preset" in ln), len(kept))]
        date_line = "\n".join(
            [*kept, f"# {', '.join(presets)} measured {time.strftime('%Y-%m-%d')} (--merge)"]
        )
        job_line = f"JOB_OVERHEAD_S = {old.JOB_OVERHEAD_S:.3f}  # per job: report, setup (median)"
        sweep_over = old.SWEEP_OVERHEAD_S
        fitted = {**{k: v for k, v in old.PRESETS.items() if k not in fitted}, **fitted}
    else:
        job_overhead = float(np.median([r["overhead_s"] for r in rows]))
        date_line = (
            f"# {time.strftime('%Y-%m-%d')}, horizons {args.days[0]} and {args.days[1]} days, "
            "small world, seed 100"
        )
        job_line = f"JOB_OVERHEAD_S = {job_overhead:.3f}  # per job: report, setup (median)"
        sweep_over = max(sweep_s - 2 * job_overhead, 0.0)
    lines = [
        '"""Cost-model constants measured by ``benchmarks/calibrate_costs.py`` (generated: edit',
        'by re-running it on a 2-core machine with nothing else running)."""',
        "",
        date_line,
        job_line,
        f"SWEEP_OVERHEAD_S = {sweep_over:.3f}  # per sweep: "
        "start-up, precheck, comparison and sweep report",
        f"REPORT_BYTES = {report_bytes}",
        "# per preset: seconds per request at 1,000 items (serve, respond, log, metrics); "
        "seconds per retrain",
        "# (fit + quality probe) fixed and per training click; clicks and bytes per request.",
        "# 'base+group=choice': base with policy/group=choice (its class: target); the cost model",
        "# adds its difference to base onto every job that uses that class.",
        "PRESETS: dict[str, dict] = {",
    ]
    for name, c in fitted.items():
        items = ", ".join(
            f'"{k}": "{v}"' if isinstance(v, str) else f'"{k}": {v:.6g}' for k, v in c.items()
        )
        lines.append(f'    "{name}": {{{items}}},')
    lines.append("}")
    OUT.write_text("\n".join(lines) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
