"""A living world (issue 17): items and users that arrive during the run, items that leave.

Expected values come from the documented laws (Poisson counts, exponential lifetimes, the share of
new creators) or from brute force over the pre-allocated arrays, never from the code under test.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from agents.streams import Streams
from agents.world import WorldConfig, build_world, catalog_timeline, smallest_catalog

BASE = {"n_users": 300, "n_items": 200}
LIVING = {"item_arrival_rate": 20.0, "item_lifetime_days": 30.0, "user_arrival_rate": 40.0}


def _world(seed: int = 0, days: float = 10, **overrides):
    return build_world(WorldConfig(**{**BASE, **overrides}), Streams(seed), days=days)


def test_the_initial_world_is_the_same_draw_with_arrivals_on_or_off():
    fixed, living = _world(3), _world(3, **LIVING)
    n, m = BASE["n_items"], BASE["n_users"]
    assert np.array_equal(living.catalog.factors[:n], fixed.catalog.factors)
    assert np.array_equal(living.catalog.appeal[:n], fixed.catalog.appeal)
    assert np.array_equal(living.catalog.metadata.content[:n], fixed.catalog.metadata.content)
    assert np.array_equal(living.catalog.metadata.publish_t[:n], fixed.catalog.metadata.publish_t)
    assert np.array_equal(living.users.preferences[:m], fixed.users.preferences)
    assert np.array_equal(living.users.session_rate[:m], fixed.users.session_rate)
    # a fixed world has no arrivals, no departures, nothing unavailable
    assert fixed.catalog.n_items == n and fixed.users.n_users == m
    assert fixed.catalog_changes(240.0).size == 0 and fixed.unavailable(0.0).size == 0
    assert not fixed.users.has_arrivals


def test_arrival_counts_follow_the_poisson_rate():
    days, rate_items, rate_users = 10, 20.0, 40.0
    new_items = [_world(s, days, **LIVING).catalog.n_items - BASE["n_items"] for s in range(30)]
    new_users = [_world(s, days, **LIVING).users.n_users - BASE["n_users"] for s in range(30)]
    for counts, rate in ((new_items, rate_items), (new_users, rate_users)):
        mean = rate * days
        # the mean of 30 Poisson(mean) counts: sd sqrt(mean / 30); 4 sd
        assert abs(np.mean(counts) - mean) < 4 * math.sqrt(mean / 30)


def test_new_items_arrive_in_id_order_and_are_published_when_they_arrive():
    w = _world(1, **LIVING)
    meta, n = w.catalog.metadata, BASE["n_items"]
    arrival = meta.arrival_t[n:]
    assert np.all(arrival > 0) and np.all(arrival < 240.0)
    assert np.all(np.diff(arrival) >= 0)
    assert np.array_equal(meta.publish_t[n:], arrival)
    assert np.all(meta.arrival_t[:n] == 0) and np.all(meta.publish_t[:n] <= 0)


def test_new_creators_appear_at_the_configured_share():
    w = _world(2, days=60, item_arrival_rate=40.0, new_creator_share=0.25)
    n, n_creators = BASE["n_items"], WorldConfig(**BASE).n_creators
    creators = w.catalog.metadata.creator_id[n:]
    new = creators >= n_creators
    # each new-creator item gets its own new creator id
    assert np.unique(creators[new]).size == new.sum()
    share, size = new.mean(), new.size
    assert abs(share - 0.25) < 4 * math.sqrt(0.25 * 0.75 / size)


def test_lifetimes_are_exponential_with_the_configured_mean():
    w = _world(4, days=30, item_lifetime_days=20.0, item_arrival_rate=30.0)
    meta = w.catalog.metadata
    life_days = (meta.depart_t - meta.arrival_t) / 24.0
    assert abs(life_days.mean() - 20.0) < 4 * 20.0 / math.sqrt(life_days.size)
    # availability is [arrival, depart)
    t = 100.0
    expected = (meta.arrival_t <= t) & (meta.depart_t > t)
    assert np.array_equal(meta.available(t), expected)
    assert np.array_equal(w.unavailable(t), np.flatnonzero(~expected))


def test_catalog_changes_are_every_arrival_and_departure_inside_the_run():
    w = _world(5, **LIVING)
    meta, horizon = w.catalog.metadata, 240.0
    times = np.concatenate([meta.arrival_t, meta.depart_t])
    expected = sorted({t for t in times.tolist() if 0 < t < horizon})
    assert w.catalog_changes(horizon).tolist() == expected


def test_the_timeline_matches_the_built_world_and_its_smallest_catalog_is_right():
    cfg = WorldConfig(**BASE, **LIVING)
    w = build_world(cfg, Streams(6), days=10)
    arrival, depart = catalog_timeline(cfg, Streams(6), 240.0)
    assert np.array_equal(arrival, w.catalog.metadata.arrival_t)
    assert np.array_equal(depart, w.catalog.metadata.depart_t)
    size, at = smallest_catalog(arrival, depart, 240.0)
    grid = np.concatenate([[0.0], w.catalog_changes(240.0)])
    sizes = [int(w.catalog.metadata.available(t).sum()) for t in grid]  # brute force
    assert size == min(sizes)
    assert at == grid[int(np.argmin(sizes))]


def test_users_have_no_session_before_they_arrive():
    w = _world(7, **LIVING)
    rng = np.random.default_rng(0)
    for day in range(10):
        times, users = w.users.sample_sessions(24.0 * day, 24.0 * (day + 1), rng)
        assert np.all(w.users.arrival_t[users] <= times)
        assert np.all(np.diff(times) >= 0)


def test_a_user_arriving_mid_day_gets_sessions_at_the_rate_for_the_rest_of_the_day():
    w = _world(8, **LIVING)
    users = w.users
    users.session_rate[:] = 0.0
    late = BASE["n_users"]  # the first arriving user
    users.session_rate[late] = 24.0  # one session per hour on average
    users.arrival_t[late] = 18.0  # six hours before the day ends
    rng = np.random.default_rng(1)
    counts = [np.sum(users.sample_sessions(0.0, 24.0, rng)[1] == late) for _ in range(400)]
    # Poisson(6): the mean of 400 draws within 4 sd
    assert abs(np.mean(counts) - 6.0) < 4 * math.sqrt(6.0 / 400)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("item_arrival_rate", -1.0, "world.item_arrival_rate=-1.0: must be a number"),
        ("user_arrival_rate", "x", "world.user_arrival_rate='x': must be a number"),
        ("item_lifetime_days", 0, "world.item_lifetime_days=0: must be null"),
        ("item_lifetime_days", -3.0, "world.item_lifetime_days=-3.0: must be null"),
        ("new_creator_share", 1.5, "world.new_creator_share=1.5: must be in [0, 1]"),
    ],
)
def test_bad_living_world_keys_name_the_key(key, value, message):
    with pytest.raises(ValueError) as err:
        WorldConfig(**{key: value})
    assert str(err.value).startswith(message)
