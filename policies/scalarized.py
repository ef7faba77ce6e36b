"""The scalarization reranker: one score, a weighted sum of normalized named objectives.

``policy/rerank=scalarized``. Each candidate of a request gets

    score = Σ_o w_o · normalize_o(value_o)

over the objectives of :mod:`policies.objectives` (relevance, revenue, freshness, diversity,
fairness) with the config's ``weights`` (≥ 0, at least one > 0; a missing objective weighs 0).
``normalize`` is min-max per request over its candidates, ``(v − min)/(max − min)`` in [0, 1], so a
weight is the score range the objective can move within a request and weights are comparable
across objectives whatever their units; an objective that ties over a request's candidates is 0
for all of them (it decides nothing there), and the other objectives, then the retrieval order,
decide.

The candidates are reordered best first by that score (ties keep the retrieval order). With a
diversity weight > 0 the score of a candidate depends on what is already in the slate, so the first
``slate_size`` positions are a greedy sequential pick: at slot ``k`` each remaining candidate's
diversity gain (:class:`policies.objectives.Diversity`) is min-max normalized over the remaining
candidates and the best total is placed; the candidates after the slate follow in the order of the
static objectives. It is one loop over the ``K`` slots, vectorized over the batch's requests.

The selector (greedy, epsilon_greedy, softmax, boost) then draws from the reranked order with its
own exact propensities, as from a retrieval order; a score-driven selector (softmax) sees the
scalarized score (for the greedy picks, the total at the time of the pick). Selectors that draw
from the model's posterior (ucb, thompson) are refused.

It learns like ``policy/rerank=learned``: at every retrain the relevance calibration is refit on
the model-served impressions of the last ``training_rounds`` rounds
(:func:`policies.objectives.fit_calibration`; with too little or degenerate data, a documented
default — :attr:`ScalarizedTrainer.fallbacks` counts them) and deployed with the new model. The
impressions' ``rerank_score`` logs the calibrated relevance (``P(click at slot 0 | the score's gap
to the request's best candidate)``) of each shown item; ``score`` stays the model's score. No randomness: the same batch gives the same order,
whatever the batch size (every computation is per request).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from agents.catalog import ItemMetadata
from agents.validation import is_number
from policies.components import BuildContext
from policies.interactions import Interactions
from policies.learned_rerank import permute_candidates
from policies.models import SOURCE_CODE, SOURCES, Retrieval
from policies.objectives import (
    OBJECTIVES,
    Calibration,
    Diversity,
    ObjectiveInputs,
    fit_calibration,
    normalize,
    objective,
)
from policies.rerank import Reranker
from policies.selection import SelectionContext


def _default_weights() -> dict[str, float]:
    return {"relevance": 1.0, "revenue": 0.0, "freshness": 0.0, "diversity": 0.0, "fairness": 0.0}


@dataclass(frozen=True)
class Scalarized(Reranker):
    """The ``policy.rerank`` node of ``policy/rerank=scalarized`` (see the module docstring)."""

    weights: Mapping[str, Any] = field(default_factory=_default_weights)
    freshness_halflife_days: float = 7.0  # τ of the freshness objective
    training_rounds: int = 3  # calibrate relevance on the impressions of the last N log rounds
    min_calibration_clicks: int = 50  # fewer clicks (or non-clicks): the default calibration

    name: ClassVar[str] = "scalarized"
    learns: ClassVar[bool] = True

    def __post_init__(self) -> None:
        raw = self.weights
        if not isinstance(raw, Mapping):
            self._fail("weights", "must be a mapping objective -> weight")
        weights = dict.fromkeys(OBJECTIVES, 0.0)
        for key, value in raw.items():
            where = f"policy.rerank.weights.{key}={value!r}"
            if key not in OBJECTIVES:
                raise ValueError(f"{where}: unknown objective; choose from {', '.join(OBJECTIVES)}")
            if not is_number(value) or value < 0:
                raise ValueError(f"{where}: must be a number >= 0")
            weights[str(key)] = float(value)
        if not any(w > 0 for w in weights.values()):
            raise ValueError(
                f"policy.rerank.weights={dict(raw)!r}: all weights are 0; give at least one "
                "objective a positive weight"
            )
        object.__setattr__(self, "weights", weights)
        self._number("freshness_halflife_days", 0.0, low_open=True)
        self._positive_int("training_rounds", "min_calibration_clicks")

    def __hash__(self) -> int:  # the weights are a dict: hash them as sorted pairs
        return hash(
            (
                tuple(sorted(self.weights.items())),
                self.freshness_halflife_days,
                self.training_rounds,
                self.min_calibration_clicks,
            )
        )

    @property
    def active(self) -> tuple[str, ...]:
        """The objectives with a positive weight, in :data:`OBJECTIVES` order."""
        return tuple(o for o in OBJECTIVES if self.weights[o] > 0)

    def rerank(self, ctx: SelectionContext) -> SelectionContext:
        return ctx  # before the first fit: the retrieval order

    def build(self, ctx: BuildContext, seed: int) -> ScalarizedTrainer:
        """The runtime trainer (no randomness: ``seed`` is unused)."""
        needs = [o for o in self.active if objective(o).needs_items]
        if needs and ctx.items is None:
            raise ValueError(
                f"policy.rerank.weights.{needs[0]}: needs the platform's item metadata "
                "(build_policy(items=...))"
            )
        return ScalarizedTrainer(self, ctx.items, ctx.slate_size)


@dataclass
class ScalarizedTrainer:
    """Refits the relevance calibration at every retrain; counts the fits that fell back."""

    config: Scalarized
    items: ItemMetadata | None
    slate_size: int
    fits: int = 0
    fallbacks: Counter = field(default_factory=Counter)  # reason -> fits that used the default

    def calibrate(self, interactions: Interactions) -> Calibration:
        data = interactions.rerank
        e = np.empty(0)
        if data is None:
            rows = (e, e, e.astype(bool), e)
        else:  # the calibrated feature: each impression's gap to its request's best candidate
            top = np.full(data.rows.n, np.nan) if data.top_score is None else data.top_score
            gap = data.rows.score - top
            rows = (gap, data.rows.position, data.rows.clicked, data.rows.source)
        return fit_calibration(
            *rows, self.slate_size, len(SOURCES), self.config.min_calibration_clicks
        )

    def fit(self, interactions: Interactions, version: int) -> FittedScalarized:
        calibration = self.calibrate(interactions)
        self.fits += 1
        logged = np.flatnonzero(calibration.n_rows)
        if logged.size == 0:  # no model-served impression yet (the first model)
            self.fallbacks["too_few_rows"] += 1
        for r in logged:  # each logged source that could not be fitted
            if calibration.fallback[r] is not None:
                self.fallbacks[calibration.fallback[r]] += 1
        now = 0.0 if interactions.rerank is None else float(interactions.rerank.now)
        return FittedScalarized(self.config, calibration, self.items, self.slate_size, now, version)


@dataclass
class FittedScalarized:
    """What serving reads: the config, the calibration fitted at the cut-off and the metadata."""

    config: Scalarized
    calibration: Calibration
    items: ItemMetadata | None
    slate_size: int
    now: float  # the last logged hour before the cut-off: "now" of requests without a time
    version: int
    _unit: tuple[ItemMetadata, np.ndarray] | None = field(default=None, init=False, repr=False)

    def unit_catalog(self, items: ItemMetadata) -> np.ndarray:
        """The catalog's unit content (:meth:`Diversity.unit_catalog`), kept for its metadata."""
        if self._unit is None or self._unit[0] is not items:
            self._unit = (items, Diversity.unit_catalog(items))
        return self._unit[1]

    def inputs(
        self, ctx: SelectionContext, sources: np.ndarray | int = SOURCE_CODE["als"]
    ) -> ObjectiveInputs:
        """The objectives' inputs for ``ctx``, its candidates from retrieval ``sources``."""
        times = ctx.times
        if times is None:
            times = np.full(ctx.n, self.now)
        items = ctx.items if ctx.items is not None else self.items
        return ObjectiveInputs(
            candidates=np.asarray(ctx.candidates, dtype=np.int64),
            scores=np.asarray(ctx.scores, dtype=np.float64),
            times=np.asarray(times, dtype=np.float64),
            items=items,
            item_impressions=np.asarray(ctx.item_impressions, dtype=np.float64),
            calibration=self.calibration,
            sources=sources,
        )

    def objective_values(
        self, ctx: SelectionContext, sources: np.ndarray | int = SOURCE_CODE["als"]
    ) -> dict[str, np.ndarray]:
        """Every static objective's raw values ``(n, C)`` in the context's candidate order."""
        x = self.inputs(ctx, sources)
        h = self.config.freshness_halflife_days
        return {o: objective(o, h).values(x) for o in OBJECTIVES if not objective(o, h).sequential}

    def order(
        self, ctx: SelectionContext, sources: np.ndarray | int = SOURCE_CODE["als"]
    ) -> tuple[np.ndarray, np.ndarray, ObjectiveInputs]:
        """``(order, score, inputs)``: candidate indices best first ``(n, C)``, the scalarized
        score of each in that order, and the objectives' inputs."""
        cfg, x = self.config, self.inputs(ctx, sources)
        n, c = x.candidates.shape
        static = np.zeros((n, c))
        for name in cfg.active:
            obj = objective(name, cfg.freshness_halflife_days)
            if not obj.sequential:
                static += cfg.weights[name] * normalize(obj.values(x))
        rank = np.argsort(-static, axis=1, kind="stable")  # ties: the retrieval order
        w_div = cfg.weights["diversity"]
        if w_div <= 0 or c == 0:
            return rank, np.take_along_axis(static, rank, axis=1), x
        k = min(self.slate_size, c)
        div = Diversity()
        unit = div.unit_content(x, self.unit_catalog(x.metadata))
        rows = np.arange(n)
        placed = np.zeros((n, c), dtype=bool)
        dist_sum = np.zeros((n, c))
        pair_sum = np.zeros(n)
        picks = np.empty((n, k), dtype=np.int64)
        picked_score = np.empty((n, k))
        for slot in range(k):  # a loop over the slate's slots, vectorized over requests
            free = ~placed
            total = static + w_div * normalize(div.gain(dist_sum, pair_sum, slot), free)
            total = np.where(free, total, -np.inf)
            j = np.argmax(total, axis=1)  # first maximum: ties keep the retrieval order
            picks[:, slot] = j
            picked_score[:, slot] = total[rows, j]
            pair_sum = pair_sum + dist_sum[rows, j]
            dist_sum = dist_sum + div.distance_to(unit, j)
            placed[rows, j] = True
        # the rest in the static order: the stable ranking with the picked ones removed
        rest_mask = ~np.take_along_axis(placed, rank, axis=1)
        rest = rank[rest_mask].reshape(n, c - k)
        order = np.concatenate([picks, rest], axis=1)
        score = np.concatenate([picked_score, np.take_along_axis(static, rest, axis=1)], axis=1)
        return order, score, x

    def rerank(
        self, ctx: SelectionContext, retrieval: Retrieval
    ) -> tuple[SelectionContext, Retrieval, np.ndarray]:
        """The context with candidates best first by the scalarized score (``scores`` = that
        score), the retrieval permuted the same way, and the calibrated relevance ``(n, C)`` in
        that order (logged as ``rerank_score``)."""
        order, score, x = self.order(ctx, np.asarray(retrieval.sources, dtype=np.int64))
        prob = np.take_along_axis(x.p_click, order, axis=1)
        retrieval = permute_candidates(retrieval, order)
        ctx = dataclasses.replace(ctx, candidates=retrieval.items, scores=score.astype(np.float32))
        return ctx, retrieval, prob
