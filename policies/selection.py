"""Slate selection: the one contract every exploration strategy implements.

A selector turns the retrieved candidate ranking of each request into a slate and says, for every
slot shown, how likely it was:

* ``propensity`` — the *marginal* ``P(this item in this slot | context)``: what slot-level IPS needs;
* ``prefix_propensity`` — at slot ``k``, ``P(slots 0..k are exactly as shown | context)``; its last
  column is the whole-slate probability;
* ``candidate_show_probability`` — for each retrieved candidate, ``P(it is anywhere in the slate)``;
* ``method`` — ``exact`` when all three are closed-form, otherwise which are Monte-Carlo estimates
  (see :mod:`policies.propensity`).

The sequential conditional ``P(item | slots before it)`` is *not* the marginal and is never logged
as one.

A selector is one class that knows everything about itself (:class:`Selector`): how it draws a
slate (``select``), the probability of a *given* slate under it (``probabilities``: what
off-policy evaluation replays on a logged slate), the distribution of its first slot over the
candidates (``first_slot``: what the reward-model estimators need), whether it can be replayed
at all and whether it needs the model's posterior. Subclasses register by ``name``, so config
validation, dispatch and OPE read one registry. This module holds the contract and the
closed-form selectors (greedy, epsilon-greedy with an optional decay, uniform); stochastic
rankers live in their own modules.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from agents.catalog import ItemMetadata
from policies.components import Component
from policies.exclusion import PAD, is_member, n_excluded, nth_allowed
from policies.models import Model
from policies.propensity import EXACT, repeats_earlier
from policies.randomness import Randomness


@dataclass(frozen=True)
class SelectionContext:
    """Everything a selector may use for one batch of requests."""

    user_ids: np.ndarray  # (n,)
    candidates: np.ndarray  # (n, C) int64, ranked by the model's (mean) score, best first
    scores: np.ndarray  # (n, C) the model's scores of the candidates
    excluded: np.ndarray  # (n, E) sorted, PAD-padded: items this request may not show
    n_items: int
    model: Model  # the deployed model (PosteriorModel ones serve UCB / Thompson)
    model_version: int
    item_impressions: np.ndarray  # (n_items,) impressions per item in the model's training log
    # What the platform knows about its items (``BuildContext.items``), and each request's
    # simulated hour; None where the caller has neither (a unit test, an offline replay).
    items: ItemMetadata | None = None
    times: np.ndarray | None = None  # (n,) float64
    # Sorted ids of the items not in the catalog now (also in every ``excluded`` row); None: the
    # whole catalog is available.
    unavailable: np.ndarray | None = None

    @property
    def n(self) -> int:
        return int(self.user_ids.shape[0])


@dataclass(frozen=True)
class Selection:
    items: np.ndarray  # (n, K) int64
    propensity: np.ndarray  # (n, K) float64 marginal, in (0, 1]
    prefix_propensity: np.ndarray  # (n, K) float64, non-increasing along the slate
    explored: np.ndarray  # (n, K) bool: True where exploration (a draw or a rerank) filled the slot
    candidate_show_probability: np.ndarray  # (n, C) float64
    method: str

    @property
    def slate_propensity(self) -> np.ndarray:
        return self.prefix_propensity[:, -1]


class Selector(Component):
    """Base of every slate selector (subclasses are frozen dataclasses whose first field is
    ``slate_size``, set by the policy; the other fields are the keys of its config node)."""

    group: ClassVar[str] = "selector"
    replayable: ClassVar[bool] = True  # ``probabilities`` of a logged slate are available
    needs_posterior: ClassVar[bool] = False  # reads the model's PosteriorModel distribution
    # ``source`` of a slot this selector filled by exploring (a draw or a rerank).
    explore_source: ClassVar[str] = "explore"
    slate_size: int

    def select(self, ctx: SelectionContext, rand: Randomness) -> Selection:
        raise NotImplementedError

    def probabilities(
        self, ctx: SelectionContext, items: np.ndarray, rand: Randomness | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(marginal, prefix)`` (n, K) of the given slates ``items`` (n, K) under this selector
        on ``ctx`` (see :func:`policies.replay.slate_probabilities`)."""
        raise NotImplementedError(f"replaying {self.label!r} on a logged slate is not supported")

    def first_slot(
        self, scores: np.ndarray, n_items: int, model_version: int = 0
    ) -> np.ndarray | None:
        """Distribution of slot 0 over the ``C`` ranked candidates (by their ``scores`` (n, C))
        plus one aggregate "any other item" action: (n, C + 1), for requests served by model
        ``model_version``. ``None`` where it needs more than the logged candidates (e.g. a
        posterior)."""
        return None

    @property
    def has_first_slot(self) -> bool:
        """Whether :meth:`first_slot` is available (overridden by the subclass)."""
        return type(self).first_slot is not Selector.first_slot

    def check_catalog(self, n_items: int) -> None:
        """Cross-check against the catalog size (``world.n_items``)."""


SlateSelector = Selector  # the name the rest of the code used for the contract


def deterministic(ctx: SelectionContext, order: np.ndarray, k: int) -> Selection:
    """A deterministic slate: candidate indices ``order[:, :k]``; every probability is 1 or 0."""
    idx = order[:, :k]
    items = np.take_along_axis(ctx.candidates, idx, axis=1)
    show = np.zeros(ctx.candidates.shape)
    np.put_along_axis(show, idx, 1.0, axis=1)
    ones = np.ones(items.shape)
    return Selection(items, ones, ones, ~(idx == np.arange(k)), show, EXACT)


@dataclass(frozen=True)
class Greedy(Selector):
    """Top-K of the candidate ranking; deterministic."""

    slate_size: int
    name: ClassVar[str] = "greedy"

    def select(self, ctx: SelectionContext, rand: Randomness) -> Selection:
        order = np.broadcast_to(np.arange(self.slate_size), (ctx.n, self.slate_size))
        return deterministic(ctx, order, self.slate_size)

    def probabilities(
        self, ctx: SelectionContext, items: np.ndarray, rand: Randomness | None
    ) -> tuple[np.ndarray, np.ndarray]:
        return same_as(items, ctx.candidates[:, : self.slate_size])

    def first_slot(self, scores: np.ndarray, n_items: int, model_version: int = 0) -> np.ndarray:
        probs = np.zeros((scores.shape[0], scores.shape[1] + 1))
        probs[:, 0] = 1.0
        return probs


def same_as(items: np.ndarray, slate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities of ``items`` under a deterministic policy that shows ``slate``."""
    same = items == slate
    return same.astype(np.float64), np.cumprod(same, axis=1).astype(np.float64)


@dataclass(frozen=True)
class EpsilonGreedy(Selector):
    """Each slot keeps the greedy item with probability ``1-ε``; otherwise it shows a uniformly
    random eligible item outside the greedy top-K (drawn without replacement across slots).

    Exact probabilities: greedy ``g_k`` is in slot ``k`` w.p. ``1-ε``; a pool item
    (``P = eligible \\ top-K``) w.p. ``ε/|P|`` (symmetry of sampling without replacement). The
    slate probability is ``Π_k (1-ε or ε/(|P| - m_k))`` with ``m_k`` explored slots before ``k``.
    With ``decay < 1``, model version ``v`` explores with ``max(epsilon_min, ε·decay^v)``.
    """

    slate_size: int
    epsilon: float
    decay: float = 1.0
    epsilon_min: float = 0.0
    name: ClassVar[str] = "epsilon_greedy"

    def __post_init__(self) -> None:
        self._number("epsilon", 0.0, 1.0)
        self._number("decay", 0.0, 1.0, low_open=True)
        self._number("epsilon_min", 0.0, 1.0)

    def check_catalog(self, n_items: int) -> None:
        if 2 * self.slate_size > n_items:
            raise ValueError(
                f"policy.slate_size={self.slate_size}: epsilon_greedy needs world.n_items >= "
                f"2 * slate_size to have items to explore (world.n_items={n_items})"
            )

    def epsilon_at(self, model_version: int) -> float:
        return max(self.epsilon_min, self.epsilon * self.decay ** max(model_version, 0))

    def select(self, ctx: SelectionContext, rand: Randomness) -> Selection:
        k = self.slate_size
        eps = self.epsilon_at(ctx.model_version)
        uniforms = rand.uniform.random((ctx.n, 2 * k))
        greedy = ctx.candidates[:, :k]
        explore = uniforms[:, :k] < eps
        blocked = np.sort(np.concatenate([ctx.excluded, greedy], axis=1), axis=1)
        pool = ctx.n_items - n_excluded(blocked)  # |P| per request
        items = greedy.copy()
        for slot in range(k):  # a loop over slots (K is small), vectorized over requests
            rows = np.flatnonzero(explore[:, slot])
            if rows.size == 0:
                continue
            taken = explore[rows, :slot].sum(axis=1)
            j = np.floor(uniforms[rows, k + slot] * (pool[rows] - taken)).astype(np.int64)
            drawn = nth_allowed(blocked[rows], j)
            items[rows, slot] = drawn
            blocked = _add_column(blocked, rows, drawn)
        taken_before = np.cumsum(explore, axis=1) - explore
        sequential = np.where(explore, eps / (pool[:, None] - taken_before), 1.0 - eps)
        show = np.zeros(ctx.candidates.shape)
        show[:, :k] = 1.0 - eps
        show[:, k:] = k * eps / pool[:, None]
        return Selection(
            items=items,
            propensity=np.where(explore, eps / pool[:, None], 1.0 - eps),
            prefix_propensity=np.cumprod(sequential, axis=1),
            explored=explore,
            candidate_show_probability=show,
            method=EXACT,
        )

    def probabilities(
        self, ctx: SelectionContext, items: np.ndarray, rand: Randomness | None
    ) -> tuple[np.ndarray, np.ndarray]:
        k = self.slate_size
        eps = self.epsilon_at(ctx.model_version)
        greedy = ctx.candidates[:, :k]
        blocked = np.sort(np.concatenate([ctx.excluded, greedy], axis=1), axis=1)
        pool = (ctx.n_items - n_excluded(blocked)).astype(np.float64)  # |P|
        in_pool = ~is_member(blocked, items) & (items >= 0) & (items < ctx.n_items)
        kept = items == greedy
        marginal = np.where(kept, 1.0 - eps, np.where(in_pool, eps / pool[:, None], 0.0))
        explored = in_pool & ~kept
        before = np.cumsum(explored, axis=1) - explored
        sequential = np.where(
            kept,
            1.0 - eps,
            np.where(explored & ~repeats_earlier(items), eps / (pool[:, None] - before), 0.0),
        )
        return marginal, np.cumprod(sequential, axis=1)

    def first_slot(self, scores: np.ndarray, n_items: int, model_version: int = 0) -> np.ndarray:
        """``1-ε`` on rank 0, ``ε`` spread uniformly over the catalog outside the top-K (the
        user's filtered items are ignored, a small approximation), with the ε that model
        ``model_version`` explores with (decayed)."""
        n, c = scores.shape
        k = self.slate_size
        eps = self.epsilon_at(model_version)
        pool = max(n_items - k, 1)
        probs = np.zeros((n, c + 1))
        probs[:, 0] = 1.0 - eps
        probs[:, k:c] = eps / pool
        probs[:, c] = eps * max(pool - (c - k), 0) / pool
        return probs


@dataclass(frozen=True)
class UniformRandom(Selector):
    """K distinct eligible items uniformly at random, in random order: marginal ``1/|E|``, slate
    probability ``Π_k 1/(|E| - k)``."""

    slate_size: int
    name: ClassVar[str] = "uniform"
    explore_source: ClassVar[str] = "random"

    def select(self, ctx: SelectionContext, rand: Randomness) -> Selection:
        k = self.slate_size
        uniforms = rand.uniform.random((ctx.n, 2 * k))  # same block as epsilon-greedy
        eligible = ctx.n_items - n_excluded(ctx.excluded)
        blocked = ctx.excluded
        items = np.empty((ctx.n, k), dtype=np.int64)
        rows = np.arange(ctx.n)
        for slot in range(k):
            j = np.floor(uniforms[:, k + slot] * (eligible - slot)).astype(np.int64)
            items[:, slot] = nth_allowed(blocked, j)
            blocked = _add_column(blocked, rows, items[:, slot])
        sequential = 1.0 / (eligible[:, None] - np.arange(k))
        return Selection(
            items=items,
            propensity=np.broadcast_to(1.0 / eligible[:, None], (ctx.n, k)).copy(),
            prefix_propensity=np.cumprod(sequential, axis=1),
            explored=np.ones((ctx.n, k), dtype=bool),
            candidate_show_probability=np.broadcast_to(
                k / eligible[:, None], ctx.candidates.shape
            ).copy(),
            method=EXACT,
        )

    def probabilities(
        self, ctx: SelectionContext, items: np.ndarray, rand: Randomness | None
    ) -> tuple[np.ndarray, np.ndarray]:
        k = items.shape[1]
        eligible = (ctx.n_items - n_excluded(ctx.excluded)).astype(np.float64)
        ok = ~is_member(ctx.excluded, items) & (items >= 0) & (items < ctx.n_items)
        marginal = np.where(ok, 1.0 / eligible[:, None], 0.0)
        sequential = np.where(
            ok & ~repeats_earlier(items), 1.0 / (eligible[:, None] - np.arange(k)), 0.0
        )
        return marginal, np.cumprod(sequential, axis=1)

    def first_slot(self, scores: np.ndarray, n_items: int, model_version: int = 0) -> np.ndarray:
        """Uniform over the catalog."""
        n, c = scores.shape
        probs = np.zeros((n, c + 1))
        probs[:, :c] = 1.0 / n_items
        probs[:, c] = 1.0 - c / n_items
        return probs


def _add_column(blocked: np.ndarray, rows: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``blocked`` widened by one column; ``rows`` get ``values`` added (rows stay sorted)."""
    out = np.concatenate([blocked, np.full((blocked.shape[0], 1), PAD)], axis=1)
    grown = np.concatenate([blocked[rows], values[:, None]], axis=1)
    grown.sort(axis=1)
    out[rows] = grown
    return out
