"""Pareto dominance among arms: which arms no other arm beats on every objective.

An objective is a value and a direction (higher or lower is better). Arm ``b`` **dominates**
arm ``a`` when ``b`` is at least as good as ``a`` on every objective and strictly better on at
least one. The **front** is the set of arms no arm dominates. Here the values are means over
seeds; :func:`dominators` says nothing about seed noise (the sweep report adds that from paired
differences).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence


def dominates(b: Sequence[float], a: Sequence[float], higher: Sequence[bool]) -> bool:
    """Does ``b`` dominate ``a``? ``higher[k]``: objective ``k`` is better when larger. Any
    non-finite value makes the answer False (an arm without a value is not compared)."""
    if not all(math.isfinite(v) for v in (*a, *b)):
        return False
    better = False
    for vb, va, up in zip(b, a, higher, strict=True):
        gain = vb - va if up else va - vb
        if gain < 0:
            return False
        better |= gain > 0
    return better


def dominators(
    values: Mapping[str, Sequence[float]], higher: Sequence[bool]
) -> dict[str, list[str]]:
    """For each arm (in ``values``' order), the arms that dominate it, in the same order; an
    empty list marks an arm on the front."""
    return {
        a: [b for b in values if b != a and dominates(values[b], values[a], higher)] for a in values
    }


def front(values: Mapping[str, Sequence[float]], higher: Sequence[bool]) -> list[str]:
    """The arms with finite values that no arm dominates, in ``values``' order."""
    dom = dominators(values, higher)
    return [a for a, by in dom.items() if not by and all(math.isfinite(v) for v in values[a])]
