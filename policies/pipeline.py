"""The serving pipeline: the stages a batch of requests goes through, and what they produce.

``ServingPolicy.serve`` (``policies/policy.py``) runs these stages in :data:`STAGES` order over a
numpy batch of requests: retrieve → rerank → select → intervene → annotate (→ replay, for
off-policy evaluation). Each stage is a small frozen class with one job that fills its fields of
the :class:`Serving` batch; the result is a :class:`SlateBatch`, what ``sim`` logs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from policies.exclusion import batch_filter, padded_rows
from policies.intervention import Intervention
from policies.models import SOURCE_CODE, Model, Retrieval
from policies.randomness import Randomness
from policies.replay import slate_probabilities
from policies.rerank import Reranker
from policies.selection import Selection, SelectionContext, Selector


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
    candidate_source: np.ndarray  # (n, C) int8: the retriever that produced each candidate
    original_position: np.ndarray | None = None  # (n, K) int16 slot before an intervention
    intervention: np.ndarray | None = None  # (n,) int8 code into INTERVENTIONS
    # Off-policy evaluation: each shadow target's (marginal, prefix) probabilities of this slate.
    shadow: dict[str, tuple[np.ndarray, np.ndarray]] | None = None
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


@dataclass(frozen=True)
class Retrieve:
    """Candidates from the deployed model (the one retriever today): the top ``n_candidates``
    per request, skipping what the user may not be shown."""

    n_candidates: int
    slate_size: int
    n_items: int

    def __call__(self, s: Serving) -> None:
        model = s.deployment.model
        c, k = self.n_candidates, self.slate_size
        s.filter_rows = batch_filter(model.seen, s.user_ids, min_allowed=max(c, 2 * k))
        s.retrieval = model.retrieve(s.user_ids, c, s.filter_rows)
        s.ctx = SelectionContext(
            user_ids=s.user_ids,
            candidates=s.retrieval.items,
            scores=s.retrieval.scores,
            excluded=padded_rows(s.filter_rows),
            n_items=self.n_items,
            model=model,
            model_version=s.deployment.version,
            item_impressions=s.deployment.item_impressions,
        )


@dataclass(frozen=True)
class Rerank:
    """The configured reranker; a learned one serves the model deployed with the scorer's
    (``Deployment.reranker``), which reorders the candidate list itself (``s.retrieval``: the
    candidates as logged and annotated, best first in the order the selector sees)."""

    reranker: Reranker

    def __call__(self, s: Serving) -> None:
        fitted = s.deployment.reranker
        if fitted is None:
            s.ctx = self.reranker.rerank(s.ctx)
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
    retriever of the candidate, or the selector's exploration source where it explored.
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
        s.source = np.where(s.selection.explored, code, retrieval.source[:, None]).astype(np.int8)
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
