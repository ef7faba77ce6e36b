"""Delayed conversions (agents.conversions): the model against its formula, the delay laws
against scipy, the pending buffer, and the draws' independence from batching."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from agents.conversions import ConversionConfig, PendingConversions, draw_conversions
from agents.world import WorldConfig


def test_probability_is_the_stated_logistic():
    cfg = ConversionConfig(base=0.1, relevance_weight=1.5, price_weight=0.7)
    rel = np.array([0.5, 0.2, 0.9, 0.5])
    price = np.array([7.0, 7.0, 3.0, 14.0])
    logit = np.log(0.1 / 0.9) + 1.5 * np.log(rel / (1 - rel)) - 0.7 * np.log(price / 7.0)
    np.testing.assert_allclose(cfg.probability(rel, price, 7.0), 1 / (1 + np.exp(-logit)))
    assert cfg.probability(np.array([0.5]), np.array([7.0]), 7.0)[0] == pytest.approx(0.1)


@pytest.mark.parametrize(
    ("cfg", "law"),
    [
        (ConversionConfig(base=0.1, mean_hours=30.0), stats.expon(scale=30.0)),
        (
            ConversionConfig(base=0.1, distribution="lognormal", mean_hours=30.0, shape=0.8),
            stats.lognorm(s=0.8, scale=np.exp(np.log(30.0) - 0.32)),
        ),
    ],
)
def test_delays_follow_the_configured_law_with_the_configured_mean(cfg, law):
    u = np.random.default_rng(3).random(20_000)
    delays = cfg.delay_quantile(u)
    assert law.mean() == pytest.approx(30.0)
    assert stats.kstest(delays, law.cdf).pvalue > 1e-3
    grid = np.array([0.0, 1.0, 10.0, 30.0, 200.0])
    np.testing.assert_allclose(cfg.delay_cdf(grid), law.cdf(grid), atol=1e-12)


def test_draws_do_not_depend_on_how_clicks_are_batched():
    cfg = ConversionConfig(base=0.2)
    rel = np.random.default_rng(0).random(101)
    price = np.full(101, 5.0)
    whole = draw_conversions(cfg, np.random.default_rng(9), rel, price, 5.0)
    rng = np.random.default_rng(9)
    parts = [draw_conversions(cfg, rng, rel[a:b], price[a:b], 5.0) for a, b in ((0, 40), (40, 101))]
    np.testing.assert_array_equal(whole[0], np.concatenate([p[0] for p in parts]))
    np.testing.assert_array_equal(whole[1], np.concatenate([p[1] for p in parts]))


def test_pending_buffer_pops_by_time_and_keeps_the_rest():
    buf = PendingConversions()
    buf.add(
        np.array([1, 2, 3]),
        np.array([10, 11, 12]),
        np.array([5, 6, 7]),
        np.array([1.0, 2.0, 3.0]),
        np.array([30.0, 1.0, 0.5]),
        np.array([9.0, 8.0, 7.0]),
    )
    first = buf.pop_before(10.0)
    assert first["request_id"].to_list() == [2, 3]  # at 3.0 and 3.5, by time
    assert first["t"].to_list() == [3.0, 3.5]
    assert buf.size == 1
    assert buf.clicked_before(1.5)["request_id"].to_list() == [1]
    assert buf.clicked_before(0.5).height == 0
    assert buf.pop_before(32.0)["value"].to_list() == [9.0] and buf.size == 0


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"conversion": {"base": 1.0}}, "world.conversion.base=1.0"),
        ({"conversion": {"base": -0.1}}, "world.conversion.base=-0.1"),
        ({"conversion": {"base": 0.1, "price_weight": "x"}}, "world.conversion.price_weight='x'"),
        ({"conversion_delay": {"mean_hours": 0}}, "world.conversion_delay.mean_hours=0"),
        ({"conversion_delay": {"distribution": "weibull"}}, "distribution='weibull'"),
        ({"conversion_delay": {"shape": -1}}, "world.conversion_delay.shape=-1"),
        ({"conversion_delay": {"median": 3}}, "world.conversion_delay.median=3: unknown key"),
    ],
)
def test_bad_conversion_config_names_the_key(kw, message):
    with pytest.raises(ValueError) as info:
        WorldConfig(**kw)
    assert message in str(info.value) and "\n" not in str(info.value)
