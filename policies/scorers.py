"""The built-in scorers as config components (``configs/policy/scorer/*.yaml``).

A scorer node is the model family and its hyper-parameters; :meth:`ScorerSpec.build` makes the
runtime scorer that fits a servable :class:`~policies.models.Model` from the log at every retrain.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from agents.validation import is_number
from policies.als import ALSScorer
from policies.baselines import OracleScorer, PopularityScorer, RandomScorer
from policies.components import BuildContext, Scorer, ScorerSpec
from policies.debiasing import Debias
from policies.linear_bandit import LinearScorer


@dataclass(frozen=True)
class ALS(ScorerSpec):
    """implicit's alternating least squares on click counts (confidence ``alpha · clicks``).

    ``content_map``: content bootstrapping for items (:mod:`policies.content_map`) — a ridge map
    from item content to the fitted item factors on warm items (``content_warm_clicks``), λ
    cross-validated among ``content_lambdas``, blended with the learned factors by
    ``n / (n + content_blend_k)`` (``null``: no blending, learned from the first click on).
    """

    factors: int = 32
    regularization: float = 0.05
    iterations: int = 10
    alpha: float = 10.0
    warm_start: bool = False
    content_map: bool = False
    content_warm_clicks: int = 3
    content_lambdas: Any = (0.01, 0.1, 1.0, 10.0, 100.0)
    content_blend_k: float | None = 5.0
    name: ClassVar[str] = "als"
    has_posterior: ClassVar[bool] = True
    supports_debias: ClassVar[bool] = True

    def __post_init__(self) -> None:
        self._positive_int("factors", "iterations", "content_warm_clicks")
        self._number("regularization", 0.0, low_open=True)
        self._number("alpha", 0.0, low_open=True)
        self._bool("warm_start", "content_map")
        lambdas = self.content_lambdas
        if (
            isinstance(lambdas, (str, bytes))
            or not isinstance(lambdas, Sequence)
            or not lambdas
            or not all(is_number(v) and v > 0 for v in lambdas)
        ):
            self._fail("content_lambdas", "must be a non-empty list of numbers > 0")
        object.__setattr__(self, "content_lambdas", tuple(float(v) for v in lambdas))
        k = self.content_blend_k
        if k is not None and not (is_number(k) and k >= 0):
            self._fail("content_blend_k", "must be null (no blending) or a number >= 0")

    def build(self, ctx: BuildContext) -> Scorer:
        weighting = None
        debias: Debias | None = ctx.debias
        if debias is not None and debias.active:
            weighting = debias.weighting(ctx.slate_size, self.alpha, ctx.examination)
        if self.content_map and ctx.item_content is None:
            raise ValueError(
                "policy.scorer.content_map=true: needs the items' content features (item_content)"
            )
        return ALSScorer(
            factors=self.factors,
            regularization=self.regularization,
            iterations=self.iterations,
            alpha=self.alpha,
            warm_start=self.warm_start,
            random_state=ctx.seed,
            fallback=PopularityScorer(random_state=ctx.seed + 1),
            weighting=weighting,
            exact_user_solve=ctx.needs_posterior,
            content_map=self.content_map,
            item_content=ctx.item_content if self.content_map else None,
            content_warm_clicks=self.content_warm_clicks,
            content_lambdas=self.content_lambdas,
            content_blend_k=self.content_blend_k,
        )


@dataclass(frozen=True)
class Linear(ScorerSpec):
    """A linear contextual bandit on item content and the user's click profile (ridge)."""

    regularization: float = 1.0
    name: ClassVar[str] = "linear"
    has_posterior: ClassVar[bool] = True

    def __post_init__(self) -> None:
        self._number("regularization", 0.0, low_open=True)

    def build(self, ctx: BuildContext) -> Scorer:
        if ctx.item_content is None:
            raise ValueError("policy.scorer=linear needs the items' content features")
        return LinearScorer(ctx.item_content, regularization=self.regularization)


@dataclass(frozen=True)
class Popularity(ScorerSpec):
    """Most-clicked items first (seeded random order among equal counts)."""

    name: ClassVar[str] = "popularity"

    def build(self, ctx: BuildContext) -> Scorer:
        return PopularityScorer(random_state=ctx.seed)


@dataclass(frozen=True)
class Random(ScorerSpec):
    """No model: the uniform random policy (only the seen-item filter)."""

    name: ClassVar[str] = "random"
    retrieves: ClassVar[bool] = False

    def build(self, ctx: BuildContext) -> Scorer:
        return RandomScorer()


@dataclass(frozen=True)
class Oracle(ScorerSpec):
    """Ranks by true relevance: the simulator-only reference, never a real policy."""

    name: ClassVar[str] = "oracle"
    uses_ground_truth: ClassVar[bool] = True

    def build(self, ctx: BuildContext) -> Scorer:
        if ctx.relevance is None:
            raise ValueError("policy.scorer=oracle needs the simulator's truth callback")
        return OracleScorer(relevance=ctx.relevance)


__all__ = ["ALS", "Linear", "Oracle", "Popularity", "Random"]
