"""Label delay measured: models trained on delayed conversion labels vs the oracle, and what each
correction recovers, by model NDCG on conversions (``model_ndcg_conversion``).

    python benchmarks/label_delay.py [--out /tmp/label-delay] [--design closed replay]
        [--seeds 0 1] [--delays 24 72 168] [--days 30] [--n-users 2000] [--n-items 1000]
        [--base 0.15]

Greedy ALS with conversions on (``world.conversion.base``, exponential delays of each mean) and
every training label:

    clicks        policy.label=clicks (today's learner)
    delayed       policy.label=conversions (what the log holds at each cut-off)
    ipw           policy.label=conversions policy.label_correction=ipw
    dfm           policy.label=conversions policy.label_correction=dfm
    oracle        policy.label=conversions_oracle (every eventual conversion at click time)

Two designs, every simulation run one after the other (not in parallel):

* ``closed``: one closed-loop run per arm — each arm's model serves and so gathers its own log;
  the label effect and the feedback loop it sets off are measured together.
* ``replay``: one run served by the ``delayed`` arm; at each of its cut-offs every arm's label set
  is built from the *same* log (the oracle's from the world's pending conversions at that
  moment) and fitted with the same scorer and seed: the label delay alone. The ``delayed`` arm's
  fit is the served model itself (its NDCG equals the run's ``model_ndcg_conversion``: checked).

A run's score is the mean model NDCG on conversions of its models fitted in the last 7 days
(``late``) and of all of them (``all``). Per delay, the table gives each arm's mean over seeds,
the gap ``oracle − delayed`` and the share of that gap a correction recovers,
``(arm − delayed) / (oracle − delayed)`` (from the seed means). A closed-loop run directory that
already holds ``logs/deployments.parquet`` is read, not run again. Writes ``<design>_runs.csv``
(one row per run and arm) and ``<design>_table.md`` under ``--out`` and prints the tables.
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


def table(runs: pl.DataFrame, design: str) -> str:
    means = runs.group_by(["mean_hours", "arm"]).agg(pl.col("late").mean(), pl.col("all").mean())
    lines = [
        f"{design}: model NDCG@10 on conversions, mean of the models fitted in the last {LATE_DAYS} days "
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


def overrides(args: argparse.Namespace, hours: float, seed: int, arm: str) -> list[str]:
    return [
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


def closed_loop(args: argparse.Namespace) -> pl.DataFrame:
    from experiments.run import run

    rows = []
    for hours in args.delays:
        for seed in args.seeds:
            for arm in args.arms:
                run_dir = args.out / f"delay{hours:g}_seed{seed}_{arm}"
                if not (run_dir / "logs" / "deployments.parquet").exists():
                    start = time.perf_counter()
                    run(config(overrides(args, hours, seed, arm)), run_dir)
                    print(f"{run_dir.name}: {time.perf_counter() - start:.0f} s", flush=True)
                rows.append(
                    {"mean_hours": hours, "seed": seed, "arm": arm, **score(run_dir, args.days)}
                )
    return pl.DataFrame(rows)


def replay_run(args: argparse.Namespace, hours: float, seed: int) -> list[dict]:
    """One run served by the delayed arm; every arm fitted on its log at each cut-off."""
    import dataclasses
    import shutil

    from agents.streams import Streams
    from experiments.config import parse_config
    from experiments.run import build_simulation
    from policies.policy import build_policy
    from sim.training_data import TrainingLog

    rc = parse_config(config(overrides(args, hours, seed, "delayed")))
    log_root = args.out / f"replay_delay{hours:g}_seed{seed}" / "logs"
    shutil.rmtree(log_root, ignore_errors=True)
    simulation = build_simulation(rc, log_root)
    state, world = simulation.state, simulation.world
    n_users, n_items = world.users.n_users, world.catalog.n_items
    variants = {}
    for arm in args.arms:
        label = dict(o.removeprefix("policy.").split("=") for o in ARMS[arm])
        cfg = dataclasses.replace(rc.policy, **label)
        policy = build_policy(
            cfg,
            n_items,
            n_users,
            Streams(seed).int_seed("policy.model"),
            items=world.catalog.metadata,
        )
        needs = cfg.training_needs
        log = TrainingLog(
            n_users, n_items, label=needs.label, label_correction=needs.label_correction
        )
        variants[arm] = (policy, log)
    paths: list[Path] = []
    add_partition, add_conversions = state.training.add_partition, state.training.add_conversions

    def on_partition(path, candidates=None):
        paths.append(path)
        add_partition(path, candidates)

    def on_conversions(path, t_cutoff, pending=None):
        add_conversions(path, t_cutoff, pending)
        truth = world.conversions.clicked_before(t_cutoff)  # the oracle arm's reference
        for _, log in variants.values():
            log.add_partition(paths[-1])
            log.add_conversions(path, t_cutoff, truth)

    state.training.add_partition, state.training.add_conversions = on_partition, on_conversions
    rows, fit = [], state.policy.fit
    probe = simulation.conversion_probe

    def fit_all(interactions, version):
        deployment = fit(interactions, version)
        served = probe(deployment.model)
        for arm, (policy, log) in variants.items():
            value = probe(policy.fit(log.interactions(), version).model)
            if arm == "delayed":
                assert abs(value - served) < 1e-9, (value, served)  # the served model itself
            rows.append({"t": simulation.env.now, "arm": arm, "ndcg": value})
        return deployment

    state.policy.fit = fit_all
    start = time.perf_counter()
    simulation.run()
    print(f"replay delay {hours:g} seed {seed}: {time.perf_counter() - start:.0f} s", flush=True)
    frame = pl.DataFrame(rows)
    late = frame.filter(pl.col("t") >= (args.days - LATE_DAYS) * 24.0)
    return [
        {
            "mean_hours": hours,
            "seed": seed,
            "arm": arm,
            "late": float(late.filter(pl.col("arm") == arm)["ndcg"].mean()),
            "all": float(frame.filter(pl.col("arm") == arm)["ndcg"].mean()),
        }
        for arm in args.arms
    ]


def replay(args: argparse.Namespace) -> pl.DataFrame:
    return pl.DataFrame(
        [
            row
            for hours in args.delays
            for seed in args.seeds
            for row in replay_run(args, hours, seed)
        ]
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("/tmp/label-delay"))
    ap.add_argument(
        "--design", nargs="+", default=["closed", "replay"], choices=["closed", "replay"]
    )
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--delays", type=float, nargs="+", default=[24.0, 72.0, 168.0])
    ap.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--n-users", type=int, default=2000)
    ap.add_argument("--n-items", type=int, default=1000)
    ap.add_argument("--base", type=float, default=0.15)
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    args.out.mkdir(parents=True, exist_ok=True)
    for design in args.design:
        runs = closed_loop(args) if design == "closed" else replay(args)
        runs.write_csv(args.out / f"{design}_runs.csv")
        text = table(runs, design)
        (args.out / f"{design}_table.md").write_text(text + "\n")
        print(text, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
