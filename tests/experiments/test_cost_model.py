"""The cost model: what it predicts is what the simulator does (requests, retrains), its shape
is right (linear in users, retraining cost growing with the horizon), and a preset without a
calibration is estimated like a calibrated one and says so."""

from __future__ import annotations

import json

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from experiments import cost_calibration
from experiments.cost_model import (
    estimate_job,
    estimate_sweep,
    fmt_bytes,
    fmt_duration,
    policy_costs,
)
from experiments.run import run


def _cfg(**keys):
    cfg = {
        "policy": {"name": "greedy", "selector": {"_target_": "policies.selection.Greedy"}},
        "world": {"n_users": 2000, "n_items": 1000, "sessions_per_day": 1.0},
        "sim": {"days": 30, "retrain_every_hours": 24, "train_hours": 1.0},
    }
    for dotted, value in keys.items():
        section, _, key = dotted.partition("__")
        cfg[section][key] = value
    return cfg


def test_retrains_and_requests_are_what_a_run_does(tmp_path):
    from conftest import tiny_config

    cfg = tiny_config(**{"sim.days": 5, "sim.retrain_every_hours": 12})
    summary = run(cfg, tmp_path / "run")
    deployed = pl.read_parquet(tmp_path / "run" / "logs" / "deployments.parquet").height
    est = estimate_job(cfg)
    costs, _ = policy_costs(cfg)
    # the model's retrain count reproduces the engine's schedule
    expected_retrains = int((5 * 24 - cfg["sim"]["train_hours"]) // 12)
    assert deployed == expected_retrains
    # expected requests: n_users · sessions_per_day · days; the run draws Poisson sessions
    n = cfg["world"]["n_users"] * cfg["world"]["sessions_per_day"] * 5
    assert est.requests == pytest.approx(n)
    assert summary["n_requests"] == pytest.approx(n, rel=0.25)
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["status"] == "complete"
    assert costs is cost_calibration.PRESETS["greedy"]


@settings(max_examples=40, deadline=None)
@given(users=st.integers(100, 50_000), days=st.integers(2, 120))
def test_cost_grows_with_users_and_faster_than_linearly_with_days(users, days):
    one = estimate_job(_cfg(world__n_users=users, sim__days=days))
    double_users = estimate_job(_cfg(world__n_users=2 * users, sim__days=days))
    double_days = estimate_job(_cfg(world__n_users=users, sim__days=2 * days))
    overhead = cost_calibration.JOB_OVERHEAD_S
    assert double_users.seconds - overhead == pytest.approx(
        2 * (one.seconds - overhead) - _fixed_retrain_cost(days), rel=1e-9
    )
    # retrains refit the whole history: doubling the horizon more than doubles the variable part
    assert double_days.seconds - overhead >= 2 * (one.seconds - overhead) - 1e-9
    assert double_users.bytes > one.bytes and double_days.bytes > one.bytes


def _fixed_retrain_cost(days):
    n_retrains = int((days * 24 - 1.0) // 24)
    return n_retrains * cost_calibration.PRESETS["greedy"]["fit_s"]


def test_a_preset_without_calibration_is_estimated_like_its_selector():
    calibrated = cost_calibration.PRESETS
    selector = calibrated["thompson"]["selector"]
    cfg = _cfg()
    cfg["policy"] = {"name": "my_thompson", "selector": {"_target_": f"x.y.{selector}"}}
    est = estimate_job(cfg)
    assert est.calibrated_as == "thompson"
    assert est.seconds == pytest.approx(estimate_job(_cfg(policy__name="thompson")).seconds)
    cfg["policy"] = {"name": "mystery", "selector": {"_target_": "x.Unknown"}}
    assert estimate_job(cfg).calibrated_as == "greedy"
    sweep = estimate_sweep([cfg, _cfg()])
    assert sweep.uncalibrated == (("mystery", "greedy"),)
    assert sweep.seconds == pytest.approx(
        cost_calibration.SWEEP_OVERHEAD_S + sum(j.seconds for j in sweep.jobs)
    )


@pytest.mark.parametrize(
    ("group", "variant"),
    [("rerank", "greedy+rerank=learned"), ("retrieve", "greedy+retrieve=mixed")],
)
def test_a_swapped_component_adds_its_calibrated_cost_to_any_preset(group, variant):
    """A learned reranker or a retriever mix costs what its calibrated variant costs over greedy,
    on top of whichever preset uses it (softmax here: not the variant's own base)."""
    presets = cost_calibration.PRESETS
    measured = presets[variant]
    plain = _cfg(policy__name="softmax")
    swapped = _cfg(policy__name="softmax")
    swapped["policy"][group] = {"_target_": measured["target"]}
    base, _ = policy_costs(plain)
    costs, like = policy_costs(swapped)
    assert like is None
    for key in ("serve_s", "fit_s", "bytes_per_request"):
        expected = max(base[key] + measured[key] - presets["greedy"][key], 0.0)
        assert costs[key] == pytest.approx(expected), key
    assert estimate_job(swapped).seconds > estimate_job(plain).seconds
    # another class in the same group adds nothing
    swapped["policy"][group] = {"_target_": "my.own.Component"}
    assert policy_costs(swapped)[0] == base


def test_every_study_preset_is_calibrated():
    from omegaconf import OmegaConf

    from experiments.cli import _compose, _job_overrides

    for study in ("quickstart", "exploration", "models", "serving"):
        jobs, _ = _job_overrides([f"+study={study}", "seed=0"])
        for overrides in jobs:
            cfg = OmegaConf.to_container(_compose(overrides), resolve=True)
            assert estimate_job(cfg).calibrated_as is None, (study, overrides)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.4, "0 s"), (42, "42 s"), (185, "3 min 05 s"), (4320, "1 h 12 min")],
)
def test_fmt_duration(seconds, text):
    assert fmt_duration(seconds) == text


def test_fmt_bytes():
    assert [fmt_bytes(x) for x in (512, 1_500, 2_500_000, 3.2e9)] == [
        "512 B",
        "1.5 kB",
        "2.5 MB",
        "3.2 GB",
    ]
