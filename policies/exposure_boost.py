"""New/under-exposed item boost: reserved slots give rarely shown items a fair chance."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from agents.validation import is_positive_int
from policies.exclusion import PAD, nth_allowed
from policies.propensity import EXACT
from policies.randomness import Randomness
from policies.selection import Selection, SelectionContext, Selector


def under_exposed(
    item_impressions: np.ndarray, quantile: float, unavailable: np.ndarray | None = None
) -> np.ndarray:
    """Sorted ids of the catalog's items whose logged impressions are at most the ``quantile``
    of the catalog's impressions (never-shown items are always in it); items in ``unavailable``
    (not in the catalog now) are neither counted nor picked."""
    if unavailable is None or unavailable.size == 0:
        threshold = np.quantile(item_impressions, quantile)
        return np.flatnonzero(item_impressions <= threshold)
    available = np.ones(item_impressions.size, dtype=bool)
    available[unavailable] = False
    threshold = np.quantile(item_impressions[available], quantile)
    return np.flatnonzero(available & (item_impressions <= threshold))


@dataclass(frozen=True)
class ExposureBoost(Selector):
    """The last ``boost_slots`` slots show items drawn uniformly (without replacement) from the
    user's eligible under-exposed items; the other slots are greedy.

    Exact: a boosted slot holds a given pool item with probability ``1/|U_u|`` and the slate
    probability is ``Π_j 1/(|U_u| - j)`` over the boosted slots. A request whose pool has fewer
    than ``boost_slots`` items is served greedily (probability 1).
    """

    slate_size: int
    boost_slots: int
    quantile: float
    name: ClassVar[str] = "boost"
    replayable: ClassVar[bool] = False

    def __post_init__(self) -> None:
        if not is_positive_int(self.boost_slots) or self.boost_slots > self.slate_size:
            self._fail(
                "boost_slots", f"must be an integer in [1, policy.slate_size={self.slate_size}]"
            )
        self._number("quantile", 0.0, 1.0)

    def select(self, ctx: SelectionContext, rand: Randomness) -> Selection:
        k, r = self.slate_size, self.boost_slots
        head = k - r
        uniforms = rand.uniform.random((ctx.n, 2 * k))
        pool_items = under_exposed(ctx.item_impressions, self.quantile, ctx.unavailable)
        in_pool = np.zeros(ctx.n_items + 1, dtype=bool)
        in_pool[pool_items] = True
        # The pool of a request: under-exposed items minus its filtered items and greedy head,
        # addressed by position in ``pool_items`` so the complement trick applies.
        blocked_items = np.concatenate([ctx.excluded, ctx.candidates[:, :head]], axis=1)
        valid = blocked_items < PAD
        blocked_in_pool = valid & in_pool[np.where(valid, blocked_items, ctx.n_items)]
        positions = np.searchsorted(pool_items, np.where(blocked_in_pool, blocked_items, 0))
        blocked = np.sort(np.where(blocked_in_pool, positions, PAD), axis=1)
        size = pool_items.size - blocked_in_pool.sum(axis=1)  # |U_u|
        boosted = size >= r

        items = ctx.candidates[:, :k].copy()
        rows = np.flatnonzero(boosted)
        for j in range(r):  # a loop over the reserved slots, vectorized over requests
            pick = np.floor(uniforms[rows, k + j] * (size[rows] - j)).astype(np.int64)
            pos = nth_allowed(blocked[rows], pick)
            items[rows, head + j] = pool_items[pos]
            grown = np.sort(np.concatenate([blocked[rows], pos[:, None]], axis=1), axis=1)
            blocked = np.concatenate([blocked, np.full((ctx.n, 1), PAD)], axis=1)
            blocked[rows] = grown

        sequential = np.ones((ctx.n, k))
        sequential[rows, head:] = 1.0 / (size[rows, None] - np.arange(r))
        propensity = np.ones((ctx.n, k))
        propensity[rows, head:] = 1.0 / size[rows, None]
        explored = np.zeros((ctx.n, k), dtype=bool)
        explored[rows, head:] = True

        show = np.zeros(ctx.candidates.shape)
        show[:, :head] = 1.0
        cand_in_pool = in_pool[ctx.candidates[:, head:]]
        show[:, head:] = np.where(
            boosted[:, None],
            np.where(cand_in_pool, r / np.maximum(size, 1)[:, None], 0.0),
            (np.arange(head, ctx.candidates.shape[1]) < k).astype(float),
        )
        return Selection(items, propensity, np.cumprod(sequential, axis=1), explored, show, EXACT)
