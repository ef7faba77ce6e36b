"""New/under-exposed item boost: reserved slots give rarely shown items a fair chance.

:class:`ReservedSlots` holds the exact-propensity draw that both boosts share: the last
``boost_slots`` slots show items drawn uniformly without replacement from a pool common to the
batch, minus each request's filtered items and greedy head. The two selectors differ only in
the pool:

* :class:`ExposureBoost` (``boost``): the catalog's least-exposed items (:func:`under_exposed`);
* :class:`NewItemBoost` (``new_item_boost``): the items that arrived during the run
  (``ItemMetadata.arrival_t > 0``) and are still in the catalog, until an evidence rule ends
  their exploration (:func:`new_items`).

Both pools are read from the deployed model's log facts, the item metadata and the catalog's
availability: they change only at deployments and catalog events, never with a request's time,
so a batch's result does not depend on how requests are batched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from agents.catalog import ItemMetadata
from agents.validation import is_number, is_positive_int
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


def ctr_interval_width(clicks: np.ndarray, impressions: np.ndarray) -> np.ndarray:
    """Width of the central 95% interval of ``Beta(1 + clicks, 1 + impressions − clicks)``: the
    uncertainty left about an item's click-through rate under a uniform prior."""
    c = np.minimum(clicks, impressions)
    a, b = 1.0 + c, 1.0 + impressions - c
    from scipy import stats  # lazily: half a second of every start-up

    return stats.beta.ppf(0.975, a, b) - stats.beta.ppf(0.025, a, b)


def new_items(
    items: ItemMetadata,
    item_impressions: np.ndarray,
    unavailable: np.ndarray | None,
    until_impressions: int | None,
    max_interval_width: float | None = None,
    item_clicks: np.ndarray | None = None,
) -> np.ndarray:
    """Sorted ids of the items that arrived during the run (``arrival_t > 0``), are in the
    catalog (not in ``unavailable``) and still lack evidence: fewer than ``until_impressions``
    logged impressions and (when ``max_interval_width`` is set) a 95% CTR interval
    (:func:`ctr_interval_width`, from ``item_clicks``) at least that wide. An item leaves the
    pool as soon as either rule is met (a rule set to None never is)."""
    candidate = np.asarray(items.arrival_t) > 0
    if unavailable is not None and unavailable.size:
        candidate[unavailable] = False
    if until_impressions is not None:
        candidate &= item_impressions < until_impressions
    pool = np.flatnonzero(candidate)
    if max_interval_width is not None and pool.size:
        if item_clicks is None:
            raise ValueError("new_items: max_interval_width needs the items' clicks")
        width = ctr_interval_width(item_clicks[pool], item_impressions[pool])
        pool = pool[width >= max_interval_width]
    return pool


@dataclass(frozen=True)
class ReservedSlots(Selector):
    """The last ``boost_slots`` slots show items drawn uniformly (without replacement) from the
    user's eligible pool items ``U_u`` (the subclass's :meth:`pool`, minus the request's filtered
    items and greedy head); the other slots are greedy.

    Exact: a boosted slot holds a given pool item with probability ``1/|U_u|`` and the slate
    probability is ``Π_j 1/(|U_u| - j)`` over the boosted slots. A request whose pool has fewer
    than ``boost_slots`` items is served greedily (probability 1).
    """

    slate_size: int
    boost_slots: int
    replayable: ClassVar[bool] = False

    def __post_init__(self) -> None:
        if not is_positive_int(self.boost_slots) or self.boost_slots > self.slate_size:
            self._fail(
                "boost_slots", f"must be an integer in [1, policy.slate_size={self.slate_size}]"
            )

    def pool(self, ctx: SelectionContext) -> np.ndarray:
        """Sorted ids of the items the reserved slots draw from, common to the batch."""
        raise NotImplementedError

    def select(self, ctx: SelectionContext, rand: Randomness) -> Selection:
        k, r = self.slate_size, self.boost_slots
        head = k - r
        uniforms = rand.uniform.random((ctx.n, 2 * k))
        pool_items = self.pool(ctx)
        in_pool = np.zeros(ctx.n_items + 1, dtype=bool)
        in_pool[pool_items] = True
        # The pool of a request: pool items minus its filtered items and greedy head,
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


@dataclass(frozen=True)
class ExposureBoost(ReservedSlots):
    """Reserved slots for the under-exposed items: those whose logged impressions are at most
    the ``quantile`` of the available catalog's impressions (:func:`under_exposed`)."""

    quantile: float
    name: ClassVar[str] = "boost"

    def __post_init__(self) -> None:
        super().__post_init__()
        self._number("quantile", 0.0, 1.0)

    def pool(self, ctx: SelectionContext) -> np.ndarray:
        return under_exposed(ctx.item_impressions, self.quantile, ctx.unavailable)


@dataclass(frozen=True)
class NewItemBoost(ReservedSlots):
    """Reserved slots for new items: items that arrived during the run and are in the catalog,
    until they have ``until_impressions`` impressions in the deployed model's training log or
    (``max_interval_width``) their 95% CTR interval ``Beta(1 + clicks, 1 + impressions −
    clicks)`` is narrower than that (:func:`new_items`). An item's clicks are the column sums of
    the deployed model's click matrix (``Model.seen``: its training window's clicks). With fewer
    than ``boost_slots`` new items left to explore, requests are served greedily.

    The evidence is what the deployed model was trained on, so it lags by one retrain cycle:
    an item keeps its chance until the first deployment after it crossed the bar (read per
    request, it would make the pool depend on the order and batching of requests)."""

    until_impressions: int | None = 50
    max_interval_width: float | None = None
    name: ClassVar[str] = "new_item_boost"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.until_impressions is not None and not is_positive_int(self.until_impressions):
            self._fail("until_impressions", "must be null or a positive integer")
        width = self.max_interval_width
        if width is not None and not (is_number(width) and 0.0 < width <= 1.0):
            self._fail("max_interval_width", "must be null or a number in (0, 1]")
        if self.until_impressions is None and width is None:
            self._fail(
                "until_impressions",
                "with max_interval_width=null too, no evidence would ever end a new item's "
                "exploration; set one of them",
            )

    def pool(self, ctx: SelectionContext) -> np.ndarray:
        if ctx.items is None:
            raise ValueError(
                "policy.selector='new_item_boost': needs the platform's item metadata "
                "(SelectionContext.items) to know which items are new"
            )
        clicks = None
        if self.max_interval_width is not None:
            seen = ctx.model.seen
            clicks = np.bincount(seen.indices, weights=seen.data, minlength=ctx.n_items)
        return new_items(
            ctx.items,
            ctx.item_impressions,
            ctx.unavailable,
            self.until_impressions,
            self.max_interval_width,
            clicks,
        )
