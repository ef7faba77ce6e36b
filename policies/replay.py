"""Target-policy propensities of *logged* slates: replaying a selector on the logged context.

Off-policy estimators need ``π1(logged slate | context)`` for a target ``π1`` that did not serve.
A selector draws slates; replaying instead *scores a given slate* under a selector, on the same
:class:`~policies.selection.SelectionContext` the logging policy saw. For every slot it returns
the target's marginal ``P(this item in this slot | context)`` and the prefix probability
``P(slots 0..k exactly as logged | context)`` — the same quantities the log holds for the logging
policy, so slot-level, prefix-level and whole-slate ratios can be formed. Each selector computes
its own (:meth:`~policies.selection.Selector.probabilities`); this function checks the input.

What the context must hold (and so what a log must keep to replay from files): the deployed model
version (scores of the retrieved candidates, in rank order — the ``candidates`` table), the items
the request could not be shown (the user's already-clicked items known to that model), and the
catalog size. Greedy, ε-greedy and uniform need only those; softmax needs the candidates'
scores; UCB and Thompson also need the model's posterior (the live model object, which the
simulator has while it serves: the replay runs then).

Exact for greedy, UCB, ε-greedy and uniform; for softmax (Plackett–Luce) the prefix
probabilities are exact and the marginals past slot 0 are Monte-Carlo estimates from
``mc_samples`` fresh samples; for Thompson both are Monte-Carlo frequencies over ``mc_samples``
fresh posterior samples (so a logged slate no sample reproduces gets probability 0).
"""

from __future__ import annotations

import numpy as np

from policies.randomness import Randomness
from policies.selection import SelectionContext, Selector


def slate_probabilities(
    selector: Selector, ctx: SelectionContext, items: np.ndarray, rand: Randomness | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``(marginal, prefix)``, both (n, K) float64, of the logged ``items`` (n, K) under
    ``selector`` on ``ctx``. ``rand`` is needed only for Monte-Carlo estimates."""
    items = np.asarray(items, dtype=np.int64)
    if items.shape != (ctx.n, selector.slate_size):
        raise ValueError(
            f"items: shape {items.shape} != (requests, slate_size) {(ctx.n, selector.slate_size)}"
        )
    if not selector.replayable:
        raise NotImplementedError(
            f"replaying {selector.label!r} on a logged slate is not supported"
        )
    return selector.probabilities(ctx, items, rand)


__all__ = ["slate_probabilities"]
