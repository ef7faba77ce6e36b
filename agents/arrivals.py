"""When users arrive: a time-varying intensity (daily profile × flash crowds) for session draws.

Each user's sessions are an inhomogeneous Poisson process of intensity
``λ_u(t) = session_rate_u / 24 · f(t)`` per hour, with ``f`` piecewise constant:

* ``world.diurnal`` — the daily profile, 24 hourly values (hour 0 = midnight, simulated hour
  ``t`` falls in hour ``floor(t) mod 24``), normalized to mean 1 so the mean sessions per day
  stay ``sessions_per_day``; ``flat`` (all 1, today's behaviour) or a named shape
  (:data:`SHAPES`), or 24 non-negative values;
* ``world.flash_crowds`` — ``{start_hour, duration_hours, multiplier}``: ``f`` is multiplied by
  ``multiplier`` on ``[start_hour, start_hour + duration_hours)`` (absolute simulated hours;
  overlapping crowds multiply). A flash crowd adds sessions: the day's mean rises.

A day's sessions are then drawn per user as a Poisson count with mean
``session_rate_u / 24 · ∫ f`` over the day, and each session's time by the inverse of the
cumulative intensity at a uniform point (``np.interp`` on the segments' knots) — the same two
generator calls, in the same order, as the flat case, which keeps its exact draws.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from agents.validation import is_number

# Named daily shapes (hour 0 = midnight), normalized to mean 1 when used.
SHAPES: dict[str, tuple[float, ...]] = {
    "flat": (1.0,) * 24,
    # quiet nights, a lunchtime bump and an evening peak ~2x the mean around 20:00-21:00
    "evening_peak": (
        0.6, 0.4, 0.3, 0.2, 0.2, 0.3, 0.5, 0.8, 1.0, 1.0, 1.0, 1.1,
        1.2, 1.1, 1.0, 1.0, 1.1, 1.3, 1.6, 2.0, 2.2, 2.0, 1.5, 1.0,
    ),
}  # fmt: skip
FLASH_KEYS = ("start_hour", "duration_hours", "multiplier")


def diurnal_profile(value: Any) -> np.ndarray:
    """The 24 hourly values of ``world.diurnal`` normalized to mean 1, or a one-line
    ``ValueError`` naming the key."""
    if isinstance(value, str):
        if value not in SHAPES:
            raise ValueError(
                f"world.diurnal={value!r}: unknown shape; choose one of {', '.join(SHAPES)} "
                "or give 24 non-negative values"
            )
        values = SHAPES[value]
    elif isinstance(value, Sequence) and len(value) == 24 and all(is_number(v) for v in value):
        values = tuple(float(v) for v in value)
        if min(values) < 0 or sum(values) <= 0:
            raise ValueError(
                f"world.diurnal={list(value)!r}: values must be >= 0 with a positive sum"
            )
    else:
        raise ValueError(
            f"world.diurnal={value!r}: must be a named shape ({', '.join(SHAPES)}) or 24 numbers"
        )
    profile = np.asarray(values, dtype=np.float64)
    return profile / profile.mean()


def flash_crowds(value: Any) -> tuple[tuple[float, float, float], ...]:
    """``world.flash_crowds`` as ``(start_hour, duration_hours, multiplier)`` triples."""
    if value is None:
        return ()
    if isinstance(value, (str, Mapping)) or not isinstance(value, Sequence):
        raise ValueError(
            f"world.flash_crowds={value!r}: must be a list of {{{', '.join(FLASH_KEYS)}}}"
        )
    crowds = []
    for i, crowd in enumerate(value):
        key = f"world.flash_crowds[{i}]"
        if not isinstance(crowd, Mapping) or set(crowd) != set(FLASH_KEYS):
            raise ValueError(f"{key}={crowd!r}: must have exactly the keys {', '.join(FLASH_KEYS)}")
        start, duration, mult = (crowd[k] for k in FLASH_KEYS)
        if not is_number(start) or start < 0:
            raise ValueError(f"{key}.start_hour={start!r}: must be a number of hours >= 0")
        if not is_number(duration) or duration <= 0:
            raise ValueError(f"{key}.duration_hours={duration!r}: must be a number of hours > 0")
        if not is_number(mult) or mult < 0:
            raise ValueError(f"{key}.multiplier={mult!r}: must be a number >= 0")
        crowds.append((float(start), float(duration), float(mult)))
    return tuple(crowds)


@dataclass(frozen=True)
class ArrivalIntensity:
    """The piecewise-constant relative intensity ``f(t)`` (see the module docstring)."""

    profile: np.ndarray  # (24,) mean 1
    crowds: tuple[tuple[float, float, float], ...] = ()

    @property
    def is_flat(self) -> bool:
        return not self.crowds and bool(np.all(self.profile == 1.0))

    def cumulative(self, t_start: float, t_end: float) -> tuple[np.ndarray, np.ndarray]:
        """Knots of ``f`` on ``[t_start, t_end]`` and ``∫ f`` from ``t_start`` to each knot."""
        inner = np.arange(np.floor(t_start) + 1.0, t_end)
        edges = [t for s, d, _ in self.crowds for t in (s, s + d) if t_start < t < t_end]
        knots = np.unique(np.concatenate([[t_start, t_end], inner, edges]))
        mid = (knots[:-1] + knots[1:]) / 2.0
        f = self.profile[np.floor(mid).astype(np.int64) % 24]
        for start, duration, mult in self.crowds:
            f = np.where((mid >= start) & (mid < start + duration), f * mult, f)
        return knots, np.concatenate([[0.0], np.cumsum(np.diff(knots) * f)])

    def times(self, t_start: float, t_end: float, uniforms: np.ndarray) -> np.ndarray:
        """Arrival times for ``uniforms`` in [0, 1): the inverse cumulative intensity."""
        knots, cum = self.cumulative(t_start, t_end)
        # Strictly increasing knots of the cumulative intensity: drop zero-intensity segments.
        keep = np.concatenate([[True], np.diff(cum) > 0])
        times = np.interp(uniforms * cum[-1], cum[keep], knots[keep])
        return np.minimum(times, np.nextafter(t_end, -np.inf))
