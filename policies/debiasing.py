"""Debiased training data: per-click weights that undo position and popularity bias.

Logged clicks over-represent what was shown high and what is already popular. Each mode turns
the training window's clicks into a weighted matrix that ALS fits instead of raw counts:

* ``position_ipw`` — each click weighs ``min(1/θ_k, clip)``, ``θ_k`` the examination probability
  of the slot it was shown in (relative to slot 0, so top-slot clicks keep weight 1). ``θ`` is
  the world's true curve (``ipw_propensity=oracle``: a reference only the simulator has), estimated
  from shuffled top-K traffic (``randomized``; needs ``policy.intervention=shuffle``) or by
  regression-EM on the newest round (``em``; :mod:`policies.position_bias`).
* ``position_unbiased`` — the unbiased least-squares objective itself (Rel-MF, Saito et al.
  2020): every pair weighs 1 and a clicked pair's *target* is ``Σ min(1/θ_k, clip)`` over its
  clicks, so the expected loss equals the loss on true attraction. implicit cannot express a
  target other than 1; this mode trains with :class:`policies.weighted_als.WeightedALS` (exact,
  slower than implicit's conjugate gradient).
* ``popularity_ipw`` — each click weighs ``min((pop_i / mean pop)^-power, clip)`` with ``pop_i``
  the item's clicks in the window: popular items' clicks count for less;
* ``exposure`` — a pair shown ``m`` times and never clicked becomes an explicit 0 target with
  weight ``1 + exposure_weight · m`` (unseen pairs weigh 1): shown-but-ignored is weak negative
  evidence. implicit expresses this exactly — a stored negative value ``−w`` is a 0-preference
  entry of confidence ``alpha·w`` — so the objective is :mod:`policies.weighted_als`'s with
  ``N`` = those weights (checked against it in the tests).

With ``implicit`` the weighted count enters its confidence ``c = alpha · r``; the preference stays
1. That is the usual heuristic, not the unbiased estimator of the full least-squares loss
(Saito et al. 2020 would set the *target* of a clicked pair to ``1/θ``, which implicit's fixed
preference of 1 cannot express); the debiasing study measures how much of the bias gap it closes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import scipy.sparse as sp

from policies.components import Component
from policies.interactions import Interactions, TrainingNeeds
from policies.position_bias import theta_regression_em

DEBIAS_MODES = ("none", "position_ipw", "position_unbiased", "popularity_ipw", "exposure")
IPW_PROPENSITIES = ("oracle", "randomized", "em")


@dataclass(frozen=True)
class Debias(Component):
    """The ``policy.debias`` node: which training-data correction and its parameters."""

    mode: str = "none"
    propensity: str = "oracle"  # position_*: where θ comes from (IPW_PROPENSITIES)
    clip: float = 10.0  # position_ipw / position_unbiased / popularity_ipw: max weight of a click
    popularity_power: float = 0.5  # popularity_ipw
    exposure_weight: float = 1.0  # exposure
    group: ClassVar[str] = "debias"

    def __post_init__(self) -> None:
        if self.mode not in DEBIAS_MODES:
            self._fail("mode", f"unknown; choose one of {', '.join(DEBIAS_MODES)}")
        if self.propensity not in IPW_PROPENSITIES:
            self._fail("propensity", f"unknown; choose one of {', '.join(IPW_PROPENSITIES)}")
        self._number("clip", 1.0)
        self._number("popularity_power", 0.0)
        self._number("exposure_weight", 0.0)

    @property
    def active(self) -> bool:
        return self.mode != "none"

    @property
    def position_based(self) -> bool:
        return self.mode in ("position_ipw", "position_unbiased")

    @property
    def training_needs(self) -> TrainingNeeds:
        return TrainingNeeds(keep_exposures=self.mode == "exposure")

    def weighting(
        self, n_slots: int, alpha: float, examination: np.ndarray | None
    ) -> ClickWeighting:
        """The runtime weighting for an ALS with confidence ``alpha`` (fails now if θ is needed
        from the world and there is none)."""
        weighting = ClickWeighting(
            self.mode,
            clip=self.clip,
            propensity=self.propensity,
            true_theta=examination,
            popularity_power=self.popularity_power,
            n_slots=n_slots,
            alpha=alpha,
            exposure_weight=self.exposure_weight,
        )
        if self.position_based and self.propensity == "oracle":
            weighting.theta(Interactions.empty(1, 1))  # fail now if there is no θ
        return weighting


@dataclass(frozen=True)
class ClickWeighting:
    """Turns a window's clicks into the weighted training matrix (see the module docstring)."""

    mode: str
    clip: float = 10.0
    propensity: str = "oracle"
    true_theta: np.ndarray | None = None  # (K,) the world's examination curve (reference arm)
    popularity_power: float = 0.5
    n_slots: int = 10
    alpha: float = 10.0  # implicit multiplies every stored value by alpha
    exposure_weight: float = 1.0

    def theta(self, interactions: Interactions) -> np.ndarray:
        """Examination curve relative to slot 0, shape (n_slots,)."""
        k = self.n_slots
        if self.propensity == "oracle":
            if self.true_theta is None:
                raise ValueError("policy.debias.propensity='oracle' needs the world's click model")
            theta = np.asarray(self.true_theta, dtype=np.float64)[:k]
        elif self.propensity == "randomized":
            slots = interactions.randomized_slots
            if slots is None or slots.impressions.size < k or slots.impressions[:k].min() == 0:
                return np.ones(k)  # no randomized data yet: no correction
            ctr = slots.clicks[:k] / slots.impressions[:k]  # ∝ θ_k on shuffled traffic
            if ctr[0] == 0:
                return np.ones(k)
            theta = ctr / ctr[0]  # theta_from_randomized's point estimate, from the counts
        else:
            rnd = interactions.latest_round
            if rnd.position is None or rnd.position.size == 0 or not rnd.clicked.any():
                return np.ones(k)
            score = np.nan_to_num(rnd.score, nan=0.0)
            keep = rnd.position < k
            if np.unique(rnd.position[keep]).size < k:
                return np.ones(k)
            theta = theta_regression_em(rnd.position[keep], rnd.clicked[keep], score[keep], k).theta
        theta = np.where(np.isfinite(theta) & (theta > 0), theta, 1.0)
        return theta / theta[0]

    def weights(self, interactions: Interactions) -> np.ndarray:
        """One weight per click in ``interactions.click_events``."""
        events = interactions.click_events
        if events.item_ids.size != int(interactions.clicks.sum()):
            raise ValueError(
                f"policy.debias={self.mode!r} needs every training click with its slot "
                "(Interactions.click_events)"
            )
        if self.mode in ("position_ipw", "position_unbiased"):
            theta = self.theta(interactions)
            pos = np.minimum(events.positions, theta.size - 1)
            return np.minimum(1.0 / theta[pos], self.clip)
        if self.mode == "popularity_ipw":
            pop = np.bincount(events.item_ids, minlength=interactions.n_items).astype(np.float64)
            mean = pop[pop > 0].mean() if (pop > 0).any() else 1.0
            rel = pop[events.item_ids] / mean
            return np.minimum(rel ** (-self.popularity_power), self.clip)
        return np.ones(events.item_ids.size)

    def matrix(self, interactions: Interactions) -> sp.csr_matrix:
        """The weighted (n_users, n_items) training matrix (float32, canonical CSR)."""
        if self.mode == "none":
            return interactions.clicks
        if self.mode == "exposure":
            return self._with_exposures(interactions)
        events = interactions.click_events
        m = sp.coo_matrix(
            (self.weights(interactions).astype(np.float32), (events.user_ids, events.item_ids)),
            shape=interactions.clicks.shape,
        ).tocsr()
        m.sum_duplicates()
        m.sort_indices()
        return m

    def _with_exposures(self, interactions: Interactions) -> sp.csr_matrix:
        clicks = interactions.clicks
        if interactions.exposures is None:
            raise ValueError("policy.debias='exposure' needs the log's shown-not-clicked pairs")
        users, items = interactions.exposures
        shown = sp.coo_matrix(
            (np.ones(users.size, dtype=np.float64), (users, items)), shape=clicks.shape
        ).tocsr()
        shown.sum_duplicates()  # m: unclicked impressions per pair
        never_clicked = shown - shown.multiply(clicks > 0)  # pairs ever clicked stay positives
        never_clicked.eliminate_zeros()
        # stored -(1 + β m)/alpha -> implicit's confidence alpha·|v| = 1 + β m on a 0 target
        never_clicked.data = -(1.0 + self.exposure_weight * never_clicked.data) / self.alpha
        out = (clicks.astype(np.float64) + never_clicked).tocsr().astype(np.float32)
        out.sum_duplicates()
        out.sort_indices()
        return out
