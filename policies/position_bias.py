"""Estimate the examination curve ``θ_k`` of a position-based click model from click logs.

Under the position-based model ``P(click | slot k, item) = θ_k · γ(item)``. ``θ`` is identified
only up to a common factor (``c·θ`` with ``γ/c`` gives the same clicks), so every estimator here
reports ``θ_k / θ_0``. Inputs are aligned 1-D arrays with one entry per logged impression, with
0-based slots; three designs are covered:

- :func:`theta_from_randomized` — traffic whose top-K order was shuffled uniformly (RandTop-K);
- :func:`theta_from_swaps` — the swap intervention of Joachims, Swaminathan & Schnabel (2017),
  "Unbiased learning-to-rank with biased feedback", WSDM;
- :func:`theta_regression_em` — ordinary (non-randomized) logs, regression EM of Wang, Golbandi,
  Bendersky, Metzler & Najork (2018), "Position bias estimation for unbiased learning to rank in
  personal search", WSDM.

All three assume the factorization above; clicks that also depend on the slot through trust
(Agarwal et al. 2019) or on the items above (cascade) bias them. Intervention harvesting
(Agarwal et al. 2019) is not implemented.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Keeps logs finite when a product θ_k·γ(x) reaches 0 or 1 in floating point.
_EPS = 1e-12


def expit(x: np.ndarray) -> np.ndarray:
    """``scipy.special.expit``, imported on first use (a third of a second of start-up)."""
    from scipy.special import expit as _expit

    return _expit(x)


@dataclass(frozen=True)
class ExaminationEstimate:
    """Ratio estimate of the examination curve.

    Attributes
    ----------
    theta : (n_slots,) ``θ_k / θ_0`` (1 at slot 0; NaN for a slot without impressions).
    std_error : (n_slots,) delta-method standard error of ``θ_k / θ_0`` (0 at slot 0, NaN where
        the slot has no clicks or no impressions).
    impressions, clicks : (n_slots,) counts the ratios were computed from.
    """

    theta: np.ndarray
    std_error: np.ndarray
    impressions: np.ndarray
    clicks: np.ndarray


@dataclass(frozen=True)
class RegressionEMResult:
    """Fit of ``P(click | k, x) = examination[k] · relevance(x)`` by regression EM.

    Attributes
    ----------
    theta : (n_slots,) ``θ_k / θ_0`` — the examination curve to report.
    examination : (n_slots,) ``θ_k`` on the scale that goes with ``weights`` and ``bias``
        (only the product with :meth:`relevance` is meaningful; its scale is weakly identified).
    weights, bias : the logistic relevance model ``γ(x) = sigmoid(x · weights + bias)``.
    n_iter : EM iterations run.
    converged : whether every ``θ_k / θ_0`` moved by less than ``tol`` in the last iteration.
    log_likelihood : (n_iter,) mean log-likelihood per impression minus the L2 penalty after
        each iteration; EM never decreases it (up to rounding).
    """

    theta: np.ndarray
    examination: np.ndarray
    weights: np.ndarray
    bias: float
    n_iter: int
    converged: bool
    log_likelihood: np.ndarray

    def relevance(self, features: np.ndarray) -> np.ndarray:
        """``γ(x)`` for an (n, d) feature array (or (n,) with one feature)."""
        x = _as_features(features, None)
        if x.shape[1] != self.weights.shape[0]:
            raise ValueError(
                f"features have {x.shape[1]} columns, the model was fit on {self.weights.shape[0]}"
            )
        return expit(x @ self.weights + self.bias)


def theta_from_randomized(
    position: np.ndarray, clicked: np.ndarray, n_slots: int
) -> ExaminationEstimate:
    """``θ_k / θ_0`` from traffic whose top-K order was shuffled uniformly (RandTop-K).

    A uniform shuffle gives every slot the same mix of items, so ``CTR_k ∝ θ_k`` and
    ``θ_k / θ_0 = CTR_k / CTR_0`` (Joachims et al. 2017, §4; Wang et al. 2018, §3).

    Parameters
    ----------
    position : (n,) int, the 0-based slot of each impression — only impressions from randomized
        requests (mixing in production traffic biases the ratios).
    clicked : (n,) bool or 0/1, whether the impression was clicked.
    n_slots : number of slots K (>= 2); positions must lie in ``[0, n_slots)``.

    Notes
    -----
    Standard errors use the delta method on the ratio of two binomial proportions,
    ``SE = r · sqrt((1 - p_k)/(n_k p_k) + (1 - p_0)/(n_0 p_0))``, treating impressions as
    independent. Slots of one request share the user (correlating slot CTRs positively) and
    split one shuffled item set between them (negatively); both effects are ignored, and are
    small when clicks are rare: in the tests' simulation the z-scores have spread 1.03.
    """
    pos, clicks = _validate_impressions(position, clicked, n_slots)
    return _ctr_ratio_to_slot0(pos, clicks, n_slots)


def theta_from_swaps(
    position: np.ndarray,
    clicked: np.ndarray,
    original_rank: np.ndarray,
    swapped_with: np.ndarray,
    n_slots: int,
) -> ExaminationEstimate:
    """``θ_k / θ_0`` from the swap intervention of Joachims, Swaminathan & Schnabel (2017).

    On an intervened request the item the production ranker put first is swapped with the item at
    slot ``k`` (``k`` uniform in ``1..K-1``); the rest stay in place. The originally-first items
    form the same population in every arm, so ``θ_k / θ_0`` is the CTR of originally-first items
    shown at slot ``k`` over their CTR at slot 0 (control requests, where no swap happened).

    Parameters
    ----------
    position : (n,) int, 0-based slot the impression was shown at (after any swap).
    clicked : (n,) bool or 0/1, whether it was clicked.
    original_rank : (n,) int, 0-based slot the production ranker gave the item before the
        intervention. Only rows with ``original_rank == 0`` are used; the others may be left in the
        log (they are validated, not used).
    swapped_with : (n,) int, the request's swap target ``k`` repeated on each of its impressions:
        ``-1`` for a control request (no swap); ``0`` is accepted and also means no swap.
    n_slots : number of slots K (>= 2); all slot-valued arrays must lie in ``[0, n_slots)``.

    Pass swap and control requests only (drop shuffled ones). From the simulator's log
    (:mod:`policies.intervention`): ``original_rank`` is ``original_position`` and
    ``swapped_with`` is ``position`` on swap requests, ``-1`` elsewhere.

    Raises ``ValueError`` if an originally-first item is not shown where its request's swap put it
    (``position == swapped_with`` if ``swapped_with >= 1``, else ``position == 0``): such a log
    mixes up requests or slot conventions. Standard errors as in :func:`theta_from_randomized`.
    """
    pos, clicks = _validate_impressions(position, clicked, n_slots)
    rank = _as_slots(original_rank, n_slots, "original_rank", pos.shape[0])
    swap = _as_int_array(swapped_with, "swapped_with", pos.shape[0])
    if np.any((swap < -1) | (swap >= n_slots)):
        bad = swap[(swap < -1) | (swap >= n_slots)][0]
        raise ValueError(
            f"swapped_with must be -1 (no swap) or a slot in [0, {n_slots}), got {bad}"
        )
    first = rank == 0
    if not first.any():
        raise ValueError("no impressions with original_rank == 0: the swap estimator needs them")
    expected = np.maximum(swap[first], 0)
    wrong = pos[first] != expected
    if wrong.any():
        i = np.flatnonzero(first)[np.argmax(wrong)]
        raise ValueError(
            f"impression {i}: originally-first item shown at slot {pos[i]} but swapped_with is "
            f"{swap[i]} (expected slot {max(int(swap[i]), 0)})"
        )
    return _ctr_ratio_to_slot0(pos[first], clicks[first], n_slots)


def theta_regression_em(
    position: np.ndarray,
    clicked: np.ndarray,
    features: np.ndarray,
    n_slots: int,
    *,
    max_iter: int = 1000,
    tol: float = 1e-5,
    l2: float = 1e-4,
    newton_steps: int = 1,
) -> RegressionEMResult:
    """``θ_k / θ_0`` from ordinary logs by regression EM (Wang et al. 2018).

    Model: ``P(click) = θ_k · γ(x)`` with examination ``E ~ Bernoulli(θ_k)`` and relevance
    ``R ~ Bernoulli(γ(x))``, ``γ(x) = sigmoid(w · x + b)``; a click means ``E = R = 1``.
    E-step: for unclicked impressions, ``P(E=1, R=0 | c=0) = θ(1-γ)/(1-θγ)`` and
    ``P(E=0, R=1 | c=0) = (1-θ)γ/(1-θγ)`` (``E=0, R=0`` holds the rest). M-step: ``θ_k`` is the
    mean of ``P(E=1 | c)`` over impressions at slot ``k`` (exact), and ``γ`` takes
    ``newton_steps`` damped Newton steps on the soft-label logistic loss with labels
    ``P(R=1 | c)`` (a generalized M-step; Wang et al. fit GBDTs to sampled labels instead).
    Fully deterministic: initial ``θ_k = 0.5``, ``w = 0``.

    Parameters
    ----------
    position : (n,) int, 0-based slot of each impression; every slot needs impressions.
    clicked : (n,) bool or 0/1.
    features : (n, d) or (n,) finite floats describing each impression at serving time (model
        score, item content, ...). ``θ`` is identified only if they vary within each slot and
        overlap across slots: if the slot is a function of ``x`` (a deterministic ranker on these
        features), ``θ_k`` and ``γ`` are confounded and the split between them is arbitrary.
    n_slots : number of slots K (>= 2).
    max_iter, tol : stop after ``max_iter`` iterations or once no ``θ_k / θ_0`` moves by
        ``tol`` or more in one iteration.
    l2 : L2 penalty on ``w`` (not ``b``), added to the mean loss, so it does not scale with ``n``.
    newton_steps : Newton steps on ``γ`` per EM iteration (warm-started, so one suffices).
    """
    pos, clicks = _validate_impressions(position, clicked, n_slots)
    x = _as_features(features, pos.shape[0])
    _check_positive_int(max_iter, "max_iter")
    _check_positive_int(newton_steps, "newton_steps")
    if not (np.isfinite(tol) and tol >= 0):
        raise ValueError(f"tol must be a finite number >= 0, got {tol}")
    if not (np.isfinite(l2) and l2 >= 0):
        raise ValueError(f"l2 must be a finite number >= 0, got {l2}")
    counts = np.bincount(pos, minlength=n_slots)
    if np.any(counts == 0):
        raise ValueError(f"slot {int(np.argmin(counts))} has no impressions; θ is not identified")
    if clicks.sum() == 0:
        raise ValueError("no clicks in the log; θ is not identified")

    n, d = x.shape
    design = np.column_stack([x, np.ones(n)])
    penalty = np.full(d + 1, l2)
    penalty[-1] = 0.0  # the intercept absorbs the overall click rate; shrinking it would bias θ
    c = clicks.astype(np.float64)
    theta = np.full(n_slots, 0.5)
    beta = np.zeros(d + 1)
    # Start the intercept at the click rate implied by θ = 0.5 so the first E-step is sensible.
    beta[-1] = _logit(np.clip(c.mean() / 0.5, 1e-6, 1 - 1e-6))

    trace: list[float] = []
    converged = False
    ratio = theta / theta[0]
    for _ in range(max_iter):
        th = theta[pos]
        gamma = expit(design @ beta)
        miss = np.maximum(1.0 - th * gamma, _EPS)
        # E-step: posteriors of examination and relevance (both are 1 on a click).
        examined = np.where(clicks, 1.0, th * (1.0 - gamma) / miss)
        relevant = np.where(clicks, 1.0, (1.0 - th) * gamma / miss)
        # M-step.
        theta = np.clip(np.bincount(pos, weights=examined, minlength=n_slots) / counts, _EPS, 1.0)
        beta = _soft_logistic_newton(design, relevant, beta, penalty, newton_steps)
        trace.append(_objective(theta[pos], design @ beta, c, beta, penalty))
        # Judge convergence on the reported ratios: along the scale direction (c·θ, γ/c) the
        # likelihood is nearly flat and EM creeps for thousands of iterations while θ_k/θ_0
        # no longer moves.
        change = np.max(np.abs(theta / theta[0] - ratio))
        ratio = theta / theta[0]
        if change < tol:
            converged = True
            break

    return RegressionEMResult(
        theta=theta / theta[0],
        examination=theta,
        weights=beta[:-1].copy(),
        bias=float(beta[-1]),
        n_iter=len(trace),
        converged=converged,
        log_likelihood=np.asarray(trace),
    )


# --- internals ------------------------------------------------------------------------------


def _ctr_ratio_to_slot0(pos: np.ndarray, clicks: np.ndarray, n_slots: int) -> ExaminationEstimate:
    n_k = np.bincount(pos, minlength=n_slots)
    c_k = np.bincount(pos, weights=clicks.astype(np.float64), minlength=n_slots).astype(np.int64)
    if c_k[0] == 0:
        raise ValueError("no clicks at slot 0: θ_k / θ_0 is undefined")
    with np.errstate(divide="ignore", invalid="ignore"):
        p = c_k / n_k
        theta = p / p[0]
        rel_var = (1.0 - p) / (n_k * p) + (1.0 - p[0]) / (n_k[0] * p[0])
        se = theta * np.sqrt(rel_var)
    # No clicks: the delta method says nothing (it would give 0); no impressions: nothing at all.
    se[c_k == 0] = np.nan
    se[0] = 0.0
    return ExaminationEstimate(theta=theta, std_error=se, impressions=n_k, clicks=c_k)


def _soft_logistic_newton(
    design: np.ndarray, labels: np.ndarray, beta: np.ndarray, penalty: np.ndarray, steps: int
) -> np.ndarray:
    """Newton steps on mean soft-label cross-entropy + ½·Σ penalty·β², halving any step that
    does not lower the loss, so each EM iteration keeps the likelihood non-decreasing."""
    n = design.shape[0]

    def loss(b: np.ndarray) -> float:
        z = design @ b
        # -(r·log σ(z) + (1-r)·log σ(-z)) = softplus(z) - r·z: one transcendental, not two
        ce = (np.logaddexp(0.0, z) - labels * z).mean()
        return float(ce + 0.5 * np.sum(penalty * b * b))

    current = loss(beta)
    for _ in range(steps):
        p = expit(design @ beta)
        grad = design.T @ (p - labels) / n + penalty * beta
        hess = (design.T * (p * (1.0 - p))) @ design / n + np.diag(penalty + 1e-12)
        step = np.linalg.solve(hess, grad)
        for _ in range(30):
            candidate = beta - step
            value = loss(candidate)
            if value <= current:
                beta, current = candidate, value
                break
            step = step / 2.0
        else:
            break  # no descent direction left at machine precision: at the optimum
    return beta


def _objective(
    th: np.ndarray, z: np.ndarray, c: np.ndarray, beta: np.ndarray, penalty: np.ndarray
) -> float:
    prob = np.clip(th * expit(z), _EPS, 1.0 - _EPS)
    ll = (c * np.log(prob) + (1.0 - c) * np.log1p(-prob)).mean()
    return float(ll - 0.5 * np.sum(penalty * beta * beta))


def _logit(p: float) -> float:
    return float(np.log(p) - np.log1p(-p))


def _check_positive_int(value: object, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


def _as_int_array(values: np.ndarray, name: str, n: int | None) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"{name} has {arr.shape[0]} entries, position has {n}")
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must hold integers, got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)


def _as_slots(values: np.ndarray, n_slots: int, name: str, n: int | None) -> np.ndarray:
    arr = _as_int_array(values, name, n)
    outside = (arr < 0) | (arr >= n_slots)
    if outside.any():
        raise ValueError(f"{name} must lie in [0, {n_slots}), got {arr[outside][0]}")
    return arr


def _validate_impressions(
    position: np.ndarray, clicked: np.ndarray, n_slots: int
) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(n_slots, bool) or not isinstance(n_slots, int | np.integer) or n_slots < 2:
        raise ValueError(f"n_slots must be an integer >= 2, got {n_slots!r}")
    pos = _as_slots(position, int(n_slots), "position", None)
    if pos.shape[0] == 0:
        raise ValueError("the log is empty: position has no entries")
    clicks = np.asarray(clicked)
    if clicks.ndim != 1 or clicks.shape[0] != pos.shape[0]:
        raise ValueError(f"clicked has shape {clicks.shape}, position has {pos.shape}")
    if clicks.dtype != bool:
        if not np.issubdtype(clicks.dtype, np.number) or not np.all((clicks == 0) | (clicks == 1)):
            raise ValueError("clicked must be bool or hold only 0 and 1")
        clicks = clicks == 1
    return pos, clicks


def _as_features(features: np.ndarray, n: int | None) -> np.ndarray:
    x = np.asarray(features)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise ValueError(f"features must be (n,) or (n, d), got shape {x.shape}")
    if n is not None and x.shape[0] != n:
        raise ValueError(f"features has {x.shape[0]} rows, position has {n}")
    if x.dtype == bool or not np.issubdtype(x.dtype, np.number):
        raise ValueError(f"features must be numeric, got dtype {x.dtype}")
    x = x.astype(np.float64, copy=False)
    if not np.all(np.isfinite(x)):
        raise ValueError("features must be finite (no NaN or inf)")
    return x
