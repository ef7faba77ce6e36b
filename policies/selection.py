"""Slate selection from a ranked candidate list, with the exact per-slot propensity.

Every selector consumes a fixed block of ``2 * slate_size`` uniforms per request (drawn by the
caller from the policy stream, in request order), so the draws — and hence the slates — do not
depend on how requests are batched.

The logged ``propensity`` is the *marginal* probability that this item is in this slot given the
context (the candidate ranking and the user's filter), which is what slot-level IPS needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Protocol

import numpy as np

from policies.exclusion import PAD, n_excluded, nth_allowed


@dataclass(frozen=True)
class Selection:
    items: np.ndarray  # (n, K) int64
    propensity: np.ndarray  # (n, K) float64, in (0, 1]
    explored: np.ndarray  # (n, K) bool, True where the item came from exploration


class SlateSelector(Protocol):
    name: str

    def select(
        self, candidates: np.ndarray, excluded: np.ndarray, n_items: int, uniforms: np.ndarray
    ) -> Selection: ...


@dataclass(frozen=True)
class Greedy:
    """Top-K of the candidate ranking; deterministic, propensity 1."""

    slate_size: int
    name: ClassVar[str] = "greedy"

    def select(
        self, candidates: np.ndarray, excluded: np.ndarray, n_items: int, uniforms: np.ndarray
    ) -> Selection:
        items = candidates[:, : self.slate_size].astype(np.int64)
        ones = np.ones(items.shape)
        return Selection(items, ones, np.zeros(items.shape, dtype=bool))


@dataclass(frozen=True)
class EpsilonGreedy:
    """Each slot keeps the greedy item with probability ``1-ε``; otherwise it shows a uniformly
    random eligible item outside the greedy top-K (drawn without replacement across slots).

    Marginals (exact): the greedy item ``g_k`` is in slot ``k`` with probability ``1-ε``; an item
    of the exploration pool ``P = eligible \\ top-K`` is in slot ``k`` with probability
    ``ε / |P|`` (by symmetry of sampling without replacement); nothing else can be there.
    """

    slate_size: int
    epsilon: float
    name: ClassVar[str] = "epsilon_greedy"

    def select(
        self, candidates: np.ndarray, excluded: np.ndarray, n_items: int, uniforms: np.ndarray
    ) -> Selection:
        k = self.slate_size
        greedy = candidates[:, :k].astype(np.int64)
        explore = uniforms[:, :k] < self.epsilon
        blocked = np.sort(np.concatenate([excluded, greedy], axis=1), axis=1)
        pool = n_items - n_excluded(blocked)  # |P| per request
        items = greedy.copy()
        for slot in range(k):  # loop over slots (K is small); vectorized over requests
            rows = np.flatnonzero(explore[:, slot])
            if rows.size == 0:
                continue
            taken = explore[rows, :slot].sum(axis=1)  # pool items already drawn for this request
            j = np.floor(uniforms[rows, k + slot] * (pool[rows] - taken)).astype(np.int64)
            drawn = nth_allowed(blocked[rows], j)
            items[rows, slot] = drawn
            grown = np.concatenate([blocked[rows], drawn[:, None]], axis=1)
            grown.sort(axis=1)
            blocked = _grow(blocked, rows, grown)
        propensity = np.where(explore, self.epsilon / pool[:, None], 1.0 - self.epsilon)
        return Selection(items, propensity, explore)


@dataclass(frozen=True)
class UniformRandom:
    """K distinct eligible items uniformly at random, in random order: propensity ``1/|E|``."""

    slate_size: int
    name: ClassVar[str] = "random"

    def select(
        self, candidates: np.ndarray, excluded: np.ndarray, n_items: int, uniforms: np.ndarray
    ) -> Selection:
        k = self.slate_size
        n = excluded.shape[0]
        eligible = n_items - n_excluded(excluded)
        blocked = excluded
        items = np.empty((n, k), dtype=np.int64)
        all_rows = np.arange(n)
        for slot in range(k):
            j = np.floor(uniforms[:, k + slot] * (eligible - slot)).astype(np.int64)
            items[:, slot] = nth_allowed(blocked, j)
            grown = np.concatenate([blocked, items[:, slot : slot + 1]], axis=1)
            grown.sort(axis=1)
            blocked = _grow(blocked, all_rows, grown)
        propensity = np.broadcast_to(1.0 / eligible[:, None], (n, k)).copy()
        return Selection(items, propensity, np.ones((n, k), dtype=bool))


def _grow(blocked: np.ndarray, rows: np.ndarray, grown_rows: np.ndarray) -> np.ndarray:
    """Return ``blocked`` widened by one column, with ``rows`` replaced by ``grown_rows``."""
    out = np.concatenate([blocked, np.full((blocked.shape[0], 1), PAD)], axis=1)
    out[rows] = grown_rows
    return out
