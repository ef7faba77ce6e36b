"""Training labels from delayed conversions, and corrections for the ones that have not happened yet.

``policy.label`` chooses what the training matrix counts (:data:`LABELS`):

* ``clicks`` (default): every click, as always;
* ``conversions``: the clicks whose conversion is in a written ``logs/conversions`` round at the
  cut-off — a click whose conversion happens later counts as not converted (the label delay);
* ``conversions_oracle``: every click that will ever convert, known at click time. It reads the
  world's pending conversions (truth): a *reference arm* for measuring the label delay, wired in
  the simulator's training view (``sim.training_data``), never inside a policy.

``policy.label_correction`` (:data:`CORRECTIONS`, with ``label=conversions`` only) reweights the
delayed labels from the log alone. Both fit Chapelle's (2014) delayed-feedback model by EM on the
window's clicks: click ``j`` converts eventually with probability ``p`` (per item, shrunk to the
global rate by :data:`DFM_PRIOR_CLICKS` pseudo-clicks), after an exponential delay of rate
``λ`` (one for all items); at the cut-off it has been waiting ``e_j`` hours. A converted click
contributes ``p λ exp(−λ d)``, a not-yet-converted one ``1 − p + p exp(−λ e)`` (the observed delays
are right-truncated at ``e``; the mixture likelihood accounts for it). The learner never reads the
true delay law; with lognormal delays the exponential is a misspecified fit.

* ``ipw``: each observed conversion weighs ``1 / F̂(e)``, ``F̂(e) = 1 − exp(−λ̂ e)`` the estimated
  share of eventual conversions seen ``e`` hours after the click; capped at :data:`IPW_CAP`
  (a click seconds old would otherwise weigh thousands: the cap bounds the variance, at the cost of
  under-weighting the newest conversions);
* ``dfm``: conversions weigh 1 and each not-yet-converted click the posterior probability that it
  will convert, ``p̂(1 − F̂(e)) / (1 − p̂ F̂(e))``.

The weights are the stored values of the training matrix: implicit ALS takes them as confidence
``alpha · w`` (as ``policy.debias``'s click weights do); dfm's fractional labels are soft
targets instead, fitted by exact weighted ALS on their expected loss
(:func:`soft_label_least_squares`, ``policies.als.ALSScorer``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LABELS = ("clicks", "conversions", "conversions_oracle")
CORRECTIONS = ("none", "ipw", "dfm")
IPW_CAP = 10.0  # the largest weight 1/F̂(e) a conversion may get
DFM_PRIOR_CLICKS = 20.0  # pseudo-clicks at the global rate in each item's conversion rate
EM_ITERATIONS = 500
EM_TOL = 1e-10


@dataclass(frozen=True)
class DelayFit:
    """The delayed-feedback model fitted to a window's clicks."""

    p: float  # global eventual conversion rate of a click
    rate: float  # λ: 1 / mean delay in hours
    p_item: np.ndarray  # (n_items,) per-item rate, shrunk to ``p``
    iterations: int

    def cdf(self, hours: np.ndarray) -> np.ndarray:
        """F̂(hours): the estimated share of eventual conversions that happened by then."""
        return -np.expm1(-self.rate * np.maximum(hours, 0.0))


def fit_delay(
    elapsed: np.ndarray,
    delay: np.ndarray,
    converted: np.ndarray,
    items: np.ndarray,
    n_items: int,
    prior_clicks: float = DFM_PRIOR_CLICKS,
) -> DelayFit:
    """EM for the delayed-feedback model on aligned clicks: hours since the click at the cut-off
    (``elapsed``), the observed delay of converted clicks (``delay``; ignored elsewhere),
    ``converted`` (bool) and the clicked ``items``.

    E-step: a not-yet-converted click converts eventually with posterior
    ``q = p_i S / (1 − p_i + p_i S)``, ``S = exp(−λ e)``; its delay is then ``e + 1/λ`` in
    expectation (memoryless). M-step: ``p = mean(q)`` over clicks (converted: ``q = 1``),
    ``p_i = (Σ_i q + a p) / (n_i + a)``, ``λ = Σ q / (Σ_conv d + Σ_unconv q (e + 1/λ))``.
    No conversion at all: ``p = 0`` and ``λ`` is undefined (NaN).
    """
    elapsed = np.asarray(elapsed, dtype=np.float64)
    converted = np.asarray(converted, dtype=bool)
    items = np.asarray(items, dtype=np.int64)
    n_conv = int(converted.sum())
    if n_conv == 0:
        return DelayFit(0.0, float("nan"), np.zeros(n_items), 0)
    d_sum = float(np.asarray(delay, dtype=np.float64)[converted].sum())
    e_un = elapsed[~converted]
    it_un = items[~converted]
    clicks_i = np.bincount(items, minlength=n_items).astype(np.float64)
    conv_i = np.bincount(items[converted], minlength=n_items).astype(np.float64)
    p = n_conv / elapsed.size
    p_item = np.full(n_items, p)
    rate = n_conv / max(d_sum, 1e-12)
    iterations = 0
    while iterations < EM_ITERATIONS:
        iterations += 1
        s = np.exp(-rate * e_un)
        pi = p_item[it_un]
        q = pi * s / (1.0 - pi + pi * s)
        total = n_conv + q.sum()
        p_new = total / elapsed.size
        q_i = conv_i + np.bincount(it_un, weights=q, minlength=n_items)
        p_item = (q_i + prior_clicks * p_new) / (clicks_i + prior_clicks)
        rate_new = total / (d_sum + float(q @ (e_un + 1.0 / rate)))
        done = abs(rate_new - rate) <= EM_TOL * rate and abs(p_new - p) <= EM_TOL
        p, rate = p_new, rate_new
        if done:
            break
    return DelayFit(float(p), float(rate), p_item, iterations)


def ipw_weights(elapsed: np.ndarray, fit: DelayFit, cap: float = IPW_CAP) -> np.ndarray:
    """``min(1 / F̂(e), cap)`` for conversions observed ``elapsed`` hours after their click."""
    f = fit.cdf(np.asarray(elapsed, dtype=np.float64))
    return np.minimum(1.0 / np.maximum(f, 1.0 / cap), cap)


def dfm_weights(elapsed: np.ndarray, items: np.ndarray, fit: DelayFit) -> np.ndarray:
    """Posterior probability that each not-yet-converted click (``elapsed`` hours old, on
    ``items``) converts later: ``p̂_i (1 − F̂(e)) / (1 − p̂_i F̂(e))``."""
    f = fit.cdf(np.asarray(elapsed, dtype=np.float64))
    p = fit.p_item[np.asarray(items, dtype=np.int64)]
    return p * (1.0 - f) / (1.0 - p * f)


def soft_label_least_squares(q: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """``(w, t)`` with ``w (t − s)²`` = implicit ALS's expected loss of a pair holding soft label
    ``q`` (converts with probability ``q``: ``q·alpha·(1 − s)² + (1 − q)·s²``) up to a constant
    in the score ``s``: ``w = alpha·q + max(1 − q, 0)``, ``t = alpha·q / w``. ``q ≥ 1`` (a sum of
    labels) gives implicit's own confidence ``alpha·q`` and target 1."""
    q = np.asarray(q, dtype=np.float64)
    w = alpha * q + np.maximum(1.0 - q, 0.0)
    return w, alpha * q / w


def label_weights(
    correction: str,
    elapsed: np.ndarray,
    delay: np.ndarray,
    converted: np.ndarray,
    items: np.ndarray,
    n_items: int,
) -> np.ndarray:
    """One training weight per click of the window (0: not in the matrix) under
    ``policy.label=conversions`` and ``correction``."""
    converted = np.asarray(converted, dtype=bool)
    weights = converted.astype(np.float64)
    if correction == "none" or not converted.any():
        return weights
    fit = fit_delay(elapsed, delay, converted, items, n_items)
    if correction == "ipw":
        weights[converted] = ipw_weights(np.asarray(elapsed)[converted], fit)
    elif correction == "dfm":
        weights[~converted] = dfm_weights(
            np.asarray(elapsed)[~converted], np.asarray(items)[~converted], fit
        )
    else:
        raise ValueError(f"policy.label_correction={correction!r}: unknown")
    return weights
