"""Predicates for config values, shared by every layer's self-validating config dataclass.

It lives in the lowest layer (``agents``) so ``policies`` and ``sim`` can use it too.
YAML and hydra overrides can deliver a ``bool`` or a ``str`` where a number was meant: a
``bool`` is never accepted as a number here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np


def is_number(value: Any) -> bool:
    """A finite real number (int or float, not bool)."""
    return (
        isinstance(value, (int, float, np.integer, np.floating))
        and not isinstance(value, bool)
        and bool(np.isfinite(value))
    )


def is_positive_int(value: Any) -> bool:
    """An integer > 0 (not bool, not a float such as 5.0)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value > 0


def world_mapping(value: Any, key: str, keys: tuple[str, ...]) -> dict[str, Any]:
    """A nested ``world.<key>`` mapping with only ``keys`` (``None``: empty), or a one-line
    ``ValueError`` naming the key and value."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"world.{key}={value!r}: must be a mapping with keys {', '.join(keys)}")
    unknown = sorted(set(value) - set(keys))
    if unknown:
        raise ValueError(
            f"world.{key}.{unknown[0]}={value[unknown[0]]!r}: unknown key; keys: {', '.join(keys)}"
        )
    return dict(value)
