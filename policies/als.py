"""Implicit-feedback ALS (the ``implicit`` library) retrained on the logged clicks."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from implicit.cpu.als import AlternatingLeastSquares
from threadpoolctl import threadpool_limits

from policies.baselines import PopularityScorer
from policies.interactions import Interactions
from policies.models import ALSModel


@dataclass
class ALSScorer:
    """Fits :class:`implicit.cpu.als.AlternatingLeastSquares` on click counts.

    implicit uses confidence ``c = alpha * r``. With ``warm_start`` the next fit starts from the
    previous factors (implicit reuses factors that are already set); otherwise every retrain
    starts from a fresh seeded initialization.
    """

    factors: int = 32
    regularization: float = 0.05
    iterations: int = 10
    alpha: float = 10.0
    warm_start: bool = False
    random_state: int = 0
    num_threads: int = 0
    fallback: PopularityScorer = field(default_factory=PopularityScorer)
    _model: AlternatingLeastSquares | None = field(default=None, init=False, repr=False)

    def fit(self, interactions: Interactions, version: int) -> ALSModel:
        # BLAS threads would fight implicit's own; one BLAS thread also keeps YᵀY reproducible.
        with threadpool_limits(1, "blas"):
            return self._fit(interactions, version)

    def _fit(self, interactions: Interactions, version: int) -> ALSModel:
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
        self._model.fit(clicks, show_progress=False)
        # implicit's stored user factors lag the final item factors by half a sweep:
        # recompute the user side exactly against the final item factors.
        user_factors = self._model.recalculate_user(np.arange(interactions.n_users), clicks)
        return ALSModel(
            version=version,
            seen=clicks,
            user_factors=np.array(user_factors, dtype=np.float32, copy=True),
            # A copy: a warm-started fit updates implicit's arrays in place while this model is
            # still deployed (training takes simulated time).
            item_factors=np.array(self._model.item_factors, dtype=np.float32, copy=True),
            fallback=self.fallback.fit(interactions, version, source_name="popularity_fallback"),
            cold=interactions.user_activity == 0,
            regularization=float(self.regularization),
            alpha=float(self.alpha),
        )
