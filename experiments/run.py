"""``run(cfg, out_dir)``: one closed-loop simulation, from config to files. Pure: no hydra state."""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from agents.streams import Streams
from agents.world import build_world
from experiments.config import RunConfig, parse_config
from policies.onboarding import Onboarding
from policies.policy import Target, build_policy
from policies.selection import Selector
from policies.transfer import TransferSeeder
from reports.metric_catalog import CATALOG
from sim.atomic_write import atomic_path
from sim.checkpoint import remove_checkpoint, run_with_checkpoints
from sim.cold_start_metrics import ITEMS_FILE, SURVIVAL_FILE, measure_cold_start
from sim.engine import Simulation
from sim.event_log import write_parquet_atomic
from sim.examination import estimate_examination
from sim.item_probes import ContentMapProbe, ItemProbe, ItemRankProbe
from sim.metrics import METRIC_COLUMNS, measure_log
from sim.model_quality import (
    NDCGProbe,
    RetrievalRecallProbe,
    conversion_gain,
    sample_probe_users,
)
from sim.retention_metrics import CURVES_FILE, RETENTION_COLUMNS, measure_retention, with_retention
from sim.state import SimulationState

SUMMARY_METRICS = tuple(c for c in METRIC_COLUMNS if c not in {"window", "t_start", "t_end"})
# summary.json's "mean" section: the per-window rates only. A running total (cumulative_utility,
# cum_*), a count or the model version has no meaningful mean over windows: its final value is
# in "final", and it is left out of "mean".
MEAN_METRICS = tuple(c for c in SUMMARY_METRICS if c in CATALOG and CATALOG[c].per_window)
RUN_FILES = (
    "logs",
    "metrics.parquet",
    "item_exposure.parquet",
    "examination.parquet",
    ITEMS_FILE,
    SURVIVAL_FILE,
    CURVES_FILE,
    "summary.json",
    "report.html",
    "config.yaml",
    "checkpoint",
)


class RunDirectoryError(RuntimeError):
    """The output directory already holds (part of) another run."""


def _clean(value: Any) -> Any:
    """JSON-safe: NaN/inf become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _write_json_atomic(data: dict[str, Any], path: Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")


def run(
    cfg: DictConfig | dict[str, Any],
    out_dir: Path,
    progress: Callable[[float, float], None] | None = None,
    config_name: str = "config",
    shadow_targets: dict[str, Selector] | None = None,
    switch: tuple[float, Target] | None = None,
    checkpoint: bool | None = None,
) -> dict[str, Any]:
    """Simulate, write the event log, ``metrics.parquet``, ``item_exposure.parquet`` (per-item
    counts per window, for the reports' Lorenz curves), ``summary.json`` and ``report.html``.

    The config is validated before anything is written. ``summary.json`` is written last, after
    the report, so a directory without it is not a finished run (a failure while writing any
    output leaves none, and no temp file). Off-policy evaluation
    (:mod:`experiments.ope`) passes ``shadow_targets`` (selectors replayed on every served slate,
    logged to ``logs/targets``) or ``switch`` (from that hour on, serve with another selector).

    With ``checkpoint`` (default: on unless ``RECLOOP_CHECKPOINT=0``) the state is saved at every
    round boundary to ``checkpoint/state.pkl`` (:mod:`sim.checkpoint`), for ``recloop --resume``;
    it is removed once ``summary.json`` says the run is complete.
    """
    if checkpoint is None:
        checkpoint = checkpointing_enabled()
    rc: RunConfig = parse_config(cfg)
    out_dir = Path(out_dir)
    clash = [name for name in RUN_FILES if (out_dir / name).exists()]
    if clash:
        raise RunDirectoryError(
            f"{out_dir} already holds a run ({clash[0]} exists); choose a new directory"
        )
    started = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    resolved = cfg if isinstance(cfg, DictConfig) else OmegaConf.create(cfg)
    with atomic_path(out_dir / "config.yaml") as tmp:
        tmp.write_text(OmegaConf.to_yaml(resolved, resolve=True))

    simulation = build_simulation(
        rc, out_dir / "logs", progress=progress, shadow_targets=shadow_targets, switch=switch
    )
    run_with_checkpoints(simulation, out_dir if checkpoint else None)
    summary = write_outputs(rc, simulation, out_dir, started, config_name)
    remove_checkpoint(out_dir)
    return summary


def checkpointing_enabled() -> bool:
    """Round checkpoints are on unless the environment sets ``RECLOOP_CHECKPOINT=0``."""
    return os.environ.get("RECLOOP_CHECKPOINT", "1") != "0"


def build_simulation(
    rc: RunConfig,
    log_root: Path,
    progress: Callable[[float, float], None] | None = None,
    shadow_targets: dict[str, Selector] | None = None,
    switch: tuple[float, Target] | None = None,
    state: SimulationState | None = None,
) -> Simulation:
    """The simulation ``rc`` describes, logging under ``log_root``: a new run, or, given the
    ``state`` of a paused one (``Simulation.run(until=...)``; a deep copy works too), its
    continuation (then ``shadow_targets`` are ignored: they live in the state's policy)."""
    streams = Streams(rc.seed)
    if state is None:
        world = build_world(rc.world, streams, days=rc.sim.days, transfer=rc.transfer)
        policy = build_policy(
            rc.policy,
            n_items=world.catalog.n_items,
            n_users=world.users.n_users,
            seed=streams.int_seed("policy.model"),
            relevance=world.relevance_matrix if rc.policy.scorer.uses_ground_truth else None,
            item_content=world.catalog.metadata.content,  # metadata a platform has, not truth
            item_arrival_t=world.catalog.metadata.arrival_t,
            items=world.catalog.metadata,
            rerank_seed=streams.int_seed("policy.rerank"),
            # truth, passed only to the reference arm that reweights by the true θ_k
            examination=world.click_model.examination(rc.policy.slate_size)
            if rc.policy.debias.position_based and rc.policy.debias.propensity == "oracle"
            else None,
        )
        if rc.onboarding.enabled:
            policy.user_seeders.append(
                Onboarding.build(
                    rc.onboarding,
                    world.users.n_users,
                    world.catalog.n_items,
                    streams.generator("policy.onboarding"),
                )
            )
        if world.second_domain is not None:  # transfer.enabled: only the click history passes
            policy.user_seeders.insert(
                0,  # first: later layers (onboarding's fold-in) refine the transferred prior
                TransferSeeder.from_clicks(
                    world.second_domain.clicks,
                    rc.transfer.profile_dim,
                    rc.transfer.regularization,
                    rc.transfer.min_r2,
                ),
            )
        if shadow_targets:
            policy.set_shadow_targets(
                shadow_targets,
                seed=streams.int_seed("policy.shadow"),
            )
        state = SimulationState.initial(world, policy, streams, rc.serving)
    probe = recall = conversion_probe = None
    if rc.ndcg_users > 0:
        probe_users = sample_probe_users(
            state.world.users.n_users, rc.ndcg_users, streams.generator("metrics.ndcg_users")
        )
        probe = NDCGProbe(
            probe_users,
            rc.ndcg_k,
            state.world.relevance_matrix,  # the truth of the run's own (drifting) world
            unavailable=(lambda: state.policy.unavailable) if rc.world.is_living else None,
        )
        recall = RetrievalRecallProbe(probe_users)  # the same users: no new draw
        world = state.world
        if world.conversions is not None:  # judged on conversions too: the same users
            conversion_probe = NDCGProbe(
                probe_users,
                rc.ndcg_k,
                conversion_gain(
                    world.relevance_matrix,
                    rc.world.conversions.probability,
                    world.catalog.metadata.price,
                    world.median_price,
                ),
                unavailable=probe.unavailable,
            )
    return Simulation(
        state,
        rc.sim,
        log_root,
        progress=progress,
        fail_at_hour=rc.fail_at_hour,
        quality_probe=probe,
        switch=switch,
        serving=rc.serving,
        retrieval_probe=recall,
        item_probes=item_probes(rc, state, streams),
        conversion_probe=conversion_probe,
    )


def item_probes(rc: RunConfig, state: SimulationState, streams: Streams) -> list[ItemProbe]:
    """The per-cut-off item probes (:mod:`sim.item_probes`): new items' ranks when items arrive,
    the content map against the truth when the scorer has one (none otherwise: no new draw)."""
    world, probes = state.world, []
    if rc.world.item_arrival_rate > 0:
        order = streams.generator("metrics.item_rank_users").permutation(world.users.n_users)
        probes.append(ItemRankProbe(order, rc.ndcg_users, world.catalog.metadata))
    if getattr(rc.policy.scorer, "content_map", False):
        probes.append(
            ContentMapProbe(world.catalog.factors, world.catalog.metadata, rc.world.content_noise)
        )
    return probes


def write_outputs(
    rc: RunConfig,
    simulation: Simulation,
    out_dir: Path,
    started: float,
    config_name: str = "config",
) -> dict[str, Any]:
    """After a finished simulation: ``metrics.parquet``, ``examination.parquet`` (when asked
    for), the report, then ``summary.json`` (its ``status: complete`` says every output is in
    place; the report is built from the summary in memory). Returns the summary."""
    world, log_root, stats = simulation.world, simulation.log_root, simulation.stats
    streams = Streams(rc.seed)

    clock = time.perf_counter()
    measures = measure_log(
        log_root,
        n_items=world.catalog.n_items,
        item_factors=world.catalog.factors,
        snapshot_every_hours=rc.sim.snapshot_every_hours,
        rng=streams.generator("metrics.homogenization"),
        homogenization_pairs=rc.homogenization_pairs,
        items=world.catalog.metadata,
        user_arrival_t=world.users.arrival_t,
        new_item_days=rc.metrics.new_item_days,
        new_user_sessions=rc.metrics.new_user_sessions,
    )
    metrics = measures.metrics
    retention = measure_retention(  # None without engagement or conversions: nothing new
        log_root,
        metrics,
        world.users.arrival_t,
        horizon=rc.sim.horizon,
        snapshot_every_hours=rc.sim.snapshot_every_hours,
        tracks_satisfaction=rc.world.engagement.tracks_satisfaction,
    )
    summary_metrics, mean_metrics = SUMMARY_METRICS, MEAN_METRICS
    if retention is not None:
        metrics = with_retention(metrics, retention)
        summary_metrics += RETENTION_COLUMNS
        mean_metrics += tuple(c for c in RETENTION_COLUMNS if CATALOG[c].per_window)
        if retention.curves is not None:
            write_parquet_atomic(retention.curves, out_dir / CURVES_FILE)
    write_parquet_atomic(metrics, out_dir / "metrics.parquet")
    write_parquet_atomic(measures.item_exposure, out_dir / "item_exposure.parquet")
    if rc.examination or rc.policy.intervention is not None:
        true_theta = None
        if rc.world.click_model == "pbm":
            true_theta = world.click_model.examination(rc.policy.slate_size)
        write_parquet_atomic(
            estimate_examination(log_root, rc.policy.slate_size, true_theta),
            out_dir / "examination.parquet",
        )
    cold_start = measure_cold_start(  # None without arrivals: no file, no summary block
        log_root,
        world.catalog.metadata,
        world.users.arrival_t,
        horizon=rc.sim.horizon,
        new_item_days=rc.metrics.new_item_days,
        new_user_sessions=rc.metrics.new_user_sessions,
    )
    if cold_start is not None:
        write_parquet_atomic(cold_start.items, out_dir / ITEMS_FILE)
        write_parquet_atomic(cold_start.survival, out_dir / SURVIVAL_FILE)
    stats.seconds["metrics"] = time.perf_counter() - clock
    stats.seconds["total"] = time.perf_counter() - started

    summary = {
        "status": "complete",
        "config_name": config_name,
        "policy": rc.policy.name,
        "seed": rc.seed,
        "catalog_size": world.catalog.n_items,
        "n_users": world.users.n_users,
        "days": rc.sim.days,
        "n_windows": metrics.height,
        "n_requests": stats.n_requests,
        "n_impressions": stats.n_impressions,
        "n_clicks": stats.n_clicks,
        "final": {k: _clean(metrics[k][-1]) for k in summary_metrics},
        "mean": {k: _clean(metrics[k].fill_nan(None).mean()) for k in mean_metrics},
        "timing_seconds": {k: round(v, 3) for k, v in stats.seconds.items()},
    }
    if cold_start is not None:
        summary["cold_start"] = cold_start.summary
    if retention is not None:
        summary["retention"] = retention.summary
    trainer = getattr(simulation.state.policy, "reranker", None)
    if isinstance(getattr(trainer, "fallbacks", None), Mapping):  # policy/rerank=scalarized
        summary["rerank_calibration"] = {"fits": trainer.fits, "fallbacks": dict(trainer.fallbacks)}
    if rc.report:  # before summary.json: "complete" only once every output is in place
        from reports.run_report import build_run_report  # reports read files only

        build_run_report(out_dir, summary=json.loads(json.dumps(summary)))  # as the file reads
    _write_json_atomic(summary, out_dir / "summary.json")
    return summary
