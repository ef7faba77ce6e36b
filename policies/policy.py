"""The serving policy: an ordered pipeline of stages from a batch of requests to logged slates.

A policy is composed of components, each a node of the ``policy`` config group
(``configs/policy/<group>/``): a *scorer* (the model family that ranks candidates), a *selector*
(how the slate is drawn from the ranking, with propensities), a *retrieve* component (where the
candidates come from: the model's own top-N, or several retrievers with quotas,
:mod:`policies.retrieval`), a *reranker* (identity today), a
*debiasing* mode (how the scorer's training data is reweighted) and an *intervention*
(randomized re-ordering for bias estimation). Serving a batch runs the stages in order
(:data:`policies.pipeline.STAGES`): retrieve → rerank → select → intervene → annotate (→ replay for OPE).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agents.catalog import ItemMetadata
from agents.validation import is_positive_int

# The built-in components register themselves on import (policies.components.registered).
from policies import (  # noqa: F401
    constrained_rerank,
    exposure_boost,
    fair_exposure,
    implicit_models,
    learned_rerank,
    plackett_luce,
    posterior_sampling,
    scalarized,
)
from policies.components import BuildContext, Scorer, ScorerSpec
from policies.debiasing import Debias
from policies.interactions import Interactions, TrainingNeeds
from policies.intervention import Intervention
from policies.label_delay import CORRECTIONS, LABELS
from policies.models import SOURCE_CODE, Model, Retrieval
from policies.pipeline import (
    Annotate,
    Deployment,
    Intervene,
    Replay,
    Rerank,
    Retrieve,
    Select,
    Serving,
    SlateBatch,
    Target,
)
from policies.randomness import Randomness
from policies.rerank import Identity, Reranker
from policies.retrieval import ModelRetrieval, Retriever
from policies.scorers import Popularity, Random
from policies.selection import Greedy, Selector, UniformRandom

BOOTSTRAPS = ("random", "popularity")
# Component groups of the policy node, their base class and the fields the policy passes them.
COMPONENT_GROUPS: dict[str, type] = {
    "scorer": ScorerSpec,
    "selector": Selector,
    "rerank": Reranker,
    "debias": Debias,
    "intervention": Intervention,
    "retrieve": Retriever,
}
POLICY_KEYS = (
    "name",
    "slate_size",
    "n_candidates",
    "bootstrap",
    "training_window_rounds",
    "label",
    "label_correction",
)
# Keys of the flat policy config before the nested groups: where each one lives now.
MOVED_KEYS = {
    "epsilon": "policy.selector.epsilon",
    "epsilon_decay": "policy.selector.decay",
    "epsilon_min": "policy.selector.epsilon_min",
    "temperature": "policy.selector.temperature",
    "beta": "policy.selector.beta",
    "mc_samples": "policy.selector.mc_samples",
    "boost_slots": "policy.selector.boost_slots",
    "boost_quantile": "policy.selector.quantile",
    "factors": "policy.scorer.factors",
    "regularization": "policy.scorer.regularization",
    "iterations": "policy.scorer.iterations",
    "alpha": "policy.scorer.alpha",
    "warm_start": "policy.scorer.warm_start",
    "bandit_regularization": "policy.scorer.regularization (policy/scorer=linear)",
    "intervention_share": "policy.intervention.share",
    "ipw_propensity": "policy.debias.propensity",
    "ipw_clip": "policy.debias.clip",
    "popularity_power": "policy.debias.popularity_power",
    "exposure_weight": "policy.debias.exposure_weight",
}


@dataclass(frozen=True)
class PolicyConfig:
    """The ``policy`` node: policy-wide keys plus one validated component per group.

    ``experiments.config.parse_policy`` builds it from a composed config (naming a bad key as
    ``policy.<group>.<key>``); cross-component rules are checked in ``__post_init__``.
    """

    name: str
    scorer: ScorerSpec
    selector: Selector
    slate_size: int = 10
    n_candidates: int = 30
    bootstrap: str = "random"
    training_window_rounds: int | None = None
    rerank: Reranker = field(default_factory=Identity)
    debias: Debias = field(default_factory=Debias)
    intervention: Intervention | None = None
    retrieve: Retriever = field(default_factory=ModelRetrieval)
    # What the training matrix counts and how delayed conversions are corrected
    # (policies.label_delay); the defaults train on clicks.
    label: str = "clicks"
    label_correction: str = "none"

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"policy.name={self.name!r}: must be a non-empty string")
        self._check_label()
        for key in ("slate_size", "n_candidates"):
            if not is_positive_int(getattr(self, key)):
                raise ValueError(f"policy.{key}={getattr(self, key)!r}: must be a positive integer")
        if self.bootstrap not in BOOTSTRAPS:
            raise ValueError(
                f"policy.bootstrap={self.bootstrap!r}: unknown; choose one of {', '.join(BOOTSTRAPS)}"
            )
        w = self.training_window_rounds
        if w is not None and not is_positive_int(w):
            raise ValueError(
                f"policy.training_window_rounds={w!r}: must be null or a positive integer"
            )
        if self.selector.slate_size != self.slate_size:
            raise ValueError(
                f"policy.selector: built for slate_size={self.selector.slate_size}, "
                f"policy.slate_size={self.slate_size}"
            )
        scorer, selector = self.scorer.label, self.selector.label
        if self.rerank.learns:
            rerank = self.rerank.label
            if not self.scorer.retrieves:
                raise ValueError(
                    f"policy.rerank={rerank!r}: scorer {scorer!r} retrieves no candidates and has "
                    "no model scores to rerank; use a scorer that ranks (als, bpr, lmf, item_knn, "
                    "linear, popularity)"
                )
            if self.selector.needs_posterior:
                raise ValueError(
                    f"policy.rerank={rerank!r}: selector {selector!r} draws from the model's "
                    "posterior, not from the reranked order; use a selector without a posterior "
                    "(greedy, epsilon_greedy, softmax, boost)"
                )
            if (
                getattr(self.rerank, "position_ipw", False)
                and getattr(self.rerank, "ipw_propensity", "") == "randomized"
                and (self.intervention is None or self.intervention.kind != "shuffle")
            ):
                raise ValueError(
                    "policy.rerank.ipw_propensity='randomized': estimates θ from shuffled "
                    "traffic; needs policy/intervention=shuffle (or ipw_propensity=em)"
                )
            slot = getattr(self.rerank, "reference_slot", 0)
            if slot >= self.slate_size:
                raise ValueError(
                    f"policy.rerank.reference_slot={slot!r}: must be < policy.slate_size="
                    f"{self.slate_size}"
                )
        self.rerank.check_policy(self.slate_size, self.selector, self.scorer)
        if not self.scorer.retrieves and not isinstance(self.selector, UniformRandom):
            raise ValueError(
                f"policy.selector={selector!r}: scorer {scorer!r} has no ranking to select "
                "from; use policy/selector=uniform"
            )
        if not isinstance(self.retrieve, ModelRetrieval) and not self.scorer.retrieves:
            raise ValueError(
                f"policy.retrieve={self.retrieve.label!r}: its model retriever needs a scorer "
                f"that ranks items; scorer {scorer!r} retrieves nothing (use policy/retrieve=model)"
            )
        if self.selector.needs_posterior and not self.scorer.has_posterior:
            raise ValueError(
                f"policy.scorer={scorer!r}: selector {selector!r} needs a posterior; use a scorer "
                "with one (als, linear)"
            )
        if self.debias.active and not getattr(self.scorer, "supports_debias", False):
            raise ValueError(
                f"policy.debias.mode={self.debias.mode!r}: reweights ALS training; needs "
                f"policy/scorer=als (got {scorer!r})"
            )
        if self.debias.active and self.selector.needs_posterior:
            raise ValueError(
                f"policy.debias.mode={self.debias.mode!r}: selector {selector!r} draws from the "
                "model's posterior, which is built from the raw click counts, not the debiased "
                "training data; use policy/debias=none or a selector without a posterior"
            )
        kind = "none" if self.intervention is None else self.intervention.kind
        if (
            self.debias.position_based
            and self.debias.propensity == "randomized"
            and kind != "shuffle"
        ):
            raise ValueError(
                "policy.debias.propensity='randomized': estimates θ from shuffled traffic; needs "
                f"policy/intervention=shuffle (got {kind!r})"
            )
        if self.intervention is not None and not isinstance(self.selector, Greedy):
            raise ValueError(
                f"policy.intervention.kind={kind!r}: randomizes a deterministic ranking; "
                f"needs policy/selector=greedy (got {selector!r})"
            )

    def _check_label(self) -> None:
        if self.label not in LABELS:
            raise ValueError(
                f"policy.label={self.label!r}: unknown; choose one of {', '.join(LABELS)}"
            )
        if self.label_correction not in CORRECTIONS:
            raise ValueError(
                f"policy.label_correction={self.label_correction!r}: unknown; choose one of "
                f"{', '.join(CORRECTIONS)}"
            )
        if self.label_correction != "none" and self.label != "conversions":
            raise ValueError(
                f"policy.label_correction={self.label_correction!r}: corrects delayed "
                f"conversion labels; needs policy.label=conversions (got {self.label!r})"
            )
        if self.label != "clicks" and self.selector.needs_posterior:
            raise ValueError(
                f"policy.label={self.label!r}: selector {self.selector.label!r} builds its "
                "posterior from click counts; use a selector without one (or policy.label=clicks)"
            )
        if self.label != "clicks" and (self.debias.active or self.rerank.learns):
            what = "policy.debias.mode" if self.debias.active else "policy.rerank"
            raise ValueError(
                f"policy.label={self.label!r}: {what} reweights or learns from clicks; "
                "conversion labels train the scorer only (use policy.label=clicks)"
            )

    def check_catalog(self, n_items: int) -> None:
        """Cross-check against the catalog size (``world.n_items``)."""
        if self.slate_size > n_items:
            raise ValueError(
                f"policy.slate_size={self.slate_size}: larger than the catalog (world.n_items={n_items})"
            )
        self.selector.check_catalog(n_items)

    @property
    def training_needs(self) -> TrainingNeeds:
        return TrainingNeeds(
            window_rounds=self.training_window_rounds,
            keep_exposures=self.debias.training_needs.keep_exposures,
            rerank_rounds=getattr(self.rerank, "training_rounds", 1) if self.rerank.learns else 0,
            label=self.label,
            label_correction=self.label_correction,
        )


@dataclass
class ServingPolicy:
    """Serves from the deployed model; before the first deployment, from ``bootstrap``."""

    config: PolicyConfig
    scorer: Scorer
    n_items: int
    bootstrap: ServingPolicy | None = None
    item_content: np.ndarray | None = field(default=None, repr=False)  # for retrieve=mixed
    items: ItemMetadata | None = field(default=None, repr=False)  # what serving stages may read
    # The learned reranker's trainer (policy/rerank=learned): fits a reranker with every model.
    reranker: Any = None
    # The reranker's runtime state (Reranker.initial_state; the constrained reranker's
    # multipliers and exposure window), updated by the engine between batches.
    rerank_state: Any = None
    # Sorted ids of the items not in the catalog now (a living world; the engine sets it at
    # each catalog event with set_unavailable); None: the whole catalog is available.
    unavailable: np.ndarray | None = field(default=None, init=False)
    # Cold-start layers that give cold users a vector in each newly deployed model, in order
    # (each has ``on_deploy(deployment)``; transfer's mapped prior before onboarding's fold-in).
    user_seeders: list[Any] = field(default_factory=list)
    deployment: Deployment | None = field(default=None, init=False)
    # Target selectors replayed on every served slate (policies.replay), with their own stream.
    shadow: dict[str, Selector] = field(default_factory=dict, init=False)
    _shadow_rand: Randomness | None = field(default=None, init=False, repr=False)
    stages: list[Callable[[Serving], None]] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        self._build_stages()

    def _build_stages(self) -> None:
        """The pipeline, in :data:`policies.pipeline.STAGES` order (identity stages are left out)."""
        cfg = self.config
        stages: list[Callable[[Serving], None]] = [self.retrieve_stage]
        if not isinstance(cfg.rerank, Identity):
            stages.append(Rerank(cfg.rerank, self.rerank_state))
        stages.append(Select(cfg.selector))
        if cfg.intervention is not None:
            stages.append(Intervene(cfg.intervention))
        stages.append(Annotate(cfg.selector.explore_source))
        if self.shadow:
            stages.append(Replay(self.shadow, self._shadow_rand))
        self.stages = stages

    @property
    def retrieve_stage(self) -> Retrieve:
        cfg = self.config
        return Retrieve(
            self.n_candidates, cfg.slate_size, self.n_items, cfg.retrieve, self.unavailable
        )

    def set_unavailable(self, unavailable: np.ndarray | None) -> None:
        """What the catalog holds changed (a living world): from now on, never serve the items
        in ``unavailable`` (sorted ids; None or empty: every item is available)."""
        if unavailable is not None and unavailable.size == 0:
            unavailable = None
        self.unavailable = unavailable
        self._build_stages()
        if self.bootstrap is not None:
            self.bootstrap.set_unavailable(unavailable)

    def retrieve(self, user_ids: np.ndarray, deployment: Deployment) -> tuple[Retrieval, Any]:
        """What the retrieval stage returns for ``user_ids`` from ``deployment`` (deployed or
        not), and the filter it applied (the model-quality probe's recall@N)."""
        stage = self.retrieve_stage
        filter_rows = stage.filter(deployment.model, user_ids)
        return stage.candidates(deployment, user_ids, filter_rows), filter_rows

    @property
    def selector(self) -> Selector:
        return self.config.selector

    @property
    def intervention(self) -> Intervention | None:
        return self.config.intervention

    def set_shadow_targets(self, targets: Mapping[str, Selector], seed: int) -> None:
        """Replay ``targets`` on every slate this policy serves from a model (for OPE)."""
        self.shadow = dict(targets)
        self._shadow_rand = Randomness.from_seed(seed)
        self._build_stages()

    def switch_selector(self, target: Target) -> None:
        """Serve as ``target`` from now on, keeping the deployed model (the on-policy ground
        truth of an off-policy estimate); no intervention."""
        self.config = dataclasses.replace(
            self.config, name=target.name, selector=target.selector, intervention=None
        )
        self._build_stages()

    def training_needs(self) -> TrainingNeeds:
        """What the training view of the log must keep for this policy."""
        return self.config.training_needs

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
        if not self.config.scorer.retrieves:
            return 0
        # Retrieval feeds the slate, so it is never smaller than the slate.
        return min(max(self.config.n_candidates, self.config.slate_size), self.n_items)

    def fit(self, interactions: Interactions, version: int) -> Deployment:
        """Train on the log; the result serves only after :meth:`deploy`."""
        model = self.scorer.fit(interactions, version)
        index = self.config.retrieve.build_index(interactions, model, self.item_content)
        fitted = None if self.reranker is None else self.reranker.fit(interactions, version)
        return Deployment(model, interactions.item_impressions.copy(), index, reranker=fitted)

    def deploy(self, deployment: Deployment) -> None:
        self.deployment = deployment
        for seeder in self.user_seeders:
            seeder.on_deploy(deployment)

    def serve(
        self, user_ids: np.ndarray, rand: Randomness, times: np.ndarray | None = None
    ) -> SlateBatch:
        """Slates for a batch of requests (at simulated hours ``times``, when the caller has
        them), with their propensities."""
        if self.deployment is None:
            if self.bootstrap is None:
                raise RuntimeError(f"policy {self.name!r} has no deployed model and no bootstrap")
            batch = self.bootstrap.serve(user_ids, rand, times)
            bootstrap = SOURCE_CODE["bootstrap"]
            return dataclasses.replace(
                batch,
                source=np.full_like(batch.source, bootstrap),
                candidate_source=np.full_like(batch.candidate_source, bootstrap),
                model_version=-1,
            )
        s = Serving(user_ids, self.deployment, rand, items=self.items, times=times)
        for stage in self.stages:
            stage(s)
        sel = s.selection
        return SlateBatch(
            items=sel.items,
            propensity=sel.propensity,
            prefix_propensity=sel.prefix_propensity,
            propensity_method=sel.method,
            score=s.score,
            source=s.source,
            model_version=self.deployment.version,
            policy_name=self.name,
            candidates=s.retrieval.items,
            candidate_scores=s.retrieval.scores,
            candidate_shown=s.candidate_shown,
            candidate_show_probability=sel.candidate_show_probability,
            candidate_source=s.retrieval.sources,
            original_position=s.original_position,
            intervention=s.intervention,
            shadow=s.shadow or None,
            candidate_retriever_rank=s.retrieval.rank,
            rerank_score=s.rerank_score,
        )


def build_policy(
    config: PolicyConfig,
    n_items: int,
    n_users: int,
    seed: int,
    relevance: Callable[[np.ndarray], np.ndarray] | None = None,
    item_content: np.ndarray | None = None,
    examination: np.ndarray | None = None,
    item_arrival_t: np.ndarray | None = None,
    rerank_seed: int | None = None,
    items: ItemMetadata | None = None,
) -> ServingPolicy:
    """Compose a serving policy (and its bootstrap) from a validated config.

    ``seed`` is a plain int for the model's own randomness (ALS init, popularity tie-break);
    slate draws come from the :class:`Randomness` passed to :meth:`ServingPolicy.serve`.
    ``relevance`` is the truth callback (oracle only); ``item_content`` is item metadata
    (``ItemMetadata.content``, linear bandit only); ``examination`` the world's true
    examination curve θ_k (``policy.debias.propensity=oracle`` only: a simulator-only reference).
    ``item_arrival_t`` (``ItemMetadata.arrival_t``) and ``rerank_seed`` (an int from the run's
    stream ``policy.rerank``; ``seed`` when not given) serve a learned reranker. ``items`` is
    the platform's item metadata (``ItemMetadata``: content, creator, price, publish time), which
    the objectives of multi-objective ranking read; ``item_content`` and ``item_arrival_t``
    default to its fields.
    """
    if items is not None:
        item_content = items.content if item_content is None else item_content
        item_arrival_t = items.arrival_t if item_arrival_t is None else item_arrival_t
    config.check_catalog(n_items)
    k = config.slate_size
    random_boot = config.bootstrap == "random"
    boot_cfg = PolicyConfig(
        name=config.bootstrap,
        scorer=Random() if random_boot else Popularity(),
        selector=UniformRandom(k) if random_boot else Greedy(k),
        slate_size=k,
        n_candidates=config.n_candidates,
    )
    ctx = BuildContext(n_users=n_users, n_items=n_items, slate_size=k, seed=seed)
    bootstrap = ServingPolicy(boot_cfg, boot_cfg.scorer.build(ctx), n_items)
    bootstrap.deploy(bootstrap.fit(Interactions.empty(n_users, n_items), version=-1))
    ctx = dataclasses.replace(
        ctx,
        needs_posterior=config.selector.needs_posterior,
        relevance=relevance if config.scorer.uses_ground_truth else None,
        item_content=item_content,
        item_arrival_t=item_arrival_t,
        examination=examination,
        debias=config.debias,
        items=items,
    )
    scorer = config.scorer.build(ctx)
    reranker = None
    if config.rerank.learns:
        reranker = config.rerank.build(ctx, seed if rerank_seed is None else rerank_seed)
    return ServingPolicy(
        config,
        scorer,
        n_items,
        bootstrap=bootstrap,
        item_content=item_content,
        items=items,
        reranker=reranker,
        rerank_state=config.rerank.initial_state(items, n_items, k),
    )


__all__ = [
    "BOOTSTRAPS",
    "Deployment",
    "PolicyConfig",
    "ServingPolicy",
    "SlateBatch",
    "Target",
    "build_policy",
]
