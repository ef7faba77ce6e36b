"""Monte-Carlo propensities for stochastic slate policies.

Where no closed form exists for the marginal ``P(item i in slot k | context)`` (Plackett–Luce past
the first slot, Thompson sampling), it is estimated from ``M`` extra slates drawn from the same
distribution as the one shown. The shown slate is itself a draw from that distribution, so it is
counted as one of ``M + 1`` samples: every logged estimate is then at least ``1 / (M + 1)`` (never
0 for an item that was shown). ``propensity_method`` records which columns are estimates.

These are the counting estimators (Thompson sampling). Plackett–Luce has a better one: its
Monte-Carlo columns are Rao–Blackwellized from Gumbel keys (:mod:`policies.plackett_luce`), each
sample contributing a closed-form conditional probability; those estimates are unbiased and above
0 without counting the shown slate.
"""

from __future__ import annotations

import numpy as np

EXACT = "exact"
EXACT_SEQUENTIAL_MC_MARGINAL = "exact_sequential_mc_marginal"
MONTE_CARLO = "monte_carlo"
METHODS = (EXACT, EXACT_SEQUENTIAL_MC_MARGINAL, MONTE_CARLO)


def mc_estimates(
    samples: np.ndarray, shown: np.ndarray, n_candidates: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Estimates from sampled slates, all as candidate indices.

    Parameters
    ----------
    samples : (n, M, K) slates drawn from the policy for each request.
    shown : (n, K) the slate actually shown (counted as one more sample).

    Returns
    -------
    marginal : (n, K) share of slates with the shown item in that slot;
    prefix : (n, K) share of slates whose slots ``0..k`` equal the shown ones;
    show_probability : (n, C) share of slates containing each candidate.
    """
    slates = np.concatenate([samples, shown[:, None, :]], axis=1)  # (n, M + 1, K)
    n, m1, _ = slates.shape
    same = slates == shown[:, None, :]
    marginal = same.mean(axis=1)
    prefix = np.cumprod(same, axis=2).mean(axis=1)
    rows = np.arange(n)[:, None, None] * n_candidates
    counts = np.bincount((rows + slates).ravel(), minlength=n * n_candidates)
    return marginal, prefix, counts.reshape(n, n_candidates) / m1


def draw_estimates(
    draws: np.ndarray, shown: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`mc_estimates` of the rankings ``draws`` (n, M, C) score vectors induce (top K by
    score, as :func:`top_k_indices` with ``continuous=True`` ranks them), computed from the
    scores without ranking indices: slot ``j`` of a draw holds the shown item exactly when the
    shown item's score *is* the draw's ``j``-th largest, and a candidate is in a draw's slate when
    its score reaches the ``K``-th largest. The same numbers as ranking then counting wherever no
    two scores of a draw are equal (probability zero for continuous noise), at a fraction of the
    cost (a partition of the scores, no index gathers)."""
    m = draws.shape[1]
    k = shown.shape[1]
    top = largest_values(draws, k)
    same = np.take_along_axis(draws, shown[:, None, :], axis=2) == top  # (n, M, K)
    m1 = m + 1  # the shown slate is one more sample: it matches itself everywhere
    marginal = (same.sum(axis=1) + 1) / m1
    prefix = (np.cumprod(same, axis=2).sum(axis=1) + 1) / m1
    counts = (draws >= top[:, :, k - 1 : k]).sum(axis=1)
    np.put_along_axis(counts, shown, np.take_along_axis(counts, shown, axis=1) + 1, axis=1)
    return marginal, prefix, counts / m1


def largest_values(x: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` largest values along the last axis, best first (``k <= x.shape[-1]``): a
    partition and a sort of ``k``, no indices — what the score-based estimators compare a
    candidate's own value against (:func:`draw_estimates`, ``plackett_luce.top_keys``)."""
    c = x.shape[-1]
    return np.sort(np.partition(x, c - k, axis=-1)[..., c - k :], axis=-1)[..., ::-1]


def top_k_indices(keys: np.ndarray, k: int, *, continuous: bool = False) -> np.ndarray:
    """Indices of the ``k`` largest keys along the last axis, best first.

    Ties go to the lower index; with ``continuous=True`` (keys with random noise, where ties
    have probability zero) a plain sort is used, which is several times faster.
    """
    if not continuous:  # argpartition would pick an arbitrary subset of keys tied at rank k
        return np.argsort(-keys, axis=-1, kind="stable")[..., :k]
    part = np.argpartition(-keys, k - 1, axis=-1)[..., :k]
    order = np.argsort(-np.take_along_axis(keys, part, axis=-1), axis=-1)
    return np.take_along_axis(part, order, axis=-1)


def concat_estimates(
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]], k: int, n_candidates: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Join per-chunk :func:`mc_estimates` results (an empty batch gives empty arrays)."""
    if not parts:
        return np.empty((0, k)), np.empty((0, k)), np.empty((0, n_candidates))
    marginal, prefix, show = (np.concatenate(p) for p in zip(*parts, strict=True))
    return marginal, prefix, show


def repeats_earlier(items: np.ndarray) -> np.ndarray:
    """``True`` where a slot repeats an item of an earlier slot of the same slate."""
    k = items.shape[1]
    repeat = np.zeros(items.shape, dtype=bool)
    for j in range(1, k):
        repeat[:, j] = (items[:, :j] == items[:, j : j + 1]).any(axis=1)
    return repeat


def candidate_index(candidates: np.ndarray, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Whether each slate item (n, K) is among the request's ``candidates`` (n, C), and its
    candidate index (-1 if not: no draw over the candidates ever shows it)."""
    match = candidates[:, :, None] == items[:, None, :]  # (n, C, K)
    found = match.any(axis=1)
    return found, np.where(found, match.argmax(axis=1), -1)
