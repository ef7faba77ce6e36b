"""What biased clicks do to the learned model, isolated from the loop: retrain on one run's log.

The closed loop mixes two effects — biased clicks teach a worse model, and a different model shows
different slates. This replay keeps the slates fixed: it takes every impression a finished run
logged and, with the run's own response coin flips (common random numbers, regenerated from the
``sim.responses`` stream), draws the clicks the same users *would* have made

* ``logged`` — as logged (position bias and, if on, popularity conformity);
* ``unbiased`` — with every slot examined at the run's average rate ``θ̄`` and no conformity:
  the same click volume, no position or popularity bias (the reference);

then fits the run's ALS on the logged clicks with each training variant (plain, position-IPW
with the true or an estimated ``θ``, popularity-IPW, exposure-aware) and on the unbiased clicks,
and scores each model by true NDCG@K on a fixed sample of users. The share of the
``unbiased − logged`` gap a variant closes is what debiasing buys on this log:
``gap_closed = (ndcg − ndcg_plain) / (ndcg_unbiased_clicks − ndcg_plain)``. Where there is no gap
— a run without position bias (``η = 0``: every slot examined) or conformity logs the unbiased
clicks themselves, or the two models score the same — the share is undefined: ``gap_closed`` is
NaN on every row and ``gap_note`` says why (it is empty where the share is defined).

    recloop +study=bias_replay 'bias_replay.runs=[RUN_DIR,RUN_DIR]' [bias_replay.users=1000]

(the study's ``runner: bias_replay``; it writes ``replay.csv`` in its own run folder). The older
``python -m experiments.bias_replay RUN_DIR … [--out replay.csv]`` does the same.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl
from omegaconf import OmegaConf

from agents.streams import Streams
from agents.world import build_world
from experiments.config import parse_config
from policies.debiasing import Debias
from policies.interactions import Interactions, RoundImpressions
from policies.policy import build_policy
from policies.selection import Greedy
from sim.event_log import scan_table
from sim.model_quality import NDCGProbe, sample_probe_users

# Training variants: the ``policy.debias`` node each one fits with.
VARIANTS = (
    ("plain", {}),
    ("position_ipw_oracle", {"mode": "position_ipw", "propensity": "oracle"}),
    (
        "position_ipw_oracle_unclipped",
        {"mode": "position_ipw", "propensity": "oracle", "clip": 1e6},
    ),
    ("position_ipw_em", {"mode": "position_ipw", "propensity": "em"}),
    ("position_unbiased_oracle", {"mode": "position_unbiased", "propensity": "oracle"}),
    ("popularity_ipw", {"mode": "popularity_ipw"}),
    ("exposure_aware", {"mode": "exposure"}),
)


def replay(
    run_dir: Path, n_probe: int = 1000, variants: Sequence[str] | None = None
) -> pl.DataFrame:
    """One row per training variant: the model's true NDCG and the share of the gap it closes.

    ``variants`` names the training variants to fit (default: all of :data:`VARIANTS`); the
    reference (``unbiased_clicks``) and ``plain`` are always fitted, since the gap needs them.
    """
    known = [name for name, _ in VARIANTS]
    chosen = known if variants is None else ["plain", *(v for v in variants if v != "plain")]
    unknown = sorted(set(chosen) - set(known))
    if unknown:
        raise ValueError(f"bias replay variants {unknown}: not among {known}")
    raw = OmegaConf.to_container(OmegaConf.load(run_dir / "config.yaml"), resolve=True)
    rc = parse_config(raw)
    streams = Streams(rc.seed)
    world = build_world(rc.world, streams, days=rc.sim.days)
    k = rc.policy.slate_size
    imp = (
        scan_table(run_dir / "logs", "impressions")
        .select("request_id", "user_id", "item_id", "position", "clicked", "score")
        .collect()
        .sort("request_id", "position")
    )
    users = imp["user_id"].to_numpy().astype(np.int64)
    items = imp["item_id"].to_numpy().astype(np.int64)
    position = imp["position"].to_numpy().astype(np.int64)
    logged = imp["clicked"].to_numpy()
    n_requests = imp["request_id"].n_unique()
    if imp.height != n_requests * k:
        raise ValueError(f"{run_dir}: every request must show policy.slate_size={k} items")
    # The run drew one (requests, K) block of uniforms from sim.responses, in request order.
    uniforms = Streams(rc.seed).generator("sim.responses").random((n_requests, k)).ravel()
    relevance = world.relevance(users, items)
    theta = world.click_model.examination(k) if rc.world.click_model == "pbm" else None
    if theta is None:
        raise ValueError(f"{run_dir}: the replay needs a position-based click model")
    unbiased = uniforms < theta.mean() * relevance
    if rc.world.conformity == 0 and rc.world.drift_rate == 0 and rc.world.trust_bias == 0:
        # the regenerated coin flips must reproduce the log exactly (common random numbers)
        again = uniforms < np.tile(theta, n_requests) * relevance
        if not np.array_equal(again, logged):
            raise AssertionError(f"{run_dir}: regenerated clicks differ from the log")
    rng = streams.generator("metrics.ndcg_users")
    probe = NDCGProbe(
        sample_probe_users(world.users.n_users, n_probe, rng), 10, world.relevance_matrix
    )
    n_users, n_items = world.users.n_users, world.catalog.n_items

    def fit(clicked: np.ndarray, overrides: dict) -> float:
        # the run's policy, greedy and without intervention, with this variant's training data
        cfg = dataclasses.replace(
            rc.policy, selector=Greedy(k), intervention=None, debias=Debias(**overrides)
        )
        policy = build_policy(cfg, n_items, n_users, seed=0, examination=theta)
        inter = Interactions.from_pairs(
            users[clicked],
            items[clicked],
            n_users,
            n_items,
            item_impressions=np.bincount(items, minlength=n_items).astype(np.float64),
            latest_round=RoundImpressions(
                users, items, clicked, np.zeros_like(users), position, imp["score"].to_numpy()
            ),
            click_positions=position[clicked],
            exposures=(users[~clicked], items[~clicked]),
        )
        return probe(policy.fit(inter, version=0).model)

    reference = fit(unbiased, {})
    rows = [{"variant": "unbiased_clicks", "ndcg": reference}]
    rows += [{"variant": name, "ndcg": fit(logged, o)} for name, o in VARIANTS if name in chosen]
    out = pl.DataFrame(rows)
    plain = out.filter(pl.col("variant") == "plain")["ndcg"][0]
    note = gap_note(logged, unbiased, reference, plain)
    gap = pl.lit(float("nan")) if note else (pl.col("ndcg") - plain) / (reference - plain)
    return out.with_columns(
        gap.alias("gap_closed"),
        pl.lit(note).alias("gap_note"),
        pl.lit(str(run_dir)).alias("run"),
        pl.lit(rc.seed).alias("seed"),
        pl.lit(int(logged.sum())).alias("logged_clicks"),
        pl.lit(int(unbiased.sum())).alias("unbiased_clicks"),
    )


def gap_note(logged: np.ndarray, unbiased: np.ndarray, reference: float, plain: float) -> str:
    """Why the share of the gap closed is undefined on this log, or ``""`` where it is defined."""
    if np.array_equal(logged, unbiased):
        return (
            "undefined: the logged clicks are the unbiased clicks (no position bias or "
            "conformity to undo), so there is no gap to close"
        )
    if reference == plain:
        return "undefined: the model on unbiased clicks scores the same as plain (no gap)"
    return ""


def check_bias_replay(cfg: dict) -> tuple[list[Path], int]:
    """The runs to replay (``bias_replay.runs``: finished run folders) and the probe size."""
    node = cfg.get("bias_replay") or {}
    runs = node.get("runs") or []
    users = node.get("users", 1000)
    if not runs or not all(isinstance(r, str) for r in runs):
        raise ValueError(f"bias_replay.runs={runs!r}: list at least one finished run folder")
    for r in runs:
        if not (Path(r) / "summary.json").is_file():
            raise ValueError(f"bias_replay.runs: {r!r} is not a finished run (no summary.json)")
    if isinstance(users, bool) or not isinstance(users, int) or users < 1:
        raise ValueError(f"bias_replay.users={users!r}: must be an integer >= 1")
    return [Path(r) for r in runs], users


def run_bias_replay(runs: list[Path], users: int, out: Path | None = None) -> pl.DataFrame:
    """Replay every run; print the per-run table and the per-variant means; write ``out``.

    The means of ``gap_closed`` are over the runs where it is defined (``gap_runs`` of them).
    """
    table = pl.concat([replay(r, users) for r in runs])
    with pl.Config(tbl_rows=100, tbl_width_chars=140):
        print(table.drop("run", "gap_note"))
        for run, note in table.select("run", "gap_note").unique(maintain_order=True).iter_rows():
            if note:
                print(f"{run}: gap_closed {note}")
        defined = pl.col("gap_note") == ""
        gap = pl.col("gap_closed").filter(defined)
        print(
            table.group_by("variant", maintain_order=True).agg(
                pl.col("ndcg").mean().alias("ndcg_mean"),
                pl.col("ndcg").std().alias("ndcg_sd"),
                gap.mean().alias("gap_closed_mean"),
                gap.std().alias("gap_closed_sd"),
                defined.sum().alias("gap_runs"),
            )
        )
    if out is not None:
        table.write_csv(out)
    return table


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--users", type=int, default=1000, help="probe users for NDCG")
    args = ap.parse_args(argv)
    run_bias_replay(args.runs, args.users, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
