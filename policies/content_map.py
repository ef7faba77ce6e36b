"""Content bootstrapping for items: a ridge map from item content to ALS item factors.

A new item has no clicks, so ALS has nothing to learn its factors from (implicit leaves them near
zero). At every fit, :func:`fit_content_map` learns a ridge regression from the items' content
features (``ItemMetadata.content``: what the platform knows) to the freshly fitted ALS item
factors on the *warm* items (at least ``warm_clicks`` training clicks), with λ chosen by K-fold
cross-validation, and predicts factors for every item. The served factor of an item is then a
blend, by how much the log says about it (:func:`learned_weight`):

    y_i = w_i · learned_i + (1 − w_i) · predicted_i,   w_i = n_i / (n_i + k)

with ``n_i`` its training clicks; ``k = None`` switches blending off (``w = 1`` from the first
click on), which makes the hand-off from predicted to learned factors a jump.

The regression: content columns standardized on the training items (mean 0, sd 1; constant
columns left unscaled), an unpenalized intercept (the training items' mean factor), and
``B_λ = (ZᵀZ + λI)⁻¹ ZᵀY_c`` solved for every λ at once through one SVD of ``Z``.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

CV_FOLDS = 5
FOLD_STREAM = "policy.content_map.folds"  # named stream (of the scorer's seed) per model version


@dataclass(frozen=True)
class Ridge:
    """A fitted ridge map ``x -> ((x − mean) / scale) · coef + intercept``."""

    mean: np.ndarray  # (p,)
    scale: np.ndarray  # (p,)
    coef: np.ndarray  # (p, f)
    intercept: np.ndarray  # (f,)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return ((np.asarray(x, dtype=np.float64) - self.mean) / self.scale) @ self.coef + (
            self.intercept
        )


def fit_ridge(x: np.ndarray, y: np.ndarray, lambdas: Sequence[float]) -> list[Ridge]:
    """One ridge fit of ``y`` (n, f) on ``x`` (n, p) per λ (standardized ``x``, free intercept)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale == 0] = 1.0
    z = (x - mean) / scale
    intercept = y.mean(axis=0)
    u, s, vt = np.linalg.svd(z, full_matrices=False)
    uty = u.T @ (y - intercept)  # (r, f)
    fits = []
    for lam in lambdas:
        coef = vt.T @ ((s / (s**2 + float(lam)))[:, None] * uty)
        fits.append(Ridge(mean, scale, coef, intercept))
    return fits


def cv_r2(x: np.ndarray, y: np.ndarray, lambdas: Sequence[float], folds: np.ndarray) -> np.ndarray:
    """K-fold cross-validated R² of each λ, pooled over folds and output dims:
    ``1 − Σ‖y_i − ŷ_i‖² / Σ‖y_i − ȳ‖²``, ``ŷ_i`` from the fit without ``i``'s fold (which
    standardizes on its own training rows), ``ȳ`` the mean over all rows."""
    y = np.asarray(y, dtype=np.float64)
    sse = np.zeros(len(lambdas))
    for fold in np.unique(folds):
        held = folds == fold
        for j, ridge in enumerate(fit_ridge(x[~held], y[~held], lambdas)):
            sse[j] += float(((y[held] - ridge.predict(x[held])) ** 2).sum())
    sst = float(((y - y.mean(axis=0)) ** 2).sum())
    return 1.0 - sse / sst if sst > 0 else np.full(len(lambdas), np.nan)


def fold_ids(n: int, n_folds: int, rng: np.random.Generator) -> np.ndarray:
    """A random balanced assignment of ``n`` rows to ``n_folds`` folds (sizes differ by ≤ 1)."""
    return rng.permutation(n) % n_folds


def fold_rng(seed: int, version: int) -> np.random.Generator:
    """The folds' generator of one fit: child ``(crc32(FOLD_STREAM), version)`` of ``seed`` (the
    named-stream scheme of ``agents.streams``, which a policy does not import)."""
    key = (zlib.crc32(FOLD_STREAM.encode()), int(version))
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(int(seed), spawn_key=key)))


def learned_weight(n_clicks: np.ndarray, blend_k: float | None) -> np.ndarray:
    """Weight of the learned factor: ``n / (n + k)``; ``k=None`` (or 0): 1 from the first click."""
    n = np.asarray(n_clicks, dtype=np.float64)
    if blend_k is None or blend_k == 0:
        return (n >= 1).astype(np.float64)
    return n / (n + float(blend_k))


@dataclass(frozen=True)
class ItemContentMap:
    """What one fit's content map did: the chosen λ and its CV R² (in ALS space, on the warm
    items), the items' predicted factors and the blend weight of their learned ones."""

    lambda_: float  # NaN: too few warm items to cross-validate (predicted factors are zero)
    cv_r2: float
    n_warm: int
    warm_clicks: int  # the threshold: items with fewer training clicks are cold
    predicted: np.ndarray  # (n_items, f) float64: content-predicted factors of every item
    learned_weight: np.ndarray  # (n_items,) float64: w_i of the blend

    def blend(self, learned: np.ndarray) -> np.ndarray:
        """``w·learned + (1 − w)·predicted`` per item, float32."""
        w = self.learned_weight[:, None]
        return (w * learned + (1.0 - w) * self.predicted).astype(np.float32)


def fit_content_map(
    content: np.ndarray,
    item_factors: np.ndarray,
    n_clicks: np.ndarray,
    *,
    warm_clicks: int,
    lambdas: Sequence[float],
    blend_k: float | None,
    seed: int,
    version: int,
    n_folds: int = CV_FOLDS,
) -> ItemContentMap:
    """Fit the map on the items with ``n_clicks >= warm_clicks`` and predict every item.

    Folds are drawn per fit from :func:`fold_rng` (``seed``: the scorer's, and ``version``):
    deterministic, and no other stream is touched. With fewer than
    ``2 · n_folds`` warm items nothing is fitted: predicted factors are zero (what ALS gives a
    never-clicked item) and λ, CV R² are NaN.
    """
    n_items, f = item_factors.shape
    warm = np.flatnonzero(np.asarray(n_clicks) >= warm_clicks)
    weight = learned_weight(n_clicks, blend_k)
    if warm.size < 2 * n_folds:
        zeros = np.zeros((n_items, f))
        return ItemContentMap(
            float("nan"), float("nan"), int(warm.size), warm_clicks, zeros, weight
        )
    x = np.asarray(content, dtype=np.float64)
    y = np.asarray(item_factors, dtype=np.float64)[warm]
    rng = fold_rng(seed, version)
    r2 = cv_r2(x[warm], y, lambdas, fold_ids(warm.size, n_folds, rng))
    best = int(np.nanargmax(r2)) if np.isfinite(r2).any() else 0  # first best: smallest index
    ridge = fit_ridge(x[warm], y, [lambdas[best]])[0]
    predicted = ridge.predict(x)
    return ItemContentMap(
        float(lambdas[best]), float(r2[best]), int(warm.size), warm_clicks, predicted, weight
    )
