"""The phenomenon recloop exists to show: a greedy loop narrows the catalog; exploration widens it."""

from __future__ import annotations

import json

import pytest

WORLD = {
    "world__n_users": 800,
    "world__n_items": 400,
    "sim__days": 10,
    "policy__slate_size": 10,
    "policy__n_candidates": 30,
    "policy__factors": 16,
}
POLICIES = {
    "greedy": {"policy__name": "greedy"},
    "epsilon_greedy": {
        "policy__name": "epsilon_greedy",
        "policy__selector": "epsilon_greedy",
        "policy__epsilon": 0.1,
    },
    "random": {"policy__name": "random", "policy__scorer": "random", "policy__selector": "uniform"},
    "oracle": {"policy__name": "oracle", "policy__scorer": "oracle"},
}


@pytest.fixture(scope="module")
def finals(tmp_path_factory):
    from conftest import tiny_config

    from experiments.run import run

    out = {}
    for name, overrides in POLICIES.items():
        cfg = tiny_config(**{k.replace("__", "."): v for k, v in {**WORLD, **overrides}.items()})
        run_dir = tmp_path_factory.mktemp(name)
        run(cfg, run_dir / "run")
        out[name] = json.loads((run_dir / "run" / "summary.json").read_text())
    return out


@pytest.mark.slow
def test_greedy_concentrates_exposure_and_exploration_lies_between(finals):
    gini = {k: v["final"]["gini_exposure"] for k, v in finals.items()}
    coverage = {k: v["final"]["coverage_exposure"] for k, v in finals.items()}
    assert gini["greedy"] > gini["epsilon_greedy"] + 0.05 > gini["random"] + 0.1, gini
    assert coverage["greedy"] < coverage["epsilon_greedy"] - 0.1, coverage
    assert coverage["epsilon_greedy"] <= coverage["random"], coverage
    assert (
        finals["greedy"]["final"]["popularity_drift"]
        > finals["random"]["final"]["popularity_drift"] + 0.1
    )


@pytest.mark.slow
def test_oracle_bounds_the_utility_of_real_policies(finals):
    utility = {k: v["mean"]["utility"] for k, v in finals.items()}
    assert utility["oracle"] > utility["greedy"] > utility["random"], utility
    assert utility["oracle"] > utility["epsilon_greedy"] > utility["random"], utility
