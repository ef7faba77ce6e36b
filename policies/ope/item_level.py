"""Off-policy estimators for single decisions (one logged action per context).

Notation: logged decisions ``i = 1..n`` with context ``x_i``, action ``a_i ~ π0(· | x_i)``, reward
``r_i``; importance weight ``w_i = π1(a_i | x_i) / π0(a_i | x_i)``; a reward model
``q̂(x, a) ≈ E[r | x, a]`` and its value under the target ``q̂_π1(x) = Σ_a π1(a | x) q̂(x, a)``.

- :class:`IPS` — ``(1/n) Σ_i min(w_i, clip) r_i`` (Horvitz & Thompson 1952; clipping as in
  Strehl et al. 2010 / Bottou et al. 2013);
- :class:`SNIPS` — ``Σ_i w_i r_i / Σ_i w_i`` (Swaminathan & Joachims 2015, "The self-normalized
  estimator for counterfactual learning", NeurIPS);
- :class:`DM` — ``(1/n) Σ_i q̂_π1(x_i)`` (the direct method, as named in Dudík, Langford & Li 2011,
  "Doubly robust policy evaluation and learning", ICML);
- :class:`DR` — ``(1/n) Σ_i [q̂_π1(x_i) + w_i (r_i - q̂(x_i, a_i))]`` (Dudík et al. 2011);
- :class:`SNDR` — DR with its correction self-normalized (Open Bandit Pipeline's
  ``SelfNormalizedDoublyRobust``);
- :class:`SwitchDR` — DR where ``w ≤ τ``, DM elsewhere (Wang, Agarwal & Dudík 2017, "Optimal and
  adaptive off-policy evaluation in contextual bandits", ICML).

The reward model is ridge regression on features of ``(x, a)`` with an unpenalized intercept,
cross-fitted over K folds: decision ``i``'s predictions (for its logged action and for every
candidate) come from the model fitted on the other folds, so ``q̂`` is independent of ``r_i`` and
the DR correction stays mean-zero where the weights are exact (Chernozhukov et al. 2018). Folds
come from ``BanditData.fold`` when set (``n_folds`` is then ignored), otherwise from a balanced
random assignment drawn from the ``rng`` passed to ``estimate``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

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
from policies.ope.diagnostics import support_warning, weight_diagnostics

_SUM_TOLERANCE = 1e-6  # rows of target_probabilities must sum to 1 within this


@dataclass(frozen=True, eq=False)
class BanditData:
    """Logged single-action decisions, one entry per decision.

    Attributes
    ----------
    reward : (n,) observed reward of the logged action.
    logging_propensity : (n,) ``π0(a_i | x_i)`` in (0, 1].
    target_propensity : (n,) ``π1(a_i | x_i)`` in [0, 1] (0 where the target never plays it).
    logged_features : (n, d) features of the logged ``(x_i, a_i)`` — reward-model input (DM/DR).
    candidate_features : (n, m, d) features of every candidate ``(x_i, a)`` (DM/DR).
    target_probabilities : (n, m) ``π1(a | x_i)`` over those candidates; rows sum to 1 (DM/DR).
    fold : (n,) optional cross-fitting fold ids; when given they replace the drawn folds.
    """

    reward: np.ndarray
    logging_propensity: np.ndarray
    target_propensity: np.ndarray
    logged_features: np.ndarray | None = None
    candidate_features: np.ndarray | None = None
    target_probabilities: np.ndarray | None = None
    fold: np.ndarray | None = None

    def __post_init__(self) -> None:
        reward = as_float_array("reward", self.reward, 1)
        n = reward.shape[0]
        if n == 0:
            raise ValueError("reward: needs at least one logged decision")
        fields = {"reward": reward}
        for name in ("logging_propensity", "target_propensity"):
            arr = as_float_array(name, getattr(self, name), 1)
            _check_rows(name, arr, n)
            check_probability(name, arr, positive=name == "logging_propensity")
            fields[name] = arr
        model_inputs = ("logged_features", "candidate_features", "target_probabilities")
        given = [name for name in model_inputs if getattr(self, name) is not None]
        if given and len(given) < len(model_inputs):
            missing = next(name for name in model_inputs if name not in given)
            raise ValueError(f"{missing}: required together with {', '.join(given)}")
        if given:
            logged = as_float_array("logged_features", self.logged_features, 2)
            _check_rows("logged_features", logged, n)
            cand = as_float_array("candidate_features", self.candidate_features, 3)
            _check_rows("candidate_features", cand, n)
            if cand.shape[2] != logged.shape[1]:
                raise ValueError(
                    f"candidate_features: has {cand.shape[2]} features per candidate, "
                    f"logged_features has {logged.shape[1]}"
                )
            probs = as_float_array("target_probabilities", self.target_probabilities, 2)
            if probs.shape != cand.shape[:2]:
                raise ValueError(
                    f"target_probabilities: expected shape {cand.shape[:2]} (decisions, "
                    f"candidates), got {probs.shape}"
                )
            if np.any(probs < 0):
                raise ValueError("target_probabilities: entries must be >= 0")
            worst = float(np.max(np.abs(probs.sum(axis=1) - 1.0)))
            if worst > _SUM_TOLERANCE:
                raise ValueError(
                    f"target_probabilities: rows must sum to 1 (worst row is off by {worst:.3g})"
                )
            fields |= {
                "logged_features": logged,
                "candidate_features": cand,
                "target_probabilities": probs,
            }
        if self.fold is not None:
            fold = as_int_array("fold", self.fold, 1)
            _check_rows("fold", fold, n)
            if np.unique(fold).size < 2:
                raise ValueError("fold: cross-fitting needs at least two distinct fold ids")
            fields["fold"] = fold
        for name, value in fields.items():
            object.__setattr__(self, name, value)

    @property
    def n(self) -> int:
        return int(self.reward.shape[0])

    @property
    def weights(self) -> np.ndarray:
        """(n,) importance weights ``π1 / π0`` of the logged actions."""
        return self.target_propensity / self.logging_propensity


@dataclass(frozen=True)
class IPS:
    """Inverse propensity scoring ``V̂ = (1/n) Σ_i min(w_i, clip) r_i``.

    Unbiased without a clip (given support); a clip trades that bias for variance.
    """

    clip: float | None = None
    name: ClassVar[str] = "ips"

    def __post_init__(self) -> None:
        _check_clip(self.clip)

    def estimate(
        self,
        data: BanditData,
        rng: np.random.Generator | int,
        *,
        n_bootstrap: int = N_BOOTSTRAP,
        alpha: float = ALPHA,
    ) -> Estimate:
        _, boot = streams(rng)
        w = data.weights
        used = _clipped(w, self.clip)
        return ratio_estimate(
            used * data.reward,
            None,
            boot,
            n_bootstrap=n_bootstrap,
            alpha=alpha,
            diagnostics=_diagnostics(data, used, self.clip),
        )


@dataclass(frozen=True)
class SNIPS:
    """Self-normalized IPS ``V̂ = Σ_i w_i r_i / Σ_i w_i`` (Swaminathan & Joachims 2015).

    Dividing by the mean weight (whose expectation is 1 under full support) makes the estimate a
    weighted mean of rewards: bounded by the reward range and invariant to adding a constant to
    every reward, at an O(1/n) bias.
    """

    name: ClassVar[str] = "snips"

    def estimate(
        self,
        data: BanditData,
        rng: np.random.Generator | int,
        *,
        n_bootstrap: int = N_BOOTSTRAP,
        alpha: float = ALPHA,
    ) -> Estimate:
        _, boot = streams(rng)
        w = data.weights
        return ratio_estimate(
            w * data.reward,
            w,
            boot,
            n_bootstrap=n_bootstrap,
            alpha=alpha,
            diagnostics=_diagnostics(data, w, None),
        )


@dataclass(frozen=True)
class DM:
    """Direct method ``V̂ = (1/n) Σ_i Σ_a π1(a | x_i) q̂(x_i, a)`` with a cross-fitted ridge ``q̂``.

    Biased whenever ``q̂`` is (Dudík et al. 2011); the weights are reported but not used.
    """

    n_folds: int = 2
    l2: float = 1.0
    name: ClassVar[str] = "dm"

    def __post_init__(self) -> None:
        _check_model_params(self.n_folds, self.l2)

    def estimate(
        self,
        data: BanditData,
        rng: np.random.Generator | int,
        *,
        n_bootstrap: int = N_BOOTSTRAP,
        alpha: float = ALPHA,
    ) -> Estimate:
        folds_rng, boot = streams(rng)
        fit = cross_fitted_rewards(data, self.n_folds, self.l2, folds_rng, self.name)
        return ratio_estimate(
            fit.target_value,
            None,
            boot,
            n_bootstrap=n_bootstrap,
            alpha=alpha,
            diagnostics=_diagnostics(data, data.weights, None) | {"n_folds": fit.n_folds},
        )


@dataclass(frozen=True)
class DR:
    """Doubly robust ``V̂ = (1/n) Σ_i [q̂_π1(x_i) + min(w_i, clip) (r_i - q̂(x_i, a_i))]``.

    Unbiased (without a clip) when either the propensities or ``q̂`` are right (Dudík et al. 2011).
    """

    clip: float | None = None
    n_folds: int = 2
    l2: float = 1.0
    name: ClassVar[str] = "dr"

    def __post_init__(self) -> None:
        _check_clip(self.clip)
        _check_model_params(self.n_folds, self.l2)

    def estimate(
        self,
        data: BanditData,
        rng: np.random.Generator | int,
        *,
        n_bootstrap: int = N_BOOTSTRAP,
        alpha: float = ALPHA,
    ) -> Estimate:
        folds_rng, boot = streams(rng)
        fit = cross_fitted_rewards(data, self.n_folds, self.l2, folds_rng, self.name)
        used = _clipped(data.weights, self.clip)
        terms = fit.target_value + used * (data.reward - fit.logged)
        return ratio_estimate(
            terms,
            None,
            boot,
            n_bootstrap=n_bootstrap,
            alpha=alpha,
            diagnostics=_diagnostics(data, used, self.clip) | {"n_folds": fit.n_folds},
        )


@dataclass(frozen=True)
class SNDR:
    """Self-normalized DR
    ``V̂ = (1/n) Σ_i q̂_π1(x_i) + Σ_i w_i (r_i - q̂(x_i, a_i)) / Σ_i w_i``.

    The correction term is normalized by the mean weight, as SNIPS normalizes IPS; this is the
    form of Open Bandit Pipeline's ``SelfNormalizedDoublyRobust`` (after Kallus & Uehara 2019).
    """

    n_folds: int = 2
    l2: float = 1.0
    name: ClassVar[str] = "sndr"

    def __post_init__(self) -> None:
        _check_model_params(self.n_folds, self.l2)

    def estimate(
        self,
        data: BanditData,
        rng: np.random.Generator | int,
        *,
        n_bootstrap: int = N_BOOTSTRAP,
        alpha: float = ALPHA,
    ) -> Estimate:
        folds_rng, boot = streams(rng)
        fit = cross_fitted_rewards(data, self.n_folds, self.l2, folds_rng, self.name)
        w = data.weights
        numerators = np.column_stack([fit.target_value, w * (data.reward - fit.logged)])
        denominators = np.column_stack([np.ones(data.n), w])
        return ratio_estimate(
            numerators,
            denominators,
            boot,
            n_bootstrap=n_bootstrap,
            alpha=alpha,
            diagnostics=_diagnostics(data, w, None) | {"n_folds": fit.n_folds},
        )


@dataclass(frozen=True)
class SwitchDR:
    """Switch-DR (Wang, Agarwal & Dudík 2017):
    ``V̂ = (1/n) Σ_i [q̂_π1(x_i) + 1{w_i ≤ τ} w_i (r_i - q̂(x_i, a_i))]``.

    The paper's estimator uses the importance-weighted (DR) term on actions with
    ``w(x, a) ≤ τ`` and the model alone on the rest:
    ``Σ_{a: w ≤ τ} π1(a|x) E[r|x,a] + Σ_{a: w > τ} π1(a|x) q̂(x, a)`` in expectation. The form
    above has exactly that expectation and needs ``w`` only for the logged action (``π0`` of the
    other candidates is not in the log). ``τ = inf`` gives DR, ``τ → 0`` gives DM.
    """

    tau: float
    n_folds: int = 2
    l2: float = 1.0
    name: ClassVar[str] = "switch_dr"

    def __post_init__(self) -> None:
        if not (isinstance(self.tau, (int, float)) and self.tau > 0):
            raise ValueError(f"tau: expected a weight threshold > 0 (inf allowed), got {self.tau}")
        _check_model_params(self.n_folds, self.l2)

    def estimate(
        self,
        data: BanditData,
        rng: np.random.Generator | int,
        *,
        n_bootstrap: int = N_BOOTSTRAP,
        alpha: float = ALPHA,
    ) -> Estimate:
        folds_rng, boot = streams(rng)
        fit = cross_fitted_rewards(data, self.n_folds, self.l2, folds_rng, self.name)
        w = data.weights
        used = np.where(w <= self.tau, w, 0.0)
        terms = fit.target_value + used * (data.reward - fit.logged)
        # clipped_share here is the share of decisions switched to the model (w > τ).
        return ratio_estimate(
            terms,
            None,
            boot,
            n_bootstrap=n_bootstrap,
            alpha=alpha,
            diagnostics=_diagnostics(data, used, self.tau) | {"n_folds": fit.n_folds},
        )


@dataclass(frozen=True)
class RewardFit:
    """Cross-fitted reward-model predictions, one per decision.

    Attributes
    ----------
    logged : (n,) ``q̂(x_i, a_i)``.
    target_value : (n,) ``q̂_π1(x_i) = Σ_a π1(a | x_i) q̂(x_i, a)``.
    fold : (n,) the fold each decision was predicted in.
    n_folds : number of folds.
    """

    logged: np.ndarray
    target_value: np.ndarray
    fold: np.ndarray
    n_folds: int


def cross_fitted_rewards(
    data: BanditData, n_folds: int, l2: float, rng: np.random.Generator, estimator: str = "DM"
) -> RewardFit:
    """Ridge reward model cross-fitted over folds (``data.fold`` if set, else drawn from ``rng``).

    Drawn folds are balanced: a random permutation of ``0, 1, …, n_folds-1, 0, 1, …``.
    """
    if data.logged_features is None:
        raise ValueError(
            f"logged_features: {estimator} needs logged_features, candidate_features and "
            "target_probabilities in BanditData"
        )
    assert data.candidate_features is not None and data.target_probabilities is not None
    if data.fold is not None:
        fold = data.fold
    else:
        if data.n < n_folds:
            raise ValueError(
                f"n_folds: {n_folds} folds need at least as many decisions, got {data.n}"
            )
        fold = rng.permutation(data.n) % n_folds
    logged = np.empty(data.n)
    target_value = np.empty(data.n)
    fold_ids = np.unique(fold)
    for f in fold_ids:  # a loop over folds (a handful), vectorized over decisions
        held_out = fold == f
        coef = fit_ridge(data.logged_features[~held_out], data.reward[~held_out], l2)
        logged[held_out] = predict_ridge(coef, data.logged_features[held_out])
        candidates = predict_ridge(coef, data.candidate_features[held_out])  # (n_f, m)
        target_value[held_out] = np.sum(data.target_probabilities[held_out] * candidates, axis=1)
    return RewardFit(logged, target_value, fold, int(fold_ids.size))


def fit_ridge(features: np.ndarray, reward: np.ndarray, l2: float) -> np.ndarray:
    """Closed-form ridge ``argmin_β ||y - b - Xβ||² + l2 ||β||²``; returns ``[b, β]``.

    The intercept ``b`` is not penalized, so the fit does not shrink towards a zero reward.
    """
    x = np.column_stack([np.ones(features.shape[0]), features])
    penalty = np.full(x.shape[1], float(l2))
    penalty[0] = 0.0
    gram = x.T @ x + np.diag(penalty)
    return np.linalg.solve(gram, x.T @ reward)


def predict_ridge(coef: np.ndarray, features: np.ndarray) -> np.ndarray:
    """``b + x·β`` over the last axis of ``features``."""
    return coef[0] + features @ coef[1:]


def _check_rows(name: str, arr: np.ndarray, n: int) -> None:
    if arr.shape[0] != n:
        raise ValueError(f"{name}: expected {n} rows (one per decision), got {arr.shape[0]}")


def _check_clip(clip: float | None) -> None:
    if clip is not None and not (isinstance(clip, (int, float)) and clip > 0):
        raise ValueError(f"clip: expected None or a weight cap > 0, got {clip}")


def _check_model_params(n_folds: int, l2: float) -> None:
    if isinstance(n_folds, bool) or not isinstance(n_folds, int) or n_folds < 2:
        raise ValueError(f"n_folds: cross-fitting needs an int >= 2, got {n_folds!r}")
    if not (isinstance(l2, (int, float)) and l2 > 0 and np.isfinite(l2)):
        raise ValueError(f"l2: expected a ridge penalty > 0, got {l2}")


def _clipped(w: np.ndarray, clip: float | None) -> np.ndarray:
    return w if clip is None else np.minimum(w, clip)


def _diagnostics(data: BanditData, used: np.ndarray, clip: float | None) -> dict[str, object]:
    return weight_diagnostics(data.weights, used, clip) | {
        "support_warning": support_warning(data.target_propensity, data.logging_propensity)
    }
