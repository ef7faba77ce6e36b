"""``Selector.first_slot``: the target's slot-0 distribution over the ranked candidates plus one
aggregate "any other item" action — what the OPE study's reward-model estimators (DM, DR, SNDR,
Switch-DR) average their model over.

Checked twice: against numbers worked out by hand here, and against the slot-0 marginals the
same selector's ``probabilities`` (the replay of a logged slate, an independent closed form) gives
every item of the catalog, on a context without filtered items, where ``first_slot`` is exact.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from policies.exclusion import PAD
from policies.exposure_boost import ExposureBoost
from policies.plackett_luce import Softmax
from policies.posterior_sampling import UCB, Thompson
from policies.randomness import Randomness
from policies.selection import EpsilonGreedy, Greedy, SelectionContext, Selector, UniformRandom

N_ITEMS, K = 10, 2
CANDIDATES = np.array([[3, 7, 0, 5], [1, 2, 9, 4]])  # (n, C), best first
# Exact in float32 (the candidates table's dtype), so the softmax numbers below are exact too.
SCORES = np.array([[2.0, 1.0, 0.5, -1.0], [0.75, 0.5, 0.5, -0.25]], dtype=np.float32)
C = CANDIDATES.shape[1]


def _softmax_row(logits: list[float]) -> list[float]:
    w = [math.exp(v) for v in logits]
    return [v / sum(w) for v in w]


# Columns: ranks 0..3, then "any other item" (the N_ITEMS - C = 6 non-candidates).
HAND = {
    # always rank 0
    "greedy": (Greedy(K), [[1, 0, 0, 0, 0]] * 2),
    # 1-ε on rank 0; ε uniformly over the pool outside the top K = 10 - 2 = 8 items: ranks 2 and 3
    # get 0.3/8 = 0.0375 each, the 6 non-candidates 6 · 0.0375 = 0.225; rank 1 (greedy slot 1)
    # can never be in slot 0
    "epsilon_greedy": (EpsilonGreedy(K, 0.3), [[0.7, 0, 0.0375, 0.0375, 0.225]] * 2),
    # 1/10 per item: 4 candidates, 6 others
    "uniform": (UniformRandom(K), [[0.1, 0.1, 0.1, 0.1, 0.6]] * 2),
    # w ∝ exp(score / 0.5) over the candidates only: logits (s - max) / 0.5
    "softmax": (
        Softmax(K, 0.5, 100),
        [
            [*_softmax_row([0.0, -2.0, -3.0, -6.0]), 0.0],
            [*_softmax_row([0.0, -0.5, -0.5, -2.0]), 0.0],
        ],
    ),
}


@pytest.mark.parametrize("name", list(HAND))
def test_first_slot_matches_hand_computation(name: str) -> None:
    selector, expected = HAND[name]
    assert selector.has_first_slot
    probs = selector.first_slot(SCORES, N_ITEMS)
    # normalized by the selector itself: the OPE study's renormalization must not be needed
    np.testing.assert_allclose(probs, np.array(expected, dtype=np.float64), rtol=0, atol=1e-15)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=0, atol=1e-15)


def test_selectors_needing_more_than_the_candidates_have_no_first_slot() -> None:
    # UCB and Thompson need the model's posterior; the boost selector the impression counts.
    for selector in (UCB(K, 1.0), Thompson(K, 1.0, 10), ExposureBoost(K, 1, 0.5)):
        assert not selector.has_first_slot, selector.label
        assert selector.first_slot(SCORES, N_ITEMS) is None


def _every_item_in_slot0() -> tuple[SelectionContext, np.ndarray]:
    """One row per (request, catalog item): the slate ``(item, another item)``; nothing filtered."""
    n = CANDIDATES.shape[0]
    rows = np.repeat(np.arange(n), N_ITEMS)
    first = np.tile(np.arange(N_ITEMS), n)
    slates = np.column_stack([first, (first + 1) % N_ITEMS])
    ctx = SelectionContext(
        user_ids=rows,
        candidates=CANDIDATES[rows],
        scores=SCORES[rows],
        excluded=np.full((rows.size, 1), PAD),
        n_items=N_ITEMS,
        model=None,  # type: ignore[arg-type]  (none of these selectors reads it)
        model_version=0,
        item_impressions=np.ones(N_ITEMS),
    )
    return ctx, slates


@pytest.mark.parametrize("name", list(HAND))
def test_first_slot_matches_the_replayed_slot0_marginals(name: str) -> None:
    selector: Selector = HAND[name][0]
    ctx, slates = _every_item_in_slot0()
    marginal, _ = selector.probabilities(ctx, slates, Randomness.from_seed(0))
    p_item = marginal[:, 0].reshape(CANDIDATES.shape[0], N_ITEMS)  # P(slot 0 = item)
    expected = np.zeros((CANDIDATES.shape[0], C + 1))
    for r in range(CANDIDATES.shape[0]):  # building the reference, not code under test
        others = np.setdiff1d(np.arange(N_ITEMS), CANDIDATES[r])
        expected[r, :C] = p_item[r, CANDIDATES[r]]
        expected[r, C] = p_item[r, others].sum()
    np.testing.assert_allclose(selector.first_slot(SCORES, N_ITEMS), expected, atol=1e-12)


@pytest.mark.parametrize("version", [0, 1, 9])
def test_epsilon_greedy_first_slot_uses_the_decayed_epsilon_of_the_serving_model(version):
    """The ``epsilon_decay`` preset explores with max(ε_min, ε·decay^v) at model version v: the
    first-slot distribution the reward-model estimators use must be that one too (it once used
    the undecayed ε: 0.70 instead of 0.811 on rank 0 at version 9)."""
    selector = EpsilonGreedy(K, 0.3, decay=0.95, epsilon_min=0.02)
    ctx, slates = _every_item_in_slot0()
    ctx = dataclasses.replace(ctx, model_version=version)
    marginal, _ = selector.probabilities(ctx, slates, Randomness.from_seed(0))
    p_item = marginal[:, 0].reshape(CANDIDATES.shape[0], N_ITEMS)
    probs = selector.first_slot(SCORES, N_ITEMS, version)
    np.testing.assert_allclose(
        probs[:, 0], p_item[np.arange(CANDIDATES.shape[0]), CANDIDATES[:, 0]]
    )
    assert probs[0, 0] == pytest.approx(1 - max(0.02, 0.3 * 0.95**version))
