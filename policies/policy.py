"""The serving policy: retrieve candidates → select a slate (with propensities) → hand to ``sim``.

A policy is a *scorer* (what model ranks candidates) plus a *selector* (how the slate is drawn
from the ranking). Both are named in the ``policy`` config group, so e.g. popularity with
epsilon-greedy exploration is ``policy=popularity policy.selector=epsilon_greedy``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agents.validation import is_number, is_positive_int
from policies.als import ALSScorer
from policies.baselines import OracleScorer, PopularityScorer, RandomScorer
from policies.debiasing import DEBIAS_MODES, IPW_PROPENSITIES, ClickWeighting
from policies.exclusion import batch_filter, padded_rows
from policies.exposure_boost import ExposureBoost
from policies.interactions import Interactions, TrainingNeeds
from policies.intervention import INTERVENTIONS, Intervention
from policies.linear_bandit import LinearScorer
from policies.models import SOURCE_CODE, Model
from policies.plackett_luce import Softmax
from policies.posterior_sampling import UCB, Thompson
from policies.randomness import Randomness
from policies.replay import slate_probabilities
from policies.selection import (
    EpsilonGreedy,
    Greedy,
    SelectionContext,
    SlateSelector,
    UniformRandom,
)

SCORERS = ("als", "linear", "popularity", "random", "oracle")
SELECTORS = ("greedy", "epsilon_greedy", "uniform", "softmax", "ucb", "thompson", "boost")
POSTERIOR_SCORERS = ("als", "linear")  # the ones UCB and Thompson can use
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
    epsilon_decay: float = 1.0
    epsilon_min: float = 0.0
    temperature: float = 0.05
    beta: float = 1.0
    mc_samples: int = 200
    boost_slots: int = 2
    boost_quantile: float = 0.2
    bootstrap: str = "random"
    factors: int = 32
    regularization: float = 0.05
    iterations: int = 10
    alpha: float = 10.0
    warm_start: bool = False
    training_window_rounds: int | None = None
    bandit_regularization: float = 1.0
    intervention: str = "none"
    intervention_share: float = 0.0
    debias: str = "none"
    ipw_propensity: str = "oracle"
    ipw_clip: float = 10.0
    popularity_power: float = 0.5
    exposure_weight: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"policy.name={self.name!r}: must be a non-empty string")
        for key, allowed in (
            ("scorer", SCORERS),
            ("selector", SELECTORS),
            ("bootstrap", BOOTSTRAPS),
            ("intervention", INTERVENTIONS),
            ("debias", DEBIAS_MODES),
            ("ipw_propensity", IPW_PROPENSITIES),
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
        if self.selector in ("ucb", "thompson") and self.scorer not in POSTERIOR_SCORERS:
            raise ValueError(
                f"policy.scorer={self.scorer!r}: selector {self.selector!r} needs a posterior; "
                f"use scorer {' or '.join(POSTERIOR_SCORERS)}"
            )
        for key in ("slate_size", "n_candidates", "factors", "iterations", "mc_samples"):
            if not is_positive_int(getattr(self, key)):
                raise ValueError(f"policy.{key}={getattr(self, key)!r}: must be a positive integer")
        if self.debias != "none" and self.scorer != "als":
            raise ValueError(
                f"policy.debias={self.debias!r}: reweights ALS training; needs policy.scorer=als "
                f"(got {self.scorer!r})"
            )
        if (
            self.debias in ("position_ipw", "position_unbiased")
            and self.ipw_propensity == "randomized"
            and self.intervention != "shuffle"
        ):
            raise ValueError(
                "policy.ipw_propensity='randomized': estimates θ from shuffled traffic; needs "
                f"policy.intervention=shuffle (got {self.intervention!r})"
            )
        if not is_number(self.ipw_clip) or self.ipw_clip < 1:
            raise ValueError(f"policy.ipw_clip={self.ipw_clip!r}: must be a number >= 1")
        for key in ("popularity_power", "exposure_weight"):
            if not is_number(getattr(self, key)) or getattr(self, key) < 0:
                raise ValueError(f"policy.{key}={getattr(self, key)!r}: must be a number >= 0")
        if self.intervention != "none" and self.selector != "greedy":
            raise ValueError(
                f"policy.intervention={self.intervention!r}: randomizes a deterministic ranking; "
                f"needs policy.selector=greedy (got {self.selector!r})"
            )
        for key in ("epsilon", "epsilon_min", "boost_quantile", "intervention_share"):
            value = getattr(self, key)
            if not is_number(value) or not 0.0 <= value <= 1.0:
                raise ValueError(f"policy.{key}={value!r}: must be in [0, 1]")
        if not is_number(self.epsilon_decay) or not 0.0 < self.epsilon_decay <= 1.0:
            raise ValueError(f"policy.epsilon_decay={self.epsilon_decay!r}: must be in (0, 1]")
        for key in ("regularization", "alpha", "temperature", "bandit_regularization"):
            if not is_number(getattr(self, key)) or getattr(self, key) <= 0:
                raise ValueError(f"policy.{key}={getattr(self, key)!r}: must be a number > 0")
        if not is_number(self.beta) or self.beta < 0:
            raise ValueError(f"policy.beta={self.beta!r}: must be a number >= 0")
        if not is_positive_int(self.boost_slots) or self.boost_slots > self.slate_size:
            raise ValueError(
                f"policy.boost_slots={self.boost_slots!r}: must be an integer in "
                f"[1, policy.slate_size={self.slate_size}]"
            )
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
    propensity: np.ndarray  # (n, K) float64 marginal P(item in slot | context)
    prefix_propensity: np.ndarray  # (n, K) float64 P(slots 0..k as shown | context)
    propensity_method: str  # policies.propensity.METHODS
    score: np.ndarray  # (n, K) float32 (NaN where no model scored the item)
    source: np.ndarray  # (n, K) int8 codes into policies.models.SOURCES
    model_version: int
    policy_name: str
    candidates: np.ndarray  # (n, C) int64: the retrieved ranking
    candidate_scores: np.ndarray  # (n, C) float32
    candidate_shown: np.ndarray  # (n, C) bool
    candidate_show_probability: np.ndarray  # (n, C) float64
    original_position: np.ndarray | None = None  # (n, K) int16 slot before an intervention
    intervention: np.ndarray | None = None  # (n,) int8 code into INTERVENTIONS
    # Off-policy evaluation: each shadow target's (marginal, prefix) probabilities of this slate.
    shadow: dict[str, tuple[np.ndarray, np.ndarray]] | None = None

    @property
    def slate_propensity(self) -> np.ndarray:
        return self.prefix_propensity[:, -1]


@dataclass(frozen=True)
class Deployment:
    """A trained model plus the log facts the selectors need while it serves."""

    model: Model
    item_impressions: np.ndarray

    @property
    def version(self) -> int:
        return int(self.model.version)


@dataclass
class ServingPolicy:
    """Serves from the deployed model; before the first deployment, from ``bootstrap``."""

    config: PolicyConfig
    scorer: Any
    selector: SlateSelector
    n_items: int
    bootstrap: ServingPolicy | None = None
    intervention: Intervention | None = None
    deployment: Deployment | None = field(default=None, init=False)
    # Target selectors replayed on every served slate (policies.replay), with their own stream.
    shadow: dict[str, SlateSelector] = field(default_factory=dict, init=False)
    _shadow_rand: Randomness | None = field(default=None, init=False, repr=False)

    def set_shadow_targets(self, targets: dict[str, SlateSelector], seed: int) -> None:
        """Replay ``targets`` on every slate this policy serves from a model (for OPE)."""
        self.shadow = dict(targets)
        self._shadow_rand = Randomness.from_seed(seed)

    def switch_selector(self, config: PolicyConfig) -> None:
        """Serve with ``config``'s selector from now on, keeping the deployed model (the
        on-policy ground truth of an off-policy estimate)."""
        self.config = config
        self.selector = _selector(config)
        self.intervention = None

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def model(self) -> Model | None:
        return None if self.deployment is None else self.deployment.model

    @property
    def model_version(self) -> int:
        return -1 if self.deployment is None else self.deployment.version

    @property
    def n_candidates(self) -> int:
        if self.config.scorer == "random":
            return 0
        # Retrieval feeds the slate, so it is never smaller than the slate.
        return min(max(self.config.n_candidates, self.config.slate_size), self.n_items)

    def training_needs(self) -> TrainingNeeds:
        """What of the log this policy trains on (the simulator keeps that much)."""
        return TrainingNeeds(
            window_rounds=self.config.training_window_rounds,
            keep_exposures=self.config.debias == "exposure",
        )

    def fit(self, interactions: Interactions, version: int) -> Deployment:
        """Train on the log; the result serves only after :meth:`deploy`."""
        model = self.scorer.fit(interactions, version)
        return Deployment(model, interactions.item_impressions.copy())

    def deploy(self, deployment: Deployment) -> None:
        self.deployment = deployment

    def serve(self, user_ids: np.ndarray, rand: Randomness) -> SlateBatch:
        """Slates for a batch of requests, with their propensities."""
        if self.deployment is None:
            if self.bootstrap is None:
                raise RuntimeError(f"policy {self.name!r} has no deployed model and no bootstrap")
            batch = self.bootstrap.serve(user_ids, rand)
            bootstrap = np.full_like(batch.source, SOURCE_CODE["bootstrap"])
            return dataclasses.replace(batch, source=bootstrap, model_version=-1)
        model = self.deployment.model
        k = self.config.slate_size
        c = self.n_candidates
        filter_rows = batch_filter(model.seen, user_ids, min_allowed=max(c, 2 * k))
        retrieval = model.retrieve(user_ids, c, filter_rows)
        ctx = SelectionContext(
            user_ids=user_ids,
            candidates=retrieval.items,
            scores=retrieval.scores,
            excluded=padded_rows(filter_rows),
            n_items=self.n_items,
            model=model,
            model_version=self.deployment.version,
            item_impressions=self.deployment.item_impressions,
        )
        selection = self.selector.select(ctx, rand)
        original_position = kind = None
        if self.intervention is not None:
            intervened = self.intervention.apply(selection, rand.intervention)
            selection = intervened.selection
            original_position, kind = intervened.original_position, intervened.kind
        # Log the score the policy saw: the retrieval score for a retrieved item, else the model's.
        match = retrieval.items[:, :, None] == selection.items[:, None, :]  # (n, C, K)
        retrieved = match.any(axis=1)
        score = np.zeros(selection.items.shape, dtype=np.float32)
        if retrieved.any():
            score = np.take_along_axis(retrieval.scores, match.argmax(axis=1), axis=1)
        if not retrieved.all():  # explored beyond the candidates: ask the model
            score = np.where(retrieved, score, model.score(user_ids, selection.items))
        explore_code = SOURCE_CODE["random" if self.config.selector == "uniform" else "explore"]
        source = np.where(selection.explored, explore_code, retrieval.source[:, None])
        return SlateBatch(
            items=selection.items,
            propensity=selection.propensity,
            prefix_propensity=selection.prefix_propensity,
            propensity_method=selection.method,
            score=score.astype(np.float32),
            source=source.astype(np.int8),
            model_version=self.deployment.version,
            policy_name=self.name,
            candidates=retrieval.items,
            candidate_scores=retrieval.scores,
            candidate_shown=match.any(axis=2),
            candidate_show_probability=selection.candidate_show_probability,
            original_position=original_position,
            intervention=kind,
            shadow={
                name: slate_probabilities(target, ctx, selection.items, self._shadow_rand)
                for name, target in self.shadow.items()
            }
            or None,
        )


def build_selector(config: PolicyConfig) -> SlateSelector:
    """The slate selector a policy config names."""
    return _selector(config)


def _selector(config: PolicyConfig) -> SlateSelector:
    k = config.slate_size
    match config.selector:
        case "greedy":
            return Greedy(k)
        case "epsilon_greedy":
            return EpsilonGreedy(k, config.epsilon, config.epsilon_decay, config.epsilon_min)
        case "uniform":
            return UniformRandom(k)
        case "softmax":
            return Softmax(k, config.temperature, config.mc_samples)
        case "ucb":
            return UCB(k, config.beta)
        case "thompson":
            return Thompson(k, config.beta, config.mc_samples)
        case "boost":
            return ExposureBoost(k, config.boost_slots, config.boost_quantile)
    raise AssertionError(config.selector)  # unreachable: validated in PolicyConfig


def _scorer(
    config: PolicyConfig,
    seed: int,
    relevance: Callable[[np.ndarray], np.ndarray] | None,
    item_content: np.ndarray | None,
    examination: np.ndarray | None = None,
) -> Any:
    match config.scorer:
        case "als":
            weighting = None
            if config.debias != "none":
                weighting = ClickWeighting(
                    config.debias,
                    clip=config.ipw_clip,
                    propensity=config.ipw_propensity,
                    true_theta=examination,
                    popularity_power=config.popularity_power,
                    n_slots=config.slate_size,
                    alpha=config.alpha,
                    exposure_weight=config.exposure_weight,
                )
                if (
                    config.debias in ("position_ipw", "position_unbiased")
                    and config.ipw_propensity == "oracle"
                ):
                    weighting.theta(Interactions.empty(1, 1))  # fail now if there is no θ
            return ALSScorer(
                factors=config.factors,
                regularization=config.regularization,
                iterations=config.iterations,
                alpha=config.alpha,
                warm_start=config.warm_start,
                random_state=seed,
                fallback=PopularityScorer(random_state=seed + 1),
                weighting=weighting,
                exact_user_solve=config.selector in ("ucb", "thompson"),
            )
        case "linear":
            if item_content is None:
                raise ValueError("policy.scorer='linear' needs the items' content features")
            return LinearScorer(item_content, regularization=config.bandit_regularization)
        case "popularity":
            return PopularityScorer(random_state=seed)
        case "random":
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
    item_content: np.ndarray | None = None,
    examination: np.ndarray | None = None,
) -> ServingPolicy:
    """Compose a serving policy (and its bootstrap) from a validated config.

    ``seed`` is a plain int for the model's own randomness (ALS init, popularity tie-break);
    slate draws come from the :class:`Randomness` passed to :meth:`ServingPolicy.serve`.
    ``relevance`` is the truth callback (oracle only); ``item_content`` is item metadata
    (``ItemMetadata.content``, linear bandit only); ``examination`` the world's true
    examination curve θ_k (``policy.ipw_propensity=oracle`` only: a simulator-only reference).
    """
    config.check_catalog(n_items)
    boot_cfg = PolicyConfig(
        name=config.bootstrap,
        scorer=config.bootstrap,
        selector="uniform" if config.bootstrap == "random" else "greedy",
        slate_size=config.slate_size,
        n_candidates=config.n_candidates,
    )
    bootstrap = ServingPolicy(
        boot_cfg, _scorer(boot_cfg, seed, None, None), _selector(boot_cfg), n_items
    )
    bootstrap.deploy(bootstrap.fit(Interactions.empty(n_users, n_items), version=-1))
    return ServingPolicy(
        config,
        _scorer(config, seed, relevance, item_content, examination),
        _selector(config),
        n_items,
        bootstrap=bootstrap,
        intervention=None
        if config.intervention == "none"
        else Intervention(config.intervention, config.intervention_share, config.slate_size),
    )
