"""Health checks on importance weights ``w = π1 / π0`` of the logged actions.

- :func:`effective_sample_size` — Kish's ``(Σw)² / Σw²``: the number of equally weighted samples
  that would give a weighted mean the same variance. ``n`` for equal weights, ``1`` when one
  weight dominates.
- :func:`clipped_share` — the share of weights a clip at ``clip`` would change.
- :func:`support_warning` — whether the target puts mass where the logging policy (almost) never
  acts. Only the logged actions are seen, so it works through the identity
  ``E_π0[w] = Σ_{a: π0(a)>0} π1(a)``: the mean weight estimates the share of the target's mass
  inside the logging support, and the mean of ``w · 1{w > max_weight}`` the share on actions the
  logging policy takes at least ``max_weight`` times less often than the target.
"""

from __future__ import annotations

import numpy as np

# Defaults of support_warning, kept as names so callers and docs agree.
MAX_WEIGHT = 100.0
MASS_THRESHOLD = 0.05
MIN_ESS_SHARE = 0.01


def effective_sample_size(weights: np.ndarray) -> float:
    """Kish's effective sample size ``(Σw)² / Σw²`` (0 when every weight is 0)."""
    w = np.asarray(weights, dtype=np.float64).ravel()
    sq = float(np.dot(w, w))
    return float(w.sum() ** 2 / sq) if sq > 0 else 0.0


def ess_share(weights: np.ndarray) -> float:
    """Effective sample size as a share of the number of weights."""
    w = np.asarray(weights).ravel()
    return effective_sample_size(w) / w.size if w.size else float("nan")


def clipped_share(weights: np.ndarray, clip: float | None) -> float:
    """Share of weights strictly above ``clip`` (0 without a clip)."""
    w = np.asarray(weights).ravel()
    if clip is None or w.size == 0:
        return 0.0
    return float(np.mean(w > clip))


def weight_diagnostics(
    raw: np.ndarray, used: np.ndarray | None = None, clip: float | None = None
) -> dict[str, float]:
    """``ess``/``ess_share`` of the weights an estimator ``used`` (after any clipping), and
    ``max_weight``/``clipped_share`` of the ``raw`` ones."""
    raw = np.asarray(raw, dtype=np.float64).ravel()
    used = raw if used is None else np.asarray(used, dtype=np.float64).ravel()
    return {
        "ess": effective_sample_size(used),
        "ess_share": ess_share(used),
        "clipped_share": clipped_share(raw, clip),
        "max_weight": float(raw.max()) if raw.size else float("nan"),
    }


def support_warning(
    target_propensity: np.ndarray,
    logging_propensity: np.ndarray,
    *,
    max_weight: float = MAX_WEIGHT,
    mass_threshold: float = MASS_THRESHOLD,
    min_ess_share: float = MIN_ESS_SHARE,
) -> str | None:
    """A plain-language warning when the logs cannot support the target policy, else None.

    Three checks on ``w = target_propensity / logging_propensity`` of the logged actions:

    1. *missing mass*: ``mean(w)`` estimates the target's mass inside the logging support; warn
       when even ``mean(w) + 3·SE`` is below ``1 - mass_threshold``;
    2. *near-zero logging propensity*: warn when ``mean(w · 1{w > max_weight})`` — the target's mass
       on actions logged ``max_weight`` times less often than the target plays them — exceeds
       ``mass_threshold``;
    3. *low overlap*: warn when the effective sample size is below ``min_ess_share · n``.

    Parameters
    ----------
    target_propensity, logging_propensity : π1 and π0 of each logged action (any shape, same
        shape; slot-level propensities may be passed flattened).
    """
    p1 = np.asarray(target_propensity, dtype=np.float64).ravel()
    p0 = np.asarray(logging_propensity, dtype=np.float64).ravel()
    if p1.shape != p0.shape:
        raise ValueError(f"target_propensity {p1.shape} and logging_propensity {p0.shape} differ")
    if p1.size == 0:
        return None
    w = p1 / p0
    n = w.size
    messages = []
    mean = float(w.mean())
    se = float(w.std(ddof=1) / np.sqrt(n)) if n > 1 else 0.0
    if mean + 3 * se < 1 - mass_threshold:
        messages.append(
            f"about {1 - mean:.0%} of the target policy's mass falls on actions the logging "
            f"policy never takes (mean importance weight {mean:.3g}, 1 under full support); "
            "every estimator that uses weights ignores that part of the target"
        )
    heavy = float(np.mean(np.where(w > max_weight, w, 0.0)))
    if heavy > mass_threshold:
        messages.append(
            f"about {heavy:.0%} of the target policy's mass falls on actions the logging policy "
            f"takes more than {max_weight:g} times less often (max weight {w.max():.3g}); those "
            "few logs dominate the estimate"
        )
    share = ess_share(w)
    if share < min_ess_share:
        messages.append(
            f"the importance weights leave an effective sample of {share:.2%} of the {n} logs "
            f"(below {min_ess_share:.0%}); intervals will be wide and unstable"
        )
    if not messages:
        return None
    text = "; ".join(messages)
    return text[0].upper() + text[1:] + "."
