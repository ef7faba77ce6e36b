"""Arrival intensity (agents/arrivals.py): counts follow the daily profile and flash crowds,
the daily mean stays, and a flat profile keeps today's draws exactly."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from agents.arrivals import SHAPES, ArrivalIntensity, diurnal_profile, flash_crowds
from agents.users import UserPopulation
from agents.world import WorldConfig


def population(n_users: int, arrivals: ArrivalIntensity | None, seed: int = 0) -> UserPopulation:
    rng = np.random.default_rng(seed)
    return UserPopulation(
        preferences=np.zeros((n_users, 2)),
        topic=np.zeros(n_users, dtype=np.int32),
        session_rate=rng.lognormal(0.0, 0.8, n_users),
        arrivals=arrivals,
    )


def test_flat_keeps_todays_draws_exactly():
    users = population(500, None)
    for arrivals in (None, ArrivalIntensity(diurnal_profile("flat")),
                     ArrivalIntensity(diurnal_profile([3.0] * 24))):  # fmt: skip
        users.arrivals = arrivals
        times, ids = users.sample_sessions(24.0, 48.0, np.random.default_rng(7))
        # the code before arrival profiles, verbatim
        rng = np.random.default_rng(7)
        counts = rng.poisson(users.session_rate * (24.0 / 24.0))
        want_ids = np.repeat(np.arange(500, dtype=np.int32), counts)
        want_t = 24.0 + 24.0 * rng.random(want_ids.shape[0])
        order = np.argsort(want_t, kind="stable")
        np.testing.assert_array_equal(times, want_t[order])
        np.testing.assert_array_equal(ids, want_ids[order])


def test_the_inverse_cdf_of_a_flat_intensity_is_uniform_time():
    arrivals = ArrivalIntensity(np.ones(24), ((100.0, 1.0, 1.0),))  # forces the general path
    u = np.random.default_rng(0).random(1000)
    np.testing.assert_allclose(arrivals.times(24.0, 48.0, u), 24.0 + 24.0 * u, atol=1e-9)


def test_hourly_counts_follow_the_profile_and_the_daily_mean_stays():
    profile = diurnal_profile("evening_peak")
    users = population(20_000, ArrivalIntensity(profile))
    rng = np.random.default_rng(1)
    days = 20
    per_hour = np.zeros(24)
    per_day = []
    for d in range(days):
        times, _ = users.sample_sessions(24.0 * d, 24.0 * (d + 1), rng)
        assert times.min() >= 24.0 * d and times.max() < 24.0 * (d + 1)
        per_hour += np.bincount(np.floor(times % 24).astype(int), minlength=24)
        per_day.append(times.size)
    expected = per_hour.sum() * profile / profile.sum()
    assert stats.chisquare(per_hour, expected).pvalue > 0.001
    # the day's count is Poisson with mean Σ rates (the profile has mean 1)
    mean_rate = users.session_rate.sum()
    half = 1.96 * np.sqrt(mean_rate / days)
    assert abs(np.mean(per_day) - mean_rate) < half
    assert per_hour[20] > 5 * per_hour[4]  # the evening peak against the night


def test_a_flash_crowd_multiplies_its_window():
    crowd = ((30.0, 2.0, 5.0),)
    users = population(20_000, ArrivalIntensity(np.ones(24), crowd))
    times, _ = users.sample_sessions(24.0, 48.0, np.random.default_rng(2))
    rate = users.session_rate.sum() / 24.0  # per hour
    inside = np.sum((times >= 30.0) & (times < 32.0))
    outside = np.sum((times >= 24.0) & (times < 30.0))
    assert abs(inside - 2 * 5 * rate) < 4 * np.sqrt(2 * 5 * rate)
    assert abs(outside - 6 * rate) < 4 * np.sqrt(6 * rate)


def test_named_shapes_have_mean_one():
    for name in SHAPES:
        assert diurnal_profile(name).mean() == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("diurnal", "lunch", r"^world\.diurnal='lunch': unknown shape"),
        ("diurnal", [1.0] * 23, r"^world\.diurnal=\[.*\]: must be a named shape"),
        ("diurnal", [-1.0] + [1.0] * 23, r"^world\.diurnal=\[.*\]: values must be >= 0"),
        ("flash_crowds", [{"start_hour": 1}], r"^world\.flash_crowds\[0\]=.*: must have"),
        (
            "flash_crowds",
            [{"start_hour": 1, "duration_hours": 1, "multiplier": -2}],
            r"^world\.flash_crowds\[0\]\.multiplier=-2: ",
        ),
    ],
)
def test_bad_arrival_config_fails_with_one_line(key, value, message):
    with pytest.raises(ValueError, match=message):
        WorldConfig(**{key: value})
    assert flash_crowds(None) == ()
