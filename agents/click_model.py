"""Position-based click model: P(click at slot k) = θ_k · attraction(user, item)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PositionBasedClickModel:
    """Examination ``θ_k = (1/(k+1))^η`` falls with the 0-based slot ``k``.

    ``η = 0`` means no position bias; larger ``η`` means users rarely look past the top slots.
    """

    eta: float

    def __post_init__(self) -> None:
        if not np.isfinite(self.eta) or self.eta < 0:
            raise ValueError(f"click model eta must be a finite number >= 0, got {self.eta}")

    def examination(self, n_slots: int) -> np.ndarray:
        return (1.0 / (np.arange(n_slots) + 1.0)) ** self.eta

    def click_probability(self, attraction: np.ndarray) -> np.ndarray:
        """``attraction`` is (n_requests, n_slots); returns the same shape."""
        return attraction * self.examination(attraction.shape[-1])

    def sample(self, attraction: np.ndarray, uniforms: np.ndarray) -> np.ndarray:
        """Clicks as ``uniforms < P(click)``; uniforms come from the response stream (CRN)."""
        return uniforms < self.click_probability(attraction)
