"""Contract and formula tests of the click models and of popularity conformity.

Expected probabilities are written out here from the documented formulas with plain Python
loops, never taken from ``click_probability``; Monte-Carlo checks allow 5 binomial standard
errors (plus 1e-12 for probabilities that are exactly 0).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from agents.click_model import (
    CascadeClickModel,
    DependentClickModel,
    PositionBasedClickModel,
    make_click_model,
)
from agents.streams import Streams
from agents.world import ItemPopularity, WorldConfig, build_world

ATTRACTION = (0.3, 0.5, 0.2, 0.6, 0.4, 0.35)  # one slate, 6 slots
N_MC = 100_000


def expected_click_probabilities(spec: dict, attraction: list[float]) -> list[float]:
    """P(click) of each slot of one slate, from the formulas in agents/click_model.py."""
    out = []
    reach = 1.0  # P(the scan reaches slot k), cascade and DCM
    for k, a in enumerate(attraction):
        if spec["model"] == "pbm":
            theta = (1.0 / (k + 1)) ** spec["eta"]
            eps_minus = spec.get("trust_bias", 0.0) / (k + 1)
            out.append(theta * (a + eps_minus * (1.0 - a)))
        else:
            lam = 0.0 if spec["model"] == "cascade" else spec["continue"]
            out.append(reach * a)
            reach *= 1.0 - a + a * lam  # no click, or a click and going on
    return out


SPECS = {
    "pbm_eta0": {"model": "pbm", "eta": 0.0},
    "pbm_eta1": {"model": "pbm", "eta": 1.0},
    "pbm_eta1.5": {"model": "pbm", "eta": 1.5},
    "pbm_trust": {"model": "pbm", "eta": 1.0, "trust_bias": 0.4},
    "cascade": {"model": "cascade"},
    "dcm_0": {"model": "dcm", "continue": 0.0},
    "dcm_0.3": {"model": "dcm", "continue": 0.3},
    "dcm_0.8": {"model": "dcm", "continue": 0.8},
    "dcm_1": {"model": "dcm", "continue": 1.0},
}


def build(spec: dict):
    return make_click_model(
        spec["model"],
        eta=spec.get("eta", 1.0),
        continue_after_click=spec.get("continue", 0.5),
        trust_bias=spec.get("trust_bias", 0.0),
    )


def draw(model, attraction: np.ndarray, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    uniforms = rng.random(attraction.shape)
    extra = rng.random(attraction.shape) if model.needs_extra_uniforms else None
    return model.sample(attraction, uniforms, extra)


# --- the contract every click model meets ----------------------------------------------------


@pytest.mark.parametrize("name", SPECS)
def test_click_frequencies_match_the_formula(name):
    model = build(SPECS[name])
    attraction = np.broadcast_to(np.array(ATTRACTION), (N_MC, len(ATTRACTION)))
    clicks = draw(model, attraction, seed=1)
    assert clicks.dtype == bool and clicks.shape == attraction.shape
    p = np.array(expected_click_probabilities(SPECS[name], list(ATTRACTION)))
    se = np.sqrt(p * (1 - p) / N_MC)
    freq = clicks.mean(axis=0)
    assert np.all(np.abs(freq - p) < 5 * se + 1e-12), (freq, p)


@pytest.mark.parametrize("name", SPECS)
def test_click_probability_matches_the_formula_row_by_row(name):
    model = build(SPECS[name])
    attraction = np.random.default_rng(2).uniform(0.01, 0.99, size=(40, 5))
    expected = [expected_click_probabilities(SPECS[name], list(row)) for row in attraction]
    np.testing.assert_allclose(model.click_probability(attraction), expected, rtol=1e-12)


@pytest.mark.parametrize("name", SPECS)
def test_click_is_examination_times_click_given_examined(name):
    spec, model = SPECS[name], build(SPECS[name])
    attraction = np.random.default_rng(3).uniform(0.01, 0.99, size=(30, 6))
    exam = model.examination_probability(attraction)
    assert exam.shape == attraction.shape
    assert np.all((exam > 0) & (exam <= 1)) and np.all(exam[:, 0] == 1.0)
    eps_minus = spec.get("trust_bias", 0.0) / np.arange(1, 7)
    given_examined = attraction + eps_minus * (1 - attraction)
    np.testing.assert_allclose(
        model.click_probability(attraction), exam * given_examined, rtol=1e-12
    )


@pytest.mark.parametrize("name", SPECS)
def test_same_uniforms_same_clicks(name):
    model = build(SPECS[name])
    attraction = np.random.default_rng(4).uniform(0.01, 0.99, size=(500, 6))
    np.testing.assert_array_equal(draw(model, attraction, 7), draw(model, attraction, 7))
    assert not np.array_equal(draw(model, attraction, 7), draw(model, attraction, 8))


# --- model-specific behaviour ----------------------------------------------------------------


def test_pbm_default_is_the_threshold_on_theta_times_attraction():
    """The original PBM draw, bit for bit: old runs' logs must not change."""
    model = PositionBasedClickModel(1.0)
    rng = np.random.default_rng(5)
    attraction, uniforms = rng.random((200, 5)), rng.random((200, 5))
    theta = (1.0 / (np.arange(5) + 1.0)) ** 1.0
    np.testing.assert_array_equal(model.sample(attraction, uniforms), uniforms < attraction * theta)


def test_trust_bias_clicks_unattractive_items_more_at_the_top():
    model = PositionBasedClickModel(0.0, trust_bias=0.5)
    p = model.click_probability(np.zeros((1, 4)))[0]
    np.testing.assert_allclose(p, [0.5, 0.25, 0.5 / 3, 0.125], rtol=1e-14)
    np.testing.assert_allclose(model.click_probability(np.ones((1, 4))), 1.0)


def test_cascade_clicks_at_most_once_at_the_first_attractive_slot():
    attraction = np.broadcast_to(np.array(ATTRACTION), (20_000, 6))
    uniforms = np.random.default_rng(6).random(attraction.shape)
    clicks = CascadeClickModel().sample(attraction, uniforms)
    assert clicks.sum(axis=1).max() == 1
    attracted = uniforms < attraction
    has_click = attracted.any(axis=1)
    np.testing.assert_array_equal(clicks.any(axis=1), has_click)
    np.testing.assert_array_equal(
        clicks[has_click].argmax(axis=1), attracted[has_click].argmax(axis=1)
    )


def test_dcm_limits_are_independent_clicks_and_cascade():
    rng = np.random.default_rng(7)
    attraction = rng.uniform(0.01, 0.99, size=(5_000, 6))
    uniforms, extra = rng.random(attraction.shape), rng.random(attraction.shape)
    np.testing.assert_array_equal(
        DependentClickModel(1.0).sample(attraction, uniforms, extra), uniforms < attraction
    )
    np.testing.assert_array_equal(
        DependentClickModel(1.0).sample(attraction, uniforms, extra),
        PositionBasedClickModel(0.0).sample(attraction, uniforms),
    )
    np.testing.assert_array_equal(
        DependentClickModel(0.0).sample(attraction, uniforms, extra),
        CascadeClickModel().sample(attraction, uniforms),
    )


def test_dcm_joint_clicks_follow_the_continue_probability():
    """Marginals alone would not catch a wrong stop rule: check P(click 0 and click 1) = a0·λ·a1
    and P(click 1 | no click 0) = a1."""
    lam = 0.4
    a = np.array([0.6, 0.5, 0.7])
    clicks = draw(DependentClickModel(lam), np.broadcast_to(a, (N_MC, 3)), seed=8)
    both = (clicks[:, 0] & clicks[:, 1]).mean()
    p = a[0] * lam * a[1]
    assert abs(both - p) < 5 * math.sqrt(p * (1 - p) / N_MC)
    skipped = ~clicks[:, 0]
    p, n = a[1], int(skipped.sum())
    assert abs(clicks[skipped, 1].mean() - p) < 5 * math.sqrt(p * (1 - p) / n)


def test_dcm_needs_extra_uniforms():
    attraction = np.full((3, 4), 0.5)
    with pytest.raises(ValueError, match="extra_uniforms"):
        DependentClickModel(0.5).sample(attraction, np.zeros((3, 4)))
    assert DependentClickModel.needs_extra_uniforms
    assert not PositionBasedClickModel.needs_extra_uniforms
    assert not CascadeClickModel.needs_extra_uniforms


@pytest.mark.parametrize(
    "make",
    [
        lambda: PositionBasedClickModel(1.0, trust_bias=-0.1),
        lambda: PositionBasedClickModel(1.0, trust_bias=1.5),
        lambda: DependentClickModel(1.01),
        lambda: DependentClickModel(float("nan")),
        lambda: make_click_model("ubm", eta=1.0, continue_after_click=0.5, trust_bias=0.0),
    ],
)
def test_click_models_reject_bad_parameters(make):
    with pytest.raises(ValueError):
        make()


# --- the world picks the configured model ----------------------------------------------------

SMALL = {"n_users": 200, "n_items": 120}


def test_world_builds_the_configured_click_model():
    w = build_world(WorldConfig(**SMALL), Streams(0))
    assert w.click_model == PositionBasedClickModel(1.0)  # the default is today's PBM
    w = build_world(WorldConfig(**SMALL, click_model="cascade"), Streams(0))
    assert w.click_model == CascadeClickModel()
    w = build_world(WorldConfig(**SMALL, click_model="dcm", dcm_continue=0.25), Streams(0))
    assert w.click_model == DependentClickModel(0.25)
    w = build_world(WorldConfig(**SMALL, trust_bias=0.3, position_bias_eta=0.5), Streams(0))
    assert w.click_model == PositionBasedClickModel(0.5, trust_bias=0.3)


def test_world_is_deterministic_under_a_seed():
    cfg = WorldConfig(**SMALL, click_model="dcm", conformity=1.0)
    w1, w2 = build_world(cfg, Streams(3)), build_world(cfg, Streams(3))
    users, items = np.arange(50)[:, None], np.tile(np.arange(5), (50, 1))
    for w in (w1, w2):
        w.record_clicks(np.array([1, 1, 2, 7]), np.array([1.0, 2.0, 3.0, 4.0]), now=5.0)
    _, att1 = w1.relevance_and_attraction(users, items)
    _, att2 = w2.relevance_and_attraction(users, items)
    np.testing.assert_array_equal(att1, att2)
    np.testing.assert_array_equal(draw(w1.click_model, att1, 9), draw(w2.click_model, att2, 9))


# --- popularity conformity -------------------------------------------------------------------


def test_popularity_is_standardized_log_of_decayed_clicks():
    h = 10.0
    pop = ItemPopularity.empty(4, halflife_hours=h)
    np.testing.assert_array_equal(pop.signal, np.zeros(4))
    pop.record(np.array([0, 0, 2]), np.array([0.0, 5.0, 10.0]), now=10.0)
    pop.record(np.array([2, 3], dtype=np.int32), np.array([12.0, 20.0]), now=20.0)
    counts = [
        2.0 ** (-20 / h) + 2.0 ** (-15 / h),
        0.0,
        2.0 ** (-10 / h) + 2.0 ** (-8 / h),
        1.0,
    ]
    np.testing.assert_allclose(pop.decayed_clicks, counts, rtol=1e-12)
    level = [math.log1p(c) for c in counts]
    mean = sum(level) / 4
    sd = math.sqrt(sum((x - mean) ** 2 for x in level) / 4)
    np.testing.assert_allclose(pop.signal, [(x - mean) / sd for x in level], rtol=1e-12)
    assert pop.t_updated == 20.0


def test_popularity_decays_without_clicks_and_rejects_going_back():
    pop = ItemPopularity.empty(3, halflife_hours=5.0)
    pop.record(np.array([0]), np.array([0.0]), now=0.0)
    pop.record(np.empty(0, dtype=np.int64), np.empty(0), now=10.0)
    np.testing.assert_allclose(pop.decayed_clicks, [0.25, 0.0, 0.0], rtol=1e-14)
    with pytest.raises(ValueError):
        pop.record(np.empty(0, dtype=np.int64), np.empty(0), now=9.0)
    with pytest.raises(ValueError):
        pop.record(np.array([1]), np.array([11.0]), now=10.5)  # a click from the future


def test_uniform_popularity_gives_zero_signal():
    pop = ItemPopularity.empty(3, halflife_hours=1.0)
    pop.record(np.array([0, 1, 2]), np.array([1.0, 1.0, 1.0]), now=2.0)
    np.testing.assert_array_equal(pop.signal, np.zeros(3))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def test_conformity_shifts_the_attraction_logit_but_not_the_truth():
    cfg = WorldConfig(**SMALL, conformity=1.5, conformity_halflife_days=2.0)
    w = build_world(cfg, Streams(1))
    popular = np.array([3, 4, 5])
    w.record_clicks(np.repeat(popular, 20), np.linspace(0.0, 40.0, 60), now=48.0)
    users, items = np.arange(100)[:, None], np.tile(np.arange(10), (100, 1))
    relevance, attraction = w.relevance_and_attraction(users, items)
    np.testing.assert_array_equal(relevance, w.relevance(users, items))  # truth unchanged
    z = w.popularity.signal
    assert z[popular].min() > 0 > z[0]
    expected = _sigmoid(np.log(relevance / (1 - relevance)) + 1.5 * z[items])
    np.testing.assert_allclose(attraction, expected, rtol=1e-9)
    assert np.all(attraction[:, popular] > relevance[:, popular])
    assert np.all(attraction[:, [0, 1, 2]] < relevance[:, [0, 1, 2]])


def test_conformity_raises_click_rates_of_popular_items():
    on = build_world(WorldConfig(**SMALL, conformity=1.0), Streams(2))
    off = build_world(WorldConfig(**SMALL), Streams(2))
    popular = np.arange(10)
    for w in (on, off):
        w.record_clicks(np.repeat(popular, 5), np.full(50, 10.0), now=24.0)
    users = np.repeat(np.arange(200), 100)[:, None]
    items = np.tile(np.arange(120), 200)[: users.size].reshape(-1, 1)
    items = np.concatenate([items, (items + 60) % 120], axis=1)  # 2 slots
    rates = {}
    for name, w in (("on", on), ("off", off)):
        _, attraction = w.relevance_and_attraction(users, items)
        clicks = draw(w.click_model, attraction, seed=10)
        shown_popular = np.isin(items, popular)
        rates[name] = (clicks[shown_popular].mean(), clicks[~shown_popular].mean())
    assert rates["on"][0] > 1.5 * rates["off"][0]
    assert rates["on"][1] < rates["off"][1]


def test_no_conformity_leaves_attraction_and_popularity_untouched():
    w = build_world(WorldConfig(**SMALL), Streams(2))
    w.record_clicks(np.array([1, 2, 3]), np.array([1.0, 2.0, 3.0]), now=4.0)
    np.testing.assert_array_equal(w.popularity.decayed_clicks, np.zeros(120))
    np.testing.assert_array_equal(w.popularity.signal, np.zeros(120))
    users, items = np.arange(30)[:, None], np.tile(np.arange(4), (30, 1))
    relevance, attraction = w.relevance_and_attraction(users, items)
    assert attraction is relevance
    np.testing.assert_array_equal(relevance, w.relevance(users, items))


# --- config validation -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("click_model", "ubm"),
        ("click_model", None),
        ("click_model", "PBM"),
        ("dcm_continue", 1.5),
        ("dcm_continue", -0.1),
        ("dcm_continue", True),
        ("dcm_continue", "0.5"),
        ("trust_bias", -0.2),
        ("trust_bias", 2.0),
        ("trust_bias", float("nan")),
        ("conformity", float("inf")),
        ("conformity", None),
        ("conformity", "1"),
        ("conformity_halflife_days", 0),
        ("conformity_halflife_days", -3.0),
        ("conformity_halflife_days", False),
    ],
)
def test_invalid_behaviour_config_names_key(key, value):
    with pytest.raises(ValueError, match=rf"^world\.{key}=") as exc:
        WorldConfig(**{key: value})
    assert repr(value) in str(exc.value)


def test_trust_bias_needs_the_position_based_model():
    with pytest.raises(ValueError, match=r"^world\.trust_bias=0\.2: .*click_model=pbm"):
        WorldConfig(click_model="cascade", trust_bias=0.2)
    WorldConfig(click_model="cascade", trust_bias=0.0)


def test_valid_behaviour_configs_accepted():
    for model in ("pbm", "cascade", "dcm"):
        WorldConfig(click_model=model)
    WorldConfig(dcm_continue=0, trust_bias=1, conformity=-2.0, conformity_halflife_days=0.01)
    WorldConfig(dcm_continue=np.float64(1.0), conformity=np.int64(3))
