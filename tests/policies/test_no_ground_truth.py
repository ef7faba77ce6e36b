"""Policies see logs and item metadata only, never ground truth.

The static rule (no policy module imports the simulator or the world's ground truth; of
``agents`` only ``agents.catalog`` and ``agents.validation``) is checked with every other layer
rule in ``tests/test_layering.py``. Here: importing policies loads no simulator module, and the
oracle is the one flagged exception, getting truth only through the callback ``sim`` hands it.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from conftest import policy_config

from policies import Interactions, build_policy
from policies.als import ALSScorer
from policies.baselines import OracleScorer, PopularityScorer, RandomScorer
from policies.randomness import Randomness


def test_importing_policies_does_not_load_the_simulator():
    code = (
        "import sys, policies, policies.policy, policies.selection, policies.exclusion, "
        "policies.als, policies.baselines, policies.models, policies.interactions\n"
        "print(','.join(sorted(m for m in sys.modules if m == 'sim' or m.startswith('sim.'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"policies loaded ground-truth modules: {out.stdout}"


def test_only_the_oracle_scorer_uses_ground_truth():
    def truth(user_ids):  # pragma: no cover - never called here
        raise AssertionError

    assert OracleScorer(relevance=truth).uses_ground_truth is True
    for scorer in (ALSScorer(), PopularityScorer(), RandomScorer()):
        assert getattr(scorer, "uses_ground_truth", False) is False, type(scorer).__name__


@pytest.mark.parametrize(
    ("scorer", "selector"),
    [
        ("als", "greedy"),
        ("als", "epsilon_greedy"),
        ("popularity", "greedy"),
        ("random", "uniform"),
        ("oracle", "greedy"),
    ],
)
def test_truth_callback_reaches_only_the_oracle(scorer, selector):
    n_users, n_items, k = 20, 15, 3
    calls = []

    def truth(user_ids):
        calls.append(np.asarray(user_ids).copy())
        return np.tile(np.linspace(0.0, 1.0, n_items), (len(user_ids), 1))

    config = policy_config(
        name=scorer,
        scorer=scorer,
        selector=selector,
        slate_size=k,
        n_candidates=5,
        factors=2,
        lenient=True,
    )
    policy = build_policy(config, n_items, n_users, seed=0, relevance=truth)
    assert getattr(policy.scorer, "uses_ground_truth", False) is (scorer == "oracle")
    assert getattr(policy.bootstrap.scorer, "uses_ground_truth", False) is False
    rng = np.random.default_rng(0)
    users = np.arange(n_users)
    policy.serve(users, Randomness.from_seed(0))  # bootstrap: never truth
    assert calls == []
    inter = Interactions.from_pairs(
        rng.integers(0, n_users, 40), rng.integers(0, n_items, 40), n_users, n_items
    )
    policy.deploy(policy.fit(inter, version=0))
    batch = policy.serve(users, Randomness.from_seed(1))
    if scorer == "oracle":
        assert calls, "the oracle must rank by the truth callback"
        # truth increases with item id: the oracle shows the best unclicked items, best first
        seen = inter.clicks.toarray() > 0
        for u in users:
            best = [i for i in range(n_items - 1, -1, -1) if not seen[u, i]][:k]
            assert batch.items[u].tolist() == best
    else:
        assert calls == [], f"{scorer} policy called the ground-truth callback"
