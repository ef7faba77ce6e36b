"""Softmax exploration: Plackett–Luce sampling of the slate from the candidates' scores."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from policies.propensity import (
    EXACT_SEQUENTIAL_MC_MARGINAL,
    candidate_index,
    largest_values,
    top_k_indices,
)
from policies.randomness import Randomness
from policies.selection import Selection, SelectionContext, Selector

MC_CHUNK = 256  # requests per Monte-Carlo block (bounds memory at chunk × M × C)
TINY = np.finfo(np.float64).tiny  # floor of a shown item's marginal (underflow only)


def logsumexp_rows(a: np.ndarray) -> np.ndarray:
    """``log Σ_j exp(a[i, j])`` per row of a real 2-D array: ``scipy.special.logsumexp(a,
    axis=1)`` (scipy 1.17) step for step — the row's maximum, the count ``m`` of entries equal
    to it, ``log1p(Σ exp(rest − max) / m) + log(m) + max`` — so the same numbers to the bit
    (``tests/policies/test_plackett_luce.py`` checks), at half the cost: scipy's array-API
    layers cost more than the arithmetic on the (batch, candidates) arrays softmax passes it
    once a slot. Rows whose result is not finite (all ``-inf``, an ``inf`` or a NaN) are
    left to scipy, imported then."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        a_max = a.max(axis=1, keepdims=True)
        at_max = a == a_max
        m = at_max.sum(axis=1, keepdims=True, dtype=a.dtype)
        s = np.exp(np.where(at_max, -np.inf, a) - a_max).sum(axis=1, keepdims=True)
        s = np.where(s == 0, s, s / m)
        out = (np.log1p(s) + np.log(m) + a_max)[:, 0]
    bad = ~np.isfinite(out)
    if bad.any():
        from scipy.special import logsumexp

        out[bad] = logsumexp(a[bad], axis=1)
    return out


def gumbel(uniforms: np.ndarray) -> np.ndarray:
    """Standard Gumbel noise from uniforms in [0, 1)."""
    return -np.log(-np.log(np.clip(uniforms, 1e-300, 1.0 - 1e-16)))


def sequential_log_probs(
    logits: np.ndarray, picks: np.ndarray, valid: np.ndarray | None = None
) -> np.ndarray:
    """``log P(slot k holds candidate picks[:, k] | slots before it)`` under Plackett–Luce with
    ``logits`` (n, C); ``-inf`` where ``valid`` is False or the candidate was already taken.
    In log space: weights far below the top underflow ``exp()``."""
    remaining = np.ones(logits.shape, dtype=bool)
    out = np.empty(picks.shape)
    rows = np.arange(picks.shape[0])
    for slot in range(picks.shape[1]):  # a loop over slots, vectorized over requests
        pick = picks[:, slot]
        lse = logsumexp_rows(np.where(remaining, logits, -np.inf))
        ok = remaining[rows, pick] if valid is None else valid[:, slot] & remaining[rows, pick]
        out[:, slot] = np.where(ok, logits[rows, pick] - lse, -np.inf)
        remaining[rows, pick] = False
    return out


def sample_keys(logits: np.ndarray, m: int, rng: np.random.Generator) -> np.ndarray:
    """``m`` perturbed key vectors ``logits + Gumbel`` per row (b, C) -> (b, m, C); the Gumbel
    noise is ``-log E``, ``E`` standard exponential (one log per key), drawn in row order."""
    keys = rng.standard_exponential((logits.shape[0], m, logits.shape[1]))
    np.log(keys, out=keys)
    return np.subtract(logits[:, None, :], keys, out=keys)  # in place: (b, m, C) is the bulk


def top_keys(keys: np.ndarray, k: int) -> np.ndarray:
    """The ``k + 1`` largest keys of each ranking (..., C), best first, padded with ``-inf`` when
    there are fewer than ``k + 1`` candidates (values only: a partition and a sort of ``k + 1``,
    no ranking indices; a candidate's place among them is found by comparing its own key)."""
    c = keys.shape[-1]
    val = largest_values(keys, min(k + 1, c))
    if c < k + 1:
        pad = [(0, 0)] * (keys.ndim - 1) + [(0, k + 1 - c)]
        val = np.pad(val, pad, constant_values=-np.inf)
    return val


def _gumbel_cdf_between(low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """``P(low < G < high)`` for standard Gumbel ``G`` (``high >= low``), accurate also where
    both CDF values are close to 1: ``F(h)·(1 − exp(e^{−h} − e^{−l}))``."""
    with np.errstate(over="ignore", invalid="ignore"):
        eh, el = np.exp(-high), np.exp(-low)
        out = np.exp(-eh) * -np.expm1(eh - el)
    return np.where(high > low, np.nan_to_num(out, nan=0.0), 0.0)


def key_marginals(
    logits: np.ndarray, keys: np.ndarray, val: np.ndarray, targets: np.ndarray
) -> np.ndarray:
    """Rao–Blackwellized ``P(slot j holds targets[:, j])`` from sampled keys: mean over the
    rankings of ``P(l_t + G lands between the j-th and (j+1)-th largest keys of the *other*
    candidates)`` — the target's own Gumbel integrated out exactly.

    ``keys`` (n, R, C) sampled keys, ``val`` (n, R, K + 1) their largest (:func:`top_keys`);
    ``targets`` (n, K) candidate indices."""
    k = targets.shape[1]
    # where each target sits among the ranking's top K + 1 (K + 1: below them): the number of
    # them above its own key, counted one rank at a time (cheaper than a (n, R, K, K + 1) mask)
    own = np.take_along_axis(keys, targets[:, None, :], axis=2)  # (n, R, K)
    pos = np.zeros(own.shape, dtype=np.int16)
    for i in range(k + 1):
        pos += val[:, :, i : i + 1] > own
    # the j-th and (j+1)-th largest keys of the *others* for the target of slot j: the ranking's
    # own j-th/(j+1)-th where the target is below them, shifted by one past the target
    slot = np.arange(k)
    top = val[:, :, :k]  # the ranking's j-th largest key, for slot j
    above = np.where(
        slot - 1 < pos,
        np.concatenate([np.full((*top.shape[:2], 1), np.inf), top[:, :, :-1]], axis=2),
        top,
    )
    below = np.where(slot < pos, top, val[:, :, 1:])
    lt = np.take_along_axis(logits, targets, axis=1)[:, None, :]
    return _gumbel_cdf_between(below - lt, above - lt).mean(axis=1)


def key_show_probability(logits: np.ndarray, keys: np.ndarray, val: np.ndarray) -> np.ndarray:
    """Rao–Blackwellized ``P(candidate in the slate)`` (n, C): mean over the rankings of
    ``P(l_c + G > the K-th largest key of the others)``."""
    k = val.shape[2] - 1
    in_top = keys >= val[:, :, k - 1 : k]  # among the ranking's K largest
    x = np.where(in_top, val[:, :, k : k + 1], val[:, :, k - 1 : k])  # the others' K-th largest
    np.subtract(logits[:, None, :], x, out=x)  # in place from here: (n, R, C) is the bulk
    with np.errstate(over="ignore"):
        np.exp(x, out=x)
    np.negative(x, out=x)
    np.expm1(x, out=x)
    return -x.mean(axis=1)  # negated after the mean, as ever: the same zeros' signs


@dataclass(frozen=True)
class Softmax(Selector):
    """Draw the slate without replacement with weights ``exp(score / temperature)``.

    Sampled with the Gumbel-top-K trick (exactly Plackett–Luce). Exact: the sequential product
    ``Π_k w_k / (W - Σ_{j<k} w_j)`` (slate and prefix probabilities) and the first slot's
    marginal ``w / W``. Marginals of later slots and the show probabilities are Rao–Blackwellized
    Monte-Carlo estimates from ``mc_samples`` extra Gumbel key vectors per request: each one
    contributes the exact probability of the event given the *other* candidates' keys
    (:func:`key_marginals`, :func:`key_show_probability`) instead of a 0/1 hit — the same
    expectation with a fraction of the variance. Unlike the 0/1 estimates of
    :mod:`policies.propensity`, the shown slate is not counted as a sample: each term is already
    a probability above 0. Every estimate is unbiased; the show probabilities of a request add up
    to the slate size only on average.
    """

    slate_size: int
    temperature: float
    mc_samples: int
    name: ClassVar[str] = "softmax"

    def __post_init__(self) -> None:
        self._number("temperature", 0.0, low_open=True)
        self._positive_int("mc_samples")

    def logits(self, scores: np.ndarray) -> np.ndarray:
        """``(score - max) / temperature`` per request, in float64 (retrieval scores are float32:
        keep exact math exact). The one place the softmax weights are defined."""
        scores = scores.astype(np.float64)
        return (scores - scores.max(axis=1, keepdims=True)) / self.temperature

    def select(self, ctx: SelectionContext, rand: Randomness) -> Selection:
        k = self.slate_size
        logits = self.logits(ctx.scores)
        order = top_k_indices(
            logits + gumbel(rand.uniform.random(logits.shape)), k, continuous=True
        )
        log_sequential = sequential_log_probs(logits, order)
        sequential = np.exp(log_sequential)
        marginal, show = self._monte_carlo(logits, order, rand)
        marginal[:, 0] = sequential[:, 0]  # the first slot's marginal is exact
        items = np.take_along_axis(ctx.candidates, order, axis=1)
        return Selection(
            items=items,
            propensity=marginal,
            prefix_propensity=np.exp(np.cumsum(log_sequential, axis=1)),
            explored=order != np.arange(k),
            candidate_show_probability=show,
            method=EXACT_SEQUENTIAL_MC_MARGINAL,
        )

    def _monte_carlo(
        self, logits: np.ndarray, shown: np.ndarray, rand: Randomness
    ) -> tuple[np.ndarray, np.ndarray]:
        """Marginals of the shown slate's slots and show probabilities over ``mc_samples`` key
        vectors (unbiased: every Rao–Blackwellized term is a probability > 0, so the shown slate
        need not count as a sample to keep a shown item's estimate above 0)."""
        marginal = np.empty(shown.shape)
        show = np.empty(logits.shape)
        for rows, keys, val in self._samples(logits, rand.monte_carlo):
            marginal[rows] = key_marginals(logits[rows], keys, val, shown[rows])
            show[rows] = key_show_probability(logits[rows], keys, val)
        return np.maximum(marginal, TINY), show

    def _samples(
        self, logits: np.ndarray, rng: np.random.Generator
    ) -> Iterator[tuple[slice, np.ndarray, np.ndarray]]:
        """``mc_samples`` key vectors per request, chunk after chunk in request order (the draws
        do not depend on the batch): ``(rows, keys, val)``, the keys (chunk, M, C) and their
        ``K + 1`` largest (chunk, M, K + 1) (:func:`top_keys`)."""
        for lo in range(0, logits.shape[0], MC_CHUNK):
            rows = slice(lo, lo + MC_CHUNK)
            keys = sample_keys(logits[rows], self.mc_samples, rng)
            yield rows, keys, top_keys(keys, self.slate_size)

    def probabilities(
        self, ctx: SelectionContext, items: np.ndarray, rand: Randomness | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact prefix probabilities and first-slot marginal; later marginals are
        Rao–Blackwellized Monte-Carlo estimates (:func:`key_marginals`) over ``mc_samples`` fresh
        key vectors (the logged slate is not one of this policy's draws: not counted)."""
        if rand is None:
            raise ValueError("softmax marginals are Monte-Carlo estimates: pass rand")
        logits = self.logits(ctx.scores)
        found, index = candidate_index(ctx.candidates, items)
        rows = np.arange(ctx.n)
        prefix = np.exp(np.cumsum(sequential_log_probs(logits, index, found), axis=1))
        targets = np.where(found, index, 0)
        marginal = np.zeros(items.shape)
        for chunk, keys, val in self._samples(logits, rand.monte_carlo):
            marginal[chunk] = key_marginals(logits[chunk], keys, val, targets[chunk])
        marginal = np.where(found, marginal, 0.0)
        first = np.exp(logits[rows, index[:, 0]] - logsumexp_rows(logits))
        marginal[:, 0] = np.where(found[:, 0], first, 0.0)  # exact
        return marginal, prefix

    def first_slot(self, scores: np.ndarray, n_items: int, model_version: int = 0) -> np.ndarray:
        """The exact first-slot Plackett–Luce probabilities over the candidates."""
        w = np.exp(self.logits(scores))
        probs = np.zeros((scores.shape[0], scores.shape[1] + 1))
        probs[:, :-1] = w / w.sum(axis=1, keepdims=True)
        return probs
