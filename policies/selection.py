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
as one. This module holds the contract and the closed-form selectors (greedy, epsilon-greedy with an
optional decay, uniform); stochastic rankers live in their own modules.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Protocol

import numpy as np

from policies.exclusion import PAD, n_excluded, nth_allowed
from policies.propensity import EXACT
from policies.randomness import Randomness


@dataclass(frozen=True)
class SelectionContext:
    """Everything a selector may use for one batch of requests."""

    user_ids: np.ndarray  # (n,)
    candidates: np.ndarray  # (n, C) int64, ranked by the model's (mean) score, best first
    scores: np.ndarray  # (n, C) the model's scores of the candidates
    excluded: np.ndarray  # (n, E) sorted, PAD-padded: items this request may not show
    n_items: int
    model: object  # the deployed model (posterior-capable ones serve UCB / Thompson)
    model_version: int
    item_impressions: np.ndarray  # (n_items,) impressions per item in the model's training log

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


class SlateSelector(Protocol):
    name: str
    slate_size: int

    def select(self, ctx: SelectionContext, rand: Randomness) -> Selection: ...


def deterministic(ctx: SelectionContext, order: np.ndarray, k: int) -> Selection:
    """A deterministic slate: candidate indices ``order[:, :k]``; every probability is 1 or 0."""
    idx = order[:, :k]
    items = np.take_along_axis(ctx.candidates, idx, axis=1)
    show = np.zeros(ctx.candidates.shape)
    np.put_along_axis(show, idx, 1.0, axis=1)
    ones = np.ones(items.shape)
    return Selection(items, ones, ones, ~(idx == np.arange(k)), show, EXACT)


@dataclass(frozen=True)
class Greedy:
    """Top-K of the candidate ranking; deterministic."""

    slate_size: int
    name: ClassVar[str] = "greedy"

    def select(self, ctx: SelectionContext, rand: Randomness) -> Selection:
        order = np.broadcast_to(np.arange(self.slate_size), (ctx.n, self.slate_size))
        return deterministic(ctx, order, self.slate_size)


@dataclass(frozen=True)
class EpsilonGreedy:
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


@dataclass(frozen=True)
class UniformRandom:
    """K distinct eligible items uniformly at random, in random order: marginal ``1/|E|``, slate
    probability ``Π_k 1/(|E| - k)``."""

    slate_size: int
    name: ClassVar[str] = "uniform"

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


def _add_column(blocked: np.ndarray, rows: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``blocked`` widened by one column; ``rows`` get ``values`` added (rows stay sorted)."""
    out = np.concatenate([blocked, np.full((blocked.shape[0], 1), PAD)], axis=1)
    grown = np.concatenate([blocked[rows], values[:, None]], axis=1)
    grown.sort(axis=1)
    out[rows] = grown
    return out
