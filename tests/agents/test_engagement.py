"""Satisfaction, churn and return, satiation (agents.engagement), checked against direct
computations: a per-request loop for the moving average, closed forms for decay and hazards."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.engagement import Engagement, EngagementConfig
from agents.streams import Streams
from agents.world import WorldConfig, build_world


def _engagement(n_users=6, n_topics=3, seed=0, **kw) -> Engagement:
    cfg = EngagementConfig(**kw)
    return Engagement.initial(cfg, n_users, n_topics, np.random.default_rng(seed))


@settings(max_examples=60, deadline=None)
@given(
    batches=st.lists(
        st.lists(
            st.tuples(st.integers(0, 4), st.floats(0, 3, allow_nan=False)), min_size=0, max_size=8
        ),
        min_size=1,
        max_size=4,
    ),
    memory=st.floats(0.01, 1.0),
)
def test_moving_average_equals_the_per_request_loop(batches, memory):
    eng = _engagement(n_users=5, churn_base_rate=0.1, memory=memory, reference=0.3)
    expected = np.full(5, 0.3)
    for batch in batches:
        users = np.array([u for u, _ in batch], dtype=np.int32)
        utility = np.array([x for _, x in batch], dtype=np.float64)
        eng.record(users, utility)
        for u, x in batch:  # the definition: s <- (1 - m) s + m u, request by request
            expected[u] = (1 - memory) * expected[u] + memory * x
    eng.apply()
    np.testing.assert_allclose(eng.satisfaction, expected, rtol=1e-12, atol=1e-12)


def test_churn_hazard_and_return_follow_their_formulas():
    eng = _engagement(
        n_users=4, churn_base_rate=0.02, churn_sensitivity=3.0, return_rate=0.5, reference=0.2
    )
    eng.satisfaction[:] = [0.2, 0.0, 1.0, -2.0]
    want = np.minimum(0.02 * np.exp(3.0 * (0.2 - eng.satisfaction)), 1.0)
    np.testing.assert_allclose(eng.churn_probability(), want)
    assert eng.churn_probability()[3] == 1.0  # capped


def test_day_zero_decides_nothing_and_churned_users_get_no_sessions():
    eng = _engagement(n_users=2000, churn_base_rate=0.1, return_rate=0.0)
    joined = np.ones(2000, dtype=bool)
    assert np.all(eng.start_day(0.0, joined) == 1.0)
    assert not eng.churned.any()
    mult = eng.start_day(24.0, joined)
    share = eng.churned.mean()
    # Binomial(2000, 0.1): sd 0.0067; 5 sd either way
    assert abs(share - 0.1) < 0.034
    assert np.all(mult[eng.churned] == 0.0) and np.all(mult[~eng.churned] == 1.0)
    # never returning: churned stays churned, and nobody returns
    before = eng.churned.copy()
    eng.start_day(48.0, joined)
    assert np.all(eng.churned[before])
    assert eng.days[-1]["returned_today"] == 0


def test_returns_reset_satisfaction_and_match_the_daily_probability():
    eng = _engagement(n_users=4000, churn_base_rate=1.0, return_rate=0.7, reference=0.25)
    joined = np.ones(4000, dtype=bool)
    eng.start_day(24.0, joined)  # base rate 1: everyone churns
    assert eng.churned.all()
    eng.satisfaction[:] = -1.0
    eng.start_day(48.0, joined)
    returned = eng.days[-1]["returned_today"]
    p = 1 - np.exp(-0.7)  # exponential dormancy on the day grid
    assert abs(returned / 4000 - p) < 5 * np.sqrt(p * (1 - p) / 4000)
    back = ~eng.churned  # returners are active again, at the reference satisfaction
    # ...and they churn again the same day only from the next boundary on
    assert back.sum() == returned
    np.testing.assert_array_equal(eng.satisfaction[back], 0.25)


def test_users_who_have_not_joined_neither_churn_nor_lose_sessions():
    eng = _engagement(n_users=1000, churn_base_rate=1.0)
    joined = np.arange(1000) < 400
    mult = eng.start_day(24.0, joined)
    assert eng.churned[:400].all() and not eng.churned[400:].any()
    np.testing.assert_array_equal(mult[400:], 1.0)  # sample_sessions gates them by arrival
    assert eng.days[-1]["n_active"] == 0


def test_session_rate_multiplier_follows_satisfaction():
    eng = _engagement(n_users=3, session_sensitivity=2.0, reference=0.2)
    eng.satisfaction[:] = [0.2, 0.7, -0.3]
    mult = eng.start_day(24.0, np.ones(3, dtype=bool))
    np.testing.assert_allclose(mult, np.exp(2.0 * (eng.satisfaction - 0.2)))


def test_satiation_decays_exponentially_and_adds_each_click():
    eng = _engagement(n_users=2, n_topics=2, satiation=0.5, satiation_recovery_days=2.0)
    tau = 48.0
    eng.consume(np.array([0, 0, 1]), np.array([1, 1, 0]), np.array([1.0, 5.0, 8.0]), 10.0)
    want = np.zeros((2, 2))
    want[0, 1] = np.exp(-9 / tau) + np.exp(-5 / tau)
    want[1, 0] = np.exp(-2 / tau)
    np.testing.assert_allclose(eng.satiation, want)
    eng.consume(np.empty(0, int), np.empty(0, int), np.empty(0), 34.0)
    np.testing.assert_allclose(eng.satiation, want * np.exp(-24 / tau))
    shift = eng.logit_shift(np.array([[0], [1]]), np.array([[0, 1], [0, 1]]))
    np.testing.assert_allclose(shift, -0.5 * eng.satiation)


def test_satiation_lowers_true_relevance_of_the_consumed_topic_only():
    cfg = WorldConfig(n_users=30, n_items=60, dim=4, n_topics=3, satiation=0.8)
    world = build_world(cfg, Streams(1))
    before = world.relevance_matrix(np.arange(30))
    topic = world.catalog.topic
    item = int(np.flatnonzero(topic == 0)[0])
    world.unapplied_clicks.append((np.array([5, 5]), np.array([item, item]), np.array([1.0, 2.0])))
    world.advance(2.0)
    after = world.relevance_matrix(np.arange(30))
    others = np.ones(30, dtype=bool)
    others[5] = False
    np.testing.assert_array_equal(after[others], before[others])
    np.testing.assert_array_equal(after[5, topic != 0], before[5, topic != 0])
    sat = np.exp(-1.0 / 72) + 1.0  # two clicks, at 1 h and 2 h, seen at 2 h (3-day recovery)
    logit = np.log(before[5, topic == 0] / (1 - before[5, topic == 0])) - 0.8 * sat
    np.testing.assert_allclose(after[5, topic == 0], 1 / (1 + np.exp(-logit)), rtol=1e-10)
    # respond() sees the same shifted relevance as the matrix
    np.testing.assert_allclose(world.relevance(np.array([5]), np.array([item])), after[5, item])


def test_off_by_default_builds_nothing():
    world = build_world(WorldConfig(n_users=20, n_items=30), Streams(0))
    assert world.engagement is None and world.conversions is None
    assert not WorldConfig().engagement.enabled and not WorldConfig().conversions.enabled


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"churn": {"base_rate": -0.1}}, "world.churn.base_rate=-0.1"),
        ({"churn": {"base_rate": 0.1, "sensitivity": -1}}, "world.churn.sensitivity=-1"),
        ({"churn": [0.1]}, "world.churn=[0.1]: must be a mapping"),
        ({"return_rate": -0.5}, "world.return_rate=-0.5"),
        ({"return_rate": True}, "world.return_rate=True"),
        ({"satisfaction": {"memory": 0}}, "world.satisfaction.memory=0"),
        ({"satisfaction": {"reference": float("inf")}}, "world.satisfaction.reference=inf"),
        ({"satiation": -1}, "world.satiation=-1"),
        ({"satiation_recovery_days": -2}, "world.satiation_recovery_days=-2"),
    ],
)
def test_bad_engagement_config_names_the_key(kw, message):
    with pytest.raises(ValueError, match=None) as info:
        WorldConfig(**kw)
    assert str(info.value).startswith(message)
