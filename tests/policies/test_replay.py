"""Replaying a selector on a logged slate gives the propensities that selector would have logged:
on its own draws, and on slates other policies drew (against enumeration and independent sampling)."""

from __future__ import annotations

import itertools
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


# --- Replay of slates another policy drew, against independent computations -------------------
# The tests above replay a selector on its own draws, so a mistake shared by `select` and
# `probabilities` cancels. Here the logged slates come from other policies (and include slates
# the target can never draw); the reference is computed from the definitions, not the code.

FK, FC, F_ITEMS, FN = 3, 5, 12, 60  # slate, candidates, catalog, requests
MC = 4000  # the target's Monte-Carlo samples per request


def _foreign_context(seed: int) -> SelectionContext:
    """Small requests with a few excluded items, so most of the catalog is not a candidate."""
    rng = np.random.default_rng(seed)
    excluded = np.full((FN, 2), PAD)
    candidates = np.empty((FN, FC), dtype=np.int64)
    for r in range(FN):
        ex = np.sort(rng.choice(F_ITEMS, rng.integers(0, 3), replace=False))
        excluded[r, : ex.size] = ex
        candidates[r] = rng.choice(np.setdiff1d(np.arange(F_ITEMS), ex), FC, replace=False)
    scores = -np.sort(-rng.normal(size=(FN, FC)), axis=1)
    return SelectionContext(
        user_ids=np.arange(FN),
        candidates=candidates,
        scores=scores,
        excluded=excluded,
        n_items=F_ITEMS,
        model=None,
        model_version=1,
        item_impressions=np.ones(F_ITEMS),
    )


def _foreign_slates(
    ctx: SelectionContext, seed: int, target: np.ndarray | None = None
) -> np.ndarray:
    """Logged slates of other policies, one kind per request in turn: a uniformly random ordered
    slate of the candidates, a uniform draw from the catalog, an ε-greedy draw (ε = 0.5), the
    greedy slate reversed, a slate repeating a candidate, and — given the target's own
    deterministic slate ``target`` — that slate with its last slot swapped for a non-candidate."""
    rng = np.random.default_rng(seed)
    uniform = UniformRandom(FK).select(ctx, Randomness.from_seed(seed)).items
    eps = EpsilonGreedy(FK, 0.5).select(ctx, Randomness.from_seed(seed + 1)).items
    kinds = 6 if target is not None else 5
    slates = np.empty((ctx.n, FK), dtype=np.int64)
    for r in range(ctx.n):
        cand = ctx.candidates[r]
        kind = r % kinds
        if kind == 0:
            slates[r] = rng.permutation(cand)[:FK]
        elif kind == 1:
            slates[r] = uniform[r]
        elif kind == 2:
            slates[r] = eps[r]
        elif kind == 3:
            slates[r] = cand[:FK][::-1]
        elif kind == 4:
            a, b = rng.choice(cand, 2, replace=False)
            slates[r] = [a, a, b]
        else:
            outside = np.setdiff1d(np.arange(F_ITEMS), cand)
            slates[r] = [*target[r, :-1], rng.choice(outside)]
    return slates


def _index_in(candidates: np.ndarray, slates: np.ndarray) -> np.ndarray:
    """Candidate index of each logged item, -1 if it is not a candidate (written out)."""
    out = np.full(slates.shape, -1)
    for r in range(slates.shape[0]):
        for k in range(slates.shape[1]):
            hit = np.flatnonzero(candidates[r] == slates[r, k])
            if hit.size:
                out[r, k] = hit[0]
    return out


def _plackett_luce_enumeration(
    scores: np.ndarray, temperature: float, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Every ordered k-slate of the C candidates with its Plackett–Luce probability under weights
    ``exp(score / T)``: ``Π_j w_{s_j} / (W − Σ_{l<j} w_{s_l})``. Returns (P, k) slates and (n, P)
    probabilities."""
    perms = np.array(list(itertools.permutations(range(scores.shape[1]), k)))
    probs = np.ones((scores.shape[0], perms.shape[0]))
    for r in range(scores.shape[0]):
        w = np.exp(scores[r].astype(np.float64) / temperature)
        for p, perm in enumerate(perms):
            left = w.sum()
            for c in perm:
                probs[r, p] *= w[c] / left
                left -= w[c]
    return perms, probs


def _distribution_probabilities(
    perms: np.ndarray, probs: np.ndarray, index: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Exact marginals and prefixes of the logged slates (candidate indices ``index``, -1 for a
    non-candidate) under a distribution over ordered slates, by summing the enumeration."""
    marginal = np.zeros(index.shape)
    prefix = np.zeros(index.shape)
    for r in range(index.shape[0]):
        for k in range(index.shape[1]):
            marginal[r, k] = probs[r, perms[:, k] == index[r, k]].sum()
            same = (perms[:, : k + 1] == index[r, : k + 1]).all(axis=1)
            prefix[r, k] = probs[r, same].sum()
    return marginal, prefix


def _check_monte_carlo(estimate: np.ndarray, exact: np.ndarray, m: int) -> None:
    """An ``m``-sample frequency against its exact probability. Tolerance: 5 binomial standard
    errors (a false failure per comparison ~6e-7, ~2e-4 over the few hundred compared here)
    plus 2/m, which covers the normal approximation's error when m·p is a handful of hits. (The
    three tests below also pass with 30 other sets of seeds.)"""
    se = np.sqrt(exact * (1 - exact) / m)
    bad = np.abs(estimate - exact) > 5 * se + 2.0 / m
    assert not bad.any(), (np.argwhere(bad)[:5], estimate[bad][:5], exact[bad][:5])


def test_softmax_replay_of_foreign_slates_matches_plackett_luce_enumeration():
    """Exact prefixes and first-slot marginals; later marginals within their Monte-Carlo error."""
    ctx, temperature = _foreign_context(11), 0.5
    slates = _foreign_slates(ctx, seed=12)
    index = _index_in(ctx.candidates, slates)
    perms, probs = _plackett_luce_enumeration(ctx.scores, temperature, FK)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-12)
    want_marginal, want_prefix = _distribution_probabilities(perms, probs, index)

    sel = Softmax(FK, temperature, MC)
    marginal, prefix = slate_probabilities(sel, ctx, slates, Randomness.from_seed(13))
    np.testing.assert_allclose(prefix, want_prefix, rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(marginal[:, 0], want_marginal[:, 0], rtol=1e-9, atol=1e-15)
    _check_monte_carlo(marginal[:, 1:], want_marginal[:, 1:], MC)
    # an item the target cannot show in a slot has probability exactly 0 there
    assert (marginal[want_marginal == 0] == 0).all() and (prefix[want_prefix == 0] == 0).all()
    # the check is not vacuous: possible and impossible slates, whole and cut short
    assert (want_prefix[:, -1] > 0).sum() >= 10 and (index == -1).sum() >= 20
    assert ((want_prefix[:, 0] > 0) & (want_prefix[:, -1] == 0)).sum() >= 10


def test_ucb_replay_of_foreign_slates_matches_its_independent_ranking():
    """UCB is deterministic: the enumeration is one slate of probability 1, ranked here by
    ``mean + β·sd`` with ``sd² = Σ_f G_fc²`` (the diagonal of ``GᵀG``)."""
    from policies.posterior_sampling import UCB

    base, beta = _foreign_context(21), 1.5
    model = _Posterior(base, seed=22)
    ctx = SelectionContext(**{**base.__dict__, "model": model})
    sd = np.sqrt((model.g**2).sum(axis=1))
    best = np.argsort(-(model.mean + beta * sd), axis=1)[:, :FK]
    target = np.take_along_axis(ctx.candidates, best, axis=1)
    assert (best != np.arange(FK)).any(axis=1).sum() >= FN // 3  # UCB reorders: not greedy
    slates = _foreign_slates(ctx, seed=23, target=target)
    slates[::7] = target[::7]  # and some requests logged exactly the target's slate
    want_marginal, want_prefix = np.zeros(slates.shape), np.zeros(slates.shape)
    for r in range(FN):  # each request's enumeration: its one slate (as items), probability 1
        m, p = _distribution_probabilities(target[r : r + 1], np.ones((1, 1)), slates[r : r + 1])
        want_marginal[r], want_prefix[r] = m[0], p[0]

    marginal, prefix = slate_probabilities(UCB(FK, beta), ctx, slates)
    np.testing.assert_array_equal(marginal, want_marginal)
    np.testing.assert_array_equal(prefix, want_prefix)
    assert want_prefix[:, -1].sum() >= FN // 7 and (want_prefix[:, 0] == 0).sum() >= FN // 3
    assert ((want_prefix[:, 1] == 1) & (want_prefix[:, 2] == 0)).sum() >= 5


def test_thompson_replay_of_foreign_slates_matches_independent_posterior_sampling():
    """Frequencies over the target's ``M`` fresh samples against our own sampler's ``S``
    (``draws = mean + β·Gᵀz``, ``z ~ N(0, I_f)``, ranked)."""
    from policies.posterior_sampling import Thompson

    base, beta, s = _foreign_context(31), 0.7, 20_000
    model = _Posterior(base, seed=32)
    ctx = SelectionContext(**{**base.__dict__, "model": model})
    slates = _foreign_slates(ctx, seed=33)
    index = _index_in(ctx.candidates, slates)
    rng = np.random.default_rng(34)
    want_marginal, want_prefix = np.zeros(slates.shape), np.zeros(slates.shape)
    for r in range(FN):
        z = rng.standard_normal((s, model.g.shape[1]))
        draws = model.mean[r] + beta * z @ model.g[r]  # (S, C)
        ranked = np.argsort(-draws, axis=1)[:, :FK]
        hits = ranked == index[r]
        want_marginal[r] = hits.mean(axis=0)
        want_prefix[r] = np.cumprod(hits, axis=1).mean(axis=0)

    sel = Thompson(FK, beta, MC)
    marginal, prefix = slate_probabilities(sel, ctx, slates, Randomness.from_seed(35))
    # Two independent frequencies of one probability p: the standard error of their difference
    # is sqrt(p(1-p)(1/M + 1/S)), p estimated by pooling both; the same 5 SE + 2/M as above.
    for ours, ref in ((marginal, want_marginal), (prefix, want_prefix)):
        pooled = (ours * MC + ref * s) / (MC + s)
        se = np.sqrt(pooled * (1 - pooled) * (1 / MC + 1 / s))
        bad = np.abs(ours - ref) > 5 * se + 2.0 / MC
        assert not bad.any(), (np.argwhere(bad)[:5], ours[bad][:5], ref[bad][:5])
    # a non-candidate, or a slot repeating an earlier item, is never drawn: exactly 0
    never = index == -1
    assert never.sum() >= 20 and (marginal[never] == 0).all()
    repeats = slates[:, 0] == slates[:, 1]
    assert repeats.sum() >= 10 and (prefix[repeats, 1:] == 0).all()
    assert (want_prefix[:, -1] > 0).sum() >= 8 and (want_marginal > 0.05).sum() >= 60
