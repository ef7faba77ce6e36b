"""Off-policy estimators for slates: the expected slate reward ``E_π1[Σ_k c_k r_k]`` per request.

Notation for request ``i`` with slate ``s_i = (s_i0, …, s_i,K-1)`` and slot rewards (clicks)
``r_ik``; position weights ``c_k`` (every estimator's ``reward_weights``: default all 1, a longer
sequence is cut to the slate); ``R_i = Σ_k c_k r_ik``. Our log
holds, per slot, the marginal ``π(s_ik at k | x)`` and the prefix ``π(slots 0..k as shown | x)``
(see :mod:`policies.selection`), giving three kinds of importance weight:

* slate ``W_i = π1(s_i) / π0(s_i)`` (prefix at the last slot);
* marginal ``w_ik = π1(s_ik at k) / π0(s_ik at k)``;
* prefix ``ρ_ik = π1(s_i0..s_ik) / π0(s_i0..s_ik)``.

Estimators and what makes them unbiased:

- :class:`SlateStandardIPS` ``(1/n) Σ_i W_i R_i`` — any reward; variance grows with the slate space.
- :class:`SlateIndependentIPS` ``(1/n) Σ_i Σ_k c_k w_ik r_ik`` — needs
  ``E[r_k | x, s] = f(x, k, s_k)`` (item-position model, e.g. PBM clicks ``θ_k · a(item)``;
  Li, Kim & Zitouni 2018, "Offline evaluation of ranking policies with click models", KDD).
- :class:`SlateRewardInteractionIPS` ``(1/n) Σ_i Σ_k c_k ρ_ik r_ik`` — needs ``r_k`` to depend only on
  slots ``0..k`` (cascade-type users; McInerney et al. 2020, "Counterfactual evaluation of slate
  recommendations with sequential reward interactions", KDD).
- :class:`PseudoInverse` — needs an additive slate reward ``E[R | x, s] = Σ_k φ_x(k, s_k)``
  (Swaminathan et al. 2017, "Off-policy evaluation for slate recommendation", NeurIPS).

Self-normalized forms divide by the mean of the weight that multiplies each reward, separately for
each ratio: slate-level ``Σ_i W_i R_i / Σ_i W_i``; per slot
``Σ_k c_k (Σ_i w_ik r_ik) / (Σ_i w_ik)`` (likewise with ``ρ_ik``), since ``E_π0[w_ik] = 1`` holds
slot by slot; PI ``Σ_i q_i R_i / Σ_i q_i``. Each is consistent, not unbiased.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from policies.ope.base import (
    ALPHA,
    N_BOOTSTRAP,
    Estimate,
    as_float_array,
    as_int_array,
    check_probability,
    ratio_estimate,
    streams,
)
from policies.ope.diagnostics import (
    effective_sample_size,
    support_warning,
    weight_diagnostics,
)

_CONSISTENCY_TOLERANCE = 1e-6  # probabilities that must agree across inputs
_MONOTONE_TOLERANCE = 1e-12  # prefixes may not grow along the slate beyond rounding
# Relative gap between logging_prefix and the product of logging_marginal above which the
# marginal-only PI warns that the logging policy is not a product over slots.
_PRODUCT_TOLERANCE = 1e-6


@dataclass(frozen=True, eq=False)
class SlateGamma:
    """Per-request moments of the slot-item indicator ``1_s ∈ {0,1}^{K·m}`` that the general
    pseudoinverse estimator needs (Swaminathan et al. 2017) and our log does not hold.

    Index ``k·m + j`` stands for "candidate ``j`` in slot ``k``"; the ``m`` candidates of a request
    are its own (e.g. its retrieved candidate list).

    Attributes
    ----------
    matrices : (R, K·m, K·m) ``Γ = E_π0[1_s 1_sᵀ | x]``: the logging policy's pairwise joint
        probabilities ``P(s_k = j, s_k' = j')`` (marginals on the diagonal).
    target_slot_marginals : (R, K, m) ``θ = E_π1[1_s | x]``: ``P_π1(s_k = j)``; each slot sums to 1.
    shown : (R, K) candidate index shown in each slot.
    """

    matrices: np.ndarray
    target_slot_marginals: np.ndarray
    shown: np.ndarray

    def __post_init__(self) -> None:
        theta = as_float_array("gamma.target_slot_marginals", self.target_slot_marginals, 3)
        n, k, m = theta.shape
        gamma = as_float_array("gamma.matrices", self.matrices, 3)
        if gamma.shape != (n, k * m, k * m):
            raise ValueError(
                f"gamma.matrices: expected shape {(n, k * m, k * m)} to match "
                f"target_slot_marginals {theta.shape}, got {gamma.shape}"
            )
        if np.any(gamma < -_MONOTONE_TOLERANCE) or np.any(gamma > 1 + _MONOTONE_TOLERANCE):
            raise ValueError("gamma.matrices: entries are probabilities and must lie in [0, 1]")
        if np.max(np.abs(gamma - gamma.transpose(0, 2, 1)), initial=0.0) > 1e-9:
            raise ValueError("gamma.matrices: each Γ = E[1_s 1_sᵀ] must be symmetric")
        check_probability("gamma.target_slot_marginals", theta, positive=False)
        worst = float(np.max(np.abs(theta.sum(axis=2) - 1.0)))
        if worst > _CONSISTENCY_TOLERANCE:
            raise ValueError(
                "gamma.target_slot_marginals: each slot's marginals must sum to 1 "
                f"(worst is off by {worst:.3g})"
            )
        shown = as_int_array("gamma.shown", self.shown, 2)
        if shown.shape != (n, k):
            raise ValueError(f"gamma.shown: expected shape {(n, k)}, got {shown.shape}")
        if np.any((shown < 0) | (shown >= m)):
            raise ValueError(f"gamma.shown: candidate indices must lie in [0, {m})")
        object.__setattr__(self, "matrices", gamma)
        object.__setattr__(self, "target_slot_marginals", theta)
        object.__setattr__(self, "shown", shown)

    @property
    def flat_shown(self) -> np.ndarray:
        """(R, K) positions ``k·m + shown_k`` of the shown slate in ``1_s``."""
        _, k, m = self.target_slot_marginals.shape
        return np.arange(k) * m + self.shown

    def pi_weights(self) -> np.ndarray:
        """(R,) ``q_i = θ_iᵀ Γ_i⁺ 1_{s_i}`` with ``Γ⁺`` the Moore–Penrose pseudoinverse."""
        n, k, m = self.target_slot_marginals.shape
        # Γ is symmetric PSD and singular by construction (each slot's indicators sum to 1), so the
        # Hermitian pseudoinverse, which cuts eigenvalues at rounding level, is the right tool.
        pinv = np.linalg.pinv(self.matrices, hermitian=True)
        columns = np.take_along_axis(pinv, self.flat_shown[:, None, :], axis=2)  # (R, D, K)
        return np.einsum("rd,rd->r", self.target_slot_marginals.reshape(n, k * m), columns.sum(2))


@dataclass(frozen=True, eq=False)
class SlateData:
    """Logged slates in long format, one row per shown slot.

    Rows of a request are contiguous and ordered by slot ``0..K-1``; every request shows the same
    number ``K`` of slots (our selectors always fill the slate).

    Attributes
    ----------
    request : (N,) request id.
    position : (N,) slot, 0-based.
    reward : (N,) slot reward (a click, 0/1; any finite value is accepted).
    logging_marginal, target_marginal : (N,) ``P(this item in this slot | x)`` under π0 / π1.
    logging_prefix, target_prefix : (N,) ``P(slots 0..k exactly as shown | x)`` under π0 / π1;
        the value at the last slot is the slate probability.
    gamma : optional :class:`SlateGamma`, one entry per request in request order, for the
        general pseudoinverse estimator.

    Logging probabilities lie in (0, 1], target ones in [0, 1].
    """

    request: np.ndarray
    position: np.ndarray
    reward: np.ndarray
    logging_marginal: np.ndarray
    target_marginal: np.ndarray
    logging_prefix: np.ndarray
    target_prefix: np.ndarray
    gamma: SlateGamma | None = None

    def __post_init__(self) -> None:
        request = as_int_array("request", self.request, 1)
        n_rows = request.shape[0]
        if n_rows == 0:
            raise ValueError("request: needs at least one logged slot")
        fields: dict[str, np.ndarray] = {"request": request}
        position = as_int_array("position", self.position, 1)
        _check_rows("position", position, n_rows)
        starts = np.flatnonzero(np.r_[True, request[1:] != request[:-1]])
        ids = request[starts]
        if np.unique(ids).size != ids.size:
            values, counts = np.unique(ids, return_counts=True)
            raise ValueError(
                f"request: rows of a request must be contiguous; request {values[counts > 1][0]} "
                "appears in separate runs"
            )
        lengths = np.diff(np.r_[starts, n_rows])
        if np.any(lengths != lengths[0]):
            raise ValueError(
                "request: every request must show the same number of slots, found "
                f"{lengths.min()} and {lengths.max()}"
            )
        expected = np.arange(n_rows) - np.repeat(starts, lengths)
        if np.any(position != expected):
            row = int(np.flatnonzero(position != expected)[0])
            raise ValueError(
                f"position: each request's rows must be slots 0..K-1 in order; row {row} has "
                f"slot {position[row]}, expected {expected[row]}"
            )
        fields["position"] = position
        fields["reward"] = as_float_array("reward", self.reward, 1)
        _check_rows("reward", fields["reward"], n_rows)
        k = int(lengths[0])
        for name in ("logging_marginal", "target_marginal", "logging_prefix", "target_prefix"):
            arr = as_float_array(name, getattr(self, name), 1)
            _check_rows(name, arr, n_rows)
            check_probability(name, arr, positive=name.startswith("logging"))
            fields[name] = arr
        for name in ("logging_prefix", "target_prefix"):
            slate = fields[name].reshape(-1, k)
            if np.any(slate[:, 1:] > slate[:, :-1] + _MONOTONE_TOLERANCE):
                raise ValueError(f"{name}: prefix probabilities must not increase along a slate")
        if self.gamma is not None:
            _check_gamma(self.gamma, fields, k)
        for name, value in fields.items():
            object.__setattr__(self, name, value)

    @property
    def slate_size(self) -> int:
        return int(self.position.max()) + 1

    @property
    def n_requests(self) -> int:
        return self.request.shape[0] // self.slate_size

    def per_slot(self, name: str) -> np.ndarray:
        """(R, K) view of a per-row field, requests by slots."""
        return getattr(self, name).reshape(self.n_requests, self.slate_size)


@dataclass(frozen=True)
class _SlateEstimator:
    """Shared parameters and ``estimate`` of the slate estimators."""

    reward_weights: tuple[float, ...] | None = None
    name: ClassVar[str] = "slate"

    def __post_init__(self) -> None:
        if self.reward_weights is not None:
            try:
                c = np.asarray(self.reward_weights, dtype=np.float64)
            except (TypeError, ValueError):
                c = np.array([np.nan])  # reported below with the field's name
            if c.ndim != 1 or c.size == 0 or not np.all(np.isfinite(c)):
                raise ValueError(
                    f"reward_weights: expected a non-empty sequence of finite numbers, got "
                    f"{self.reward_weights!r}"
                )
            object.__setattr__(self, "reward_weights", tuple(float(v) for v in c))

    def position_weights(self, slate_size: int) -> np.ndarray:
        """(K,) ``c_k``; longer ``reward_weights`` are cut to the slate."""
        if self.reward_weights is None:
            return np.ones(slate_size)
        if len(self.reward_weights) < slate_size:
            raise ValueError(
                f"reward_weights: has {len(self.reward_weights)} entries, slates have "
                f"{slate_size} slots"
            )
        return np.asarray(self.reward_weights[:slate_size])

    def estimate(
        self,
        data: SlateData,
        rng: np.random.Generator | int,
        *,
        n_bootstrap: int = N_BOOTSTRAP,
        alpha: float = ALPHA,
    ) -> Estimate:
        _, boot = streams(rng)
        numerators, denominators, diagnostics = self.terms(data)
        return ratio_estimate(
            numerators,
            denominators,
            boot,
            n_bootstrap=n_bootstrap,
            alpha=alpha,
            diagnostics=diagnostics,
        )

    def terms(self, data: SlateData) -> tuple[np.ndarray, np.ndarray | None, dict[str, Any]]:
        """Per-request numerators, denominators (None: all ones) and diagnostics."""
        raise NotImplementedError


@dataclass(frozen=True)
class _WholeSlateIPS(_SlateEstimator):
    self_normalize: ClassVar[bool] = False

    def terms(self, data: SlateData) -> tuple[np.ndarray, np.ndarray | None, dict[str, Any]]:
        target = data.per_slot("target_prefix")[:, -1]
        logging = data.per_slot("logging_prefix")[:, -1]
        w = target / logging
        slate_reward = data.per_slot("reward") @ self.position_weights(data.slate_size)
        diagnostics = weight_diagnostics(w) | {"support_warning": support_warning(target, logging)}
        return w * slate_reward, (w if self.self_normalize else None), diagnostics


@dataclass(frozen=True)
class SlateStandardIPS(_WholeSlateIPS):
    """Whole-slate IPS ``V̂ = (1/n) Σ_i W_i Σ_k c_k r_ik`` with ``W_i = π1(s_i) / π0(s_i)``.

    Unbiased for any slate reward given support; its weights range over the whole slate space.
    """

    name: ClassVar[str] = "standard_ips"
    self_normalize: ClassVar[bool] = False


@dataclass(frozen=True)
class SelfNormalizedSlateStandardIPS(_WholeSlateIPS):
    """``V̂ = Σ_i W_i R_i / Σ_i W_i`` — standard IPS over the mean slate weight."""

    name: ClassVar[str] = "sn_standard_ips"
    self_normalize: ClassVar[bool] = True


@dataclass(frozen=True)
class _PerSlotIPS(_SlateEstimator):
    self_normalize: ClassVar[bool] = False
    target_field: ClassVar[str] = "target_marginal"
    logging_field: ClassVar[str] = "logging_marginal"

    def terms(self, data: SlateData) -> tuple[np.ndarray, np.ndarray | None, dict[str, Any]]:
        target = data.per_slot(self.target_field)
        logging = data.per_slot(self.logging_field)
        w = target / logging
        weighted = w * data.per_slot("reward") * self.position_weights(data.slate_size)
        diagnostics = _per_slot_diagnostics(w) | {
            "support_warning": support_warning(target, logging)
        }
        if self.self_normalize:
            return weighted, w, diagnostics  # one ratio per slot
        return weighted.sum(axis=1), None, diagnostics


@dataclass(frozen=True)
class SlateIndependentIPS(_PerSlotIPS):
    """Independent IPS ``V̂ = (1/n) Σ_i Σ_k c_k (π1_k(s_ik) / π0_k(s_ik)) r_ik`` on marginals.

    Unbiased when a slot's reward depends on its own item and position only (PBM), not on the
    other items (Li et al. 2018).
    """

    name: ClassVar[str] = "independent_ips"


@dataclass(frozen=True)
class SelfNormalizedSlateIndependentIPS(_PerSlotIPS):
    """``V̂ = Σ_k c_k (Σ_i w_ik r_ik) / (Σ_i w_ik)`` — each slot over its own mean weight."""

    name: ClassVar[str] = "sn_independent_ips"
    self_normalize: ClassVar[bool] = True


@dataclass(frozen=True)
class SlateRewardInteractionIPS(_PerSlotIPS):
    """Reward-interaction IPS ``V̂ = (1/n) Σ_i Σ_k c_k (π1(s_i0..s_ik) / π0(s_i0..s_ik)) r_ik``.

    Unbiased when a slot's reward depends only on the items at and above it (cascade users): the
    prefix ratio reweights exactly that part of the slate (McInerney et al. 2020).
    """

    name: ClassVar[str] = "reward_interaction_ips"
    target_field: ClassVar[str] = "target_prefix"
    logging_field: ClassVar[str] = "logging_prefix"


@dataclass(frozen=True)
class SelfNormalizedSlateRewardInteractionIPS(_PerSlotIPS):
    """``V̂ = Σ_k c_k (Σ_i ρ_ik r_ik) / (Σ_i ρ_ik)`` — each slot over its mean prefix weight."""

    name: ClassVar[str] = "sn_reward_interaction_ips"
    self_normalize: ClassVar[bool] = True
    target_field: ClassVar[str] = "target_prefix"
    logging_field: ClassVar[str] = "logging_prefix"


@dataclass(frozen=True)
class _PseudoInverseBase(_SlateEstimator):
    self_normalize: ClassVar[bool] = False

    def terms(self, data: SlateData) -> tuple[np.ndarray, np.ndarray | None, dict[str, Any]]:
        target = data.per_slot("target_marginal")
        logging = data.per_slot("logging_marginal")
        k = data.slate_size
        warning = None
        if data.gamma is not None:
            q = data.gamma.pi_weights()
            form = "gamma"
        else:
            q = (target / logging).sum(axis=1) - (k - 1)
            form = "product_logging"
            # A product logging policy has prefix = running product of marginals on every slate;
            # a gap on the logged slates proves the closed form's assumption wrong.
            product = np.cumprod(logging, axis=1)
            prefix = data.per_slot("logging_prefix")
            gap = float(np.max(np.abs(prefix - product) / prefix))
            if gap > _PRODUCT_TOLERANCE:
                warning = (
                    "logging_prefix differs from the running product of logging_marginal "
                    f"(max relative gap {gap:.3g}): the logging policy is not a product over "
                    "slots, so pseudoinverse weights from marginals alone are biased; pass "
                    "SlateData.gamma for the general form"
                )
        slate_reward = data.per_slot("reward") @ self.position_weights(k)
        diagnostics = weight_diagnostics(q) | {
            "support_warning": support_warning(target, logging),
            "pi_form": form,
            "assumption_warning": warning,
        }
        return q * slate_reward, (q if self.self_normalize else None), diagnostics


@dataclass(frozen=True)
class PseudoInverse(_PseudoInverseBase):
    """Pseudoinverse estimator ``V̂ = (1/n) Σ_i q_i R_i`` (Swaminathan et al. 2017).

    With ``1_s`` the slot-item indicator of a slate, ``Γ_x = E_π0[1_s 1_sᵀ | x]`` and
    ``θ_x = E_π1[1_s | x]``, the weight is ``q_i = θ_{x_i}ᵀ Γ_{x_i}⁺ 1_{s_i}``. It is unbiased
    when the expected slate reward is additive over (slot, item) pairs,
    ``E[R | x, s] = 1_sᵀ φ_x``, and ``θ_x`` lies in the span of the slates π0 can log.

    ``Γ`` holds the logging policy's *pairwise* slot-item probabilities, which the log does not
    record; two forms are computed:

    * ``data.gamma`` given — the general form above, from the supplied ``Γ``, ``θ`` and shown
      candidates (:class:`SlateGamma`);
    * otherwise — the paper's closed form for a logging policy that is a product over slots on a
      Cartesian slate space (each slot drawn independently, repeats allowed; their Example 4):
      ``q_i = Σ_k w_ik - (K - 1)`` with marginal weights ``w_ik``. Only marginals enter, and ``π1``
      may be any policy. The form is biased for logging policies that draw without replacement
      (Plackett–Luce, our selectors). A product policy has ``logging_prefix`` equal to the running
      product of ``logging_marginal``; a gap on the logged slates is reported in
      ``diagnostics["assumption_warning"]``.

    Under an additive reward and product logging, PI has the expectation of independent IPS but
    needs only the slate reward ``R_i``, not per-slot rewards.
    """

    name: ClassVar[str] = "pseudoinverse"


@dataclass(frozen=True)
class SelfNormalizedPseudoInverse(_PseudoInverseBase):
    """Weighted PI ``V̂ = Σ_i q_i R_i / Σ_i q_i`` (the paper's wPI; ``E_π0[q] = 1`` given support).

    ``q`` may be negative; see :class:`PseudoInverse` for its two forms.
    """

    name: ClassVar[str] = "sn_pseudoinverse"
    self_normalize: ClassVar[bool] = True


def _per_slot_diagnostics(w: np.ndarray) -> dict[str, Any]:
    """Weight diagnostics of (R, K) per-slot weights: the worst slot's effective sample size."""
    per_slot = [effective_sample_size(w[:, k]) for k in range(w.shape[1])]
    base = weight_diagnostics(w)
    return base | {
        "ess": min(per_slot),
        "ess_share": min(per_slot) / w.shape[0],
        "ess_per_slot": per_slot,
    }


def _check_rows(name: str, arr: np.ndarray, n_rows: int) -> None:
    if arr.shape[0] != n_rows:
        raise ValueError(f"{name}: expected {n_rows} rows (one per slot), got {arr.shape[0]}")


def _check_gamma(gamma: SlateGamma, fields: dict[str, np.ndarray], k: int) -> None:
    """The supplied moments must describe the logged requests, in order."""
    if not isinstance(gamma, SlateGamma):
        raise ValueError(f"gamma: expected a SlateGamma, got {type(gamma).__name__}")
    n_requests = fields["request"].shape[0] // k
    if gamma.shown.shape != (n_requests, k):
        raise ValueError(
            f"gamma: describes {gamma.shown.shape[0]} requests of {gamma.shown.shape[1]} slots, "
            f"the log has {n_requests} of {k}"
        )
    n = gamma.shown.shape[0]
    rows = np.arange(n)[:, None]
    theta_shown = gamma.target_slot_marginals[rows, np.arange(k), gamma.shown]
    if (
        np.max(np.abs(theta_shown - fields["target_marginal"].reshape(n, k)))
        > _CONSISTENCY_TOLERANCE
    ):
        raise ValueError(
            "gamma: target_slot_marginals of the shown candidates disagree with target_marginal"
        )
    diagonal = np.diagonal(gamma.matrices, axis1=1, axis2=2)
    marg_shown = np.take_along_axis(diagonal, gamma.flat_shown, axis=1)
    if (
        np.max(np.abs(marg_shown - fields["logging_marginal"].reshape(n, k)))
        > _CONSISTENCY_TOLERANCE
    ):
        raise ValueError(
            "gamma: the diagonal of Γ at the shown candidates disagrees with logging_marginal"
        )
