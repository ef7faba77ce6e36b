"""The built-in scorers as config components (``configs/policy/scorer/*.yaml``).

A scorer node is the model family and its hyper-parameters; :meth:`ScorerSpec.build` makes the
runtime scorer that fits a servable :class:`~policies.models.Model` from the log at every retrain.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from policies.als import ALSScorer
from policies.baselines import OracleScorer, PopularityScorer, RandomScorer
from policies.components import BuildContext, Scorer, ScorerSpec
from policies.debiasing import Debias
from policies.linear_bandit import LinearScorer


@dataclass(frozen=True)
class ALS(ScorerSpec):
    """implicit's alternating least squares on click counts (confidence ``alpha · clicks``)."""

    factors: int = 32
    regularization: float = 0.05
    iterations: int = 10
    alpha: float = 10.0
    warm_start: bool = False
    name: ClassVar[str] = "als"
    has_posterior: ClassVar[bool] = True
    supports_debias: ClassVar[bool] = True

    def __post_init__(self) -> None:
        self._positive_int("factors", "iterations")
        self._number("regularization", 0.0, low_open=True)
        self._number("alpha", 0.0, low_open=True)
        self._bool("warm_start")

    def build(self, ctx: BuildContext) -> Scorer:
        weighting = None
        debias: Debias | None = ctx.debias
        if debias is not None and debias.active:
            weighting = debias.weighting(ctx.slate_size, self.alpha, ctx.examination)
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
