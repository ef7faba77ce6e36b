"""Softmax exploration: Plackett–Luce sampling of the slate from the candidates' scores."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from scipy.special import logsumexp

from policies.propensity import (
    EXACT_SEQUENTIAL_MC_MARGINAL,
    concat_estimates,
    mc_estimates,
    top_k_indices,
)
from policies.randomness import Randomness
from policies.selection import Selection, SelectionContext

MC_CHUNK = 256  # requests per Monte-Carlo block (bounds memory at chunk × M × C)


def gumbel(uniforms: np.ndarray) -> np.ndarray:
    """Standard Gumbel noise from uniforms in [0, 1)."""
    return -np.log(-np.log(np.clip(uniforms, 1e-300, 1.0 - 1e-16)))


@dataclass(frozen=True)
class Softmax:
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

    def select(self, ctx: SelectionContext, rand: Randomness) -> Selection:
        k = self.slate_size
        scores = ctx.scores.astype(
            np.float64
        )  # retrieval scores are float32: keep exact math exact
        logits = (scores - scores.max(axis=1, keepdims=True)) / self.temperature
        order = top_k_indices(
            logits + gumbel(rand.uniform.random(logits.shape)), k, continuous=True
        )
        # Sequential conditionals in log space (weights far below the top underflow exp()).
        remaining = np.ones(logits.shape, dtype=bool)
        log_sequential = np.empty(order.shape)
        rows = np.arange(ctx.n)
        for slot in range(k):  # a loop over slots, vectorized over requests
            pick = order[:, slot]
            lse = logsumexp(np.where(remaining, logits, -np.inf), axis=1)
            log_sequential[:, slot] = logits[rows, pick] - lse
            remaining[rows, pick] = False
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
        n, c = logits.shape
        parts = []
        for lo in range(0, n, MC_CHUNK):  # chunks of requests, in request order
            block = logits[lo : lo + MC_CHUNK, None, :]
            noise = gumbel(rand.monte_carlo.random((block.shape[0], self.mc_samples, c)))
            samples = top_k_indices(block + noise, self.slate_size, continuous=True)
            parts.append(mc_estimates(samples, shown[lo : lo + MC_CHUNK], c))
        return concat_estimates(parts, self.slate_size, c)
