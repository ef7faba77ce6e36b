"""Softmax exploration: Plackett–Luce sampling of the slate from the candidates' scores."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from scipy.special import logsumexp

from policies.propensity import (
    EXACT_SEQUENTIAL_MC_MARGINAL,
    candidate_index,
    concat_estimates,
    mc_estimates,
    top_k_indices,
)
from policies.randomness import Randomness
from policies.selection import Selection, SelectionContext, Selector

MC_CHUNK = 256  # requests per Monte-Carlo block (bounds memory at chunk × M × C)


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
        lse = logsumexp(np.where(remaining, logits, -np.inf), axis=1)
        ok = remaining[rows, pick] if valid is None else valid[:, slot] & remaining[rows, pick]
        out[:, slot] = np.where(ok, logits[rows, pick] - lse, -np.inf)
        remaining[rows, pick] = False
    return out


def sample_rankings(logits: np.ndarray, k: int, m: int, rng: np.random.Generator) -> np.ndarray:
    """``m`` Plackett–Luce top-``k`` rankings per row of ``logits`` (b, C) -> (b, m, k) candidate
    indices (Gumbel-top-k), drawing ``b·m·C`` uniforms in row order."""
    noise = gumbel(rng.random((logits.shape[0], m, logits.shape[1])))
    return top_k_indices(logits[:, None, :] + noise, k, continuous=True)


@dataclass(frozen=True)
class Softmax(Selector):
    """Draw the slate without replacement with weights ``exp(score / temperature)``.

    Sampled with the Gumbel-top-K trick (exactly Plackett–Luce). Exact: the sequential product
    ``Π_k w_k / (W - Σ_{j<k} w_j)`` (slate and prefix probabilities) and the first slot's
    marginal ``w / W``. Marginals of later slots and the show probabilities are Monte-Carlo
    estimates from ``mc_samples`` extra slates per request.
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
        marginal, _, show = self._monte_carlo(logits, order, rand)
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
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        c = logits.shape[1]
        parts = [
            mc_estimates(samples, shown[rows], c)
            for rows, samples in self._samples(logits, rand.monte_carlo)
        ]
        return concat_estimates(parts, self.slate_size, c)

    def _samples(
        self, logits: np.ndarray, rng: np.random.Generator
    ) -> Iterator[tuple[slice, np.ndarray]]:
        """``mc_samples`` Plackett–Luce rankings per request, chunk after chunk in request order
        (the draws do not depend on the batch): ``(rows, (chunk, M, K) indices)``."""
        for lo in range(0, logits.shape[0], MC_CHUNK):
            rows = slice(lo, lo + MC_CHUNK)
            yield rows, sample_rankings(logits[rows], self.slate_size, self.mc_samples, rng)

    def probabilities(
        self, ctx: SelectionContext, items: np.ndarray, rand: Randomness | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact prefix probabilities and first-slot marginal; later marginals are Monte-Carlo
        frequencies over ``mc_samples`` fresh Plackett–Luce samples."""
        if rand is None:
            raise ValueError("softmax marginals are Monte-Carlo estimates: pass rand")
        logits = self.logits(ctx.scores)
        found, index = candidate_index(ctx.candidates, items)
        rows = np.arange(ctx.n)
        prefix = np.exp(np.cumsum(sequential_log_probs(logits, index, found), axis=1))
        marginal = np.zeros(items.shape)
        for chunk, samples in self._samples(logits, rand.monte_carlo):
            marginal[chunk] = (samples == index[chunk, None, :]).mean(axis=1)
        marginal = np.where(found, marginal, 0.0)
        first = np.exp(logits[rows, index[:, 0]] - logsumexp(logits, axis=1))
        marginal[:, 0] = np.where(found[:, 0], first, 0.0)  # exact
        return marginal, prefix

    def first_slot(self, scores: np.ndarray, n_items: int, model_version: int = 0) -> np.ndarray:
        """The exact first-slot Plackett–Luce probabilities over the candidates."""
        w = np.exp(self.logits(scores))
        probs = np.zeros((scores.shape[0], scores.shape[1] + 1))
        probs[:, :-1] = w / w.sum(axis=1, keepdims=True)
        return probs
