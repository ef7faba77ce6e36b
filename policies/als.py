"""Implicit-feedback ALS (the ``implicit`` library) retrained on the logged clicks."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from implicit.cpu.als import AlternatingLeastSquares
from scipy import sparse
from threadpoolctl import threadpool_limits

from policies.baselines import PopularityScorer
from policies.content_map import CV_FOLDS, fit_content_map
from policies.debiasing import ClickWeighting
from policies.interactions import Interactions
from policies.label_delay import soft_label_least_squares
from policies.models import ALSModel
from policies.weighted_als import WeightedALS


@dataclass
class ALSScorer:
    """Fits :class:`implicit.cpu.als.AlternatingLeastSquares` on click counts.

    implicit uses confidence ``c = alpha * r``. With ``warm_start`` the next fit starts from the
    previous factors (implicit reuses factors that are already set); otherwise every retrain
    starts from a fresh seeded initialization.

    With ``content_map`` (content bootstrapping for items, :mod:`policies.content_map`), every
    fit also maps ``item_content`` to the fitted item factors on the warm items (at least
    ``content_warm_clicks`` training clicks; ridge, λ among ``content_lambdas`` by
    cross-validation) and serves each item the blend ``w·learned + (1 − w)·predicted``,
    ``w = n / (n + content_blend_k)`` (``None``: 1 from the first click on). User factors stay as
    fitted against ALS's own item factors, and so do implicit's item factors that a warm start
    continues from: only the deployed model's copy is blended (a posterior selector's ``A_u``
    is then built from the blended item factors the model serves).
    """

    factors: int = 32
    regularization: float = 0.05
    iterations: int = 10
    alpha: float = 10.0
    warm_start: bool = False
    random_state: int = 0
    num_threads: int = 0
    fallback: PopularityScorer = field(default_factory=PopularityScorer)
    weighting: ClickWeighting | None = None  # debiased training (policies.debiasing)
    # Exact (Cholesky) final user solve; posterior selectors need x̂_u = A_u⁻¹ b_u exactly.
    exact_user_solve: bool = False
    content_map: bool = False
    item_content: np.ndarray | None = field(default=None, repr=False)  # ItemMetadata.content
    content_warm_clicks: int = 3
    content_lambdas: tuple[float, ...] = (0.01, 0.1, 1.0, 10.0, 100.0)
    content_blend_k: float | None = 5.0
    _model: AlternatingLeastSquares | None = field(default=None, init=False, repr=False)

    def fit(self, interactions: Interactions, version: int) -> ALSModel:
        # BLAS threads would fight implicit's own; one BLAS thread also keeps YᵀY reproducible.
        with threadpool_limits(1, "blas"):
            return self._fit(interactions, version)

    def _fit(self, interactions: Interactions, version: int) -> ALSModel:
        if self.weighting is not None and self.weighting.mode == "position_unbiased":
            return self._fit_unbiased(interactions, version)
        if interactions.soft_labels:
            return self._fit_soft(interactions, version)
        if self._model is None or not self.warm_start:
            self._model = AlternatingLeastSquares(
                factors=self.factors,
                regularization=self.regularization,
                alpha=self.alpha,
                iterations=self.iterations,
                random_state=int(self.random_state),
                num_threads=self.num_threads,
                calculate_training_loss=False,
            )
        clicks = interactions.clicks
        train = clicks if self.weighting is None else self.weighting.matrix(interactions)
        self._model.fit(train, show_progress=False)
        # implicit's stored user factors lag the final item factors by half a sweep: one more
        # user half-sweep against the final item factors — exact (Cholesky, ~30% of a fit at M)
        # when a posterior is needed, else implicit's own warm-started CG step (~5%).
        if self.exact_user_solve:
            user_factors = self._model.recalculate_user(np.arange(interactions.n_users), train)
        else:
            user_factors = np.array(self._model.user_factors, dtype=np.float32, copy=True)
            cui = (self.alpha * train).astype(np.float32)
            self._model.solver(
                cui,
                user_factors,
                self._model.item_factors,
                self.regularization,
                num_threads=self.num_threads,
            )
        return self._model_from(interactions, version, user_factors, self._model.item_factors)

    def _fit_unbiased(self, interactions: Interactions, version: int) -> ALSModel:
        """Rel-MF: unit weights everywhere, target Σ 1/θ on clicked pairs (WeightedALS)."""
        targets = self.weighting.matrix(interactions).astype(np.float64)
        positives = targets.copy()
        positives.data[:] = 1.0
        return self._fit_weighted(positives, targets, interactions, version)

    def _fit_soft(self, interactions: Interactions, version: int) -> ALSModel:
        """Soft labels ``q`` (policies.label_delay's dfm): the expected implicit-ALS loss of a
        pair that converts with probability ``q`` is a weighted least squares ``w (t − s)²``
        (:func:`policies.label_delay.soft_label_least_squares`), fitted by exact ALS
        (:class:`WeightedALS`). No warm start."""
        q = interactions.clicks.astype(np.float64)
        weights, targets = q.copy(), q.copy()
        weights.data, targets.data = soft_label_least_squares(q.data, self.alpha)
        return self._fit_weighted(weights, targets, interactions, version)

    def _fit_weighted(
        self,
        weights: sparse.csr_matrix,
        targets: sparse.csr_matrix,
        interactions: Interactions,
        version: int,
    ) -> ALSModel:
        """Exact weighted ALS (:class:`WeightedALS`, unobserved pairs weight 1) on these
        per-pair weights and targets."""
        wals = WeightedALS(
            factors=self.factors,
            regularization=self.regularization,
            iterations=self.iterations,
            unobserved_weight=1.0,
            random_state=int(self.random_state),
        ).fit(weights, targets=targets)
        return self._model_from(interactions, version, wals.user_factors_, wals.item_factors_)

    def _model_from(
        self,
        interactions: Interactions,
        version: int,
        user_factors: np.ndarray,
        item_factors: np.ndarray,
    ) -> ALSModel:
        clicks = interactions.clicks
        # A copy: a warm-started fit updates implicit's arrays in place while this model is
        # still deployed (training takes simulated time).
        item_factors = np.array(item_factors, dtype=np.float32, copy=True)
        content_map = None
        if self.content_map:
            if self.item_content is None:
                raise ValueError("policy.scorer.content_map=true needs the items' content features")
            content_map = fit_content_map(
                self.item_content,
                item_factors,
                np.asarray(clicks.sum(axis=0)).ravel(),
                warm_clicks=self.content_warm_clicks,
                lambdas=self.content_lambdas,
                blend_k=self.content_blend_k,
                seed=self.random_state,
                version=version,
                n_folds=CV_FOLDS,
            )
            item_factors = content_map.blend(item_factors)
        return ALSModel(
            version=version,
            seen=interactions.seen_matrix,  # the clicks, also when trained on conversions
            user_factors=np.array(user_factors, dtype=np.float32, copy=True),
            item_factors=item_factors,
            fallback=self.fallback.fit(interactions, version, source_name="popularity_fallback"),
            # no clicks, or no signal left after reweighting (all-zero factors tie every item)
            cold=(interactions.user_activity == 0) | ~np.any(user_factors != 0, axis=1),
            regularization=float(self.regularization),
            alpha=float(self.alpha),
            content_map=content_map,
        )
