"""The second domain of cross-domain transfer: its config, its preferences and its clicks."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.catalog import topic_centers
from agents.second_domain import (
    TransferConfig,
    correlated_preferences,
    draw_clicks,
)
from agents.streams import Streams
from agents.world import WorldConfig, build_world


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        (
            {"enabled": True, "domain": None},
            "transfer.domain=None: transfer enabled with no second",
        ),
        ({"enabled": True, "n_items": 0}, "transfer.n_items=0: transfer enabled with no second"),
        ({"correlation": 1.01}, "transfer.correlation=1.01: must be in [-1, 1]"),
        ({"correlation": -2}, "transfer.correlation=-2"),
        ({"correlation": float("nan")}, "transfer.correlation=nan"),
        ({"n_items": -1}, "transfer.n_items=-1"),
        ({"n_items": 2.5}, "transfer.n_items=2.5"),
        ({"clicks_per_user": 0}, "transfer.clicks_per_user=0"),
        ({"regularization": 0.0}, "transfer.regularization=0.0"),
        ({"profile_dim": 0}, "transfer.profile_dim=0"),
        ({"min_r2": 1.0}, "transfer.min_r2=1.0: must be null (always seed) or a number < 1"),
        ({"enabled": "yes"}, "transfer.enabled='yes'"),
        ({"domain": ""}, "transfer.domain=''"),
    ],
)
def test_bad_transfer_config_names_the_key(keys, expected):
    with pytest.raises(ValueError) as info:
        TransferConfig(**keys)
    assert expected in str(info.value)
    assert "\n" not in str(info.value)


def test_disabled_transfer_may_have_no_second_domain():
    TransferConfig(enabled=False, domain=None, n_items=0)
    TransferConfig(correlation=-1.0)
    TransferConfig(correlation=1.0, enabled=True)


@settings(max_examples=15, deadline=None)
@given(rho=st.floats(-1.0, 1.0), seed=st.integers(0, 2**16))
def test_preferences_correlate_by_rho_and_keep_the_spread(rho, seed):
    rng = np.random.default_rng(seed)
    centers = topic_centers(6, 8, rng)
    weights = rng.dirichlet(np.full(6, 2.0))
    n = 40_000
    topic = rng.choice(6, size=n, p=weights)
    p_a = centers[topic] + 0.6 * rng.standard_normal((n, 8)) / np.sqrt(8)
    p_b = correlated_preferences(p_a, centers, weights, 0.6, rho, np.random.default_rng(seed + 1))
    # sample correlation of each latent coordinate across users, pooled over the coordinates
    a, b = p_a - p_a.mean(axis=0), p_b - p_b.mean(axis=0)
    pooled = (a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum())
    assert pooled == pytest.approx(rho, abs=0.02)
    np.testing.assert_allclose(p_b.mean(axis=0), p_a.mean(axis=0), atol=0.02)
    np.testing.assert_allclose(p_b.var(axis=0), p_a.var(axis=0), rtol=0.06, atol=1e-3)


def test_clicks_follow_attraction_and_poisson_counts():
    rng = np.random.default_rng(0)
    prefs = rng.standard_normal((3, 4)) / 2
    factors = rng.standard_normal((6, 4)) / 2
    appeal = rng.standard_normal(6) / 2
    many = np.repeat(prefs, 5000, axis=0)  # 5,000 copies of three users
    clicks = draw_clicks(
        many,
        factors,
        appeal,
        affinity_scale=4.0,
        affinity_offset=-3.0,
        clicks_per_user=20.0,
        rng=np.random.default_rng(1),
    )
    counts = clicks.toarray()
    assert counts.sum(axis=1).mean() == pytest.approx(20.0, rel=0.01)
    assert counts.sum(axis=1).var() == pytest.approx(20.0, rel=0.06)  # Poisson: var = mean
    logits = 4.0 * prefs @ factors.T + appeal - 3.0
    attraction = 1.0 / (1.0 + np.exp(-logits))
    expected = attraction / attraction.sum(axis=1, keepdims=True)
    for user in range(3):
        rows = counts[user * 5000 : (user + 1) * 5000].sum(axis=0)
        np.testing.assert_allclose(rows / rows.sum(), expected[user], atol=0.006)


class StreamLog(Streams):
    """Streams that remember every name asked for."""

    names: list[str]

    def __init__(self, seed: int) -> None:
        super().__init__(seed)
        object.__setattr__(self, "names", [])

    def generator(self, name: str) -> np.random.Generator:
        self.names.append(name)
        return super().generator(name)


LIVING = WorldConfig(n_users=200, n_items=80, user_arrival_rate=20.0, item_arrival_rate=5.0)


@pytest.mark.parametrize("transfer", [None, TransferConfig(), TransferConfig(correlation=-0.3)])
def test_disabled_transfer_builds_nothing(transfer):
    streams = StreamLog(3)
    world = build_world(LIVING, streams, days=4, transfer=transfer)
    assert world.second_domain is None
    assert not [n for n in streams.names if n.startswith("world.transfer")]


def test_enabled_transfer_covers_every_user_and_moves_no_other_draw():
    off = build_world(LIVING, Streams(3), days=4)
    streams = StreamLog(3)
    on = build_world(LIVING, streams, days=4, transfer=TransferConfig(enabled=True, n_items=50))
    assert {n for n in streams.names if n.startswith("world.transfer")} == {
        "world.transfer.catalog",
        "world.transfer.preferences",
        "world.transfer.clicks",
    }
    second = on.second_domain
    assert on.users.has_arrivals and on.users.n_users > LIVING.n_users
    assert second.clicks.shape == (on.users.n_users, 50)
    assert second.preferences.shape == on.users.preferences.shape
    # the users who join later have a history there too
    late = np.asarray(second.clicks[LIVING.n_users :].sum(axis=1)).ravel()
    assert (late > 0).mean() > 0.9
    np.testing.assert_array_equal(on.users.preferences, off.users.preferences)
    np.testing.assert_array_equal(on.catalog.factors, off.catalog.factors)
    np.testing.assert_array_equal(on.users.arrival_t, off.users.arrival_t)
