"""Retention and conversion metrics: who stays, who leaves and comes back, what clicks earn.

Computed only when a run wrote the engagement tables (``logs/engagement.parquet``,
``logs/engagement_days.parquet``) or the conversions table (``logs/conversions/round=*``),
:mod:`sim.engagement_log`; a run without them gets nothing new (no column, no file, no summary
key). When one of them exists every column of :data:`RETENTION_COLUMNS` is added to
``metrics.parquet`` and those that do not apply are NaN in every window (the conversion columns
without conversions, the engagement ones without engagement; the satisfaction without churn or
a session sensitivity, where it stays at the reference by construction) — as the newcomer
columns of :mod:`sim.cold_start_metrics` are in a world without arrivals.

**Who is active.** Churn and return happen only at day boundaries ``t_d = 24 d``
(:mod:`agents.engagement`), so a user's status is constant within a day: user ``u`` is *active on
day d* when they joined before the day ends (``arrival_t < t_{d+1}``) and are not churned after
the events at ``t_d`` (their last churn/return event at ``t ≤ t_d``, if any, is a return). A
user who joins during day ``d`` cannot churn before ``t_{d+1}``, so every user counts as active
on the day they join. (``engagement_days.n_active`` counts only users joined by the boundary
itself; the two agree without user arrivals.)

Per snapshot window ``[t_start, t_end)`` (columns of ``metrics.parquet``):

* ``active_users`` — users active at some moment of the window: joined before ``t_end`` and
  either not churned at ``max(t_start, arrival)`` or returning at a boundary inside the window;
* ``churn_rate`` — churn events at the boundaries in ``[t_start, t_end)`` ÷ the users active just
  before ``t_start``'s events (joined by ``t_start``, not churned by an earlier event): with daily
  windows, the day's churn hazard; NaN when nobody is at risk;
* ``return_rate`` — return events in the window ÷ users churned just before ``t_start``'s events;
  NaN when nobody is churned;
* ``satisfaction_mean`` — mean over the window's day boundaries of the active users' mean
  satisfaction (``engagement_days.satisfaction_mean``); a window without a boundary (windows
  shorter than a day) carries the last one before it;
* ``conversions`` / ``revenue`` / ``conversion_lag_h`` — conversions that *happened* in the
  window (their ``t``), the sum of their ``value``, their mean ``t − click_t`` in hours;
* ``conversion_rate`` — of the window's clicks (``n_clicks``), the share that converted by the end
  of the run, i.e. conversions attributed to the window of their click. Why by click and not
  "conversions in the window ÷ clicks in the window": the click's window is when the policy chose
  the item, so this is P(convert | click) of that window's slates, a share in [0, 1] that arms can
  be compared on; the other ratio mixes clicks of earlier windows (it lags the policy by the mean
  delay and is not a probability). The price: the last windows are censored — clicks within about
  one mean delay of the end have not all converted yet, so their rate is biased low.

Per run (``summary.json``'s ``retention`` block; every key null when its table is absent):
users ever active (joined before the end), active on the last day, churn and return events and
the distinct users behind them, retention of the day-0 cohort after 7/30/60/90 days (null
beyond the run), mean satisfaction over the day boundaries, conversions, the run's conversion
rate (all conversions by the end ÷ all clicks), revenue, mean and median conversion lag, and the
long-term utility per user: the run's ``cumulative_utility`` (true relevance of every clicked
item) ÷ users ever active.

``retention_curves.parquet`` (:data:`CURVES_SCHEMA`): for each cohort — ``joined`` (users who
joined on day ``d``, every day with joiners) and ``active`` (users active on day ``d``, for ``d``
in :data:`ACTIVE_COHORT_DAYS` within the run) — the share still active ``k`` days later,
``k = 0 .. days − 1 − d``, with its counts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from sim.engagement_log import CONVERSIONS, ENGAGEMENT_DAYS_FILE, ENGAGEMENT_FILE
from sim.event_log import logged_rounds, scan_table

HOURS_PER_DAY = 24.0
ENGAGEMENT_COLUMNS = ("active_users", "churn_rate", "return_rate", "satisfaction_mean")
CONVERSION_COLUMNS = ("conversions", "conversion_rate", "revenue", "conversion_lag_h")
RETENTION_COLUMNS = ENGAGEMENT_COLUMNS + CONVERSION_COLUMNS
CURVES_FILE = "retention_curves.parquet"  # run folder
ACTIVE_COHORT_DAYS = (0, 7, 30, 60, 90)  # start days of the "active on day d" cohorts
RETENTION_DAYS = (7, 30, 60, 90)  # the summary's retention of the day-0 cohort after k days
CURVES_SCHEMA: dict[str, pl.DataType] = {
    "cohort": pl.Enum(["joined", "active"]),
    "start_day": pl.Int32(),
    "k": pl.Int32(),  # days since start_day
    "n_cohort": pl.Int64(),
    "n_active": pl.Int64(),  # cohort members active on day start_day + k
    "share": pl.Float64(),  # n_active / n_cohort
}


@dataclass(frozen=True)
class Retention:
    """What :func:`measure_retention` computes."""

    columns: pl.DataFrame  # one row per window, RETENTION_COLUMNS
    curves: pl.DataFrame | None  # CURVES_SCHEMA; None without the engagement tables
    summary: dict[str, Any]


def has_retention_logs(log_root: Path) -> bool:
    """Whether the run wrote the engagement or the conversions tables."""
    return (log_root / ENGAGEMENT_FILE).is_file() or bool(logged_rounds(log_root, CONVERSIONS))


# ---------------------------------------------------------------- who is active


@dataclass(frozen=True)
class Events:
    """The churn and return events (``logs/engagement.parquet``) as arrays."""

    user: np.ndarray  # int64
    t: np.ndarray  # float64, a day boundary
    churn: np.ndarray  # bool: churn (True) or return (False)

    @classmethod
    def read(cls, path: Path) -> Events:
        frame = pl.read_parquet(path)
        return cls(
            frame["user_id"].to_numpy().astype(np.int64),
            frame["t"].to_numpy().astype(np.float64),
            (frame["event"].cast(pl.String) == "churn").to_numpy(),
        )

    def churned_at(self, t: float, n_users: int, inclusive: bool) -> np.ndarray:
        """(n_users,) bool: churned after the events at hours ``< t`` (``≤ t`` if inclusive).
        A user's events alternate churn, return, churn …, so the net count is 0 or 1."""
        sel = self.t <= t if inclusive else self.t < t
        net = np.bincount(
            self.user[sel], weights=np.where(self.churn[sel], 1.0, -1.0), minlength=n_users
        )
        return net > 0.5


def active_days(events: Events, arrival_t: np.ndarray, days: int) -> np.ndarray:
    """(n_users, days) bool: user active on day d (module docstring)."""
    n_users = arrival_t.size
    day = np.rint(events.t / HOURS_PER_DAY).astype(np.int64)
    net = np.zeros((n_users, days + 1), dtype=np.int8)  # +1 churn, −1 return: sums stay 0/1
    np.add.at(net, (events.user, np.minimum(day, days)), np.where(events.churn, 1, -1))
    churned = np.cumsum(net, axis=1, dtype=np.int8)[:, :days] > 0
    joined = arrival_t[:, None] < (np.arange(days) + 1)[None, :] * HOURS_PER_DAY
    return joined & ~churned


def retention_curves(active: np.ndarray, arrival_t: np.ndarray) -> pl.DataFrame:
    """The cohorts' curves (:data:`CURVES_SCHEMA`) from the :func:`active_days` matrix."""
    days = active.shape[1]
    joined_day = np.floor(arrival_t / HOURS_PER_DAY).astype(np.int64)
    cohorts: list[tuple[str, int, np.ndarray]] = [
        ("joined", d, joined_day == d) for d in np.unique(joined_day[joined_day < days])
    ]
    cohorts += [("active", d, active[:, d]) for d in ACTIVE_COHORT_DAYS if d < days]
    frames = []
    for name, start, members in cohorts:  # a loop over cohorts (days), not users
        n = int(members.sum())
        if n == 0:
            continue
        still = active[members][:, start:].sum(axis=0)
        frames.append(
            pl.DataFrame(
                {
                    "cohort": [name] * still.size,
                    "start_day": np.full(still.size, start),
                    "k": np.arange(still.size),
                    "n_cohort": np.full(still.size, n),
                    "n_active": still,
                    "share": still / n,
                },
                schema=CURVES_SCHEMA,
            )
        )
    return pl.concat(frames) if frames else pl.DataFrame(schema=CURVES_SCHEMA)


# ---------------------------------------------------------------- per window


def engagement_columns(
    events: Events,
    days_table: pl.DataFrame,
    arrival_t: np.ndarray,
    t_start: np.ndarray,
    t_end: np.ndarray,
    tracks_satisfaction: bool,
) -> dict[str, np.ndarray]:
    """:data:`ENGAGEMENT_COLUMNS` per window ``[t_start, t_end)`` (module docstring)."""
    n_users, n_windows = arrival_t.size, t_start.size
    out = {c: np.full(n_windows, np.nan) for c in ENGAGEMENT_COLUMNS}
    day_t = days_table["t"].to_numpy().astype(np.float64)
    day_s = days_table["satisfaction_mean"].cast(pl.Float64).fill_null(np.nan).to_numpy()
    for w in range(n_windows):  # a loop over windows (tens), vectorized over users
        lo, hi = t_start[w], t_end[w]
        inside = (events.t >= lo) & (events.t < hi)
        returned_inside = np.zeros(n_users, dtype=bool)
        returned_inside[events.user[inside & ~events.churn]] = True
        churned_start = events.churned_at(lo, n_users, inclusive=True)
        out["active_users"][w] = np.sum((arrival_t < hi) & (~churned_start | returned_inside))
        before = events.churned_at(lo, n_users, inclusive=False)
        at_risk = np.sum((arrival_t <= lo) & ~before)
        if at_risk:
            out["churn_rate"][w] = np.sum(inside & events.churn) / at_risk
        if before.any():
            out["return_rate"][w] = np.sum(inside & ~events.churn) / before.sum()
        if tracks_satisfaction:
            rows = (day_t >= lo) & (day_t < hi)
            if not rows.any():  # no boundary in the window: the last one before it
                rows = day_t == day_t[day_t < lo].max(initial=-np.inf)
            if rows.any():
                out["satisfaction_mean"][w] = float(np.mean(day_s[rows]))
    return out


def read_conversions(log_root: Path) -> pl.DataFrame:
    """Every written conversion (``logs/conversions``), by time then request."""
    return (
        scan_table(log_root, CONVERSIONS)
        .select("request_id", "user_id", "item_id", "click_t", "t", "value")
        .collect()
        .sort("t", "request_id")
    )


def window_of(t: np.ndarray, snapshot_every_hours: float, n_windows: int) -> np.ndarray:
    """The metrics' window of each hour (the last window holds everything after it)."""
    return np.clip(np.floor(t / snapshot_every_hours), 0, n_windows - 1).astype(np.int64)


def conversion_columns(
    conversions: pl.DataFrame, n_clicks: np.ndarray, snapshot_every_hours: float
) -> dict[str, np.ndarray]:
    """:data:`CONVERSION_COLUMNS` per window (``n_clicks``: the window's clicks)."""
    n_windows = n_clicks.size
    t = conversions["t"].to_numpy()
    click_t = conversions["click_t"].to_numpy()
    value = conversions["value"].to_numpy()
    w = window_of(t, snapshot_every_hours, n_windows)
    by_click = np.bincount(window_of(click_t, snapshot_every_hours, n_windows), minlength=n_windows)
    count = np.bincount(w, minlength=n_windows).astype(np.float64)
    return {
        "conversions": count,
        "conversion_rate": _ratio(by_click.astype(np.float64), n_clicks),
        "revenue": np.bincount(w, weights=value, minlength=n_windows),
        "conversion_lag_h": _ratio(np.bincount(w, weights=t - click_t, minlength=n_windows), count),
    }


# ---------------------------------------------------------------- per run


def measure_retention(
    log_root: Path,
    metrics: pl.DataFrame,
    user_arrival_t: np.ndarray,
    horizon: float,
    snapshot_every_hours: float,
    tracks_satisfaction: bool = True,
) -> Retention | None:
    """The retention and conversion metrics of a run (module docstring); None when it wrote
    neither the engagement nor the conversions tables. ``metrics``: its ``metrics.parquet``
    (windows, ``n_clicks``, ``cumulative_utility``); ``user_arrival_t``: every user's joining
    hour (0 = from the start); ``horizon``: the run's last hour."""
    if not has_retention_logs(log_root):
        return None
    m = metrics.sort("window")
    n_windows = m.height
    t_start = m["t_start"].to_numpy().astype(np.float64)
    t_end = m["t_end"].to_numpy().astype(np.float64)
    arrival = np.asarray(user_arrival_t, dtype=np.float64)
    days = max(1, math.ceil(horizon / HOURS_PER_DAY - 1e-9))
    columns = {c: np.full(n_windows, np.nan) for c in RETENTION_COLUMNS}
    summary: dict[str, Any] = {"users_ever_active": int(np.sum(arrival < horizon))}
    summary |= dict.fromkeys(
        (
            "active_at_end",
            "churn_events",
            "return_events",
            "churned_users",
            "returned_users",
            *(f"retention_{k}d" for k in RETENTION_DAYS),
            "satisfaction_mean",
            "satisfaction_final",
        )
    )
    curves = None
    if (log_root / ENGAGEMENT_FILE).is_file():
        events = Events.read(log_root / ENGAGEMENT_FILE)
        days_table = pl.read_parquet(log_root / ENGAGEMENT_DAYS_FILE).sort("t")
        columns |= engagement_columns(
            events, days_table, arrival, t_start, t_end, tracks_satisfaction
        )
        active = active_days(events, arrival, days)
        curves = retention_curves(active, arrival)
        day0 = active[:, 0]
        summary |= {
            "active_at_end": int(active[:, -1].sum()),
            "churn_events": int(events.churn.sum()),
            "return_events": int((~events.churn).sum()),
            "churned_users": int(np.unique(events.user[events.churn]).size),
            "returned_users": int(np.unique(events.user[~events.churn]).size),
        }
        for k in RETENTION_DAYS:
            if k < days and day0.any():
                summary[f"retention_{k}d"] = float(active[day0, k].mean())
        sat = days_table["satisfaction_mean"].cast(pl.Float64).fill_null(np.nan).to_numpy()
        if tracks_satisfaction and np.isfinite(sat).any():
            summary["satisfaction_mean"] = float(np.nanmean(sat))
            summary["satisfaction_final"] = _num(float(sat[-1]))
    n_clicks = m["n_clicks"].cast(pl.Float64).to_numpy()
    conversion_keys = (
        "conversions",
        "conversion_rate",
        "revenue",
        "revenue_per_user",
        "conversion_lag_mean_h",
        "conversion_lag_median_h",
    )
    summary |= dict.fromkeys(conversion_keys)
    if logged_rounds(log_root, CONVERSIONS):
        conversions = read_conversions(log_root)
        columns |= conversion_columns(conversions, n_clicks, snapshot_every_hours)
        lag = (conversions["t"] - conversions["click_t"]).to_numpy()
        revenue = float(conversions["value"].sum())
        summary |= {
            "conversions": conversions.height,
            "conversion_rate": _num(conversions.height / n_clicks.sum())
            if n_clicks.sum()
            else None,
            "revenue": revenue,
            "revenue_per_user": revenue / summary["users_ever_active"]
            if summary["users_ever_active"]
            else None,
            "conversion_lag_mean_h": float(lag.mean()) if lag.size else None,
            "conversion_lag_median_h": float(np.median(lag)) if lag.size else None,
        }
    utility = float(m["cumulative_utility"][-1]) if n_windows else math.nan
    users = summary["users_ever_active"]
    summary["long_term_utility_per_user"] = _num(utility / users) if users else None
    table = pl.DataFrame({c: columns[c] for c in RETENTION_COLUMNS})
    return Retention(table, curves, summary)


def with_retention(metrics: pl.DataFrame, retention: Retention) -> pl.DataFrame:
    """``metrics`` with the :data:`RETENTION_COLUMNS` appended (windows in order)."""
    return pl.concat([metrics.sort("window"), retention.columns], how="horizontal")


def _num(value: float) -> float | None:
    """JSON-safe: NaN/inf become None."""
    return value if math.isfinite(value) else None


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.full(np.shape(num), np.nan)
    np.divide(num, den, out=out, where=np.asarray(den) > 0)
    return out
