"""Uncertainty-driven exploration on a model's posterior: UCB and Thompson sampling.

Both need a model with ``score_distribution(user_ids, candidates) -> (mean, G)``: the candidates'
scores are ``mean + Gᵀ z`` with ``z ~ N(0, I)`` per request, so ``Cov = GᵀG`` (ALS: ``G = L⁻¹Y_Cᵀ``
with ``A_u = L Lᵀ``; the linear bandit: ``G = L⁻¹Φᵀ``). Both rerank the retrieved candidates.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from policies.models import PosteriorModel
from policies.propensity import (
    MONTE_CARLO,
    candidate_index,
    concat_estimates,
    draw_estimates,
    top_k_indices,
)
from policies.randomness import Randomness
from policies.selection import Selection, SelectionContext, Selector, deterministic, same_as

MC_CHUNK = 256


def posterior(ctx: SelectionContext, selector: str) -> tuple[np.ndarray, np.ndarray]:
    """``(mean, G)`` of the candidates' scores under the deployed model's posterior."""
    if not isinstance(ctx.model, PosteriorModel):
        raise TypeError(
            f"selector {selector!r} needs a model with a posterior; "
            f"{type(ctx.model).__name__} has none"
        )
    return ctx.model.score_distribution(ctx.user_ids, ctx.candidates)


def posterior_draws(
    mean: np.ndarray, g: np.ndarray, beta: float, m: int, rng: np.random.Generator
) -> np.ndarray:
    """``m`` posterior samples ``mean + β·Gᵀz`` of the candidates' scores per request: (b, m, C)."""
    zs = rng.standard_normal((g.shape[0], m, g.shape[1]))
    return mean[:, None, :] + beta * (zs @ g)  # (b, M, f) @ (b, f, C), batched BLAS


def posterior_rankings(
    mean: np.ndarray, g: np.ndarray, beta: float, k: int, m: int, rng: np.random.Generator
) -> np.ndarray:
    """``m`` posterior samples ``mean + β·Gᵀz`` per request ranked: (b, m, k) candidate indices."""
    return top_k_indices(posterior_draws(mean, g, beta, m, rng), k, continuous=True)


def ucb_bound(mean: np.ndarray, g: np.ndarray, beta: float) -> np.ndarray:
    """``mean + β·sd`` of each candidate's score."""
    return mean + beta * np.sqrt(np.einsum("nfc,nfc->nc", g, g))


@dataclass(frozen=True)
class UCB(Selector):
    """Rank candidates by ``mean + β·sd`` (upper confidence bound); deterministic."""

    slate_size: int
    beta: float
    name: ClassVar[str] = "ucb"
    needs_posterior: ClassVar[bool] = True

    def __post_init__(self) -> None:
        self._number("beta", 0.0)

    def _order(self, ctx: SelectionContext) -> np.ndarray:
        mean, g = posterior(ctx, self.name)
        return top_k_indices(ucb_bound(mean, g, self.beta), self.slate_size)

    def select(self, ctx: SelectionContext, rand: Randomness) -> Selection:
        return deterministic(ctx, self._order(ctx), self.slate_size)

    def probabilities(
        self, ctx: SelectionContext, items: np.ndarray, rand: Randomness | None
    ) -> tuple[np.ndarray, np.ndarray]:
        return same_as(items, np.take_along_axis(ctx.candidates, self._order(ctx), axis=1))


@dataclass(frozen=True)
class Thompson(Selector):
    """Rank candidates by one posterior sample ``mean + β·Gᵀz`` per request.

    No closed form exists for its slate probabilities: marginals, prefix/slate probabilities and
    show probabilities are Monte-Carlo estimates from ``mc_samples`` extra posterior samples.
    ``β`` scales the posterior spread (the ALS noise level is not identified from clicks).
    """

    slate_size: int
    beta: float
    mc_samples: int
    name: ClassVar[str] = "thompson"
    needs_posterior: ClassVar[bool] = True

    def __post_init__(self) -> None:
        self._number("beta", 0.0)
        self._positive_int("mc_samples")

    def select(self, ctx: SelectionContext, rand: Randomness) -> Selection:
        k = self.slate_size
        mean, g = posterior(ctx, self.name)
        z = rand.normal.standard_normal((ctx.n, g.shape[1]))
        order = top_k_indices(
            mean + self.beta * (z[:, None, :] @ g)[:, 0, :], k, continuous=self.beta > 0
        )
        parts = []
        rng = rand.monte_carlo
        for lo in range(0, mean.shape[0], MC_CHUNK):  # the draws of _samples, not ranked
            rows = slice(lo, lo + MC_CHUNK)
            draws = posterior_draws(mean[rows], g[rows], self.beta, self.mc_samples, rng)
            parts.append(draw_estimates(draws, order[rows]))
        marginal, prefix, show = concat_estimates(parts, k, mean.shape[1])
        return Selection(
            items=np.take_along_axis(ctx.candidates, order, axis=1),
            propensity=marginal,
            prefix_propensity=prefix,
            explored=order != np.arange(k),
            candidate_show_probability=show,
            method=MONTE_CARLO,
        )

    def probabilities(
        self, ctx: SelectionContext, items: np.ndarray, rand: Randomness | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Frequencies of the logged (slot, item) and prefixes over ``mc_samples`` fresh
        posterior samples (a logged slate no sample reproduces gets probability 0)."""
        if rand is None:
            raise ValueError("Thompson probabilities are Monte-Carlo estimates: pass rand")
        mean, g = posterior(ctx, self.name)
        _, index = candidate_index(ctx.candidates, items)
        marginal = np.zeros(items.shape)
        prefix = np.zeros(items.shape)
        for rows, samples in self._samples(mean, g, rand.monte_carlo):
            hits = samples == index[rows, None, :]
            marginal[rows] = hits.mean(axis=1)
            prefix[rows] = np.cumprod(hits, axis=2).mean(axis=1)
        return marginal, prefix

    def _samples(
        self, mean: np.ndarray, g: np.ndarray, rng: np.random.Generator
    ) -> Iterator[tuple[slice, np.ndarray]]:
        """``mc_samples`` ranked posterior samples per request, chunk after chunk in request
        order (the draws do not depend on the batch): ``(rows, (chunk, M, K) indices)``."""
        for lo in range(0, mean.shape[0], MC_CHUNK):
            rows = slice(lo, lo + MC_CHUNK)
            yield (
                rows,
                posterior_rankings(
                    mean[rows], g[rows], self.beta, self.slate_size, self.mc_samples, rng
                ),
            )
