"""Label delay measured: models trained on delayed conversion labels vs the oracle, and what each
correction recovers, by model NDCG on conversions (``model_ndcg_conversion``).

    python benchmarks/label_delay.py [--out /tmp/label-delay] [--seeds 0 1] [--delays 24 72 168]
        [--days 30] [--n-users 2000] [--n-items 1000] [--base 0.15]

Runs, one after the other (not in parallel), greedy ALS with conversions on
(``world.conversion.base``, exponential delays of each mean) and every training label:

    clicks        policy.label=clicks (today's learner)
    delayed       policy.label=conversions (what the log holds at each cut-off)
    ipw           policy.label=conversions policy.label_correction=ipw
    dfm           policy.label=conversions policy.label_correction=dfm
    oracle        policy.label=conversions_oracle (every eventual conversion at click time)

Each run's score is the mean ``model_ndcg_conversion`` of its deployments trained in the last 7
days (``late``) and over all its deployments (``all``). Per delay, the table gives each arm's mean
over seeds, the gap ``oracle − delayed`` and the share of that gap a correction recovers,
``(arm − delayed) / (oracle − delayed)`` (from the seed means). A run directory that already
holds ``logs/deployments.parquet`` is read, not run again. Writes ``runs.csv`` (one row per run)
and ``table.md`` under ``--out`` and prints the table.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parents[1]
ARMS = {
    "clicks": ["policy.label=clicks"],
    "delayed": ["policy.label=conversions"],
    "ipw": ["policy.label=conversions", "policy.label_correction=ipw"],
    "dfm": ["policy.label=conversions", "policy.label_correction=dfm"],
    "oracle": ["policy.label=conversions_oracle"],
}
LATE_DAYS = 7


def config(overrides: list[str]) -> dict:
    from hydra import compose, initialize_config_module
    from omegaconf import OmegaConf

    with initialize_config_module(config_module="configs", version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    return OmegaConf.to_container(cfg, resolve=True)


def score(run_dir: Path, days: int) -> dict[str, float]:
    dep = pl.read_parquet(run_dir / "logs" / "deployments.parquet")
    late = dep.filter(pl.col("t_train_start") >= (days - LATE_DAYS) * 24.0)
    return {
        "late": float(late["model_ndcg_conversion"].mean()),
        "all": float(dep["model_ndcg_conversion"].mean()),
        "late_ndcg": float(late["model_ndcg"].mean()),
    }


def table(runs: pl.DataFrame) -> str:
    means = runs.group_by(["mean_hours", "arm"]).agg(
        pl.col("late").mean(), pl.col("all").mean(), pl.col("late_ndcg").mean()
    )
    lines = [
        f"model NDCG@10 on conversions, mean of the deployments of the last {LATE_DAYS} days "
        f"(all deployments in brackets), mean over seeds {sorted(runs['seed'].unique())}",
        "",
        "| mean delay (h) | " + " | ".join(ARMS) + " | gap oracle−delayed | ipw recovers | "
        "dfm recovers |",
        "|---" * (len(ARMS) + 4) + "|",
    ]
    for hours in sorted(means["mean_hours"].unique()):
        m = {r["arm"]: r for r in means.filter(pl.col("mean_hours") == hours).iter_rows(named=True)}
        cells = [f"{m[a]['late']:.4f} ({m[a]['all']:.4f})" if a in m else "—" for a in ARMS]
        nan = float("nan")
        late = {a: m[a]["late"] if a in m else nan for a in ARMS}
        gap = late["oracle"] - late["delayed"]
        rec = [(late[a] - late["delayed"]) / gap if gap else nan for a in ("ipw", "dfm")]
        lines.append(
            f"| {hours:g} | " + " | ".join(cells) + f" | {gap:+.4f} | {rec[0]:.0%} | {rec[1]:.0%} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("/tmp/label-delay"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--delays", type=float, nargs="+", default=[24.0, 72.0, 168.0])
    ap.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--n-users", type=int, default=2000)
    ap.add_argument("--n-items", type=int, default=1000)
    ap.add_argument("--base", type=float, default=0.15)
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from experiments.run import run

    rows = []
    for hours in args.delays:
        for seed in args.seeds:
            for arm in args.arms:
                run_dir = args.out / f"delay{hours:g}_seed{seed}_{arm}"
                if not (run_dir / "logs" / "deployments.parquet").exists():
                    overrides = [
                        f"seed={seed}",
                        f"world.n_users={args.n_users}",
                        f"world.n_items={args.n_items}",
                        f"sim.days={args.days}",
                        f"world.conversion.base={args.base}",
                        f"world.conversion_delay.mean_hours={hours}",
                        "report.enabled=false",
                        "progress=false",
                        *ARMS[arm],
                    ]
                    start = time.perf_counter()
                    run(config(overrides), run_dir)
                    print(f"{run_dir.name}: {time.perf_counter() - start:.0f} s", flush=True)
                rows.append(
                    {"mean_hours": hours, "seed": seed, "arm": arm, **score(run_dir, args.days)}
                )
    runs = pl.DataFrame(rows)
    runs.write_csv(args.out / "runs.csv")
    text = table(runs)
    (args.out / "table.md").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
