"""Randomized interventions: logged propensities against a brute-force enumeration of outcomes."""

from __future__ import annotations

import itertools
import re
from collections import Counter

import numpy as np
import pytest
from conftest import policy_config

from experiments.config import build_policy_config
from policies.intervention import INTERVENTION_CODE, Intervention
from policies.selection import Selection


def _greedy_selection(n: int, k: int) -> Selection:
    items = np.tile(np.arange(100, 100 + k, dtype=np.int64), (n, 1))  # greedy slot j holds 100+j
    ones = np.ones((n, k))
    show = np.ones((n, k))
    return Selection(items, ones, ones, np.zeros((n, k), dtype=bool), show, "exact")


def _outcomes(kind: str, share: float, k: int) -> dict[tuple[int, ...], float]:
    """Every order of the greedy slate (as greedy slots) with its probability, enumerated."""
    identity = tuple(range(k))
    out: Counter = Counter({identity: 1.0 - share})
    if kind == "shuffle":
        perms = list(itertools.permutations(range(k)))
        for p in perms:
            out[p] += share / len(perms)
    else:
        for m in range(1, k):
            p = list(identity)
            p[0], p[m] = p[m], p[0]
            out[tuple(p)] += share / (k - 1)
    return dict(out)


@pytest.mark.parametrize("kind", ["shuffle", "swap"])
@pytest.mark.parametrize("share", [0.0, 0.3, 1.0])
@pytest.mark.parametrize("k", [2, 4])
def test_logged_propensities_match_enumeration(kind, share, k):
    outcomes = _outcomes(kind, share, k)
    marginal = Counter()  # (greedy slot j, shown slot t) -> probability
    for order, prob in outcomes.items():
        for t, j in enumerate(order):
            marginal[(j, t)] += prob
    n = 400
    got = Intervention(k, kind, share).apply(_greedy_selection(n, k), np.random.default_rng(0))
    order = got.original_position.astype(int)
    np.testing.assert_array_equal(got.selection.items, 100 + order)
    for r in range(n):
        shown = tuple(order[r])
        assert shown in outcomes, shown
        for t in range(k):
            assert got.selection.propensity[r, t] == pytest.approx(marginal[(shown[t], t)], 1e-12)
            prefix = sum(p for o, p in outcomes.items() if o[: t + 1] == shown[: t + 1])
            assert got.selection.prefix_propensity[r, t] == pytest.approx(prefix, abs=1e-12)
        moved = shown != tuple(range(k))
        assert got.kind[r] in (
            (INTERVENTION_CODE[kind],) if moved else (0, INTERVENTION_CODE[kind])
        )
        np.testing.assert_array_equal(got.selection.explored[r], order[r] != np.arange(k))


@pytest.mark.parametrize("kind", ["shuffle", "swap"])
def test_outcome_frequencies_match_enumeration(kind):
    k, share, n = 4, 0.5, 40_000
    outcomes = _outcomes(kind, share, k)
    got = Intervention(k, kind, share).apply(_greedy_selection(n, k), np.random.default_rng(1))
    counts = Counter(map(tuple, got.original_position.astype(int).tolist()))
    assert set(counts) <= set(outcomes)
    for order, prob in outcomes.items():
        sd = np.sqrt(prob * (1 - prob) / n)
        assert abs(counts[order] / n - prob) < 5 * sd + 1e-12, (order, counts[order] / n, prob)
    on = got.kind == INTERVENTION_CODE[kind]
    assert abs(on.mean() - share) < 5 * np.sqrt(share * (1 - share) / n)


def test_draws_are_a_fixed_block_per_request():
    sel = _greedy_selection(300, 5)
    whole = Intervention(5, "swap", 0.4).apply(sel, np.random.default_rng(7))
    rng = np.random.default_rng(7)
    parts = [
        Intervention(5, "swap", 0.4).apply(_greedy_selection(m, 5), rng) for m in (1, 120, 179)
    ]
    np.testing.assert_array_equal(
        whole.original_position, np.concatenate([p.original_position for p in parts])
    )


def test_non_deterministic_base_is_rejected():
    sel = _greedy_selection(3, 3)
    half = Selection(
        sel.items,
        sel.propensity * 0.5,
        sel.prefix_propensity * 0.5,
        sel.explored,
        sel.candidate_show_probability,
        "exact",
    )
    with pytest.raises(ValueError, match=re.escape("policy.selector=greedy")):
        Intervention(3, "shuffle", 0.1).apply(half, np.random.default_rng(0))


@pytest.mark.parametrize(
    "overrides, key",
    [
        ({"intervention": "swap", "intervention_share": 1.5}, "policy.intervention.share=1.5"),
        (
            {"intervention": "swap", "selector": "epsilon_greedy"},
            "policy.intervention.kind='swap'",
        ),
    ],
)
def test_config_errors_name_the_key(overrides, key):
    with pytest.raises(ValueError, match=re.escape(key)):
        policy_config(**overrides)


def test_unknown_intervention_kind_is_named():
    node = {"_target_": "policies.intervention.Intervention", "kind": "flip"}
    with pytest.raises(ValueError, match=re.escape("policy.intervention.kind='flip'")):
        build_policy_config(
            {"name": "p", "scorer": "als", "selector": "greedy", "intervention": node}
        )
