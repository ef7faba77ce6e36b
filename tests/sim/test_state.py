"""The explicit simulation state: a run paused at a round boundary, deep-copied and continued
twice (the original and the copy, each into its own directory) writes, byte for byte, the logs
and metrics of the same run uninterrupted."""

from __future__ import annotations

import copy
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import tiny_config

from experiments.config import parse_config
from experiments.run import build_simulation, run, write_outputs
from policies.plackett_luce import Softmax
from policies.policy import Target
from policies.selection import Greedy
from sim.engine import Simulation

# Each case exercises a different part of the state (comments say which).
CASES: dict[str, dict[str, Any]] = {
    # a living world: the catalog process's next event and the policy's availability mask
    "living_world": {
        "world.item_arrival_rate": 15.0,
        "world.item_lifetime_days": 12.0,
        "world.user_arrival_rate": 25.0,
        "policy.name": "epsilon_greedy",
        "policy.selector": "epsilon_greedy",
        "policy.epsilon": 0.2,
    },
    # ALS warm start: the scorer keeps implicit's factors from one fit to the next
    "greedy_warm_start": {"policy.warm_start": True, "policy.training_window_rounds": 2},
    # explore coins and uniform picks (policy.uniform), a decaying epsilon
    "epsilon_greedy": {
        "policy.name": "epsilon_greedy",
        "policy.selector": "epsilon_greedy",
        "policy.epsilon": 0.2,
        "policy.epsilon_decay": 0.8,
    },
    # posterior samples (policy.normal) and Monte-Carlo propensities (policy.monte_carlo)
    "thompson": {"policy.name": "thompson", "policy.selector": "thompson", "policy.mc_samples": 20},
    # the linear bandit's A, b and per-version user profiles
    "linucb": {"policy.name": "linucb", "policy.scorer": "linear", "policy.selector": "ucb"},
    # the learned reranker: its training rows and counts, and the LightGBM model deployed
    "learned_rerank": {
        "policy.rerank": "learned",
        "policy.rerank.min_train_clicks": 10,
        "policy.rerank.n_estimators": 20,
    },
    # the training log's exposures and EM's position-bias estimate
    "exposure": {"policy.name": "exposure_aware", "policy.debias": "exposure"},
    "position_ipw_em": {
        "policy.name": "position_ipw_em",
        "policy.debias": "position_ipw",
        "policy.ipw_propensity": "em",
    },
    # randomized re-ordering (policy.intervention) and the shuffled-slot counts it trains on
    "shuffle": {
        "policy.name": "randomized_topk",
        "policy.intervention": "shuffle",
        "policy.intervention_share": 0.5,
        "policy.debias": "position_ipw",
        "policy.ipw_propensity": "randomized",
    },
    # the world changes: preference drift, conformity (popularity) and DCM's second uniform,
    # with a deployment and a snapshot at the same hour
    "world_dynamics": {
        "world.drift_rate": 0.05,
        "world.conformity": 1.0,
        "world.click_model": "dcm",
        "sim.retrain_every_hours": 12,
        "sim.train_hours": 6,
        "sim.snapshot_every_hours": 6,
        "sim.max_batch_requests": 97,
    },
    # the serving system: servers' free times, the slate cache and its payload, the fallback
    # list, the service-time stream, and a diurnal profile with a flash crowd
    "serving_system": {
        "serving.model_servers": 1,
        "serving.latency_budget_ms": 60_000.0,
        "serving.service.mean_ms": 30_000.0,
        "serving.cache_ttl_hours": 3.0,
        "serving.cache_invalidate_on_deploy": False,
        "world.diurnal": "evening_peak",
        "world.flash_crowds": [{"start_hour": 30, "duration_hours": 3, "multiplier": 4.0}],
        "sim.max_batch_requests": 61,
    },
    # the snapshot at hour 49 was scheduled at hour 0, the deployment at 49 at the cut-off (48):
    # the snapshot records version 0; resumed in the processes' start order, it would record 1
    "snapshot_at_a_deployment": {"sim.snapshot_every_hours": 49},
    # onboarding (policies.onboarding): who was onboarded, the answers, the screens in force,
    # its own streams (sim.onboarding*), in a living world with new users
    "onboarding": {
        "onboarding.enabled": True,
        "world.user_arrival_rate": 40.0,
        "world.item_arrival_rate": 5.0,
    },
    # hours that are not binary fractions: a resumed wake-up must land on the very same float
    # cross-domain transfer: the seeder (B profiles, the last map) and users who join later
    "transfer": {"world.user_arrival_rate": 40.0, "transfer.enabled": True},
    # users who get bored, leave and come back, and clicks that convert later
    # (agents.engagement, agents.conversions): satisfaction, churned flags, satiation, the
    # world.churn and world.conversions streams and the pending conversions at the pause
    "engagement_and_conversions": {
        "world.churn": {"base_rate": 0.05, "sensitivity": 5.0},
        "world.return_rate": 0.3,
        "world.satisfaction": {"memory": 0.3, "reference": 0.15, "session_sensitivity": 1.0},
        "world.satiation": 0.4,
        "world.conversion": {"base": 0.2, "relevance_weight": 1.0, "price_weight": 0.5},
        "world.conversion_delay": {"distribution": "lognormal", "mean_hours": 30.0, "shape": 1.0},
        "world.user_arrival_rate": 20.0,
        "sim.max_batch_requests": 53,
    },
    "fractional_hours": {
        "sim.retrain_every_hours": 7.3,
        "sim.train_hours": 0.7,
        "sim.snapshot_every_hours": 5.1,
    },
}


def _files(run_dir: Path) -> dict[str, bytes]:
    paths = [*sorted((run_dir / "logs").rglob("*.parquet")), run_dir / "metrics.parquet"]
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in paths}


def _assert_same_files(expected: Path, got: Path) -> None:
    want, have = _files(expected), _files(got)
    assert sorted(have) == sorted(want)
    different = [name for name in want if have[name] != want[name]]
    assert not different, f"{got.name} differs from {expected.name} in {different}"


def _paused_copy_continued(
    tmp_path: Path,
    cfg: dict[str, Any],
    pause_at: float,
    **run_kwargs: Any,
) -> tuple[Path, Path, Path]:
    """An uninterrupted run, and the same run paused at ``pause_at``, deep-copied, then the copy
    and the original both continued (the copy first: it must share nothing with the original)."""
    rc = parse_config(cfg)
    whole = tmp_path / "whole"
    run(cfg, whole, **run_kwargs)
    original, copied = tmp_path / "original", tmp_path / "copy"
    first = build_simulation(rc, original / "logs", **run_kwargs)
    first.run(until=pause_at)
    assert not first.state.done
    assert first.state.in_training is not None  # paused after the cut-off, before deployment
    state = copy.deepcopy(first.state)
    shutil.copytree(original / "logs", copied / "logs")
    switch = run_kwargs.get("switch")
    second = build_simulation(rc, copied / "logs", switch=switch, state=state)
    for simulation, out in ((second, copied), (first, original)):
        simulation.run()
        write_outputs(rc, simulation, out, time.perf_counter())
    return whole, original, copied


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_copied_state_continues_like_the_uninterrupted_run(case, tmp_path):
    whole, original, copied = _paused_copy_continued(tmp_path, tiny_config(**CASES[case]), 40.0)
    _assert_same_files(whole, original)
    _assert_same_files(whole, copied)


def test_off_policy_switch_and_shadow_replay_survive_a_pause(tmp_path):
    """OPE: shadow targets replayed with their own randomness, and a selector switch still
    pending at the pause."""
    cfg = tiny_config(
        **{
            "policy.name": "epsilon_greedy",
            "policy.selector": "epsilon_greedy",
            "policy.epsilon": 0.2,
        }
    )
    target = Softmax(slate_size=5, temperature=0.05, mc_samples=200)
    whole, original, copied = _paused_copy_continued(
        tmp_path,
        cfg,
        48.0,
        shadow_targets={"softmax": target},
        switch=(61.0, Target("greedy", Greedy(5))),
    )
    assert (whole / "logs" / "targets").is_dir()
    _assert_same_files(whole, original)
    _assert_same_files(whole, copied)


def test_pauses_at_the_first_cutoff_at_or_after_the_hour_and_continues_in_steps(tmp_path):
    cfg = tiny_config(**{"world.drift_rate": 0.05, "policy.selector": "epsilon_greedy"})
    rc = parse_config(cfg)
    run(cfg, tmp_path / "whole")
    simulation = build_simulation(rc, tmp_path / "steps" / "logs")
    # the first cut-off that runs at or after the hour: 24 has run when asked for 24 again
    for until, cutoff in ((1.0, 24.0), (24.0, 48.0), (72.0, 72.0)):
        simulation.run(until=until)
        assert simulation.state.now == cutoff
        assert simulation.state.counters.log_round == cutoff // 24  # that round is written
        assert (
            tmp_path / "steps" / "logs" / "impressions" / f"round={int(cutoff // 24) - 1:04d}"
        ).is_dir()
    # no boundary left after the last cut-off (72): runs to the end
    simulation.run(until=80.0)
    assert simulation.state.done
    write_outputs(rc, simulation, tmp_path / "steps", time.perf_counter())
    _assert_same_files(tmp_path / "whole", tmp_path / "steps")
    with pytest.raises(RuntimeError, match="finished"):
        simulation.run()


def test_a_state_continues_only_with_the_same_processes(tmp_path):
    rc = parse_config(tiny_config())
    simulation = build_simulation(rc, tmp_path / "logs")
    simulation.run(until=24.0)
    with pytest.raises(ValueError, match="fail_at_hour and switch"):
        Simulation(copy.deepcopy(simulation.state), rc.sim, tmp_path / "other", fail_at_hour=30.0)
