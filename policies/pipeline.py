"""The serving pipeline: the stages a batch of requests goes through, and what they produce.

``ServingPolicy.serve`` (``policies/policy.py``) runs these stages in :data:`STAGES` order over a
numpy batch of requests: retrieve → rerank → select → intervene → annotate (→ replay, for
off-policy evaluation). Each stage is a small frozen class with one job that fills its fields of
the :class:`Serving` batch; the result is a :class:`SlateBatch`, what ``sim`` logs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from agents.catalog import ItemMetadata
from policies.exclusion import batch_filter, padded_rows
from policies.intervention import Intervention
from policies.models import SOURCE_CODE, Model, Retrieval
from policies.randomness import Randomness
from policies.replay import slate_probabilities
from policies.rerank import Reranker
from policies.retrieval import ModelRetrieval, Retriever
from policies.selection import Selection, SelectionContext, Selector


@dataclass(frozen=True)
class SlateBatch:
    """What one serving call decided for a batch of requests (all arrays row-aligned)."""

    items: np.ndarray  # (n, K) int64
    propensity: np.ndarray  # (n, K) float64 marginal P(item in slot | context)
    prefix_propensity: np.ndarray  # (n, K) float64 P(slots 0..k as shown | context)
    # policies.propensity.METHODS; per row (int8 codes into METHODS) when requests of one
    # batch were served differently (sim.serving_system: cache hits, the degraded fallback)
    propensity_method: str | np.ndarray
    score: np.ndarray  # (n, K) float32 (NaN where no model scored the item)
    source: np.ndarray  # (n, K) int8 codes into policies.models.SOURCES
    model_version: int | np.ndarray  # per row (n,) when a cache hit carries an older version
    policy_name: str
    candidates: np.ndarray  # (n, C) int64: the retrieved ranking
    candidate_scores: np.ndarray  # (n, C) float32
    candidate_shown: np.ndarray  # (n, C) bool
    candidate_show_probability: np.ndarray  # (n, C) float64
    candidate_source: np.ndarray  # (n, C) int8: the retriever that produced each candidate
    original_position: np.ndarray | None = None  # (n, K) int16 slot before an intervention
    intervention: np.ndarray | None = None  # (n,) int8 code into INTERVENTIONS
    # Off-policy evaluation: each shadow target's (marginal, prefix) probabilities of this slate.
    shadow: dict[str, tuple[np.ndarray, np.ndarray]] | None = None
    # (n, C) bool: which candidate cells are logged (None: all). A cache hit retrieves nothing
    # and a degraded request logs its K fallback items only.
    candidate_logged: np.ndarray | None = None
    # (n, C) int16: each candidate's rank in the retriever that produced it (None: its ``rank``)
    candidate_retriever_rank: np.ndarray | None = None
    # (n, K) float32: the learned reranker's predicted click probability (at its reference slot)
    # of each shown item; None (logged NaN) without a trained reranker.
    rerank_score: np.ndarray | None = None

    @property
    def slate_propensity(self) -> np.ndarray:
        return self.prefix_propensity[:, -1]


@dataclass(frozen=True)
class Deployment:
    """A trained model plus the log facts the selectors need while it serves."""

    model: Model
    item_impressions: np.ndarray
    # What the policy's retrieve component built from the same log (policies.retrieval); None
    # for the model's own retrieval.
    retrieval_index: Any = None
    reranker: Any = None  # policies.learned_rerank.FittedReranker trained with the model

    @property
    def version(self) -> int:
        return int(self.model.version)


@dataclass
class Serving:
    """One batch of requests travelling through the stages; each stage fills its fields."""

    user_ids: np.ndarray
    deployment: Deployment
    rand: Randomness
    filter_rows: sp.csr_matrix | None = None
    retrieval: Retrieval | None = None
    ctx: SelectionContext | None = None
    selection: Selection | None = None
    original_position: np.ndarray | None = None
    intervention: np.ndarray | None = None
    score: np.ndarray | None = None
    source: np.ndarray | None = None
    candidate_shown: np.ndarray | None = None
    rerank_score: np.ndarray | None = None
    shadow: dict[str, tuple[np.ndarray, np.ndarray]] | None = None
    rerank_prob: np.ndarray | None = None  # (n, C) learned reranker's P(click), candidate order
    items: ItemMetadata | None = None  # the platform's item metadata (BuildContext.items)
    times: np.ndarray | None = None  # (n,) float64: each request's simulated hour


@dataclass(frozen=True)
class Retrieve:
    """Candidates of the policy's retrieve component (:mod:`policies.retrieval`; by default the
    deployed model's top ``n_candidates``) per request, skipping what the user may not be shown."""

    n_candidates: int
    slate_size: int
    n_items: int
    retriever: Retriever = field(default_factory=ModelRetrieval)
    # Sorted ids of the items not in the catalog now (ServingPolicy.unavailable); None: all are.
    unavailable: np.ndarray | None = None

    def filter(self, model: Model, user_ids: np.ndarray) -> sp.csr_matrix:
        """What each request may not be shown (every retriever skips the same items): the
        user's clicked items and the items not in the catalog."""
        c, k = self.n_candidates, self.slate_size
        return batch_filter(
            model.seen, user_ids, min_allowed=max(c, 2 * k), unavailable=self.unavailable
        )

    def candidates(
        self, deployment: Deployment, user_ids: np.ndarray, filter_rows: sp.csr_matrix
    ) -> Retrieval:
        return self.retriever.retrieve(
            deployment.model,
            deployment.retrieval_index,
            user_ids,
            self.n_candidates,
            filter_rows,
        )

    def __call__(self, s: Serving) -> None:
        model = s.deployment.model
        s.filter_rows = self.filter(model, s.user_ids)
        s.retrieval = self.candidates(s.deployment, s.user_ids, s.filter_rows)
        s.ctx = SelectionContext(
            user_ids=s.user_ids,
            candidates=s.retrieval.items,
            scores=s.retrieval.scores,
            excluded=padded_rows(s.filter_rows),
            n_items=self.n_items,
            model=model,
            model_version=s.deployment.version,
            item_impressions=s.deployment.item_impressions,
            items=s.items,
            times=s.times,
            unavailable=self.unavailable,
        )


@dataclass(frozen=True)
class Rerank:
    """The configured reranker; a learned one serves the model deployed with the scorer's
    (``Deployment.reranker``), which reorders the candidate list itself (``s.retrieval``: the
    candidates as logged and annotated, best first in the order the selector sees)."""

    reranker: Reranker
    state: Any = None  # the reranker's runtime state (Reranker.initial_state), if any

    def __call__(self, s: Serving) -> None:
        fitted = s.deployment.reranker
        if fitted is None:
            s.ctx, s.retrieval = self.reranker.rerank_serving(s.ctx, s.retrieval, self.state)
            return
        s.ctx, s.retrieval, s.rerank_prob = fitted.rerank(s.ctx, s.retrieval)


@dataclass(frozen=True)
class Select:
    selector: Selector

    def __call__(self, s: Serving) -> None:
        s.selection = self.selector.select(s.ctx, s.rand)


@dataclass(frozen=True)
class Intervene:
    """Randomized re-ordering of a share of the (deterministic) slates."""

    intervention: Intervention

    def __call__(self, s: Serving) -> None:
        intervened = self.intervention.apply(s.selection, s.rand.intervention)
        s.selection = intervened.selection
        s.original_position, s.intervention = intervened.original_position, intervened.kind


@dataclass(frozen=True)
class Annotate:
    """The logged ``score`` and ``source`` of each slot.

    ``score`` is the score the policy saw: the retrieval score for a retrieved item, else (an
    item explored from beyond the candidates) the deployed model's score. ``source`` is the
    retriever of the candidate, or the selector's exploration source where it explored (an item
    from beyond the candidates not marked explored: the request's model retriever).
    """

    explore_source: str

    def __call__(self, s: Serving) -> None:
        retrieval, items = s.retrieval, s.selection.items
        match = retrieval.items[:, :, None] == items[:, None, :]  # (n, C, K)
        retrieved = match.any(axis=1)
        score = np.zeros(items.shape, dtype=np.float32)
        if retrieved.any():
            score = np.take_along_axis(retrieval.scores, match.argmax(axis=1), axis=1)
        if not retrieved.all():
            score = np.where(retrieved, score, s.deployment.model.score(s.user_ids, items))
        s.score = score.astype(np.float32)
        if s.rerank_prob is not None:
            prob = np.take_along_axis(s.rerank_prob, match.argmax(axis=1), axis=1)
            s.rerank_score = np.where(retrieved, prob, np.nan).astype(np.float32)
        code = SOURCE_CODE[self.explore_source]
        if retrieval.candidate_source is None:
            found = retrieval.source[:, None]
        else:
            found = np.take_along_axis(retrieval.candidate_source, match.argmax(axis=1), axis=1)
            found = np.where(retrieved, found, retrieval.source[:, None])
        s.source = np.where(s.selection.explored, code, found).astype(np.int8)
        s.candidate_shown = match.any(axis=2)


@dataclass(frozen=True)
class Replay:
    """Off-policy evaluation: each target selector's probabilities of the served slate."""

    targets: Mapping[str, Selector]
    rand: Randomness

    def __call__(self, s: Serving) -> None:
        s.shadow = {
            name: slate_probabilities(target, s.ctx, s.selection.items, self.rand)
            for name, target in self.targets.items()
        }


@dataclass(frozen=True)
class Target:
    """An off-policy evaluation target: a named selector on the logging policy's model."""

    name: str
    selector: Selector


STAGES = ("retrieve", "rerank", "select", "intervene", "annotate", "replay")
