"""Named objectives (:mod:`policies.objectives`) and the scalarized order
(:class:`policies.scalarized.FittedScalarized`), against independent computations.

Each objective on a small hand-made context against a per-cell Python computation; the relevance
calibration recovers known coefficients from synthetic logistic clicks and falls back (counted) on
degenerate logs; the weights move what they claim (revenue: monotone for every context, property
tested; diversity: on average over many contexts); serving one request at a time gives the same
order as one batch.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.catalog import ItemMetadata
from policies.interactions import Interactions, RerankData, RerankRows
from policies.models import SOURCE_CODE, SOURCES
from policies.objectives import (
    FALLBACK_CTR,
    FALLBACK_SLOPE,
    OBJECTIVES,
    Calibration,
    fit_calibration,
    gap_to_top,
    normalize,
)
from policies.scalarized import FittedScalarized, Scalarized, ScalarizedTrainer
from policies.selection import SelectionContext

ALS, POP = SOURCE_CODE["als"], SOURCE_CODE["popularity_fallback"]
S = len(SOURCES)


# --------------------------------------------------------------------------------------------
# A small hand-made world: 8 items, 3 creators, 2 requests of 5 candidates
# --------------------------------------------------------------------------------------------

CONTENT = np.array(
    [
        [1.0, 0.0, 0.0],
        [0.9, 0.1, 0.0],
        [0.0, 1.0, 0.0],
        [0.0, 0.0, 2.0],
        [0.5, 0.5, 0.0],
        [-1.0, 0.0, 0.0],
        [0.0, 0.0, 0.0],  # a zero vector: cosine distance 1 to everything
        [0.3, -0.2, 0.9],
    ],
    dtype=np.float32,
)
META = ItemMetadata(
    content=CONTENT,
    creator_id=np.array([0, 0, 1, 1, 2, 2, 0, 1], dtype=np.int32),
    price=np.array([1.0, 10.0, 3.0, 0.5, 7.0, 2.0, 4.0, 6.0], dtype=np.float32),
    arrival_t=np.zeros(8),
    publish_t=np.array([-24.0, -240.0, 0.0, -1.0, -100.0, 50.0, -500.0, -48.0]),
)
IMPRESSIONS = np.array([10.0, 0.0, 5.0, 5.0, 0.0, 2.0, 20.0, 0.0])
CANDS = np.array([[0, 1, 2, 3, 4], [5, 6, 7, 1, 3]])
SCORES = np.array([[0.9, 0.8, 0.5, 0.4, 0.1], [0.7, 0.6, 0.6, 0.2, -0.3]])
TIMES = np.array([10.0, 72.0])
CAL = Calibration(
    intercept=np.full(S, -1.0),
    slope=np.full(S, 2.0),
    center=np.full(S, 0.5),
    scale=np.full(S, 0.25),
    slot_offsets=np.array([0.0, -0.5, -1.0]),
    fallback=(None,) * S,
    n_rows=np.zeros(S, int),
    n_clicks=np.zeros(S, int),
)


def ctx_of(cands=CANDS, scores=SCORES, times=TIMES, impressions=IMPRESSIONS) -> SelectionContext:
    n = cands.shape[0]
    return SelectionContext(
        user_ids=np.arange(n),
        candidates=np.asarray(cands, dtype=np.int64),
        scores=np.asarray(scores, dtype=np.float32),
        excluded=np.zeros((n, 0), dtype=np.int64),
        n_items=META.n_items,
        model=None,
        model_version=1,
        item_impressions=np.asarray(impressions, dtype=np.float64),
        items=META,
        times=times,
    )


def fitted(weights=None, cal=CAL, k=3, halflife=2.0, now=30.0, items=META) -> FittedScalarized:
    cfg = Scalarized(weights=weights or {"relevance": 1.0}, freshness_halflife_days=halflife)
    return FittedScalarized(cfg, cal, items, k, now, 1)


def p_click(score: float) -> float:
    return 1.0 / (1.0 + math.exp(-(-1.0 + 2.0 * (score - 0.5) / 0.25)))


def test_relevance_and_revenue_against_a_per_cell_computation():
    values = fitted().objective_values(ctx_of(scores=SCORES.astype(np.float32)))
    scores = SCORES.astype(np.float32).astype(np.float64)
    for r, c in itertools.product(range(2), range(5)):
        p = p_click(scores[r, c] - scores[r].max())  # the gap to the request's best
        assert values["relevance"][r, c] == pytest.approx(p, rel=1e-12)
        price = float(META.price[CANDS[r, c]])
        assert values["revenue"][r, c] == pytest.approx(price * p, rel=1e-12)


def test_relevance_is_calibrated_per_source_and_flat_beyond_the_logged_range():
    cal = Calibration(
        intercept=np.where(np.arange(S) == POP, -3.0, -1.0),
        slope=np.where(np.arange(S) == POP, 0.5, 2.0),
        center=np.where(np.arange(S) == POP, 10.0, 0.5),
        scale=np.where(np.arange(S) == POP, 5.0, 0.25),
        slot_offsets=np.zeros(3),
        fallback=(None,) * S,
        n_rows=np.zeros(S, int),
        n_clicks=np.zeros(S, int),
        z_low=np.full(S, -1.0),
        z_high=np.full(S, 1.0),
    )
    scores = np.array([[0.6, 0.5, 30.0, 12.0]])
    sources = np.array([[ALS, ALS, POP, POP]])
    p = cal.probability(scores, sources)
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    expected = [sig(-1 + 2 * 0.4), sig(-1.0), sig(-3 + 0.5 * 1.0), sig(-3 + 0.5 * 0.4)]
    np.testing.assert_allclose(p[0], expected, rtol=1e-12)  # 30 is clipped to z = +1
    # a candidate's relevance is the calibration of its gap to the best of its source
    gaps = gap_to_top(scores, sources)
    np.testing.assert_allclose(gaps, [[0.0, -0.1, 0.0, -18.0]], atol=1e-12)
    np.testing.assert_allclose(
        cal.click_probability(scores, sources), cal.probability(gaps, sources)
    )


def test_gap_to_top_against_a_per_cell_computation():
    rng = np.random.default_rng(4)
    scores = rng.normal(size=(20, 7))
    scores[3, 2] = np.nan
    sources = rng.choice([ALS, POP, SOURCE_CODE["covisit"]], size=(20, 7))
    gaps = gap_to_top(scores, sources)
    for r, c in itertools.product(range(20), range(7)):
        same = [scores[r, j] for j in range(7) if sources[r, j] == sources[r, c]]
        best = max(v for v in same if not math.isnan(v))
        if math.isnan(scores[r, c]):
            assert math.isnan(gaps[r, c])
        else:
            assert gaps[r, c] == pytest.approx(scores[r, c] - best, abs=1e-12)


def test_freshness_uses_the_request_hour_or_the_cut_off():
    halflife = 2.0
    for times, now in ((TIMES, 30.0), (None, 30.0)):
        f = fitted(halflife=halflife, now=now).objective_values(ctx_of(times=times))["freshness"]
        for r, c in itertools.product(range(2), range(5)):
            t = now if times is None else times[r]
            age_days = max(t - META.publish_t[CANDS[r, c]], 0.0) / 24.0
            assert f[r, c] == pytest.approx(0.5 ** (age_days / halflife), rel=1e-12)
    # item 5 is published after request 0's hour (age clipped to 0): freshness 1
    f = fitted().objective_values(ctx_of(cands=np.array([[5, 0, 1, 2, 3]])[:1], times=TIMES[:1]))
    assert f["freshness"][0, 0] == 1.0


def test_fairness_against_creator_shares():
    values = fitted().objective_values(ctx_of())["fairness"]
    per_creator: dict[int, float] = {}
    for item, n in enumerate(IMPRESSIONS):
        c = int(META.creator_id[item])
        per_creator[c] = per_creator.get(c, 0.0) + n
    total = sum(per_creator.values())
    top = max(v / total for v in per_creator.values())
    for r, c in itertools.product(range(2), range(5)):
        share = per_creator[int(META.creator_id[CANDS[r, c]])] / total
        assert values[r, c] == pytest.approx(1 - share / top, abs=1e-12)
    none = fitted().objective_values(ctx_of(impressions=np.zeros(8)))["fairness"]
    assert (none == 1.0).all()  # nobody has exposure yet


def cos_dist(a: int, b: int) -> float:
    x, y = CONTENT[a].astype(float), CONTENT[b].astype(float)
    nx, ny = math.sqrt(x @ x), math.sqrt(y @ y)
    return 1.0 - (0.0 if nx == 0 or ny == 0 else float(x @ y) / (nx * ny))


def mean_pairwise(items) -> float:
    pairs = list(itertools.combinations(items, 2))
    return sum(cos_dist(a, b) for a, b in pairs) / len(pairs) if pairs else 0.0


def norm_list(v):
    lo, hi = min(v), max(v)
    return [
        0.0 if hi - lo <= 1e-12 * max(abs(hi), abs(lo), 1.0) else (x - lo) / (hi - lo) for x in v
    ]


def reference_order(weights, k, halflife=2.0, now=30.0):
    """The scalarized order of every request, one request and one slot at a time."""
    f = fitted(weights, k=k, halflife=halflife, now=now)
    values = f.objective_values(ctx_of())
    out = []
    for r in range(CANDS.shape[0]):
        c = CANDS.shape[1]
        static = [0.0] * c
        for name in ("relevance", "revenue", "freshness", "fairness"):
            w = weights.get(name, 0.0)
            for j, v in enumerate(norm_list(list(values[name][r]))):
                static[j] += w * v
        w_div = weights.get("diversity", 0.0)
        if w_div == 0:
            out.append(sorted(range(c), key=lambda j: (-static[j], j)))
            continue
        placed: list[int] = []
        for _ in range(k):
            free = [j for j in range(c) if j not in placed]
            items = [int(CANDS[r, j]) for j in placed]
            gains = [mean_pairwise([*items, int(CANDS[r, j])]) - mean_pairwise(items) for j in free]
            total = [static[j] + w_div * g for j, g in zip(free, norm_list(gains), strict=True)]
            placed.append(free[int(np.argmax(total))])
        rest = sorted((j for j in range(c) if j not in placed), key=lambda j: (-static[j], j))
        out.append(placed + rest)
    return np.array(out)


@pytest.mark.parametrize(
    "weights",
    [
        {"relevance": 1.0},
        {"relevance": 1.0, "revenue": 0.5},
        {"freshness": 1.0, "fairness": 0.3},
        {"relevance": 1.0, "diversity": 0.8},
        {"relevance": 0.2, "revenue": 0.3, "freshness": 0.4, "diversity": 2.0, "fairness": 0.1},
    ],
)
def test_order_matches_a_slot_by_slot_reference(weights):
    order, _, _ = fitted(weights, k=3).order(ctx_of())
    np.testing.assert_array_equal(order, reference_order(weights, 3))


def test_diversity_gain_against_pairwise_means():
    """The first pick ties on diversity (gain 0); the second gains the distance to the first."""
    order, score, _ = fitted({"diversity": 1.0}, k=3).order(ctx_of())
    assert list(order[:, 0]) == [0, 0]  # all tie: the retrieval order
    # then the candidate farthest from the first one
    dists = [cos_dist(0, int(i)) for i in CANDS[0, 1:]]
    assert order[0, 1] == 1 + int(np.argmax(dists))
    assert np.isfinite(score).all()


def test_normalize_is_min_max_per_row_and_zero_on_ties():
    v = np.array([[1.0, 3.0, 2.0], [5.0, 5.0, 5.0], [np.nan, 0.0, 4.0]])
    np.testing.assert_allclose(normalize(v), [[0, 1, 0.5], [0, 0, 0], [0, 0, 1]])
    mask = np.array([[True, False, True], [True] * 3, [True] * 3])
    np.testing.assert_allclose(normalize(v, mask)[0], [0, 0, 1])


# --------------------------------------------------------------------------------------------
# Calibration: recovers a known logistic model; degenerate logs fall back (counted)
# --------------------------------------------------------------------------------------------


def synthetic_clicks(m, a, b, c, source=ALS, loc=0.5, sd=0.3, seed=0):
    rng = np.random.default_rng(seed)
    score = rng.normal(loc, sd, m)
    slot = rng.integers(0, len(c), m)
    p = 1 / (1 + np.exp(-(a + b * score + np.asarray(c)[slot])))
    return score, slot, rng.random(m) < p, np.full(m, source)


def fisher_se(score, slot, a, b, c) -> np.ndarray:
    """Standard errors of (a, b, c_1..) at the true parameters (an independent computation)."""
    k = len(c)
    x = np.column_stack([np.ones_like(score), score] + [(slot == j) * 1.0 for j in range(1, k)])
    p = 1 / (1 + np.exp(-(a + b * score + np.asarray(c)[slot])))
    info = x.T @ (x * (p * (1 - p))[:, None])
    return np.sqrt(np.diag(np.linalg.inv(info)))


def test_calibration_recovers_known_coefficients_per_source():
    a, b, c = -2.0, 1.5, [0.0, -0.4, -0.9, -1.3]
    als = synthetic_clicks(60_000, a, b, c, ALS, seed=1)
    # a second source on another scale with its own (a, b) and the same slot offsets
    a2, b2 = -3.0, 0.05
    pop = synthetic_clicks(60_000, a2, b2, c, POP, loc=20.0, sd=8.0, seed=2)
    cat = [np.concatenate(p) for p in zip(als, pop, strict=True)]
    cal = fit_calibration(*cat, n_slots=4, n_sources=S, min_clicks=50)
    assert cal.fitted_sources() == [ALS, POP]
    se = fisher_se(als[0], als[1], a, b, c)
    se2 = fisher_se(pop[0], pop[1], a2, b2, c)
    est_a, est_b = cal.raw(ALS)
    est_a2, est_b2 = cal.raw(POP)
    assert abs(est_a - a) < 4 * se[0] and abs(est_b - b) < 4 * se[1]
    assert abs(est_a2 - a2) < 4 * se2[0] and abs(est_b2 - b2) < 4 * se2[1]
    # the offsets are shared: the pooled fit is at least as precise as either source's alone
    assert np.all(np.abs(cal.slot_offsets - c)[1:] < 4 * se[2:])
    # slot 0 predictions: σ(a + b·s)
    s = np.array([[0.0, 0.5, 1.0]])
    np.testing.assert_allclose(
        cal.probability(s, ALS), 1 / (1 + np.exp(-(est_a + est_b * s))), rtol=1e-9
    )


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("few", "too_few_rows"),
        ("constant", "constant_score"),
        ("negative", "negative_slope"),
        ("separated", "no_convergence"),
    ],
)
def test_degenerate_logs_fall_back_to_the_documented_default(case, reason):
    rng = np.random.default_rng(3)
    m = 4000
    score = rng.normal(0.5, 0.3, m)
    slot = rng.integers(0, 3, m)
    if case == "few":
        clicked = np.zeros(m, bool)
        clicked[:10] = True
    elif case == "constant":
        score = np.full(m, 0.7)
        clicked = rng.random(m) < 0.2
    elif case == "negative":
        clicked = rng.random(m) < 1 / (1 + np.exp(-(-1.0 - 3.0 * score)))
    else:
        clicked = score > 0.5
    cal = fit_calibration(score, slot, clicked, ALS, 3, S, 50)
    assert cal.fallback[ALS] == reason and cal.fitted_sources() == []
    top = clicked[slot == 0]  # the default's level: the observed slot-0 click rate
    ctr = min(max(top.mean(), 1e-3), 0.999) if top.any() else FALLBACK_CTR
    assert cal.intercept[ALS] == pytest.approx(math.log(ctr / (1 - ctr)))
    assert cal.slope[ALS] == FALLBACK_SLOPE and (cal.slot_offsets == 0).all()
    # the default keeps the model's order
    s = np.sort(rng.normal(0.5, 0.3, (1, 20)), axis=1)
    assert (np.diff(cal.click_probability(s, ALS)) >= 0).all()
    # and the trainer counts it
    rows = RerankRows(
        np.zeros(m, np.int64),
        np.zeros(m, np.int64),
        slot,
        score,
        clicked,
        np.full(m, ALS),
        *([np.zeros(m)] * 6),
    )
    data = RerankData(rows, np.zeros(3), np.zeros(3), np.zeros(1), np.zeros(1), 5.0, np.zeros(m))
    trainer = ScalarizedTrainer(Scalarized(), None, 3)
    inter = Interactions.empty(1, 3)
    fit = trainer.fit(Interactions(inter.clicks, rerank=data), 1)
    assert fit.calibration.fallback[ALS] == reason and fit.now == 5.0
    trainer.fit(inter, 2)  # no rows at all (the first model)
    expected = {"too_few_rows": 1}  # the fit without rows
    expected[reason] = expected.get(reason, 0) + 1
    assert trainer.fits == 2 and dict(trainer.fallbacks) == expected


def test_without_any_log_the_default_is_the_base_ctr_on_per_request_scores():
    cal = fit_calibration(np.empty(0), np.empty(0), np.empty(0, bool), ALS, 3, S, 50)
    s = np.array([[2.0, 1.0, 0.0], [30.0, 20.0, 10.0]])
    p = cal.click_probability(s, ALS)
    z = np.array([1, 0, -1]) * math.sqrt(1.5)
    expected = 1 / (1 + np.exp(-(math.log(FALLBACK_CTR / (1 - FALLBACK_CTR)) + z)))
    np.testing.assert_allclose(p, [expected, expected], rtol=1e-12)


@settings(max_examples=60, deadline=None)
@given(
    a=st.floats(-4, 1),
    b=st.floats(-3, 3),
    seed=st.integers(0, 2**16),
)
def test_fitted_relevance_is_non_decreasing_in_the_score(a, b, seed):
    score, slot, clicked, src = synthetic_clicks(3000, a, b, [0.0, -0.5], seed=seed)
    cal = fit_calibration(score, slot, clicked, src, 2, S, 20)
    s = np.sort(np.random.default_rng(seed).normal(0.5, 1.0, (1, 50)), axis=1)
    assert (np.diff(cal.click_probability(s, ALS)) >= 0).all()
    assert cal.slope[ALS] >= 0


# --------------------------------------------------------------------------------------------
# Weights move what they claim; batch independence
# --------------------------------------------------------------------------------------------


def random_world(seed: int, n_items: int = 60, d: int = 6) -> ItemMetadata:
    rng = np.random.default_rng(seed)
    return ItemMetadata(
        content=rng.normal(size=(n_items, d)).astype(np.float32),
        creator_id=rng.integers(0, 7, n_items).astype(np.int32),
        price=rng.lognormal(1.0, 0.8, n_items).astype(np.float32),
        arrival_t=np.zeros(n_items),
        publish_t=-rng.exponential(24 * 10, n_items),
    )


def random_ctx(meta: ItemMetadata, n: int, c: int, seed: int) -> SelectionContext:
    rng = np.random.default_rng(seed)
    cands = np.argsort(rng.random((n, meta.n_items)), axis=1)[:, :c]
    scores = np.sort(rng.normal(0.4, 0.2, (n, c)), axis=1)[:, ::-1].astype(np.float32)
    return SelectionContext(
        user_ids=np.arange(n),
        candidates=cands,
        scores=scores,
        excluded=np.zeros((n, 0), dtype=np.int64),
        n_items=meta.n_items,
        model=None,
        model_version=1,
        item_impressions=rng.integers(0, 50, meta.n_items).astype(float),
        items=meta,
        times=rng.uniform(0, 200, n),
    )


@settings(max_examples=80, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    w_low=st.floats(0.0, 3.0),
    dw=st.floats(0.0, 3.0),
    k=st.integers(1, 8),
)
def test_raising_the_revenue_weight_never_lowers_the_slates_mean_revenue(seed, w_low, dw, k):
    """Top-K of ``rel + w·rev`` maximizes the set's sum, so (exchange argument) the top-K's
    revenue is non-decreasing in ``w``, for every request."""
    meta = random_world(seed)
    ctx = random_ctx(meta, 30, 12, seed)
    means = []
    for w in (w_low, w_low + dw):
        f = fitted({"relevance": 1.0, "revenue": w}, k=k, items=meta)
        order, _, x = f.order(ctx)
        revenue = np.take_along_axis(meta.price[x.candidates] * x.p_click, order[:, :k], axis=1)
        means.append(revenue.mean(axis=1))
    assert (means[1] >= means[0] - 1e-9).all()


def slate_diversity(meta: ItemMetadata, slates: np.ndarray) -> np.ndarray:
    x = meta.content.astype(np.float64)
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    out = []
    for slate in slates:
        d = [1 - x[a] @ x[b] for a, b in itertools.combinations(slate, 2)]
        out.append(np.mean(d))
    return np.array(out)


def test_raising_the_diversity_weight_raises_the_slates_content_diversity():
    meta = random_world(11)
    ctx = random_ctx(meta, 400, 30, 12)
    means = []
    for w in (0.0, 0.3, 1.0, 3.0):
        order, _, x = fitted({"relevance": 1.0, "diversity": w}, k=10, items=meta).order(ctx)
        slates = np.take_along_axis(x.candidates, order[:, :10], axis=1)
        means.append(slate_diversity(meta, slates).mean())
    assert all(b > a for a, b in itertools.pairwise(means)), means


def test_one_request_at_a_time_gives_the_same_order_as_one_batch():
    meta = random_world(5)
    ctx = random_ctx(meta, 64, 20, 6)
    weights = {o: 0.5 for o in OBJECTIVES}
    f = fitted(weights, k=8, items=meta)
    whole, score, _ = f.order(ctx)
    for r in range(ctx.n):
        one = SelectionContext(
            user_ids=ctx.user_ids[r : r + 1],
            candidates=ctx.candidates[r : r + 1],
            scores=ctx.scores[r : r + 1],
            excluded=ctx.excluded[r : r + 1],
            n_items=ctx.n_items,
            model=None,
            model_version=1,
            item_impressions=ctx.item_impressions,
            items=meta,
            times=ctx.times[r : r + 1],
        )
        o, s, _ = f.order(one)
        np.testing.assert_array_equal(o[0], whole[r])
        np.testing.assert_array_equal(s[0], score[r])
