"""Users who get bored, leave and come back: satisfaction, churn and return, satiation.

All of it is off by default (``world.churn.base_rate = 0``, ``world.satisfaction
.session_sensitivity = 0``, ``world.satiation = 0``): then nothing here exists in a run and no
draw moves.

**Satisfaction.** Each user carries ``s_u``, an exponential moving average of the utility of the
requests they were served: ``s ← (1 − m) s + m · u_r`` for each request ``r`` in time order,
with ``u_r`` the true relevance of what they clicked in it (what they got out of the visit) and
``m = world.satisfaction.memory``. Every user starts — and a returning user starts again — at
``world.satisfaction.reference``. It is updated at event boundaries (:meth:`Engagement.apply`
from :meth:`agents.world.World.advance`), never within a batch.

**Return and churn, at day boundaries.** A day's sessions are drawn at the start of the day (one
vectorized Poisson draw, as without churn); with churn on, the engine first serves every request
of the day that ended and lets the world advance, then :meth:`Engagement.start_day`:

* an active user churns (stops arriving) with probability
  ``min(1, base_rate · exp(sensitivity · (reference − s_u)))``;
* a churned user returns with probability ``1 − exp(−return_rate)`` (exponential dormancy of
  mean ``1 / return_rate`` days, on the day grid), with satisfaction reset to the reference;
* the day's session rate of an active user is ``rate_u · exp(session_sensitivity ·
  (s_u − reference))``.

One uniform per user per day from stream ``world.churn`` decides churning or returning. Why at
day boundaries rather than thinning sessions as they come: a day's sessions stay one vectorized
draw that depends only on state at an event, so how requests are batched never matters; churn
acts on a scale of days, so a decision lagging the last visit by < 1 day loses nothing; and a
resumed run re-enters at the same boundaries.

**Satiation.** ``S[u, topic]`` counts the items of each topic a user consumed (clicked),
decaying as ``exp(−Δt / satiation_recovery_days)``; the attraction *and* the true relevance of an
item fall by ``satiation · S[u, topic_i]`` on the logit scale (the truth reflects boredom: the
tenth cooking video in a row is worth less to this user now). Applied at event boundaries, like
preference drift.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agents.validation import is_number, world_mapping


def _non_negative(value: Any, key: str, what: str = "a number >= 0") -> float:
    if not is_number(value) or value < 0:
        raise ValueError(f"world.{key}={value!r}: must be {what}")
    return float(value)


@dataclass(frozen=True)
class EngagementConfig:
    """``world.churn``, ``world.return_rate``, ``world.satisfaction``, ``world.satiation`` and
    ``world.satiation_recovery_days``, validated (one-line errors naming the key)."""

    churn_base_rate: float = 0.0
    churn_sensitivity: float = 0.0
    return_rate: float = 0.0
    memory: float = 0.2
    reference: float = 0.15
    session_sensitivity: float = 0.0
    satiation: float = 0.0
    satiation_recovery_days: float = 3.0

    @classmethod
    def parse(
        cls,
        churn: Any,
        return_rate: Any,
        satisfaction: Any,
        satiation: Any,
        satiation_recovery_days: Any,
    ) -> EngagementConfig:
        c = world_mapping(churn, "churn", ("base_rate", "sensitivity"))
        s = world_mapping(
            satisfaction, "satisfaction", ("memory", "reference", "session_sensitivity")
        )
        base = c.get("base_rate", cls.churn_base_rate)
        if not is_number(base) or not 0 <= base <= 1:
            raise ValueError(
                f"world.churn.base_rate={base!r}: must be a daily probability in [0, 1]"
            )
        memory = s.get("memory", cls.memory)
        if not is_number(memory) or not 0 < memory <= 1:
            raise ValueError(f"world.satisfaction.memory={memory!r}: must be in (0, 1]")
        reference = s.get("reference", cls.reference)
        if not is_number(reference):
            raise ValueError(f"world.satisfaction.reference={reference!r}: must be a finite number")
        session = s.get("session_sensitivity", cls.session_sensitivity)
        if not is_number(session):
            raise ValueError(
                f"world.satisfaction.session_sensitivity={session!r}: must be a finite number"
            )
        recovery = satiation_recovery_days
        if not is_number(recovery) or recovery <= 0:
            raise ValueError(
                f"world.satiation_recovery_days={recovery!r}: must be a number of days > 0"
            )
        return cls(
            churn_base_rate=float(base),
            churn_sensitivity=_non_negative(c.get("sensitivity", 0.0), "churn.sensitivity"),
            return_rate=_non_negative(
                return_rate, "return_rate", "a number of returns per day >= 0"
            ),
            memory=float(memory),
            reference=float(reference),
            session_sensitivity=float(session),
            satiation=_non_negative(satiation, "satiation"),
            satiation_recovery_days=float(recovery),
        )

    @property
    def churns(self) -> bool:
        return self.churn_base_rate > 0

    @property
    def tracks_satisfaction(self) -> bool:
        """Whether satisfaction changes anything (churn or the session rate)."""
        return self.churns or self.session_sensitivity != 0

    @property
    def enabled(self) -> bool:
        return self.tracks_satisfaction or self.satiation > 0


@dataclass
class Engagement:
    """Users' satisfaction, churn status and satiation (part of the world's mutable state)."""

    config: EngagementConfig
    satisfaction: np.ndarray  # (n_users,) float64
    churned: np.ndarray  # (n_users,) bool: not arriving now
    satiation: np.ndarray  # (n_users, n_topics) float64 as of t_satiation
    rng: np.random.Generator | None = field(default=None, repr=False)  # world.churn
    t_satiation: float = 0.0
    # Requests served since the last apply(): (users, utility), in request order.
    unapplied: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list, repr=False)
    # (user_id, t, event) rows: event 1 = churned, 2 = returned (written to logs/engagement)
    events: list[tuple[np.ndarray, float, int]] = field(default_factory=list, repr=False)
    # one row per day boundary: the state the day started with (logs/engagement_days)
    days: list[dict[str, float]] = field(default_factory=list, repr=False)

    @classmethod
    def initial(
        cls, config: EngagementConfig, n_users: int, n_topics: int, rng: np.random.Generator
    ) -> Engagement:
        return cls(
            config=config,
            satisfaction=np.full(n_users, config.reference),
            churned=np.zeros(n_users, dtype=bool),
            satiation=np.zeros((n_users, n_topics) if config.satiation > 0 else (0, n_topics)),
            rng=rng,
        )

    # --- satiation ---------------------------------------------------------------------
    def logit_shift(self, user_ids: np.ndarray, topics: np.ndarray) -> np.ndarray | float:
        """``−satiation · S[u, topic]`` for aligned (broadcastable) users and item topics."""
        if self.config.satiation <= 0:
            return 0.0
        return -self.config.satiation * self.satiation[user_ids, topics]

    def consume(self, users: np.ndarray, topics: np.ndarray, times: np.ndarray, now: float) -> None:
        """Decay satiation to ``now`` and add each click (``times`` ≤ now) on its topic."""
        if self.config.satiation <= 0:
            return
        tau = self.config.satiation_recovery_days * 24.0
        self.satiation *= np.exp(-(now - self.t_satiation) / tau)
        if users.size:
            np.add.at(self.satiation, (users, topics), np.exp(-(now - times) / tau))
        self.t_satiation = now

    # --- satisfaction ------------------------------------------------------------------
    def record(self, users: np.ndarray, utility: np.ndarray) -> None:
        """Requests served (in request order): applied at the next event boundary."""
        if self.config.tracks_satisfaction:
            self.unapplied.append((users, utility))

    def apply(self) -> None:
        """Fold the recorded requests into each user's moving average, in request order:
        for a user with ``n`` new requests, ``s ← (1−m)^n s + Σ_k m (1−m)^(n−1−k) u_k``."""
        if not self.unapplied:
            return
        users = np.concatenate([u for u, _ in self.unapplied]).astype(np.int64)
        utility = np.concatenate([x for _, x in self.unapplied])
        self.unapplied.clear()
        if users.size == 0:
            return
        m = self.config.memory
        order = np.argsort(users, kind="stable")
        sorted_users = users[order]
        starts = np.flatnonzero(np.r_[True, sorted_users[1:] != sorted_users[:-1]])
        counts = np.diff(np.r_[starts, sorted_users.size])
        # later[k]: how many of the same user's requests come after request k
        ends = np.repeat(starts + counts, counts)
        later = ends - 1 - np.arange(sorted_users.size)
        weights = m * (1.0 - m) ** later
        touched = sorted_users[starts]
        gained = np.bincount(sorted_users, weights=weights * utility[order], minlength=0)
        s = self.satisfaction
        s[touched] = (1.0 - m) ** counts * s[touched] + gained[touched]

    # --- day boundary ------------------------------------------------------------------
    def churn_probability(self) -> np.ndarray:
        c = self.config
        hazard = c.churn_base_rate * np.exp(c.churn_sensitivity * (c.reference - self.satisfaction))
        return np.minimum(hazard, 1.0)

    def start_day(self, t: float, joined: np.ndarray) -> np.ndarray:
        """Churn and return at the start of a day at hour ``t`` (``joined``: users who have
        arrived by ``t``); returns each user's session-rate multiplier for the day (0 for a
        churned user). Day 0 decides nothing: everyone starts active."""
        c = self.config
        n = self.satisfaction.shape[0]
        churned_today = returned_today = np.zeros(n, dtype=bool)
        if c.churns and t > 0:
            assert self.rng is not None
            u = self.rng.random(n)
            active = joined & ~self.churned
            churned_today = active & (u < self.churn_probability())
            returned_today = self.churned & (u < -np.expm1(-c.return_rate))
            self.churned = (self.churned | churned_today) & ~returned_today
            self.satisfaction[returned_today] = c.reference
            for mask, code in ((churned_today, 1), (returned_today, 2)):
                if mask.any():
                    self.events.append((np.flatnonzero(mask).astype(np.int32), t, code))
        active = joined & ~self.churned
        self._record_day(t, active, churned_today.sum(), returned_today.sum())
        multiplier = np.where(
            self.churned, 0.0, 1.0
        )  # users yet to join: sample_sessions gates them
        if c.session_sensitivity != 0:
            multiplier *= np.exp(c.session_sensitivity * (self.satisfaction - c.reference))
        return multiplier

    def _record_day(self, t: float, active: np.ndarray, churned: int, returned: int) -> None:
        s = self.satisfaction[active]
        q = np.quantile(s, [0.1, 0.5, 0.9]) if s.size else np.full(3, np.nan)
        row = {
            "t": t,
            "n_active": int(active.sum()),
            "n_churned": int(self.churned.sum()),
            "churned_today": int(churned),
            "returned_today": int(returned),
            "satisfaction_mean": float(s.mean()) if s.size else float("nan"),
            "satisfaction_p10": float(q[0]),
            "satisfaction_p50": float(q[1]),
            "satisfaction_p90": float(q[2]),
        }
        if self.config.satiation > 0:
            sat = self.satiation[active] * np.exp(
                -(t - self.t_satiation) / (self.config.satiation_recovery_days * 24.0)
            )
            row["satiation_mean"] = float(sat.sum(axis=1).mean()) if s.size else float("nan")
            row["satiation_top_topic"] = float(sat.max(axis=1).mean()) if s.size else float("nan")
        self.days.append(row)
