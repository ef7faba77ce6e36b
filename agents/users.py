"""Synthetic users: latent preferences, heterogeneous activity, preference drift."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agents.arrivals import ArrivalIntensity


@dataclass
class UserPopulation:
    """Ground truth of the user population.

    ``preferences`` is mutable: with drift enabled it moves toward what users consume.
    """

    preferences: np.ndarray  # (n_users, dim) float64
    topic: np.ndarray  # (n_users,) int32, the mixture component the user was drawn from
    session_rate: np.ndarray  # (n_users,) float64, expected sessions per simulated day
    drift_rate: float = 0.0
    arrivals: ArrivalIntensity | None = None  # world.diurnal / world.flash_crowds (None: flat)
    # (n_users,) float64 hour each user joins (0: the initial population; world.user_arrival_rate)
    arrival_t: np.ndarray | None = None
    topic_weights: np.ndarray | None = None  # the topic mixture users were drawn from

    def __post_init__(self) -> None:
        if self.arrival_t is None:
            self.arrival_t = np.zeros(self.preferences.shape[0])

    @property
    def n_users(self) -> int:
        return int(self.preferences.shape[0])

    @property
    def has_arrivals(self) -> bool:
        """Whether some users join after hour 0."""
        return bool(self.arrival_t.size and self.arrival_t.max() > 0)

    def sample_sessions(
        self,
        t_start: float,
        t_end: float,
        rng: np.random.Generator,
        rate_multiplier: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per-user Poisson session arrivals in ``[t_start, t_end)`` hours, sorted by time.

        Returns ``(times, user_ids)``. Vectorized over users: one Poisson count per user, then
        uniform times (the superposition of independent Poisson processes). With a varying
        intensity (:mod:`agents.arrivals`) the count's mean is the integrated intensity and the
        times come from its inverse CDF — the same generator calls, so flat keeps its draws.
        ``rate_multiplier`` (n_users,): each user's rate for this interval is scaled by it
        (satisfaction and churn, :mod:`agents.engagement`; 0 = no sessions).
        """
        hours = t_end - t_start
        rate = self.session_rate if rate_multiplier is None else self.session_rate * rate_multiplier
        if self.has_arrivals:
            return self._sample_joined_sessions(t_start, t_end, rng, rate)
        if self.arrivals is None or self.arrivals.is_flat:
            counts = rng.poisson(rate * (hours / 24.0))
            user_ids = np.repeat(np.arange(self.n_users, dtype=np.int32), counts)
            times = t_start + hours * rng.random(user_ids.shape[0])
        else:
            _, cum = self.arrivals.cumulative(t_start, t_end)
            counts = rng.poisson(rate * (cum[-1] / 24.0))
            user_ids = np.repeat(np.arange(self.n_users, dtype=np.int32), counts)
            times = self.arrivals.times(t_start, t_end, rng.random(user_ids.shape[0]))
        order = np.argsort(times, kind="stable")
        return times[order], user_ids[order]

    def _sample_joined_sessions(
        self, t_start: float, t_end: float, rng: np.random.Generator, rate: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`sample_sessions` with users who join during the run: each user's sessions fall
        in ``[max(t_start, arrival_t), t_end)`` (none before they join), with the intensity
        integrated over that part of the interval."""
        start = np.clip(self.arrival_t, t_start, t_end)
        if self.arrivals is None or self.arrivals.is_flat:
            counts = rng.poisson(rate * ((t_end - start) / 24.0))
            user_ids = np.repeat(np.arange(self.n_users, dtype=np.int32), counts)
            lo = start[user_ids]
            times = lo + (t_end - lo) * rng.random(user_ids.shape[0])
        else:
            grid, cum = self.arrivals.cumulative(t_start, t_end)
            before = np.interp(start, grid, cum)  # integrated intensity up to each start
            counts = rng.poisson(rate * ((cum[-1] - before) / 24.0))
            user_ids = np.repeat(np.arange(self.n_users, dtype=np.int32), counts)
            lo = before[user_ids] / cum[-1] if cum[-1] > 0 else np.zeros(user_ids.shape[0])
            u = lo + (1.0 - lo) * rng.random(user_ids.shape[0])
            times = self.arrivals.times(t_start, t_end, u)
        order = np.argsort(times, kind="stable")
        return times[order], user_ids[order]

    def drift_toward(self, user_ids: np.ndarray, item_factors: np.ndarray) -> None:
        """Move each user a step ``drift_rate`` toward each item they consumed (vectorized).

        Several clicks by one user in a batch add their steps; the user's norm is kept.
        """
        if self.drift_rate <= 0.0 or user_ids.size == 0:
            return
        norms = np.linalg.norm(self.preferences[np.unique(user_ids)], axis=1, keepdims=True)
        step = self.drift_rate * (item_factors - self.preferences[user_ids])
        np.add.at(self.preferences, user_ids, step)
        touched = np.unique(user_ids)
        new = self.preferences[touched]
        self.preferences[touched] = new * (
            norms / np.maximum(np.linalg.norm(new, axis=1, keepdims=True), 1e-12)
        )


def generate_users(
    n_users: int,
    centers: np.ndarray,
    *,
    topic_spread: float,
    sessions_per_day: float,
    activity_sigma: float,
    drift_rate: float,
    rng: np.random.Generator,
) -> UserPopulation:
    """Users from the same topic mixture as items, with log-normal session rates.

    The log-normal is parameterized so that the *mean* rate is ``sessions_per_day``.
    """
    n_topics, dim = centers.shape
    weights = rng.dirichlet(np.full(n_topics, 2.0))
    topic = rng.choice(n_topics, size=n_users, p=weights).astype(np.int32)
    prefs = centers[topic] + topic_spread * rng.standard_normal((n_users, dim)) / np.sqrt(dim)
    mu = np.log(sessions_per_day) - activity_sigma**2 / 2.0
    rate = rng.lognormal(mean=mu, sigma=activity_sigma, size=n_users)
    return UserPopulation(
        preferences=prefs,
        topic=topic,
        session_rate=rate,
        drift_rate=drift_rate,
        topic_weights=weights,
    )


def arriving_users(
    users: UserPopulation,
    centers: np.ndarray,
    arrival_t: np.ndarray,
    *,
    topic_spread: float,
    sessions_per_day: float,
    activity_sigma: float,
    rng: np.random.Generator,
) -> UserPopulation:
    """``users`` plus users joining at hours ``arrival_t`` (sorted), drawn from the same topic
    mixture with the same activity law (each with their own topic mix)."""
    n, (n_topics, dim) = arrival_t.shape[0], centers.shape
    assert users.topic_weights is not None
    topic = rng.choice(n_topics, size=n, p=users.topic_weights).astype(np.int32)
    prefs = centers[topic] + topic_spread * rng.standard_normal((n, dim)) / np.sqrt(dim)
    mu = np.log(sessions_per_day) - activity_sigma**2 / 2.0
    rate = rng.lognormal(mean=mu, sigma=activity_sigma, size=n)
    return UserPopulation(
        preferences=np.concatenate([users.preferences, prefs]),
        topic=np.concatenate([users.topic, topic]),
        session_rate=np.concatenate([users.session_rate, rate]),
        drift_rate=users.drift_rate,
        arrivals=users.arrivals,
        arrival_t=np.concatenate([users.arrival_t, np.asarray(arrival_t, dtype=np.float64)]),
        topic_weights=users.topic_weights,
    )
