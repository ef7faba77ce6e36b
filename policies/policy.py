"""The serving policy: retrieve candidates → select a slate (with propensities) → hand to ``sim``.

A policy is a *scorer* (what model ranks candidates) plus a *selector* (how the slate is drawn
from the ranking). Both are named in the ``policy`` config group, so e.g. popularity with
epsilon-greedy exploration is ``policy=popularity policy.selector=epsilon_greedy``.
"""

from __future__ import annotations

from collections.abc import Callable
import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agents.validation import is_number, is_positive_int
from policies.als import ALSScorer
from policies.baselines import OracleScorer, PopularityScorer, RandomScorer
from policies.exclusion import batch_filter, padded_rows
from policies.interactions import Interactions
from policies.models import SOURCE_CODE, Model
from policies.selection import EpsilonGreedy, Greedy, SlateSelector, UniformRandom

SCORERS = ("als", "popularity", "random", "oracle")
SELECTORS = ("greedy", "epsilon_greedy", "uniform")
BOOTSTRAPS = ("random", "popularity")


@dataclass(frozen=True)
class PolicyConfig:
    """Parameters of the ``policy`` config group; ``__post_init__`` names any bad key."""

    name: str = "greedy"
    scorer: str = "als"
    selector: str = "greedy"
    slate_size: int = 10
    n_candidates: int = 30
    epsilon: float = 0.1
    bootstrap: str = "random"
    factors: int = 32
    regularization: float = 0.05
    iterations: int = 10
    alpha: float = 10.0
    warm_start: bool = False
    training_window_rounds: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"policy.name={self.name!r}: must be a non-empty string")
        for key, allowed in (
            ("scorer", SCORERS),
            ("selector", SELECTORS),
            ("bootstrap", BOOTSTRAPS),
        ):
            if getattr(self, key) not in allowed:
                raise ValueError(
                    f"policy.{key}={getattr(self, key)!r}: unknown; choose one of {', '.join(allowed)}"
                )
        if self.scorer == "random" and self.selector != "uniform":
            raise ValueError(
                f"policy.selector={self.selector!r}: scorer 'random' has no ranking to select "
                "from; use policy.selector=uniform"
            )
        for key in ("slate_size", "n_candidates", "factors", "iterations"):
            if not is_positive_int(getattr(self, key)):
                raise ValueError(f"policy.{key}={getattr(self, key)!r}: must be a positive integer")
        if not is_number(self.epsilon) or not 0.0 <= self.epsilon <= 1.0:
            raise ValueError(f"policy.epsilon={self.epsilon!r}: must be in [0, 1]")
        for key in ("regularization", "alpha"):
            if not is_number(getattr(self, key)) or getattr(self, key) <= 0:
                raise ValueError(f"policy.{key}={getattr(self, key)!r}: must be a number > 0")
        if not isinstance(self.warm_start, bool):
            raise ValueError(f"policy.warm_start={self.warm_start!r}: must be true or false")
        w = self.training_window_rounds
        if w is not None and not is_positive_int(w):
            raise ValueError(
                f"policy.training_window_rounds={w!r}: must be null or a positive integer"
            )

    def check_catalog(self, n_items: int) -> None:
        """Cross-check against the catalog size (``world.n_items``)."""
        if self.slate_size > n_items:
            raise ValueError(
                f"policy.slate_size={self.slate_size}: larger than the catalog (world.n_items={n_items})"
            )
        if self.selector == "epsilon_greedy" and 2 * self.slate_size > n_items:
            raise ValueError(
                f"policy.slate_size={self.slate_size}: epsilon_greedy needs world.n_items >= "
                f"2 * slate_size to have items to explore (world.n_items={n_items})"
            )


@dataclass(frozen=True)
class SlateBatch:
    """What one serving call decided for a batch of requests (all arrays row-aligned)."""

    items: np.ndarray  # (n, K) int64
    propensity: np.ndarray  # (n, K) float64
    score: np.ndarray  # (n, K) float32 (NaN where no model scored the item)
    source: np.ndarray  # (n, K) int8 codes into policies.models.SOURCES
    model_version: int
    policy_name: str
    candidates: np.ndarray  # (n, C) int64: the retrieved ranking
    candidate_scores: np.ndarray  # (n, C) float32
    candidate_shown: np.ndarray  # (n, C) bool


@dataclass
class ServingPolicy:
    """Serves from the deployed model; before the first deployment, from ``bootstrap``."""

    config: PolicyConfig
    scorer: Any
    selector: SlateSelector
    n_items: int
    bootstrap: ServingPolicy | None = None
    model: Model | None = field(default=None, init=False)

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def model_version(self) -> int:
        return -1 if self.model is None else int(self.model.version)

    @property
    def n_candidates(self) -> int:
        if self.config.scorer == "random":
            return 0
        # Retrieval feeds the slate, so it is never smaller than the slate.
        return min(max(self.config.n_candidates, self.config.slate_size), self.n_items)

    @property
    def uniforms_per_request(self) -> int:
        return 2 * self.config.slate_size

    def fit(self, interactions: Interactions, version: int) -> Model:
        """Train on the log; the returned model serves only after :meth:`deploy`."""
        return self.scorer.fit(interactions, version)

    def deploy(self, model: Model) -> None:
        self.model = model

    def serve(self, user_ids: np.ndarray, uniforms: np.ndarray) -> SlateBatch:
        """Slates for a batch of requests. ``uniforms`` is ``(n, 2K)`` from the policy stream."""
        if self.model is None:
            if self.bootstrap is None:
                raise RuntimeError(f"policy {self.name!r} has no deployed model and no bootstrap")
            batch = self.bootstrap.serve(user_ids, uniforms)
            bootstrap = np.full_like(batch.source, SOURCE_CODE["bootstrap"])
            return dataclasses.replace(batch, source=bootstrap, model_version=-1)
        k = self.config.slate_size
        c = self.n_candidates
        filter_rows = batch_filter(self.model.seen, user_ids, min_allowed=max(c, 2 * k))
        retrieval = self.model.retrieve(user_ids, c, filter_rows)
        selection = self.selector.select(
            retrieval.items, padded_rows(filter_rows), self.n_items, uniforms
        )
        score = np.empty(selection.items.shape, dtype=np.float32)
        exploit = ~selection.explored
        if exploit.any():  # an exploited slot k holds candidate k
            score[exploit] = retrieval.scores[:, :k][exploit]
        if selection.explored.any():
            score[selection.explored] = self.model.score(user_ids, selection.items)[
                selection.explored
            ]
        explore_code = SOURCE_CODE["random" if self.config.selector == "uniform" else "explore"]
        source = np.where(selection.explored, explore_code, retrieval.source[:, None]).astype(
            np.int8
        )
        shown = (retrieval.items[:, :, None] == selection.items[:, None, :]).any(axis=2)
        return SlateBatch(
            items=selection.items,
            propensity=selection.propensity,
            score=score,
            source=source,
            model_version=int(self.model.version),
            policy_name=self.name,
            candidates=retrieval.items,
            candidate_scores=retrieval.scores,
            candidate_shown=shown,
        )


def _selector(config: PolicyConfig) -> SlateSelector:
    if config.selector == "greedy":
        return Greedy(config.slate_size)
    if config.selector == "epsilon_greedy":
        return EpsilonGreedy(config.slate_size, config.epsilon)
    return UniformRandom(config.slate_size)


def _scorer(
    config: PolicyConfig, seed: int, relevance: Callable[[np.ndarray], np.ndarray] | None
) -> Any:
    if config.scorer == "als":
        return ALSScorer(
            factors=config.factors,
            regularization=config.regularization,
            iterations=config.iterations,
            alpha=config.alpha,
            warm_start=config.warm_start,
            random_state=seed,
            fallback=PopularityScorer(random_state=seed + 1),
        )
    if config.scorer == "popularity":
        return PopularityScorer(random_state=seed)
    if config.scorer == "random":
        return RandomScorer()
    if relevance is None:
        raise ValueError("policy.scorer='oracle' needs the simulator's truth callback")
    return OracleScorer(relevance=relevance)


def build_policy(
    config: PolicyConfig,
    n_items: int,
    n_users: int,
    seed: int,
    relevance: Callable[[np.ndarray], np.ndarray] | None = None,
) -> ServingPolicy:
    """Compose a serving policy (and its bootstrap) from a validated config.

    ``seed`` is a plain int for the model's own randomness (ALS init, popularity tie-break);
    slate draws use uniforms the caller passes to :meth:`ServingPolicy.serve`.
    ``relevance`` is the truth callback, used by the oracle scorer only.
    """
    config.check_catalog(n_items)
    boot_cfg = PolicyConfig(
        name=config.bootstrap,
        scorer=config.bootstrap,
        selector="uniform" if config.bootstrap == "random" else "greedy",
        slate_size=config.slate_size,
        n_candidates=config.n_candidates,
    )
    bootstrap = ServingPolicy(boot_cfg, _scorer(boot_cfg, seed, None), _selector(boot_cfg), n_items)
    bootstrap.deploy(bootstrap.fit(Interactions.empty(n_users, n_items), version=-1))
    return ServingPolicy(
        config, _scorer(config, seed, relevance), _selector(config), n_items, bootstrap=bootstrap
    )
