"""What every off-policy estimator shares: the result type, the estimator contract and the
percentile bootstrap over requests.

Every estimator in this package is a *sum of ratios of sums* over requests,

    V̂ = Σ_j (Σ_i a_ij) / (Σ_i b_ij),

with per-request terms ``a`` and ``b`` of shape (n, J): IPS has one column with ``b_i = 1`` (so
the ratio is a mean), SNIPS one column with ``b_i = w_i``, SNDR two columns (the DM part
over ``1`` plus the correction over ``w``), the per-slot self-normalized slate estimators one column
per slot. Writing them this way lets one vectorized bootstrap serve all of them: a resample is a
vector of counts ``c`` (how often each request was drawn), and its value is
``Σ_j (c·a_j) / (c·b_j)`` — two matrix products for all replicates at once.

The bootstrap resamples requests (the independent unit), keeping any fitted reward model fixed:
the doubly robust intervals therefore ignore the model's fitting noise, as Open Bandit Pipeline's
``estimate_interval`` does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import numpy as np

N_BOOTSTRAP = 200
ALPHA = 0.05
# Bound on the (replicates x requests) count block held in memory at once (~32 MB of float64).
_BLOCK_CELLS = 4_000_000

DataT = TypeVar("DataT", contravariant=True)


@dataclass(frozen=True)
class Estimate:
    """A policy-value estimate with its percentile-bootstrap interval.

    Attributes
    ----------
    value : the point estimate.
    ci_low, ci_high : the ``alpha/2`` and ``1 - alpha/2`` percentiles of the bootstrap replicates
        (NaN when ``n_bootstrap=0``).
    n : number of independent units (logged decisions or slate requests).
    diagnostics : ``ess``, ``ess_share``, ``clipped_share``, ``max_weight``, ``support_warning``,
        ``bootstrap_se`` (std of the replicates), ``bootstrap_dropped`` (replicates with a zero
        denominator, left out) and estimator-specific extras.
    """

    value: float
    ci_low: float
    ci_high: float
    n: int
    diagnostics: dict[str, Any]


class Estimator(Protocol[DataT]):
    """An off-policy estimator: a dataclass of its parameters with one ``estimate`` method.

    ``rng`` is a ``numpy.random.Generator`` or an int seed; it drives the cross-fitting folds and
    the bootstrap through separate child streams (see :func:`streams`).
    """

    name: str

    def estimate(
        self,
        data: DataT,
        rng: np.random.Generator | int,
        *,
        n_bootstrap: int = N_BOOTSTRAP,
        alpha: float = ALPHA,
    ) -> Estimate: ...


def streams(rng: np.random.Generator | int) -> tuple[np.random.Generator, np.random.Generator]:
    """Two independent child generators, ``(folds, bootstrap)``.

    Every estimator spawns both, whether it cross-fits or not, so fold draws never shift the
    resamples, and one int seed gives every estimator on the same data the same resamples (paired
    intervals). A Generator is consumed: each call spawns fresh children from it.
    """
    if isinstance(rng, np.random.Generator):
        folds, boot = rng.spawn(2)
        return folds, boot
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        folds_seq, boot_seq = np.random.SeedSequence(int(rng)).spawn(2)
        return np.random.default_rng(folds_seq), np.random.default_rng(boot_seq)
    raise TypeError(f"rng: expected a numpy Generator or an int seed, got {type(rng).__name__}")


def sum_of_ratios(numerators: np.ndarray, denominators: np.ndarray) -> float:
    """``Σ_j (Σ_i a_ij) / (Σ_i b_ij)``; a column whose denominator sums to 0 makes it NaN."""
    num = numerators.sum(axis=0)
    den = denominators.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = np.where(den != 0, num / np.where(den != 0, den, 1.0), np.nan)
    return float(ratios.sum())


def bootstrap_replicates(
    numerators: np.ndarray,
    denominators: np.ndarray,
    rng: np.random.Generator,
    n_bootstrap: int,
) -> np.ndarray:
    """(n_bootstrap,) values of :func:`sum_of_ratios` on resamples of the rows (requests).

    A resample is drawn as an index vector and turned into per-row counts with one ``bincount``
    over a block of replicates; the block's values are then two matrix products. Blocks only bound
    memory — no Python work per request.
    """
    n = numerators.shape[0]
    out = np.empty(n_bootstrap)
    block = max(1, _BLOCK_CELLS // max(n, 1))
    for start in range(0, n_bootstrap, block):
        b = min(block, n_bootstrap - start)
        draws = rng.integers(0, n, size=(b, n))
        draws += (np.arange(b) * n)[:, None]
        counts = np.bincount(draws.ravel(), minlength=b * n).reshape(b, n).astype(np.float64)
        num = counts @ numerators
        den = counts @ denominators
        with np.errstate(divide="ignore", invalid="ignore"):
            ratios = np.where(den != 0, num / np.where(den != 0, den, 1.0), np.nan)
        out[start : start + b] = ratios.sum(axis=1)
    return out


def ratio_estimate(
    numerators: np.ndarray,
    denominators: np.ndarray | None,
    rng: np.random.Generator,
    *,
    n_bootstrap: int,
    alpha: float,
    diagnostics: dict[str, Any],
) -> Estimate:
    """Point value, percentile interval and diagnostics for a sum of ratios of sums.

    Parameters
    ----------
    numerators : (n,) or (n, J) per-request terms ``a``.
    denominators : same shape as ``numerators``, or None for all ones (a plain mean).
    rng : the bootstrap stream.
    """
    _check_bootstrap_args(n_bootstrap, alpha)
    a = np.asarray(numerators, dtype=np.float64)
    a = a[:, None] if a.ndim == 1 else a
    b = np.ones_like(a) if denominators is None else np.asarray(denominators, dtype=np.float64)
    b = b[:, None] if b.ndim == 1 else b
    if a.shape != b.shape:
        raise ValueError(f"numerators {a.shape} and denominators {b.shape} differ in shape")
    n = a.shape[0]
    value = sum_of_ratios(a, b)
    low = high = se = float("nan")
    dropped = 0
    if n_bootstrap > 0:
        reps = bootstrap_replicates(a, b, rng, n_bootstrap)
        # A resample whose denominator is 0 (e.g. no positive weight drawn) has no value; it is
        # left out and counted rather than imputed.
        ok = reps[np.isfinite(reps)]
        dropped = int(n_bootstrap - ok.size)
        if ok.size > 0:
            low, high = (float(v) for v in np.quantile(ok, [alpha / 2, 1 - alpha / 2]))
        if ok.size > 1:
            se = float(ok.std(ddof=1))
    extra = {"bootstrap_se": se, "bootstrap_dropped": dropped}
    return Estimate(value, low, high, n, diagnostics | extra)


def _check_bootstrap_args(n_bootstrap: int, alpha: float) -> None:
    if isinstance(n_bootstrap, bool) or not isinstance(n_bootstrap, (int, np.integer)):
        raise ValueError(f"n_bootstrap: expected an int >= 0, got {n_bootstrap!r}")
    if n_bootstrap < 0:
        raise ValueError(f"n_bootstrap: expected an int >= 0, got {n_bootstrap}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha: expected a level in (0, 1), got {alpha}")


def as_float_array(name: str, value: object, ndim: int) -> np.ndarray:
    """``value`` as a finite float64 array with ``ndim`` dimensions; errors name the field."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name}: expected numbers, got {type(value).__name__}") from err
    if arr.ndim != ndim:
        raise ValueError(f"{name}: expected a {ndim}-d array, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: contains NaN or infinite values")
    return arr


def as_int_array(name: str, value: object, ndim: int) -> np.ndarray:
    """``value`` as an int64 array with ``ndim`` dimensions (integral floats are accepted)."""
    arr = np.asarray(value)
    if arr.ndim != ndim:
        raise ValueError(f"{name}: expected a {ndim}-d array, got shape {arr.shape}")
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64)
    if arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
        return arr.astype(np.int64)
    raise ValueError(f"{name}: expected integer ids, got dtype {arr.dtype}")


def check_probability(name: str, arr: np.ndarray, *, positive: bool) -> None:
    """Every entry in ``(0, 1]`` (``positive``) or ``[0, 1]``."""
    low_ok = arr > 0 if positive else arr >= 0
    if not np.all(low_ok & (arr <= 1)):
        bad = arr[~(low_ok & (arr <= 1))][0]
        interval = "(0, 1]" if positive else "[0, 1]"
        raise ValueError(f"{name}: every entry must lie in {interval}, found {bad:g}")
