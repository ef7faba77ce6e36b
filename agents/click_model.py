"""Click models: how a user examines a slate and which attractive items they click.

Every model maps the attraction ``a`` (n_requests, n_slots) of the shown items, in (0, 1), to
clicks. They share the :class:`ClickModel` interface, with 0-based slots ``k``:

* ``pbm`` — position-based: slot ``k`` is examined independently with ``θ_k = (1/(k+1))^η``;
  ``P(click_k) = θ_k · a_k``. Optional trust bias (Agarwal et al. 2019, with ``ε+_k = 1``): an
  examined item is also clicked with probability ``ε−_k = trust_bias/(k+1)`` when not
  attractive, ``P(click_k) = θ_k · (a_k + ε−_k (1 − a_k))``.
* ``cascade`` — scans top-down, clicks slot ``k`` w.p. ``a_k``, stops after the first click:
  ``P(click_k) = a_k ∏_{j<k} (1 − a_j)``.
* ``dcm`` — dependent click model: as cascade, but after a click continues w.p. ``λ``:
  ``P(click_k) = a_k ∏_{j<k} (1 − (1 − λ) a_j)``. ``λ = 1`` is independent clicks ``a_k``,
  ``λ = 0`` is cascade.

Sampling uses common random numbers: one uniform ``u_k`` per slot (from the ``sim.responses``
stream). PBM clicks iff ``u_k < P(click_k)``; cascade and DCM find slot ``k`` attractive iff
``u_k < a_k`` and click it if the scan reached it. DCM's continue decisions take a second uniform
per slot (``extra_uniforms``), which the engine draws from its own stream only for models with
``needs_extra_uniforms``, so the other models' draws never shift.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Protocol

import numpy as np

CLICK_MODELS = ("pbm", "cascade", "dcm")


class ClickModel(Protocol):
    """What the simulator needs from a click model."""

    needs_extra_uniforms: ClassVar[bool]

    def examination_probability(self, attraction: np.ndarray) -> np.ndarray:
        """P(slot examined), same shape as ``attraction`` (n_requests, n_slots)."""
        ...

    def click_probability(self, attraction: np.ndarray) -> np.ndarray:
        """Exact marginal P(click) of each slot, same shape as ``attraction``."""
        ...

    def sample(
        self,
        attraction: np.ndarray,
        uniforms: np.ndarray,
        extra_uniforms: np.ndarray | None = None,
    ) -> np.ndarray:
        """Boolean clicks, same shape as ``attraction``; uniforms are in [0, 1)."""
        ...


def _check_unit(name: str, value: float) -> None:
    if not np.isfinite(value) or not 0 <= value <= 1:
        raise ValueError(f"click model {name} must be in [0, 1], got {value}")


@dataclass(frozen=True)
class PositionBasedClickModel:
    """Examination ``θ_k = (1/(k+1))^η`` falls with the 0-based slot ``k``.

    ``η = 0`` means no position bias; larger ``η`` means users rarely look past the top slots.
    ``trust_bias`` ``ε`` (default 0 = off) adds clicks on unattractive items that users trust
    more the higher they are shown: ``P(click | examined) = a + ε/(k+1) · (1 − a)``.
    """

    eta: float
    trust_bias: float = 0.0

    needs_extra_uniforms: ClassVar[bool] = False

    def __post_init__(self) -> None:
        if not np.isfinite(self.eta) or self.eta < 0:
            raise ValueError(f"click model eta must be a finite number >= 0, got {self.eta}")
        _check_unit("trust_bias", self.trust_bias)

    def examination(self, n_slots: int) -> np.ndarray:
        return (1.0 / (np.arange(n_slots) + 1.0)) ** self.eta

    def false_click_rate(self, n_slots: int) -> np.ndarray:
        """``ε−_k``: P(click | examined, not attracted) at each slot."""
        return self.trust_bias / (np.arange(n_slots) + 1.0)

    def examination_probability(self, attraction: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.examination(attraction.shape[-1]), attraction.shape)

    def click_probability(self, attraction: np.ndarray) -> np.ndarray:
        """``attraction`` is (n_requests, n_slots); returns the same shape."""
        n_slots = attraction.shape[-1]
        if self.trust_bias > 0:
            # Skipped when off so the default keeps the exact floating-point products of old runs.
            attraction = attraction + self.false_click_rate(n_slots) * (1.0 - attraction)
        return attraction * self.examination(n_slots)

    def sample(
        self,
        attraction: np.ndarray,
        uniforms: np.ndarray,
        extra_uniforms: np.ndarray | None = None,
    ) -> np.ndarray:
        """Clicks as ``uniforms < P(click)``; uniforms come from the response stream (CRN)."""
        return uniforms < self.click_probability(attraction)


def _dcm_examination(attraction: np.ndarray, continue_after_click: float) -> np.ndarray:
    """P(examined) when a user stops after a click w.p. ``1 − λ`` and never stops otherwise."""
    go_on = 1.0 - (1.0 - continue_after_click) * attraction
    examined = np.ones_like(attraction, dtype=np.float64)
    examined[..., 1:] = np.cumprod(go_on[..., :-1], axis=-1)
    return examined


@dataclass(frozen=True)
class CascadeClickModel:
    """Top-down scan; the first attractive item is clicked and the user leaves the slate."""

    needs_extra_uniforms: ClassVar[bool] = False

    def examination_probability(self, attraction: np.ndarray) -> np.ndarray:
        return _dcm_examination(attraction, 0.0)

    def click_probability(self, attraction: np.ndarray) -> np.ndarray:
        return attraction * self.examination_probability(attraction)

    def sample(
        self,
        attraction: np.ndarray,
        uniforms: np.ndarray,
        extra_uniforms: np.ndarray | None = None,
    ) -> np.ndarray:
        attracted = uniforms < attraction
        # The slot examined last is the first attractive one: keep only that click.
        return attracted & (np.cumsum(attracted, axis=-1) == 1)


@dataclass(frozen=True)
class DependentClickModel:
    """Top-down scan; after a click the user goes on w.p. ``continue_after_click`` (``λ``),
    after a skipped slot always. Guo et al. (2009) with one ``λ`` for every slot."""

    continue_after_click: float

    needs_extra_uniforms: ClassVar[bool] = True

    def __post_init__(self) -> None:
        _check_unit("continue_after_click", self.continue_after_click)

    def examination_probability(self, attraction: np.ndarray) -> np.ndarray:
        return _dcm_examination(attraction, self.continue_after_click)

    def click_probability(self, attraction: np.ndarray) -> np.ndarray:
        return attraction * self.examination_probability(attraction)

    def sample(
        self,
        attraction: np.ndarray,
        uniforms: np.ndarray,
        extra_uniforms: np.ndarray | None = None,
    ) -> np.ndarray:
        """``extra_uniforms`` (same shape) decide continuing after a click: ``v_k < λ``."""
        if extra_uniforms is None or extra_uniforms.shape != uniforms.shape:
            raise ValueError("the dcm click model needs extra_uniforms shaped like uniforms")
        attracted = uniforms < attraction
        clicks = np.zeros(attraction.shape, dtype=bool)
        examined = np.ones(attraction.shape[:-1], dtype=bool)
        for k in range(attraction.shape[-1]):  # slots only; vectorized over requests
            clicks[..., k] = examined & attracted[..., k]
            examined &= ~clicks[..., k] | (extra_uniforms[..., k] < self.continue_after_click)
        return clicks


def make_click_model(
    name: str, *, eta: float, continue_after_click: float, trust_bias: float
) -> ClickModel:
    """The click model ``name`` (one of :data:`CLICK_MODELS`) with its parameters.

    Parameters a model does not use are ignored (``eta`` and ``trust_bias`` are PBM's,
    ``continue_after_click`` is DCM's).
    """
    if name == "pbm":
        return PositionBasedClickModel(eta, trust_bias)
    if name == "cascade":
        return CascadeClickModel()
    if name == "dcm":
        return DependentClickModel(continue_after_click)
    raise ValueError(f"unknown click model {name!r}; known: {', '.join(CLICK_MODELS)}")
