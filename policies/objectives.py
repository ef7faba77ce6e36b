"""Named objectives of multi-objective ranking: what a candidate is worth to each goal.

Each objective is a small component with a ``name``, a ``unit`` and a ``formula``, computed per
(request, candidate) from what the platform knows only: the deployed model's scores, the logs
(impressions per item, the reranker rows of :class:`policies.interactions.RerankRows`) and the item
metadata (:class:`agents.catalog.ItemMetadata`: content, creator, price, publish time) — never the
ground truth. With ``s`` the deployed model's score of the candidate, ``i`` the item, ``t`` the
request's hour:

* ``relevance`` — calibrated click probability at slot 0 (unit: clicks per impression) of the
  candidate's *gap* to its request's best candidate, ``g = s − max_{j ∈ request, same source} s_j``
  (≤ 0): ``p = σ(α_r + β_r·z)``, ``z = (g − μ_r)/σ_r`` standardized per retrieval source ``r``
  (the ALS score of a known user and the popularity count served to a cold one are on different
  scales). ``α_r, β_r ≥ 0`` (and shared per-slot offsets ``c_k``, ``c_0 = 0``) are a logistic fit
  ``P(click | g, r, slot k) = σ(α_r + β_r·z + c_k)`` on the logged model-served impressions of the
  last ``training_rounds`` rounds, ``g`` from the logged candidates of each impression's request
  (:func:`fit_calibration`, with a documented default where the log is too small or degenerate);
  the offsets absorb position bias, so the prediction at slot 0 is the click probability of the
  top slot. Why the gap and not the raw score: pooled over users, a higher ALS score in the same
  slot does not mean more clicks (measured on an 8-day 2,000-user run: the raw-score slope was
  ≈ 0 and turned negative from the fourth model on, while the gap's slope stayed at +0.07 to
  +0.17): scores are comparable within a request, not across users. The logged scores were
  produced by the models that *served* those rounds (the previous versions); the calibration is
  applied to the scores of the model deployed with it (the next version), i.e. it assumes the
  gaps' scale carries over from one retrain to the next (``z`` is clipped to the logged range: no
  extrapolation). Within a request ``p`` is non-decreasing in the model's score.
* ``revenue`` — ``price_i · p(s)``: expected revenue per impression (price units per impression).
* ``freshness`` — ``2^(−age/τ)`` with ``age = max(t − publish_t_i, 0)`` in days and ``τ`` =
  ``freshness_halflife_days`` (unit 1: 1 for an item published now, ½ one half-life later).
  ``t`` is the request's hour (``SelectionContext.times``), or, where the caller has none, the last
  logged hour before the model's cut-off.
* ``diversity`` — intra-list content diversity, *sequential*: the gain in the slate's mean
  pairwise cosine distance ``D(S) = mean_{i<j∈S} (1 − cos(x_i, x_j))`` of ``ItemMetadata.content``
  when the candidate is added to the items already placed, ``D(S ∪ {i}) − D(S)`` (unit: cosine
  distance, in [−2, 2]); ``D`` of fewer than two items is 0, so the gain is 0 for every candidate
  of the first slot and ``1 − cos`` to the first item for the second. A zero content vector is at
  cosine distance 1 from everything.
* ``fairness`` — creator exposure fairness: ``1 − share_c / max_c' share_c'`` with ``share_c`` the
  creator's share of the impressions in the model's training log (``SelectionContext
  .item_impressions`` summed by ``creator_id``; unit 1: 1 for a creator never shown, 0 for the most
  exposed one); 1 for everyone before any impression.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from agents.catalog import ItemMetadata

OBJECTIVES = ("relevance", "revenue", "freshness", "diversity", "fairness")
HOURS_PER_DAY = 24.0

# Calibration: the documented default that replaces the fit when the log cannot support one.
# the default's intercept is σ⁻¹(the rows' slot-0 click rate); this rate without a slot-0 click
FALLBACK_CTR = 0.05
FALLBACK_SLOPE = 1.0  # click log-odds per standard deviation of the source's scores
FALLBACK_REASONS = ("too_few_rows", "constant_score", "negative_slope", "no_convergence")
NEWTON_ITERATIONS = 50
NEWTON_TOL = 1e-10  # max |Δθ| (standardized scale) at convergence
RIDGE = 1e-6  # on the slope and the slot offsets (an unseen slot keeps offset 0)
MAX_ABS_COEF = 50.0  # a standardized coefficient beyond this: (quasi-)separated data
TIE_TOL = 1e-12  # a row whose values span less than this (relative) is a tie: normalized to 0


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, dtype=np.float64)))


def logit(p: float) -> float:
    return float(np.log(p) - np.log1p(-p))


@dataclass(frozen=True)
class Calibration:
    """``P(click | feature x from source r, slot k) = σ(α_r + β_r·(x − μ_r)/σ_r + c_k)``, the
    feature being the model score's gap to the request's best candidate (:func:`gap_to_top`).

    One intercept ``α_r`` and slope ``β_r ≥ 0`` per retrieval source (a code into
    :data:`policies.models.SOURCES`: the ALS score of a known user and the popularity count of
    the fallback for a cold one are on different scales), on the score standardized by the
    source's logged mean ``μ_r`` and spread ``σ_r``; slot offsets ``c_k`` shared, ``c_0 = 0``.
    ``fallback[r]`` names why source ``r`` uses the documented default (:func:`fit_calibration`)
    instead of a fit, None where fitted. A source whose ``μ_r`` is NaN (no logged spread) is
    standardized over each request's own candidate scores instead. ``z`` is clipped to the range
    of the source's logged rows (``z_low``, ``z_high``): no extrapolation beyond what the fit
    saw (the popularity count served to cold users grows as the log grows), so the probability
    is flat beyond the extremes and still non-decreasing in the score.
    """

    intercept: np.ndarray  # (S,) α_r
    slope: np.ndarray  # (S,) β_r on the standardized score
    center: np.ndarray  # (S,) μ_r (NaN: per request)
    scale: np.ndarray  # (S,) σ_r
    slot_offsets: np.ndarray  # (K,) c_k, c_0 == 0
    fallback: tuple[str | None, ...]  # (S,) why the default replaced the fit (None: fitted)
    n_rows: np.ndarray  # (S,) rows fitted on per source
    n_clicks: np.ndarray  # (S,)
    z_low: np.ndarray | None = None  # (S,) smallest logged standardized score (None: -inf)
    z_high: np.ndarray | None = None  # (S,) largest (None: +inf)

    def raw(self, source: int) -> tuple[float, float]:
        """``(a, b)`` of ``σ(a + b·s + c_k)`` on the raw score of ``source`` (where ``μ`` is
        known)."""
        b = self.slope[source] / self.scale[source]
        return float(self.intercept[source] - b * self.center[source]), float(b)

    def fitted_sources(self) -> list[int]:
        return [r for r, why in enumerate(self.fallback) if why is None]

    def click_probability(
        self, scores: np.ndarray, sources: np.ndarray | int, slot: int = 0
    ) -> np.ndarray:
        """``(n, C)`` click probabilities at ``slot`` of candidates with model ``scores``
        ``(n, C)`` from ``sources`` (``(n, C)`` codes, or one code for all): the calibration of
        each one's gap to its request's best candidate of the same source (:func:`gap_to_top`)."""
        return self.probability(gap_to_top(scores, sources), sources, slot)

    def probability(
        self, feature: np.ndarray, sources: np.ndarray | int, slot: int = 0
    ) -> np.ndarray:
        """``(n, C)`` ``σ(α_r + β_r·clip((x − μ_r)/σ_r) + c_slot)`` of the calibrated feature
        ``x`` (``(n, C)``; sources as in :meth:`click_probability`)."""
        s = np.asarray(feature, dtype=np.float64)
        s = s.reshape(1, -1) if s.ndim == 1 else s
        src = np.broadcast_to(np.asarray(sources, dtype=np.int64), s.shape)
        center, scale = self.center[src], self.scale[src]
        per_request = ~np.isfinite(center)
        if per_request.any():  # standardized over the request's own candidates
            with np.errstate(invalid="ignore"):
                mu = np.nanmean(np.where(np.isfinite(s), s, np.nan), axis=1, keepdims=True)
                sd = np.nanstd(np.where(np.isfinite(s), s, np.nan), axis=1, keepdims=True)
            mu, sd = np.nan_to_num(mu), np.where(sd > 0, sd, 1.0)
            center = np.where(per_request, mu, center)
            scale = np.where(per_request, sd, scale)
        z = (s - center) / scale
        if self.z_low is not None and self.z_high is not None:
            z = np.clip(z, self.z_low[src], self.z_high[src])
        z = np.nan_to_num(z, nan=-np.inf, posinf=np.inf, neginf=-np.inf)  # no score: the worst
        with np.errstate(invalid="ignore"):
            eta = self.intercept[src] + self.slope[src] * z + self.slot_offsets[slot]
        return sigmoid(np.nan_to_num(eta, nan=-np.inf))


def gap_to_top(scores: np.ndarray, sources: np.ndarray | int) -> np.ndarray:
    """``(n, C)`` each candidate's model score minus the best score among its request's
    candidates from the same retrieval source (≤ 0; 0 for the best one; NaN for no score)."""
    s = np.asarray(scores, dtype=np.float64)
    s = s.reshape(1, -1) if s.ndim == 1 else s
    src = np.broadcast_to(np.asarray(sources, dtype=np.int64), s.shape)
    top = np.full(s.shape, np.nan)
    finite = np.isfinite(s)
    for r in np.unique(src):  # the few sources of a batch, vectorized over its requests
        mine = src == r
        best = np.where(mine & finite, s, -np.inf).max(axis=1, keepdims=True)
        top = np.where(mine, best, top)
    with np.errstate(invalid="ignore"):
        return s - top


def fit_calibration(
    score: np.ndarray,
    slot: np.ndarray,
    clicked: np.ndarray,
    source: np.ndarray | int,
    n_slots: int,
    n_sources: int,
    min_clicks: int,
) -> Calibration:
    """Maximum-likelihood logistic fit of ``clicked ~ σ(α_r + β_r·z + c_slot)``, ``z`` the
    feature ``score`` (the scalarized reranker passes each row's gap to its request's best
    candidate) standardized per source (Newton's method with step halving; a ridge of :data:`RIDGE`
    on the slopes and the offsets). Rows with a non-finite score, a slot ``>= n_slots`` or a
    source ``>= n_sources`` are left out.

    A source falls back to the documented default ``σ(logit(ctr_r) + FALLBACK_SLOPE·z)``
    (``ctr_r`` its click rate at slot 0 clipped to [0.001, 0.999], :data:`FALLBACK_CTR` without
    a click there: the default predicts the top slot's observed click rate at an average score;
    ``z`` standardized by its logged scores, by the request's candidates where it has none) when
    it has fewer than ``min_clicks`` clicks or non-clicks (``too_few_rows``), its scores do not
    vary (``constant_score``), its fitted ``β_r < 0`` (``negative_slope``: the model's order would
    be reversed) or the fit does not converge / runs off to a separated solution
    (``no_convergence``, every source). The relevance is therefore monotone non-decreasing in the
    score within a source.
    """
    score = np.asarray(score, dtype=np.float64)
    slot = np.asarray(slot, dtype=np.int64)
    y = np.asarray(clicked, dtype=bool)
    src = np.broadcast_to(np.asarray(source, dtype=np.int64), score.shape)
    keep = np.isfinite(score) & (slot >= 0) & (slot < n_slots) & (src >= 0) & (src < n_sources)
    score, slot, y, src = score[keep], slot[keep], y[keep], src[keep]
    n_rows = np.bincount(src, minlength=n_sources)
    n_clicks = np.bincount(src[y], minlength=n_sources)
    center = np.full(n_sources, np.nan)
    scale = np.ones(n_sources)
    z_low, z_high = np.full(n_sources, -np.inf), np.full(n_sources, np.inf)
    reason: list[str | None] = ["too_few_rows"] * n_sources
    for r in np.flatnonzero(n_rows):  # a loop over the few sources, not over rows
        s = score[src == r]
        mu, sd = float(s.mean()), float(s.std())
        if sd > 1e-12 * max(1.0, abs(mu)):
            center[r], scale[r] = mu, sd
            z_low[r], z_high[r] = (s.min() - mu) / sd, (s.max() - mu) / sd
            if min(n_clicks[r], n_rows[r] - n_clicks[r]) >= max(min_clicks, 1):
                reason[r] = None
        elif min(n_clicks[r], n_rows[r] - n_clicks[r]) >= max(min_clicks, 1):
            reason[r] = "constant_score"
    top_rows = np.bincount(src[slot == 0], minlength=n_sources)
    top_clicks = np.bincount(src[(slot == 0) & y], minlength=n_sources)
    ctr = np.where(top_clicks > 0, top_clicks / np.maximum(top_rows, 1), FALLBACK_CTR)
    intercept = np.array([logit(min(max(c, 1e-3), 0.999)) for c in ctr])
    slope = np.full(n_sources, FALLBACK_SLOPE)
    offsets = np.zeros(max(n_slots, 1))
    fitted = [r for r in range(n_sources) if reason[r] is None]
    while fitted:  # refit without a source whose slope came out negative (a few sources at most)
        theta = _newton(score, slot, y, src, fitted, center, scale, n_slots)
        if theta is None:
            reason = ["no_convergence" if why is None else why for why in reason]
            break
        negative = [r for j, r in enumerate(fitted) if theta[2 * j + 1] < 0]
        if not negative:
            for j, r in enumerate(fitted):
                intercept[r], slope[r] = theta[2 * j], theta[2 * j + 1]
            offsets[1:n_slots] = theta[2 * len(fitted) :]
            break
        for r in negative:
            reason[r] = "negative_slope"
        fitted = [r for r in fitted if r not in negative]
    return Calibration(
        intercept, slope, center, scale, offsets, tuple(reason), n_rows, n_clicks, z_low, z_high
    )


def _newton(
    score: np.ndarray,
    slot: np.ndarray,
    y: np.ndarray,
    src: np.ndarray,
    fitted: list[int],
    center: np.ndarray,
    scale: np.ndarray,
    n_slots: int,
) -> np.ndarray | None:
    """θ = (α, β) per fitted source, then ``c_1..c_{K-1}``; None when it does not converge."""
    use = np.isin(src, fitted)
    score, slot, y, src = score[use], slot[use], y[use], src[use]
    m, f = int(y.size), len(fitted)
    p = 2 * f + max(n_slots - 1, 0)
    x = np.zeros((m, p))
    col = np.searchsorted(np.asarray(fitted), src)  # which fitted source each row is
    rows = np.arange(m)
    x[rows, 2 * col] = 1.0
    x[rows, 2 * col + 1] = (score - center[src]) / scale[src]
    later = np.flatnonzero(slot > 0)
    x[later, 2 * f + slot[later] - 1] = 1.0
    ridge = np.full(p, RIDGE)
    ridge[0 : 2 * f : 2] = 0.0  # intercepts are not shrunk
    yf = y.astype(np.float64)

    def loglik(theta: np.ndarray) -> float:
        eta = x @ theta
        return float(yf @ eta - np.logaddexp(0.0, eta).sum() - 0.5 * ridge @ theta**2)

    theta = np.zeros(p)
    for j, r in enumerate(fitted):
        theta[2 * j] = logit(float(yf[src == r].mean()))
    current = loglik(theta)
    for _ in range(NEWTON_ITERATIONS):
        mu = sigmoid(x @ theta)
        grad = x.T @ (yf - mu) - ridge * theta
        hess = (x * (mu * (1.0 - mu))[:, None]).T @ x + np.diag(ridge)
        try:
            step = np.linalg.solve(hess, grad)
        except np.linalg.LinAlgError:
            return None
        t = 1.0
        for _ in range(30):  # step halving: never lower the likelihood
            candidate = theta + t * step
            value = loglik(candidate)
            if value >= current - 1e-12 * abs(current):
                break
            t *= 0.5
        theta, current = candidate, value
        if not np.all(np.isfinite(theta)) or np.max(np.abs(theta)) > MAX_ABS_COEF:
            return None
        if np.max(np.abs(t * step)) < NEWTON_TOL:
            return theta
    return None


@dataclass
class ObjectiveInputs:
    """What the objectives read for one batch of ``n`` requests of ``C`` candidates."""

    candidates: np.ndarray  # (n, C) int64 item ids
    scores: np.ndarray  # (n, C) the deployed model's scores of the candidates
    times: np.ndarray  # (n,) float64: each request's hour
    items: ItemMetadata | None
    item_impressions: np.ndarray  # (n_items,) impressions per item in the model's training log
    calibration: Calibration
    sources: np.ndarray | int = 1  # (n, C) retrieval source codes of the candidates (1: als)
    p_click: np.ndarray = field(init=False)  # (n, C) calibrated relevance, computed once

    def __post_init__(self) -> None:
        self.p_click = self.calibration.click_probability(self.scores, self.sources, 0)

    @property
    def metadata(self) -> ItemMetadata:
        if self.items is None:
            raise ValueError("this objective reads the platform's item metadata (none given)")
        return self.items


class Objective:
    """A named objective: ``values(x)`` is ``(n, C)`` float64 in :attr:`unit`, larger = better."""

    name: ClassVar[str] = ""
    unit: ClassVar[str] = ""
    formula: ClassVar[str] = ""
    sequential: ClassVar[bool] = False  # depends on what is already in the slate (diversity)
    needs_items: ClassVar[bool] = True

    def values(self, x: ObjectiveInputs) -> np.ndarray:
        raise NotImplementedError


@dataclass(frozen=True)
class Relevance(Objective):
    name: ClassVar[str] = "relevance"
    unit: ClassVar[str] = "clicks per impression"
    formula: ClassVar[str] = "σ(α_r + β_r·(gap − μ_r)/σ_r), gap = score − request's best"
    needs_items: ClassVar[bool] = False

    def values(self, x: ObjectiveInputs) -> np.ndarray:
        return x.p_click


@dataclass(frozen=True)
class Revenue(Objective):
    name: ClassVar[str] = "revenue"
    unit: ClassVar[str] = "price units per impression"
    formula: ClassVar[str] = "price · relevance"

    def values(self, x: ObjectiveInputs) -> np.ndarray:
        return x.metadata.price.astype(np.float64)[x.candidates] * x.p_click


@dataclass(frozen=True)
class Freshness(Objective):
    halflife_days: float = 7.0
    name: ClassVar[str] = "freshness"
    unit: ClassVar[str] = "1"
    formula: ClassVar[str] = "2^(−max(t − publish_t, 0) / halflife), in days"

    def values(self, x: ObjectiveInputs) -> np.ndarray:
        publish = np.asarray(x.metadata.publish_t, dtype=np.float64)[x.candidates]
        age_days = np.maximum(x.times[:, None] - publish, 0.0) / HOURS_PER_DAY
        return np.exp2(-age_days / self.halflife_days)


@dataclass(frozen=True)
class Fairness(Objective):
    name: ClassVar[str] = "fairness"
    unit: ClassVar[str] = "1"
    formula: ClassVar[str] = "1 − share(creator) / max share, impressions of the training log"

    def creator_fairness(self, x: ObjectiveInputs) -> np.ndarray:
        """(n_creators,) ``1 − share_c / max share`` (1 everywhere before any impression)."""
        creator = np.asarray(x.metadata.creator_id, dtype=np.int64)
        shown = np.bincount(creator, weights=np.asarray(x.item_impressions, dtype=np.float64))
        top = shown.max(initial=0.0)
        if top <= 0:
            return np.ones(shown.size)
        return 1.0 - shown / top  # share_c / max share = impressions_c / max impressions

    def values(self, x: ObjectiveInputs) -> np.ndarray:
        creator = np.asarray(x.metadata.creator_id, dtype=np.int64)
        return self.creator_fairness(x)[creator[x.candidates]]


@dataclass(frozen=True)
class Diversity(Objective):
    """Sequential: :meth:`gain` given what is placed; :meth:`values` is the first slot's gain (0)."""

    name: ClassVar[str] = "diversity"
    unit: ClassVar[str] = "cosine distance"
    formula: ClassVar[str] = "D(S ∪ {i}) − D(S), D = mean pairwise (1 − cos) of content"
    sequential: ClassVar[bool] = True

    @staticmethod
    def unit_catalog(items: ItemMetadata) -> np.ndarray:
        """(n_items, d) float64 content scaled to unit length (zero vectors stay zero)."""
        content = np.asarray(items.content, dtype=np.float64)
        norm = np.linalg.norm(content, axis=1)
        return content / np.where(norm > 0, norm, 1.0)[:, None]

    def unit_content(self, x: ObjectiveInputs, unit: np.ndarray | None = None) -> np.ndarray:
        """(n, d, C) the candidates' unit content, feature-major (``unit``: the catalog's
        :meth:`unit_catalog`, computed here when not given)."""
        unit = self.unit_catalog(x.metadata) if unit is None else unit
        return np.ascontiguousarray(unit[x.candidates].transpose(0, 2, 1))

    @staticmethod
    def distance_to(unit: np.ndarray, picked: np.ndarray) -> np.ndarray:
        """(n, C) cosine distance of every candidate to candidate ``picked[r]`` of its row
        (``unit``: (n, d, C) from :meth:`unit_content`)."""
        anchor = unit[np.arange(unit.shape[0]), :, picked]  # (n, d)
        # a multiply-add per feature (d is a few dozen), vectorized over requests and
        # candidates: every cell sums its d terms in the same order whatever the batch (no
        # BLAS blocking), so a request gets the same value in any batch
        dot = np.zeros((unit.shape[0], unit.shape[2]))
        for j in range(unit.shape[1]):
            dot += unit[:, j, :] * anchor[:, j, None]
        return 1.0 - dot

    @staticmethod
    def gain(dist_sum: np.ndarray, pair_sum: np.ndarray, m: int) -> np.ndarray:
        """``D(S ∪ {i}) − D(S)`` for every candidate, with ``m = |S|`` items placed,
        ``dist_sum`` (n, C) each candidate's summed distance to them and ``pair_sum`` (n,) the
        placed items' summed pairwise distance."""
        if m == 0:
            return np.zeros_like(dist_sum)
        before = pair_sum / (m * (m - 1) / 2) if m >= 2 else np.zeros_like(pair_sum)
        after = (pair_sum[:, None] + dist_sum) / ((m + 1) * m / 2)
        return after - before[:, None]

    def values(self, x: ObjectiveInputs) -> np.ndarray:
        return np.zeros(x.candidates.shape)


def objective(name: str, freshness_halflife_days: float = 7.0) -> Objective:
    """The objective called ``name`` (one of :data:`OBJECTIVES`)."""
    if name == "freshness":
        return Freshness(freshness_halflife_days)
    return {
        "relevance": Relevance,
        "revenue": Revenue,
        "diversity": Diversity,
        "fairness": Fairness,
    }[name]()


def normalize(values: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Min-max per row over the cells where ``mask`` (all when None): ``(v − min)/(max − min)``
    in [0, 1]. A row whose values tie (span ≤ :data:`TIE_TOL` relative to its largest magnitude)
    is 0 everywhere (the objective then decides nothing for that request); NaN counts as the
    minimum (0); cells outside ``mask`` are 0."""
    v = np.asarray(values, dtype=np.float64)
    ok = np.isfinite(v) if mask is None else (mask & np.isfinite(v))
    if v.shape[1] == 0:
        return np.zeros(v.shape)
    with np.errstate(invalid="ignore"):
        lo = np.where(ok, v, np.inf).min(axis=1, keepdims=True)
        hi = np.where(ok, v, -np.inf).max(axis=1, keepdims=True)
        span = hi - lo
        scale = np.maximum(np.abs(hi), np.abs(lo))
        tie = ~(span > TIE_TOL * np.maximum(scale, 1.0))  # also a row with no finite cell
        lo = np.where(tie, 0.0, lo)
        return np.where(ok & ~tie, (v - lo) / np.where(tie, 1.0, span), 0.0)
