"""Replaying a selector on a logged slate gives the propensities that selector would have logged."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from policies.exclusion import PAD
from policies.plackett_luce import Softmax
from policies.randomness import Randomness
from policies.replay import slate_probabilities

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples" / "explore_slot"))
from explore_slot import ExploreSlot

from policies.selection import EpsilonGreedy, Greedy, SelectionContext, UniformRandom

K, C, N_ITEMS, N = 3, 6, 25, 400


def _context(seed: int = 0) -> SelectionContext:
    rng = np.random.default_rng(seed)
    excluded = np.full((N, 4), PAD)
    candidates = np.empty((N, C), dtype=np.int64)
    for r in range(N):  # building test inputs, not code under test
        ex = np.sort(rng.choice(N_ITEMS, rng.integers(0, 5), replace=False))
        excluded[r, : ex.size] = ex
        allowed = np.setdiff1d(np.arange(N_ITEMS), ex)
        candidates[r] = rng.choice(allowed, C, replace=False)
    scores = -np.sort(-rng.normal(size=(N, C)), axis=1).astype(np.float32)
    return SelectionContext(
        user_ids=np.arange(N),
        candidates=candidates,
        scores=scores,
        excluded=excluded,
        n_items=N_ITEMS,
        model=None,
        model_version=2,
        item_impressions=np.ones(N_ITEMS),
    )


SELECTORS = {
    "greedy": Greedy(K),
    "epsilon_greedy": EpsilonGreedy(K, 0.3),
    "uniform": UniformRandom(K),
    "softmax": Softmax(K, 0.5, 4000),
    "example_explore_slot": ExploreSlot(K, slots=2),  # a user's component (examples/)
}


@pytest.mark.parametrize("name", sorted(SELECTORS))
def test_replaying_a_selector_on_its_own_draw_gives_its_logged_propensities(name):
    sel, ctx = SELECTORS[name], _context()
    drawn = sel.select(ctx, Randomness.from_seed(1))
    marginal, prefix = slate_probabilities(sel, ctx, drawn.items, Randomness.from_seed(2))
    np.testing.assert_allclose(prefix, drawn.prefix_propensity, rtol=1e-12)
    if name == "softmax":  # marginals past slot 0 are independent Monte-Carlo estimates
        np.testing.assert_allclose(marginal[:, 0], drawn.propensity[:, 0], rtol=1e-12)
        se = np.sqrt(marginal * (1 - marginal) / 4000) + np.sqrt(
            drawn.propensity * (1 - drawn.propensity) / 4000
        )
        assert np.all(np.abs(marginal - drawn.propensity) <= 6 * se + 1e-3)
    else:
        np.testing.assert_allclose(marginal, drawn.propensity, rtol=1e-12)


def test_a_slate_the_target_cannot_draw_has_probability_zero():
    ctx = _context(1)
    explored = EpsilonGreedy(K, 1.0).select(ctx, Randomness.from_seed(3)).items
    marginal, prefix = slate_probabilities(Greedy(K), ctx, explored)
    assert (prefix[:, -1] == 0).all() and (marginal == 0).all()  # no greedy item anywhere
    # repeated or excluded items are impossible for every target
    bad = ctx.candidates[:, :K].copy()
    bad[:, 1] = bad[:, 0]
    for sel in (EpsilonGreedy(K, 0.3), UniformRandom(K)):
        _, prefix = slate_probabilities(sel, ctx, bad)
        assert (prefix[:, 1:] == 0).all()
    rows = np.flatnonzero(ctx.excluded[:, 0] < PAD)
    shown = ctx.candidates[:, :K].copy()
    shown[rows, 2] = ctx.excluded[rows, 0]
    marginal, prefix = slate_probabilities(UniformRandom(K), ctx, shown)
    assert (marginal[rows, 2] == 0).all() and (prefix[rows, 2] == 0).all()


def test_epsilon_greedy_replay_matches_frequencies_of_its_own_draws():
    """Marginals of a *fixed* logged slate under ε-greedy against the target's empirical draws."""
    ctx = _context(2)
    one = SelectionContext(
        **{
            **ctx.__dict__,
            "user_ids": np.zeros(20_000, np.int64),
            "candidates": np.repeat(ctx.candidates[:1], 20_000, 0),
            "scores": np.repeat(ctx.scores[:1], 20_000, 0),
            "excluded": np.repeat(ctx.excluded[:1], 20_000, 0),
        }
    )
    sel = EpsilonGreedy(K, 0.4)
    draws = sel.select(one, Randomness.from_seed(5)).items
    marginal, _ = slate_probabilities(sel, one, draws)
    for slot in range(K):
        for item in np.unique(draws[:, slot])[:5]:
            freq = np.mean(draws[:, slot] == item)
            p = marginal[draws[:, slot] == item, slot][0]
            assert abs(freq - p) < 5 * np.sqrt(p * (1 - p) / 20_000) + 1e-9, (slot, item)


def test_unsupported_selector_and_shape_errors():
    ctx = _context()
    with pytest.raises(ValueError, match="items: shape"):
        slate_probabilities(Greedy(K), ctx, ctx.candidates[:, :2])
    with pytest.raises(ValueError, match="pass rand"):
        slate_probabilities(Softmax(K, 0.5, 10), ctx, ctx.candidates[:, :K])


class _Posterior:
    """A fake model with a posterior over the candidates' scores: mean + Gᵀz."""

    def __init__(self, ctx: SelectionContext, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.mean = ctx.scores.astype(np.float64)
        self.g = rng.normal(0, 0.4, (ctx.n, 3, ctx.candidates.shape[1]))

    def score_distribution(self, user_ids, candidates):
        return self.mean, self.g


def test_ucb_and_thompson_replay_match_their_own_draws():
    from policies.posterior_sampling import UCB, Thompson

    base = _context(3)
    ctx = SelectionContext(**{**base.__dict__, "model": None})
    ctx = SelectionContext(**{**ctx.__dict__, "model": _Posterior(ctx)})
    ucb = UCB(K, 1.0)
    drawn = ucb.select(ctx, Randomness.from_seed(1))
    marginal, prefix = slate_probabilities(ucb, ctx, drawn.items)
    np.testing.assert_array_equal(marginal, 1.0)
    np.testing.assert_array_equal(prefix, 1.0)
    m = 3000
    ts = Thompson(K, 1.0, m)
    drawn = ts.select(ctx, Randomness.from_seed(2))
    marginal, prefix = slate_probabilities(ts, ctx, drawn.items, Randomness.from_seed(9))
    # two independent Monte-Carlo estimates of the same probabilities (the selector's own
    # counts its shown slate as one of M + 1 samples)
    for ours, theirs in ((marginal, drawn.propensity), (prefix, drawn.prefix_propensity)):
        se = np.sqrt(ours * (1 - ours) / m) + np.sqrt(theirs * (1 - theirs) / (m + 1))
        assert np.all(np.abs(ours - theirs) <= 6 * se + 2.0 / m)
