"""Tests of the synthetic world: streams, catalog, users, click model, relevance, config checks.

Every expected number is computed here independently (plain numpy / math) from the world's
ground-truth arrays and the documented formulas, never taken from the code under test.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from agents.click_model import PositionBasedClickModel
from agents.response import ResponseRandomness
from agents.streams import Streams
from agents.users import UserPopulation
from agents.world import WorldConfig, build_world

SMALL = {"n_users": 300, "n_items": 150}


def _world(seed: int = 0, **overrides):
    return build_world(WorldConfig(**{**SMALL, **overrides}), Streams(seed))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _world_arrays(world) -> dict[str, np.ndarray]:
    c, m, u = world.catalog, world.catalog.metadata, world.users
    return {
        "factors": c.factors,
        "appeal": c.appeal,
        "item_topic": c.topic,
        "content": m.content,
        "creator_id": m.creator_id,
        "price": m.price,
        "arrival_t": m.arrival_t,
        "preferences": u.preferences,
        "user_topic": u.topic,
        "session_rate": u.session_rate,
    }


# --- streams ---------------------------------------------------------------------------------


def test_streams_same_name_same_draws_and_names_differ():
    s = Streams(7)
    a1 = s.generator("a").random(50)
    a2 = Streams(7).generator("a").random(50)
    np.testing.assert_array_equal(a1, a2)
    assert not np.array_equal(a1, s.generator("b").random(50))
    assert not np.array_equal(a1, Streams(8).generator("a").random(50))
    assert s.int_seed("a") == Streams(7).int_seed("a")
    assert s.int_seed("a") != s.int_seed("b")
    assert isinstance(s.int_seed("a"), int)


def test_streams_adding_a_stream_does_not_shift_another():
    alone = Streams(3).generator("a").random(100)

    s = Streams(3)
    g_b = s.generator("b")  # a new component created (and used) before "a"
    g_b.random(1000)
    s.generator("c").standard_normal(17)
    with_b = s.generator("a").random(100)
    np.testing.assert_array_equal(alone, with_b)


@pytest.mark.parametrize("bad", [-1, 1.5, True, "1", None])
def test_streams_rejects_bad_seed(bad):
    with pytest.raises((TypeError, ValueError)):
        Streams(bad)


# --- world determinism -----------------------------------------------------------------------


def test_same_seed_gives_identical_world():
    w1, w2 = _world(11), _world(11)
    a1, a2 = _world_arrays(w1), _world_arrays(w2)
    for key in a1:
        np.testing.assert_array_equal(a1[key], a2[key], err_msg=key)
    assert w1.click_model == w2.click_model
    assert w1.users.drift_rate == w2.users.drift_rate


def test_different_seed_gives_different_world():
    a1, a2 = _world_arrays(_world(1)), _world_arrays(_world(2))
    for key in ("factors", "appeal", "content", "preferences", "session_rate", "price"):
        assert not np.array_equal(a1[key], a2[key]), key


def test_users_do_not_depend_on_catalog_size():
    """Users, catalog and topics come from separately named streams: changing the catalog leaves
    the user draws untouched (and vice versa)."""
    w1, w2 = _world(5, n_items=100), _world(5, n_items=250)
    np.testing.assert_array_equal(w1.users.preferences, w2.users.preferences)
    np.testing.assert_array_equal(w1.users.session_rate, w2.users.session_rate)
    w3 = _world(5, n_items=100, n_users=1000)
    np.testing.assert_array_equal(w1.catalog.factors, w3.catalog.factors)
    np.testing.assert_array_equal(w1.catalog.appeal, w3.catalog.appeal)


def test_shapes_and_dtypes():
    cfg = WorldConfig(n_users=40, n_items=30, dim=5, content_dim=7, n_topics=3)
    w = build_world(cfg, Streams(0))
    assert w.catalog.factors.shape == (30, 5)
    assert w.catalog.appeal.shape == (30,)
    assert w.catalog.metadata.content.shape == (30, 7)
    assert w.catalog.metadata.n_items == w.catalog.n_items == 30
    assert w.users.preferences.shape == (40, 5)
    assert w.users.n_users == 40
    assert set(np.unique(w.catalog.topic)) <= set(range(3))
    assert set(np.unique(w.users.topic)) <= set(range(3))
    n_creators = 30 // cfg.items_per_creator
    assert w.catalog.metadata.creator_id.min() >= 0
    assert w.catalog.metadata.creator_id.max() < n_creators
    assert (w.catalog.metadata.price > 0).all()
    assert (w.users.session_rate > 0).all()


# --- relevance -------------------------------------------------------------------------------


def _independent_affinity(world, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    cfg = world.config
    p = world.users.preferences
    f = world.catalog.factors
    out = np.empty(len(users))
    for n, (u, i) in enumerate(zip(users, items, strict=True)):
        dot = sum(float(p[u, d]) * float(f[i, d]) for d in range(p.shape[1]))
        out[n] = cfg.affinity_scale * dot + float(world.catalog.appeal[i]) + cfg.affinity_offset
    return out


def test_relevance_is_sigmoid_of_independent_affinity():
    w = _world(3)
    rng = np.random.default_rng(0)
    users = rng.integers(0, 300, size=400)
    items = rng.integers(0, 150, size=400)
    expected_logit = _independent_affinity(w, users, items)
    np.testing.assert_allclose(w.affinity(users, items), expected_logit, rtol=1e-10, atol=1e-10)
    rel = w.relevance(users, items)
    np.testing.assert_allclose(rel, _sigmoid(expected_logit), rtol=1e-10, atol=1e-12)
    assert ((rel > 0) & (rel < 1)).all()


def test_relevance_broadcast_shapes():
    w = _world(3)
    users = np.array([0, 5, 9])
    items = np.array([[1, 2, 3, 4], [10, 11, 12, 13], [7, 7, 7, 7]])
    rel = w.relevance(users[:, None], items)
    assert rel.shape == (3, 4)
    for r in range(3):
        exp = _sigmoid(_independent_affinity(w, np.repeat(users[r], 4), items[r]))
        np.testing.assert_allclose(rel[r], exp, rtol=1e-10)


def test_relevance_matrix_rows_agree_with_relevance():
    w = _world(4)
    users = np.array([0, 17, 299, 17])
    mat = w.relevance_matrix(users)
    assert mat.shape == (4, 150)
    all_items = np.arange(150)
    for r, u in enumerate(users):
        np.testing.assert_allclose(mat[r], w.relevance(np.full(150, u), all_items), rtol=1e-12)
        exp = _sigmoid(_independent_affinity(w, np.full(150, u), all_items))
        np.testing.assert_allclose(mat[r], exp, rtol=1e-10)
    assert ((mat > 0) & (mat < 1)).all()


def test_relevance_strictly_inside_unit_interval_for_extreme_logits():
    # very large affinity scale: logits of several hundred; still no exact 0/1 and no overflow
    w = _world(0, affinity_scale=200.0, affinity_offset=0.0)
    with np.errstate(all="raise"):
        mat = w.relevance_matrix(np.arange(20))
    assert np.isfinite(mat).all()
    assert (mat >= 0).all() and (mat <= 1).all()
    logits = w.affinity(np.repeat(np.arange(20), 150), np.tile(np.arange(150), 20))
    moderate = np.abs(logits) < 30  # where float64 can still represent the sigmoid below 1
    assert ((mat.ravel()[moderate] > 0) & (mat.ravel()[moderate] < 1)).all()


# --- content features ------------------------------------------------------------------------


def _r2_factors_from_content(world) -> float:
    x = world.catalog.metadata.content.astype(np.float64)
    y = world.catalog.factors
    x1 = np.column_stack([x, np.ones(len(x))])
    beta, *_ = np.linalg.lstsq(x1, y, rcond=None)
    resid = y - x1 @ beta
    return 1.0 - float((resid**2).sum() / ((y - y.mean(axis=0)) ** 2).sum())


def test_content_predicts_factors_only_partly():
    """At the defaults (content_noise=0.5, dim=16, content_dim=24) the in-sample least-squares
    R² of factors from content is ≈0.38-0.43 over seeds and catalog sizes (the within-topic spread
    is masked by noise of the same order as the projected signal). [0.2, 0.8] leaves a wide
    margin either side while still excluding "content is useless" and "content is the truth"."""
    for seed in (0, 1, 2):
        r2 = _r2_factors_from_content(
            build_world(WorldConfig(n_users=10, n_items=1000), Streams(seed))
        )
        assert 0.2 < r2 < 0.8, (seed, r2)


def test_content_r2_monotone_in_noise_and_exact_without_noise():
    r2 = [
        _r2_factors_from_content(
            build_world(WorldConfig(n_users=10, n_items=1000, content_noise=s), Streams(0))
        )
        for s in (0.0, 0.2, 0.5, 2.0)
    ]
    assert r2[0] > 0.999  # content_dim >= dim: the projection is invertible
    assert r2[0] > r2[1] > r2[2] > r2[3]
    assert r2[3] < 0.2


# --- sessions --------------------------------------------------------------------------------


def test_session_rate_mean_matches_sessions_per_day():
    sigma, spd = 0.8, 2.5
    w = build_world(
        WorldConfig(n_users=40_000, n_items=10, sessions_per_day=spd, activity_sigma=sigma),
        Streams(0),
    )
    rate = w.users.session_rate
    # lognormal mean = spd; sd = spd * sqrt(exp(sigma²) - 1)
    se = spd * math.sqrt(math.exp(sigma**2) - 1) / math.sqrt(rate.size)
    assert abs(rate.mean() - spd) < 4 * se
    log_rate = np.log(rate)
    assert abs(log_rate.std() - sigma) < 0.02
    assert abs(log_rate.mean() - (math.log(spd) - sigma**2 / 2)) < 4 * sigma / math.sqrt(rate.size)


def test_session_rate_zero_sigma_is_constant():
    w = _world(0, activity_sigma=0.0, sessions_per_day=3.0)
    np.testing.assert_allclose(w.users.session_rate, 3.0)


def test_sample_sessions_counts_match_rates():
    w = _world(2)
    rates = w.users.session_rate
    days = 400.0
    t0, t1 = 10.0, 10.0 + 24.0 * days
    times, users = w.users.sample_sessions(t0, t1, np.random.default_rng(1))
    assert times.shape == users.shape
    assert np.all(np.diff(times) >= 0)
    assert times.min() >= t0 and times.max() < t1
    assert users.min() >= 0 and users.max() < 300
    counts = np.bincount(users, minlength=300)
    lam = rates * days
    # total of independent Poissons is Poisson(Σλ)
    assert abs(counts.sum() - lam.sum()) < 4 * math.sqrt(lam.sum())
    # per-user standardized residuals: mean ≈ 0, variance ≈ 1, none extreme
    z = (counts - lam) / np.sqrt(lam)
    assert abs(z.mean()) < 4 / math.sqrt(300)
    assert 0.7 < z.var() < 1.3
    assert np.abs(z).max() < 5.5
    # arrival times of one active user are uniform on the interval (KS-style bound)
    u_times = np.sort(times[users == np.argmax(rates)])
    ecdf = np.arange(1, u_times.size + 1) / u_times.size
    d = np.max(np.abs(ecdf - (u_times - t0) / (t1 - t0)))
    assert d < 1.63 / math.sqrt(u_times.size)  # 1% KS critical value


def test_sample_sessions_short_interval_and_empty():
    w = _world(2)
    times, users = w.users.sample_sessions(5.0, 5.0, np.random.default_rng(0))
    assert times.size == 0 and users.size == 0
    times, users = w.users.sample_sessions(24.0, 30.0, np.random.default_rng(0))
    assert np.all((times >= 24.0) & (times < 30.0))
    assert np.all(np.diff(times) >= 0)


def test_sample_sessions_reproducible_with_same_rng_seed():
    w = _world(2)
    a = w.users.sample_sessions(0.0, 48.0, np.random.default_rng(9))
    b = w.users.sample_sessions(0.0, 48.0, np.random.default_rng(9))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


# --- click model -----------------------------------------------------------------------------


@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0, 2.0])
def test_examination_formula(eta):
    cm = PositionBasedClickModel(eta)
    theta = cm.examination(8)
    expected = np.array([(1.0 / (k + 1)) ** eta for k in range(8)])
    np.testing.assert_allclose(theta, expected, rtol=1e-14)
    assert theta[0] == 1.0
    if eta == 0:
        np.testing.assert_array_equal(theta, np.ones(8))
    else:
        assert np.all(np.diff(theta) < 0)


def test_click_probability_is_theta_times_attraction():
    cm = PositionBasedClickModel(1.3)
    rng = np.random.default_rng(0)
    attraction = rng.random((6, 4))
    expected = np.array(
        [[attraction[r, k] * (1.0 / (k + 1)) ** 1.3 for k in range(4)] for r in range(6)]
    )
    np.testing.assert_allclose(cm.click_probability(attraction), expected, rtol=1e-14)


@pytest.mark.parametrize("eta", [0.0, 1.0, 1.7])
def test_click_frequencies_match_position_based_model(eta):
    cm = PositionBasedClickModel(eta)
    n, k = 200_000, 6
    attraction_per_slot = np.array([0.9, 0.5, 0.7, 0.2, 0.95, 0.05])
    attraction = np.broadcast_to(attraction_per_slot, (n, k))
    uniforms = np.random.default_rng(123).random((n, k))
    clicks = cm.sample(attraction, uniforms)
    assert clicks.dtype == bool and clicks.shape == (n, k)
    p = np.array([(1.0 / (j + 1)) ** eta * attraction_per_slot[j] for j in range(k)])
    freq = clicks.mean(axis=0)
    se = np.sqrt(p * (1 - p) / n)
    assert np.all(np.abs(freq - p) < 4 * se + 1e-12), (freq, p)


def test_sample_is_threshold_on_uniforms():
    cm = PositionBasedClickModel(1.0)
    attraction = np.array([[0.5, 0.5, 0.5]])
    # P = [0.5, 0.25, 0.1667]
    np.testing.assert_array_equal(
        cm.sample(attraction, np.array([[0.49, 0.26, 0.16]])), [[True, False, True]]
    )
    np.testing.assert_array_equal(
        cm.sample(attraction, np.array([[0.5, 0.25, 0.0]])), [[False, False, True]]
    )


@pytest.mark.parametrize("eta", [-0.1, float("nan"), float("inf")])
def test_click_model_rejects_bad_eta(eta):
    with pytest.raises(ValueError):
        PositionBasedClickModel(eta)


def test_world_click_model_uses_config_eta():
    w = _world(0, position_bias_eta=0.7)
    np.testing.assert_allclose(
        w.click_model.examination(3), [1.0, 0.5**0.7, (1 / 3) ** 0.7], rtol=1e-14
    )


# --- drift -----------------------------------------------------------------------------------


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_no_drift_leaves_preferences_unchanged():
    w = _world(1, drift_rate=0.0)
    before = w.users.preferences.copy()
    users = np.array([0, 1, 2, 2])
    w.users.drift_toward(users, w.catalog.factors[[3, 4, 5, 6]])
    np.testing.assert_array_equal(w.users.preferences, before)


def test_drift_moves_user_toward_clicked_item_and_keeps_norm():
    w = _world(1, drift_rate=0.2)
    before = w.users.preferences.copy()
    user, item = 7, 42
    f = w.catalog.factors[item]
    w.users.drift_toward(np.array([user]), f[None, :])
    after = w.users.preferences
    assert _cos(after[user], f) > _cos(before[user], f)
    assert np.linalg.norm(after[user]) == pytest.approx(np.linalg.norm(before[user]), rel=1e-12)
    # independent expectation: one step (1 - r) p + r f, rescaled to the old norm
    step = before[user] + 0.2 * (f - before[user])
    expected = step * np.linalg.norm(before[user]) / np.linalg.norm(step)
    np.testing.assert_allclose(after[user], expected, rtol=1e-12)
    others = np.arange(300) != user
    np.testing.assert_array_equal(after[others], before[others])


def test_drift_several_users_and_repeated_clicks():
    r = 0.1
    w = _world(1, drift_rate=r)
    before = w.users.preferences.copy()
    users = np.array([3, 9, 3, 250])
    items = np.array([10, 20, 30, 40])
    f = w.catalog.factors[items]
    w.users.drift_toward(users, f)
    after = w.users.preferences
    # user 3: two steps from the same starting point add up
    step3 = before[3] + r * (f[0] - before[3]) + r * (f[2] - before[3])
    np.testing.assert_allclose(
        after[3], step3 * np.linalg.norm(before[3]) / np.linalg.norm(step3), rtol=1e-12
    )
    for u, j in ((9, 1), (250, 3)):
        assert _cos(after[u], f[j]) > _cos(before[u], f[j])
    for u in (3, 9, 250):
        assert np.linalg.norm(after[u]) == pytest.approx(np.linalg.norm(before[u]), rel=1e-12)
    untouched = np.setdiff1d(np.arange(300), users)
    np.testing.assert_array_equal(after[untouched], before[untouched])


def test_drift_empty_batch_is_noop():
    w = _world(1, drift_rate=0.5)
    before = w.users.preferences.copy()
    w.users.drift_toward(np.array([], dtype=np.int32), np.empty((0, w.config.dim)))
    np.testing.assert_array_equal(w.users.preferences, before)


def test_drift_repeated_clicks_converge_to_item_direction():
    pop = UserPopulation(
        preferences=np.array([[1.0, 0.0], [0.0, 2.0]]),
        topic=np.zeros(2, dtype=np.int32),
        session_rate=np.ones(2),
        drift_rate=0.3,
    )
    target = np.array([[0.0, 5.0]])
    for _ in range(200):
        pop.drift_toward(np.array([0]), target)
    np.testing.assert_allclose(pop.preferences[0], [0.0, 1.0], atol=1e-8)  # norm 1 kept
    np.testing.assert_array_equal(pop.preferences[1], [0.0, 2.0])


# --- config validation -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("n_users", 0),
        ("n_items", -1),
        ("drift_rate", 2),
        ("drift_rate", -0.1),
        ("position_bias_eta", -1),
        ("n_users", True),
        ("n_users", "abc"),
        ("n_users", 10.0),
        ("dim", 0),
        ("n_topics", None),
        ("content_dim", -3),
        ("items_per_creator", 0),
        ("topic_spread", -0.5),
        ("appeal_scale", float("nan")),
        ("content_noise", float("-inf")),
        ("activity_sigma", "0.5"),
        ("sessions_per_day", 0),
        ("appeal_tail_df", 0.0),
        ("affinity_scale", float("inf")),
        ("affinity_offset", None),
        ("position_bias_eta", float("nan")),
        ("drift_rate", True),
    ],
)
def test_invalid_world_config_names_key(key, value):
    with pytest.raises(ValueError, match=rf"^world\.{key}=") as exc:
        WorldConfig(**{key: value})
    assert repr(value) in str(exc.value) or str(value) in str(exc.value)


def test_valid_edge_configs_accepted():
    WorldConfig(drift_rate=0, position_bias_eta=0, topic_spread=0, content_noise=0)
    WorldConfig(drift_rate=1.0, n_users=np.int64(3), affinity_offset=np.float32(-1.0))


# --- the world's dynamics: respond, then advance at an event boundary ---------------------------


def _slates(world, n: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    users = rng.integers(0, world.users.n_users, n).astype(np.int32)
    times = np.sort(rng.random(n) * 24.0)
    slates = np.stack([rng.choice(world.catalog.n_items, k, replace=False) for _ in range(n)])
    return users, times, slates


@pytest.mark.parametrize("click_model", ["pbm", "dcm"])
def test_respond_draws_one_uniform_per_slot_from_the_response_streams(click_model):
    w = _world(click_model=click_model, conformity=0.5)
    users, times, slates = _slates(w, 40, 5, seed=1)
    got = w.respond(users, times, slates, ResponseRandomness.from_streams(Streams(4)))
    # by hand: the truth, the attraction, and uniforms drawn straight from the named streams
    relevance, attraction = w.relevance_and_attraction(users[:, None], slates)
    uniforms = Streams(4).generator("sim.responses").random(slates.shape)
    extra = Streams(4).generator("sim.responses.continue").random(slates.shape)
    expected = w.click_model.sample(attraction, uniforms, extra if click_model == "dcm" else None)
    np.testing.assert_array_equal(got.clicked, expected)
    np.testing.assert_array_equal(got.relevance, relevance)


def test_respond_without_dynamics_keeps_no_clicks_and_advance_changes_nothing():
    w = _world()
    before = w.users.preferences.copy()
    users, times, slates = _slates(w, 40, 5, seed=2)
    w.respond(users, times, slates, ResponseRandomness.from_streams(Streams(0)))
    assert w.unapplied_clicks == []
    w.advance(24.0)
    np.testing.assert_array_equal(w.users.preferences, before)
    assert w.popularity.t_updated == 0.0


def test_advance_applies_drift_and_popularity_once_whatever_the_batches():
    """Responding in two batches then advancing equals one batch then advancing, and equals
    drift + popularity applied by hand to the clicks."""
    cfg = {"drift_rate": 0.1, "conformity": 1.0}
    whole, halves, by_hand = _world(**cfg), _world(**cfg), _world(**cfg)
    users, times, slates = _slates(whole, 60, 5, seed=3)
    clicked = whole.respond(users, times, slates, ResponseRandomness.from_streams(Streams(1)))
    rand = ResponseRandomness.from_streams(Streams(1))
    for part in (slice(0, 25), slice(25, 60)):
        halves.respond(users[part], times[part], slates[part], rand)
    # clicks wait for the event boundary
    np.testing.assert_array_equal(whole.users.preferences, by_hand.users.preferences)
    for w in (whole, halves):
        w.advance(30.0)
        assert w.unapplied_clicks == []
    rows, slots = np.nonzero(clicked.clicked)
    by_hand.users.drift_toward(users[rows], by_hand.catalog.factors[slates[rows, slots]])
    by_hand.popularity.record(slates[rows, slots], times[rows], 30.0)
    for w in (whole, halves):
        np.testing.assert_array_equal(w.users.preferences, by_hand.users.preferences)
        np.testing.assert_array_equal(w.popularity.signal, by_hand.popularity.signal)
    assert rows.size > 0 and np.any(whole.popularity.signal != 0)


def test_advance_decays_popularity_even_without_clicks():
    w = _world(conformity=1.0)
    w.record_clicks(np.array([3, 3, 5]), np.array([1.0, 2.0, 3.0]), now=4.0)
    decayed = w.popularity.decayed_clicks.copy()
    w.advance(4.0 + w.popularity.halflife_hours)
    np.testing.assert_allclose(w.popularity.decayed_clicks, decayed / 2)


def test_publish_times_come_from_their_own_stream():
    """``ItemMetadata.publish_t``: exponential ages before hour 0 with mean ``item_age_days``,
    drawn from ``world.item_publish`` (changing the mean moves nothing else of the world)."""
    cfg = WorldConfig(n_users=50, n_items=4000, item_age_days=30.0)
    world = build_world(cfg, Streams(3))
    publish = world.catalog.metadata.publish_t
    assert publish.shape == (4000,) and publish.dtype == np.float64
    assert (publish <= 0).all()
    age_days = -publish / 24.0
    # mean of 4,000 exponential(30) draws: sd 30/sqrt(4000) = 0.47 days
    assert abs(age_days.mean() - 30.0) < 4 * 30.0 / math.sqrt(4000)
    expected = Streams(3).generator("world.item_publish").exponential(30.0 * 24.0, 4000)
    np.testing.assert_array_equal(publish, -expected)
    other = build_world(WorldConfig(n_users=50, n_items=4000, item_age_days=5.0), Streams(3))
    np.testing.assert_array_equal(other.catalog.factors, world.catalog.factors)
    np.testing.assert_array_equal(other.catalog.metadata.price, world.catalog.metadata.price)
    np.testing.assert_array_equal(other.users.preferences, world.users.preferences)
    np.testing.assert_allclose(other.catalog.metadata.publish_t, publish * (5.0 / 30.0))


@pytest.mark.parametrize("bad", [0, -1.0, "soon", float("nan")])
def test_item_age_days_must_be_positive(bad):
    with pytest.raises(ValueError, match=r"^world\.item_age_days="):
        WorldConfig(item_age_days=bad)
