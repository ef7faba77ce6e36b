"""Probes of how each fitted model treats new and cold items (a living world), one table each.

The engine calls every probe at each retrain cut-off on the freshly fitted model (like the NDCG
probe, :mod:`sim.model_quality`) and writes each probe's rows once, at the end of the run, to
``logs/<probe.file>``:

* :class:`ItemRankProbe` — ``item_ranks.parquet``: where each new item (``arrival_t > 0``, in the
  catalog at the cut-off) stands in the model's ranking for a fixed sample of warm users, with
  its training clicks and the weight of its learned factors. The hand-off jump is the change of
  an item's ``rank_pct`` between the last model that knew no click of it and the first that did.
* :class:`ContentMapProbe` — ``content_map.parquet`` (``policy.scorer.content_map``): how well the
  content map's predicted factors explain the *true* latent factors of the cold items, next to
  the best any linear map from the content itself can do (limited by ``world.content_noise``).
  Only the simulator knows the true factors: this is a probe, never a policy input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Protocol

import numpy as np
import polars as pl

from agents.catalog import ItemMetadata
from policies.models import Model
from sim.inequality import average_ranks

RANK_CHUNK = 256  # probe users per block: bounds the (users, items) score matrix


class ItemProbe(Protocol):
    """A per-cut-off probe with a table of its own under ``logs/``."""

    file: ClassVar[str]
    schema: ClassVar[dict[str, pl.DataType]]

    def __call__(self, model: Model, version: int, t: float) -> pl.DataFrame | None:
        """The probe's rows for the model fitted at cut-off hour ``t`` (None: no row)."""
        ...


def item_clicks(model: Model) -> np.ndarray:
    """(n_items,) training clicks per item (the model's ``seen`` holds the training clicks)."""
    return np.asarray(model.seen.sum(axis=0)).ravel().astype(np.int64)


def warm_users(model: Model) -> np.ndarray:
    """(n_users,) bool: users the model ranks for itself (training clicks, not ``cold``)."""
    warm = np.diff(model.seen.tocsr().indptr) > 0
    cold = getattr(model, "cold", None)
    if cold is not None and np.size(cold) == warm.size:
        warm &= ~cold
    return warm


def rank_percentiles(scores: np.ndarray) -> np.ndarray:
    """Row-wise percentile of each score among its row: the share of the other entries it beats,
    ties counting half (1.0: above every other, 0.0: below all). NaN for a row of one."""
    m = scores.shape[1]
    if m < 2:
        return np.full(scores.shape, np.nan)
    return (average_ranks(scores, axis=1) - 1.0) / (m - 1.0)


def model_scores(model: Model, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """(users, items) float64 scores: one GEMM for a factor model, else ``model.score``."""
    user_factors = getattr(model, "user_factors", None)
    item_factors = getattr(model, "item_factors", None)
    if user_factors is not None and item_factors is not None:
        return user_factors[users].astype(np.float64) @ item_factors[items].astype(np.float64).T
    grid = np.broadcast_to(items, (users.size, items.size))
    return np.asarray(model.score(users, grid), dtype=np.float64)


@dataclass(frozen=True)
class ItemRankProbe:
    """Each new item's mean score percentile among the available items, over probe users.

    Probe users: the first ``n_users`` warm users of the model in ``user_order`` (a fixed random
    order of every user, drawn once from the run's stream ``metrics.item_rank_users``), so the
    sample stays the same from one model to the next as far as warmth allows. ``learned_weight``
    is the model's blend weight (``ALSModel.item_learned_weight``) or, without a content map,
    1 once the item has a training click, else 0.
    """

    user_order: np.ndarray
    n_users: int
    items: ItemMetadata
    file: ClassVar[str] = "item_ranks.parquet"
    schema: ClassVar[dict[str, pl.DataType]] = {
        "model_version": pl.Int32,
        "t": pl.Float64,
        "item_id": pl.Int32,
        "n_clicks": pl.Int64,
        "learned_weight": pl.Float64,
        "rank_pct": pl.Float64,
    }

    def __call__(self, model: Model, version: int, t: float) -> pl.DataFrame:
        available = np.flatnonzero(self.items.available(t))
        new = (self.items.arrival_t[available] > 0).nonzero()[0]  # positions in ``available``
        n_clicks = item_clicks(model)
        weight = getattr(model, "item_learned_weight", None)
        if weight is None:
            weight = (n_clicks >= 1).astype(np.float64)
        users = self.user_order[warm_users(model)[self.user_order]][: self.n_users]
        total = np.zeros(new.size)
        for lo in range(0, users.size, RANK_CHUNK):
            scores = model_scores(model, users[lo : lo + RANK_CHUNK], available)
            total += rank_percentiles(scores)[:, new].sum(axis=0)
        rank_pct = total / users.size if users.size else np.full(new.size, np.nan)
        ids = available[new]
        return pl.DataFrame(
            {
                "model_version": np.full(ids.size, version),
                "t": np.full(ids.size, float(t)),
                "item_id": ids,
                "n_clicks": n_clicks[ids],
                "learned_weight": np.asarray(weight, dtype=np.float64)[ids],
                "rank_pct": rank_pct,
            },
            schema=self.schema,
        )


def linear_r2(x: np.ndarray, y: np.ndarray) -> float:
    """In-sample R² of the least-squares map (with intercept) from ``x`` (n, p) to ``y`` (n, d),
    pooled over the output dims: ``1 − SS_res / SS_tot``. NaN when the map could fit any ``y``
    (n ≤ p + 1) or ``y`` is constant."""
    n = x.shape[0]
    if n <= x.shape[1] + 1:
        return float("nan")
    design = np.column_stack([np.ones(n), np.asarray(x, dtype=np.float64)])
    y = np.asarray(y, dtype=np.float64)
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    ss_res = float(((y - design @ coef) ** 2).sum())
    ss_tot = float(((y - y.mean(axis=0)) ** 2).sum())
    return 1.0 - ss_res / ss_tot if ss_tot > 0 else float("nan")


def in_model_space(true_fit: np.ndarray, learned: np.ndarray, true_out: np.ndarray) -> np.ndarray:
    """``true_out`` through the least-squares affine map from ``true_fit`` (n, d) to ``learned``
    (n, f): the true factors in the model's coordinates."""
    design = np.column_stack([np.ones(true_fit.shape[0]), true_fit])
    coef, *_ = np.linalg.lstsq(design, np.asarray(learned, dtype=np.float64), rcond=None)
    return np.column_stack([np.ones(true_out.shape[0]), true_out]) @ coef


@dataclass(frozen=True)
class ContentMapProbe:
    """The content map against the truth, one row per model (models without a map: none).

    The truth is first put in the model's own coordinates: ``T = A(true factors)``, the
    least-squares affine map from the true latent factors (``world.catalog.factors``) to the
    learned ALS factors of the warm items (unblended; ALS recovers taste only up to such a map).
    Then, on the items that are cold for the model (fewer training clicks than the map's
    ``warm_clicks``) and in the catalog at the cut-off:

    * ``r2_subspace`` = the in-sample R² of the best affine map from the predicted factors to
      ``T``: how much of the truth lies in the span the map recovers (equal to ``r2_ceiling`` as
      soon as the map keeps the content's rank — it then recovers the subspace exactly as well
      as the content's noise allows);
    * ``r2_true`` = ``1 − Σ‖predicted − T‖² / Σ‖T − mean T‖²``: how much of the truth the map's
      predicted factors recover, as they are (no refit: also their scale and offset; below 0
      when they sit further from the cold items' truth than its mean does);
    * ``r2_ceiling`` = the in-sample R² of the best affine map from the content itself to ``T``
      on the same items: what the content's noise allows. The predictions are an affine function
      of the content, so ``r2_true ≤ r2_ceiling`` always; the gap is what the map loses to
      fitting on few, noisy warm items and to its ridge shrinkage;
    * ``r2_signal`` = the R² of the predicted factors on the true ones (with a refit): the share
      of what the map predicts that is taste rather than content noise.
    """

    true_factors: np.ndarray
    items: ItemMetadata
    content_noise: float
    file: ClassVar[str] = "content_map.parquet"
    schema: ClassVar[dict[str, pl.DataType]] = {
        "model_version": pl.Int32,
        "lambda": pl.Float64,
        "cv_r2": pl.Float64,
        "n_warm": pl.Int64,
        "r2_true": pl.Float64,
        "r2_ceiling": pl.Float64,
        "content_noise": pl.Float64,
        "r2_signal": pl.Float64,
        "r2_subspace": pl.Float64,
    }

    def __call__(self, model: Model, version: int, t: float) -> pl.DataFrame | None:
        fitted = getattr(model, "content_map", None)
        if fitted is None:
            return None
        clicks = item_clicks(model)
        cold = (clicks < fitted.warm_clicks) & self.items.available(t)
        warm = (clicks >= fitted.warm_clicks) & (fitted.learned_weight > 0)
        r2_true = r2_ceiling = r2_signal = r2_subspace = float("nan")
        if np.isfinite(fitted.lambda_) and cold.sum() > 1:  # a map was fitted
            w = fitted.learned_weight[warm, None]
            blended = np.asarray(model.item_factors, dtype=np.float64)[warm]
            learned = (blended - (1.0 - w) * fitted.predicted[warm]) / w  # undo the blend
            truth = in_model_space(self.true_factors[warm], learned, self.true_factors[cold])
            predicted = fitted.predicted[cold]
            ss_tot = float(((truth - truth.mean(axis=0)) ** 2).sum())
            if ss_tot > 0:
                r2_true = 1.0 - float(((predicted - truth) ** 2).sum()) / ss_tot
            r2_ceiling = linear_r2(self.items.content[cold], truth)
            r2_subspace = linear_r2(predicted, truth)
            r2_signal = linear_r2(self.true_factors[cold], predicted)
        row = {
            "model_version": [version],
            "lambda": [fitted.lambda_],
            "cv_r2": [fitted.cv_r2],
            "n_warm": [fitted.n_warm],
            "r2_true": [r2_true],
            "r2_ceiling": [r2_ceiling],
            "content_noise": [float(self.content_noise)],
            "r2_signal": [r2_signal],
            "r2_subspace": [r2_subspace],
        }
        return pl.DataFrame(row, schema=self.schema)
