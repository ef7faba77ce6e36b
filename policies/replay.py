"""Target-policy propensities of *logged* slates: replaying a selector on the logged context.

Off-policy estimators need ``π1(logged slate | context)`` for a target ``π1`` that did not serve.
A selector draws slates; this module instead *scores a given slate* under a selector, on the same
:class:`~policies.selection.SelectionContext` the logging policy saw. For every slot it returns
the target's marginal ``P(this item in this slot | context)`` and the prefix probability
``P(slots 0..k exactly as logged | context)`` — the same quantities the log holds for the logging
policy, so slot-level, prefix-level and whole-slate ratios can be formed.

What the context must hold (and so what a log must keep to replay from files): the deployed model
version (scores of the retrieved candidates, in rank order — the ``candidates`` table), the items
the request could not be shown (the user's already-clicked items known to that model), and the
catalog size. Greedy, ε-greedy and uniform need only those; softmax needs the candidates'
scores; UCB and Thompson also need the model's posterior (the live model object, which the
simulator has while it serves: the replay runs then).

Exact for greedy, UCB, ε-greedy and uniform; for softmax (Plackett–Luce) the prefix
probabilities are exact and the marginals past slot 0 are Monte-Carlo estimates from
``mc_samples`` fresh samples; for Thompson both are Monte-Carlo frequencies over ``mc_samples``
fresh posterior samples (so a logged slate no sample reproduces gets probability 0).
"""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp

from policies.exclusion import n_excluded
from policies.plackett_luce import MC_CHUNK, Softmax, sample_rankings, sequential_log_probs
from policies.posterior_sampling import UCB, Thompson, posterior_rankings, ucb_bound
from policies.propensity import top_k_indices
from policies.randomness import Randomness
from policies.selection import EpsilonGreedy, Greedy, SelectionContext, UniformRandom


def slate_probabilities(
    selector: object, ctx: SelectionContext, items: np.ndarray, rand: Randomness | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``(marginal, prefix)``, both (n, K) float64, of the logged ``items`` (n, K) under
    ``selector`` on ``ctx``. ``rand`` is needed only for Monte-Carlo marginals (softmax)."""
    items = np.asarray(items, dtype=np.int64)
    if items.shape != (ctx.n, selector.slate_size):
        raise ValueError(
            f"items: shape {items.shape} != (requests, slate_size) {(ctx.n, selector.slate_size)}"
        )
    if isinstance(selector, Greedy):
        same = items == ctx.candidates[:, : selector.slate_size]
        return same.astype(np.float64), np.cumprod(same, axis=1).astype(np.float64)
    if isinstance(selector, EpsilonGreedy):
        return _epsilon_greedy(selector, ctx, items)
    if isinstance(selector, UniformRandom):
        return _uniform(ctx, items)
    if isinstance(selector, Softmax):
        if rand is None:
            raise ValueError("softmax marginals are Monte-Carlo estimates: pass rand")
        return _softmax(selector, ctx, items, rand)
    if isinstance(selector, UCB):
        mean, g = ctx.model.score_distribution(ctx.user_ids, ctx.candidates)  # type: ignore[attr-defined]
        bound = ucb_bound(mean, g, selector.beta)
        top = np.take_along_axis(ctx.candidates, top_k_indices(bound, selector.slate_size), axis=1)
        same = items == top
        return same.astype(np.float64), np.cumprod(same, axis=1).astype(np.float64)
    if isinstance(selector, Thompson):
        if rand is None:
            raise ValueError("Thompson probabilities are Monte-Carlo estimates: pass rand")
        return _thompson(selector, ctx, items, rand)
    raise NotImplementedError(
        f"replaying {getattr(selector, 'name', type(selector).__name__)!r} on a logged slate "
        "is not supported (greedy, epsilon_greedy, uniform, softmax, ucb, thompson are)"
    )


def _member(sorted_rows: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``values[r, j]`` is in row ``r`` of ``sorted_rows`` (sorted, PAD-padded). Vectorized."""
    if sorted_rows.shape[1] == 0:
        return np.zeros(values.shape, dtype=bool)
    pos = np.empty(values.shape, dtype=np.int64)
    for j in range(values.shape[1]):  # K slots, vectorized over requests
        pos[:, j] = _row_searchsorted(sorted_rows, values[:, j])
    pos = np.minimum(pos, sorted_rows.shape[1] - 1)
    return np.take_along_axis(sorted_rows, pos, axis=1) == values


def _row_searchsorted(sorted_rows: np.ndarray, values: np.ndarray) -> np.ndarray:
    return (sorted_rows < values[:, None]).sum(axis=1)


def _distinct_before(items: np.ndarray) -> np.ndarray:
    """``True`` where a slot repeats an item of an earlier slot."""
    k = items.shape[1]
    repeat = np.zeros(items.shape, dtype=bool)
    for j in range(1, k):
        repeat[:, j] = (items[:, :j] == items[:, j : j + 1]).any(axis=1)
    return repeat


def _epsilon_greedy(
    sel: EpsilonGreedy, ctx: SelectionContext, items: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    k = sel.slate_size
    eps = sel.epsilon_at(ctx.model_version)
    greedy = ctx.candidates[:, :k]
    blocked = np.sort(np.concatenate([ctx.excluded, greedy], axis=1), axis=1)
    pool = (ctx.n_items - n_excluded(blocked)).astype(np.float64)  # |P|
    in_pool = ~_member(blocked, items) & (items >= 0) & (items < ctx.n_items)
    kept = items == greedy
    marginal = np.where(kept, 1.0 - eps, np.where(in_pool, eps / pool[:, None], 0.0))
    explored = in_pool & ~kept
    before = np.cumsum(explored, axis=1) - explored
    sequential = np.where(
        kept,
        1.0 - eps,
        np.where(explored & ~_distinct_before(items), eps / (pool[:, None] - before), 0.0),
    )
    return marginal, np.cumprod(sequential, axis=1)


def _uniform(ctx: SelectionContext, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    k = items.shape[1]
    eligible = (ctx.n_items - n_excluded(ctx.excluded)).astype(np.float64)
    ok = ~_member(ctx.excluded, items) & (items >= 0) & (items < ctx.n_items)
    marginal = np.where(ok, 1.0 / eligible[:, None], 0.0)
    sequential = np.where(
        ok & ~_distinct_before(items), 1.0 / (eligible[:, None] - np.arange(k)), 0.0
    )
    return marginal, np.cumprod(sequential, axis=1)


def _candidate_index(ctx: SelectionContext, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Whether each logged item was retrieved, and its candidate index (-1 if not: no sample
    ever draws it)."""
    match = ctx.candidates[:, :, None] == items[:, None, :]  # (n, C, K)
    found = match.any(axis=1)
    return found, np.where(found, match.argmax(axis=1), -1)


def _softmax(
    sel: Softmax, ctx: SelectionContext, items: np.ndarray, rand: Randomness
) -> tuple[np.ndarray, np.ndarray]:
    k = sel.slate_size
    scores = ctx.scores.astype(np.float64)
    logits = (scores - scores.max(axis=1, keepdims=True)) / sel.temperature
    found, index = _candidate_index(ctx, items)
    rows = np.arange(ctx.n)
    prefix = np.exp(np.cumsum(sequential_log_probs(logits, index, found), axis=1))
    # Marginals: Monte-Carlo frequencies of (slot, candidate) over fresh Plackett–Luce samples.
    marginal = np.zeros(items.shape)
    for lo in range(0, ctx.n, MC_CHUNK):
        samples = sample_rankings(logits[lo : lo + MC_CHUNK], k, sel.mc_samples, rand.monte_carlo)
        hits = samples == index[lo : lo + MC_CHUNK, None, :]
        marginal[lo : lo + MC_CHUNK] = hits.mean(axis=1)
    marginal = np.where(found, marginal, 0.0)
    first = np.exp(logits[rows, index[:, 0]] - logsumexp(logits, axis=1))
    marginal[:, 0] = np.where(found[:, 0], first, 0.0)  # exact
    return marginal, prefix


def _thompson(
    sel: Thompson, ctx: SelectionContext, items: np.ndarray, rand: Randomness
) -> tuple[np.ndarray, np.ndarray]:
    """Frequencies of the logged (slot, item) and prefixes over fresh posterior samples."""
    k = sel.slate_size
    mean, g = ctx.model.score_distribution(ctx.user_ids, ctx.candidates)  # type: ignore[attr-defined]
    _, index = _candidate_index(ctx, items)
    marginal = np.zeros(items.shape)
    prefix = np.zeros(items.shape)
    for lo in range(0, ctx.n, MC_CHUNK):
        samples = posterior_rankings(
            mean[lo : lo + MC_CHUNK],
            g[lo : lo + MC_CHUNK],
            sel.beta,
            k,
            sel.mc_samples,
            rand.monte_carlo,
        )
        hits = samples == index[lo : lo + MC_CHUNK, None, :]
        marginal[lo : lo + MC_CHUNK] = hits.mean(axis=1)
        prefix[lo : lo + MC_CHUNK] = np.cumprod(hits, axis=2).mean(axis=1)
    return marginal, prefix


__all__ = ["slate_probabilities"]
