"""Randomized interventions on the served order: the data that makes position bias estimable.

On a share of requests (``policy.intervention_share``) the greedy slate is re-ordered at random:

* ``shuffle`` — RandTop-K: the K items are put in a uniformly random order, so every item is
  equally likely in every slot and the click-through rate per slot is proportional to the
  examination probability ``θ_k``;
* ``swap`` — Joachims, Swaminathan & Schnabel (2017): the item ranked first is swapped with the
  item in slot ``m``, ``m`` uniform in ``1..K-1``; the originally-first item's click-through rate in
  slot ``m`` over slot 0 estimates ``θ_m / θ_0`` while disturbing users far less than a shuffle.

The intervention is part of the logging policy, so the logged propensities include it exactly.
It wraps a deterministic ranking (``policy.selector=greedy``): with greedy slot ``j`` of an item,
``P(item in slot k) = (1-s)·[j = k] + s·P_intervention(j → k)``. Each intervened impression also
logs ``original_position`` (its greedy slot) and each request its ``intervention`` kind, which is
what the estimators in :mod:`policies.position_bias` need.

Draws come from their own generator (``Randomness.intervention``), a fixed block per request
(one coin and ``K`` keys), so switching an intervention on never shifts any other draw and batching
never changes outcomes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from math import lgamma
from typing import ClassVar

import numpy as np

from policies.components import Component
from policies.selection import Selection

INTERVENTIONS = ("none", "shuffle", "swap")
INTERVENTION_CODE = {name: code for code, name in enumerate(INTERVENTIONS)}


@dataclass(frozen=True)
class Intervened:
    """A selection after the intervention, with what the log needs to undo it."""

    selection: Selection
    original_position: np.ndarray  # (n, K) int16: each shown item's slot before the intervention
    kind: np.ndarray  # (n,) int8 code into INTERVENTIONS (none where the coin said no)


@dataclass(frozen=True)
class Intervention(Component):
    """Re-order a share of deterministic slates at random (see the module docstring)."""

    slate_size: int
    kind: str = "none"
    share: float = 0.0
    group: ClassVar[str] = "intervention"

    def __post_init__(self) -> None:
        if self.kind not in INTERVENTIONS:
            self._fail("kind", f"unknown; choose one of {', '.join(INTERVENTIONS)}")
        self._number("share", 0.0, 1.0)
        if self.kind != "none" and self.slate_size < 2:
            raise ValueError(
                f"policy.slate_size={self.slate_size}: an intervention needs at least 2 slots"
            )

    def apply(self, selection: Selection, rng: np.random.Generator) -> Intervened:
        """Intervene on ``selection`` (which must be deterministic: every propensity 1)."""
        n, k = selection.items.shape
        identity = np.broadcast_to(np.arange(k, dtype=np.int16), (n, k))
        if self.kind == "none":
            return Intervened(selection, identity.copy(), np.zeros(n, dtype=np.int8))
        if not np.all(selection.prefix_propensity == 1.0):
            raise ValueError(
                f"policy.intervention={self.kind!r} wraps a deterministic ranking; use "
                "policy.selector=greedy"
            )
        draws = rng.random((n, 1 + k))  # fixed block per request: coin, then K keys
        on = draws[:, 0] < self.share
        s = self.share
        if self.kind == "shuffle":
            perm = np.argsort(draws[:, 1:], axis=1, kind="stable")  # uniform permutation
            # P(item in slot j | intervened) = 1/K; prefix of length j+1: (K-j-1)!/K!.
            random_marginal = np.full((n, k), 1.0 / k)
            log_prefix = np.array([lgamma(k - j) - lgamma(k + 1) for j in range(k)])
            random_prefix = np.broadcast_to(np.exp(log_prefix), (n, k))
        else:
            m = 1 + np.minimum((draws[:, 1] * (k - 1)).astype(np.int64), k - 2)  # 1..K-1
            perm = np.broadcast_to(np.arange(k), (n, k)).copy()
            rows = np.arange(n)
            perm[rows, 0], perm[rows, m] = m, 0
        order = np.where(on[:, None], perm, identity)  # shown slot j holds greedy slot order[j]
        items = np.take_along_axis(selection.items, order, axis=1)
        moved = order != np.arange(k)
        if self.kind == "shuffle":
            stayed = ~moved
            propensity = (1 - s) * stayed + s * random_marginal
            same_prefix = np.cumprod(stayed, axis=1).astype(bool)
            prefix = (1 - s) * same_prefix + s * random_prefix
        else:
            # Marginal of the realized (item, slot), greedy slot j shown in slot t: j = t = 0 only
            # without a swap -> 1 - s; j = t > 0 unless swapped with t -> (1 - s) + s (K-2)/(K-1);
            # j != t (one of them is 0) -> s / (K - 1).
            propensity = np.where(moved, s / (k - 1), (1 - s) + s * (k - 2) / (k - 1))
            propensity[:, 0] = np.where(moved[:, 0], s / (k - 1), 1 - s)
            # Any prefix fixes slot 0, which fixes the whole intervention.
            prefix = np.broadcast_to(np.where(on, s / (k - 1), 1 - s)[:, None], (n, k)).copy()
        show = selection.candidate_show_probability  # a permutation of the slate: unchanged
        out = dataclasses.replace(
            selection,
            items=items,
            propensity=propensity.astype(np.float64),
            prefix_propensity=prefix.astype(np.float64),
            candidate_show_probability=show,
            # A re-ordered slot is exploration (a rerank), as in ``source = explore``.
            explored=np.take_along_axis(selection.explored, order, axis=1) | moved,
        )
        kind = np.where(on, INTERVENTION_CODE[self.kind], 0).astype(np.int8)
        return Intervened(out, order.astype(np.int16), kind)
