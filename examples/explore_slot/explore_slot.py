"""A user-defined slate selector, outside the recloop package: one reserved exploration slot.

Many production systems keep the top of the slate greedy and reserve the last slot(s) for
exploration. ``ExploreSlot`` shows the greedy top ``K - slots`` candidates and fills the last
``slots`` slots uniformly at random, without replacement, from the remaining retrieved candidates
(ranks ``K - slots .. C - 1``). Everything is closed-form, so the logged propensities are exact:

* a head item is in its slot with probability 1;
* a tail slot holds a given pool candidate with probability ``1 / P`` (``P = C - K + slots``);
* the slate probability is ``Π_j 1 / (P - j)`` over the tail slots;
* a pool candidate is shown with probability ``slots / P``.

It plugs in through its config node (``configs/policy/selector/explore_slot.yaml``, which names
this class with ``_target_``) and passes the same contract test as the built-in selectors
(``tests/policies/test_selection_contract.py``). Run it from the repository root with::

    PYTHONPATH=examples/explore_slot recloop --config-dir examples/explore_slot/configs \\
        policy/selector=explore_slot policy.name=explore_slot
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from policies.propensity import EXACT, candidate_index, repeats_earlier
from policies.randomness import Randomness
from policies.selection import Selection, SelectionContext, Selector


@dataclass(frozen=True)
class ExploreSlot(Selector):
    """Greedy head, the last ``slots`` slots uniform over the rest of the candidates."""

    slate_size: int  # set by the policy (policy.slate_size)
    slots: int = 1  # exploration slots at the bottom of the slate

    name: ClassVar[str] = "explore_slot"  # the label in errors and the log's source column

    def __post_init__(self) -> None:
        if isinstance(self.slots, bool) or not isinstance(self.slots, int):
            self._fail("slots", "must be an integer")
        if not 1 <= self.slots <= self.slate_size:
            self._fail("slots", f"must be in [1, policy.slate_size={self.slate_size}]")

    def select(self, ctx: SelectionContext, rand: Randomness) -> Selection:
        n, c = ctx.candidates.shape
        k, r = self.slate_size, self.slots
        head, pool = k - r, c - (k - self.slots)
        # Uniform picks without replacement among the pool ranks: one (n, r) block of uniforms.
        keys = rand.uniform.random((n, pool))
        picks = head + np.argsort(keys, axis=1, kind="stable")[:, :r]
        order = np.concatenate([np.broadcast_to(np.arange(head), (n, head)), picks], axis=1)
        items = np.take_along_axis(ctx.candidates, order, axis=1)
        sequential = np.ones((n, k))
        sequential[:, head:] = 1.0 / (pool - np.arange(r))
        propensity = np.ones((n, k))
        propensity[:, head:] = 1.0 / pool
        explored = np.zeros((n, k), dtype=bool)
        explored[:, head:] = True
        show = np.full((n, c), r / pool)
        show[:, :head] = 1.0
        return Selection(items, propensity, np.cumprod(sequential, axis=1), explored, show, EXACT)

    def probabilities(
        self, ctx: SelectionContext, items: np.ndarray, rand: Randomness | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact probabilities of given slates (what off-policy evaluation replays)."""
        c = ctx.candidates.shape[1]
        k, r = self.slate_size, self.slots
        head, pool = k - r, c - (k - self.slots)
        found, index = candidate_index(ctx.candidates, items)
        in_head = index[:, :head] == np.arange(head)
        in_pool = found[:, head:] & (index[:, head:] >= head) & ~repeats_earlier(items)[:, head:]
        marginal = np.concatenate([in_head, in_pool / pool], axis=1).astype(np.float64)
        sequential = np.concatenate([in_head, in_pool / (pool - np.arange(r))], axis=1).astype(
            np.float64
        )
        return marginal, np.cumprod(sequential, axis=1)

    def first_slot(self, scores: np.ndarray, n_items: int, model_version: int = 0) -> np.ndarray:
        """Rank 0 when the head is not empty; else uniform over the candidates."""
        n, c = scores.shape
        probs = np.zeros((n, c + 1))
        if self.slate_size > self.slots:
            probs[:, 0] = 1.0
        else:
            probs[:, :c] = 1.0 / c
        return probs
