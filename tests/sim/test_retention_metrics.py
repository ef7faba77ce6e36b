"""Retention and conversion metrics (sim.retention_metrics) against independent computations:
per-user Python loops over the churn/return events, and polars over the run's own logs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from experiments.run import run
from sim.engagement_log import EVENTS_SCHEMA
from sim.metrics import METRIC_COLUMNS
from sim.retention_metrics import (
    ACTIVE_COHORT_DAYS,
    CURVES_FILE,
    RETENTION_COLUMNS,
    Events,
    active_days,
    engagement_columns,
    retention_curves,
)
from tests.conftest import tiny_config

H = 24.0
ENGAGEMENT = {
    "world.churn": {"base_rate": 0.05, "sensitivity": 10.0},
    "world.return_rate": 0.3,
    "world.satiation": 0.3,
}
CONVERSION = {"world.conversion": {"base": 0.2, "relevance_weight": 1.0, "price_weight": 0.5}}


# ---------------------------------------------------------------- synthetic events


def _synthetic(seed: int, n_users: int, days: int, arrivals: bool):
    """Random arrivals and churn/return events obeying the engine's rules: decisions at day
    boundaries d ≥ 1, only for users joined by then, churn when active, return when churned."""
    rng = np.random.default_rng(seed)
    arrival = np.zeros(n_users)
    if arrivals:
        late = rng.random(n_users) < 0.4
        arrival[late] = rng.uniform(0, days * H, late.sum())
    rows = []
    for u in range(n_users):
        churned = False
        for d in range(1, days):
            if arrival[u] > d * H:
                continue
            if rng.random() < (0.4 if churned else 0.2):
                churned = not churned
                rows.append((u, d * H, "churn" if churned else "return"))
    frame = pl.DataFrame(
        {
            "user_id": [r[0] for r in rows],
            "t": [r[1] for r in rows],
            "event": [r[2] for r in rows],
        },
        schema=EVENTS_SCHEMA,
    )
    return arrival, frame


def _events(frame: pl.DataFrame) -> Events:
    return Events(
        frame["user_id"].to_numpy().astype(np.int64),
        frame["t"].to_numpy().astype(np.float64),
        (frame["event"].cast(pl.String) == "churn").to_numpy(),
    )


def _user_events(frame: pl.DataFrame) -> dict[int, list[tuple[float, str]]]:
    out: dict[int, list[tuple[float, str]]] = {}
    for u, t, e in frame.sort("t").iter_rows():
        out.setdefault(u, []).append((t, e))
    return out


def _churned(events: list[tuple[float, str]], t: float, inclusive: bool) -> bool:
    status = False
    for s, e in events:
        if s < t or (inclusive and s == t):
            status = e == "churn"
    return status


def ref_active(frame: pl.DataFrame, arrival: np.ndarray, days: int) -> np.ndarray:
    """Per user, per day: joined before the day ends and not churned at its boundary."""
    per_user = _user_events(frame)
    out = np.zeros((arrival.size, days), dtype=bool)
    for u in range(arrival.size):
        for d in range(days):
            joined = arrival[u] < (d + 1) * H
            out[u, d] = joined and not _churned(per_user.get(u, []), d * H, inclusive=True)
    return out


def ref_windows(frame: pl.DataFrame, arrival: np.ndarray, bounds: list[tuple[float, float]]):
    """active_users, churn_rate, return_rate per window by a loop over users."""
    per_user = _user_events(frame)
    out = []
    for lo, hi in bounds:
        active = at_risk = churned_before = churns = returns = 0
        for u in range(arrival.size):
            ev = per_user.get(u, [])
            moments = [max(lo, arrival[u])] + [t for t, _ in ev if lo < t < hi]
            if arrival[u] < hi and any(not _churned(ev, s, inclusive=True) for s in moments):
                active += 1
            before = _churned(ev, lo, inclusive=False)
            at_risk += arrival[u] <= lo and not before
            churned_before += before
            churns += sum(lo <= t < hi and e == "churn" for t, e in ev)
            returns += sum(lo <= t < hi and e == "return" for t, e in ev)
        out.append(
            (
                active,
                churns / at_risk if at_risk else math.nan,
                returns / churned_before if churned_before else math.nan,
            )
        )
    return out


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    days=st.integers(1, 12),
    arrivals=st.booleans(),
    window_hours=st.sampled_from([6.0, 24.0, 36.0, 72.0]),
)
def test_active_days_and_windows_match_a_loop_over_users(seed, days, arrivals, window_hours):
    arrival, frame = _synthetic(seed, 25, days, arrivals)
    events = _events(frame)
    active = active_days(events, arrival, days)
    np.testing.assert_array_equal(active, ref_active(frame, arrival, days))
    n_windows = math.ceil(days * H / window_hours)
    lo = np.arange(n_windows) * window_hours
    hi = lo + window_hours
    day_t = np.arange(days) * H
    sat = np.random.default_rng(seed).random(days)
    table = pl.DataFrame({"t": day_t, "satisfaction_mean": sat})
    cols = engagement_columns(events, table, arrival, lo, hi, tracks_satisfaction=True)
    expect = ref_windows(frame, arrival, list(zip(lo, hi, strict=True)))
    for w, (n, churn, ret) in enumerate(expect):
        assert cols["active_users"][w] == n
        np.testing.assert_equal(cols["churn_rate"][w], churn)
        np.testing.assert_equal(cols["return_rate"][w], ret)
        inside = [s for t, s in zip(day_t, sat, strict=True) if lo[w] <= t < hi[w]]
        if not inside:  # no boundary in the window: the last one before it
            inside = [s for t, s in zip(day_t, sat, strict=True) if t < lo[w]][-1:]
        assert cols["satisfaction_mean"][w] == pytest.approx(np.mean(inside))


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), days=st.integers(1, 40), arrivals=st.booleans())
def test_curves_count_each_cohort_by_hand(seed, days, arrivals):
    arrival, frame = _synthetic(seed, 20, days, arrivals)
    active = ref_active(frame, arrival, days)
    curves = retention_curves(active_days(_events(frame), arrival, days), arrival)
    expected = []
    for d in range(days):  # joined cohorts: users whose arrival falls on day d
        members = [u for u in range(arrival.size) if d * H <= arrival[u] < (d + 1) * H]
        for k in range(days - d) if members else ():
            n = sum(active[u, d + k] for u in members)
            expected.append(("joined", d, k, len(members), n))
    for d in (d for d in ACTIVE_COHORT_DAYS if d < days):
        members = [u for u in range(arrival.size) if active[u, d]]
        for k in range(days - d) if members else ():
            expected.append(("active", d, k, len(members), sum(active[u, d + k] for u in members)))
    got = curves.select("cohort", "start_day", "k", "n_cohort", "n_active").rows()
    assert sorted((str(c), *rest) for c, *rest in got) == sorted(expected)
    assert (curves["share"] == curves["n_active"] / curves["n_cohort"]).all()
    assert curves.filter(pl.col("k") == 0)["share"].min() == 1.0  # everyone starts active


# ---------------------------------------------------------------- end to end


def _run(tmp_path: Path, name: str, days: int = 6, **dotted) -> Path:
    cfg = tiny_config(**{"sim.days": days, **dotted})
    out = tmp_path / name
    run(cfg, out)
    return out


@pytest.fixture(scope="module")
def engaged_run(tmp_path_factory) -> Path:
    """Engagement and conversions on, with users joining during the run."""
    return _run(
        tmp_path_factory.mktemp("retention"),
        "on",
        days=8,
        **ENGAGEMENT,
        **CONVERSION,
        **{"world.user_arrival_rate": 20.0},
    )


@pytest.mark.slow
def test_run_columns_and_summary_match_the_logs(engaged_run: Path) -> None:
    logs = engaged_run / "logs"
    metrics = pl.read_parquet(engaged_run / "metrics.parquet").sort("window")
    summary = json.loads((engaged_run / "summary.json").read_text())
    block = summary["retention"]
    assert metrics.columns == [*METRIC_COLUMNS, *RETENTION_COLUMNS]
    days = summary["days"]

    # Who is active: a loop over users over logs/engagement.parquet; arrival hours from the
    # users' first request can only bound them, so the world's arrivals are rebuilt from config.
    from agents.streams import Streams
    from agents.world import build_world
    from experiments.config import parse_config

    rc = parse_config(tiny_config(**{"sim.days": 8, **ENGAGEMENT, **CONVERSION},
                                  **{"world.user_arrival_rate": 20.0}))  # fmt: skip
    arrival = build_world(rc.world, Streams(rc.seed), days=days).users.arrival_t
    assert (arrival > 0).any()
    frame = pl.read_parquet(logs / "engagement.parquet")
    assert frame.filter(pl.col("event") == "churn").height > 0
    bounds = list(zip(metrics["t_start"].to_list(), metrics["t_end"].to_list(), strict=True))
    expect = ref_windows(frame, arrival, bounds)
    for w, (n, churn, ret) in enumerate(expect):
        assert metrics["active_users"][w] == n
        np.testing.assert_allclose(metrics["churn_rate"][w], churn)
        np.testing.assert_allclose(metrics["return_rate"][w], ret)
    active = ref_active(frame, arrival, days)
    assert block["users_ever_active"] == int((arrival < days * H).sum())
    assert block["active_at_end"] == int(active[:, -1].sum())
    assert block["retention_7d"] == pytest.approx(active[active[:, 0], 7].mean())
    assert block["retention_30d"] is None  # the run is 8 days long
    assert block["churn_events"] == frame.filter(pl.col("event") == "churn").height
    assert (
        block["returned_users"] == frame.filter(pl.col("event") == "return")["user_id"].n_unique()
    )
    curves = pl.read_parquet(engaged_run / CURVES_FILE)
    day0 = curves.filter((pl.col("cohort") == "joined") & (pl.col("start_day") == 0)).sort("k")
    assert day0["n_active"].to_list() == active[active[:, 0]].sum(axis=0).tolist()

    # Satisfaction: the day rows of logs/engagement_days.parquet (daily windows)
    days_table = pl.read_parquet(logs / "engagement_days.parquet").sort("t")
    np.testing.assert_allclose(metrics["satisfaction_mean"], days_table["satisfaction_mean"])
    assert block["satisfaction_mean"] == pytest.approx(days_table["satisfaction_mean"].mean())

    # Conversions, revenue, lag: polars over logs/conversions; the rate over the clicks of the
    # impressions log, attributed to the window of the click
    conv = pl.read_parquet(logs / "conversions" / "*" / "*.parquet")
    assert conv.height > 0
    per_window = (
        conv.with_columns((pl.col("t") // H).cast(pl.Int32).alias("window"))
        .group_by("window")
        .agg(pl.len().alias("n"), pl.col("value").sum(), (pl.col("t") - pl.col("click_t")).mean())
    )
    joined = metrics.join(per_window, on="window", how="left")
    np.testing.assert_allclose(joined["conversions"], joined["n"].fill_null(0))
    np.testing.assert_allclose(joined["revenue"], joined["value"].fill_null(0.0))
    np.testing.assert_allclose(joined["conversion_lag_h"], joined["t"].fill_null(np.nan))
    clicks = (
        pl.read_parquet(logs / "impressions" / "*" / "*.parquet")
        .filter(pl.col("clicked"))
        .select("request_id", "item_id", (pl.col("t") // H).cast(pl.Int32).alias("window"))
    )
    converted = clicks.join(conv.select("request_id", "item_id"), on=["request_id", "item_id"])
    rate = (
        clicks.group_by("window")
        .len()
        .join(converted.group_by("window").len().rename({"len": "conv"}), on="window", how="left")
        .sort("window")
    )
    np.testing.assert_allclose(metrics["conversion_rate"], rate["conv"].fill_null(0) / rate["len"])
    assert block["conversions"] == conv.height
    assert block["revenue"] == pytest.approx(conv["value"].sum())
    assert block["conversion_rate"] == pytest.approx(conv.height / clicks.height)
    assert block["conversion_lag_median_h"] == pytest.approx((conv["t"] - conv["click_t"]).median())

    # Long-term utility: true relevance of every clicked item (logs/truth) per user ever active
    truth = pl.read_parquet(logs / "truth" / "*" / "*.parquet")
    clicked = pl.read_parquet(logs / "impressions" / "*" / "*.parquet").filter(pl.col("clicked"))
    utility = clicked.join(truth, on=["request_id", "position"])["relevance"].sum()
    assert block["long_term_utility_per_user"] == pytest.approx(
        utility / block["users_ever_active"]
    )
    assert summary["final"]["active_users"] == metrics["active_users"][-1]
    assert "active_users" not in summary["mean"]  # a count: its final value, not a mean
    assert summary["mean"]["churn_rate"] == pytest.approx(
        metrics["churn_rate"].fill_nan(None).mean()
    )


@pytest.mark.slow
def test_conversions_alone_leave_the_engagement_columns_nan(tmp_path: Path) -> None:
    out = _run(tmp_path, "conv", days=3, **CONVERSION)
    metrics = pl.read_parquet(out / "metrics.parquet")
    assert metrics.columns == [*METRIC_COLUMNS, *RETENTION_COLUMNS]
    for column in ("active_users", "churn_rate", "return_rate", "satisfaction_mean"):
        assert metrics[column].is_nan().all()
    assert metrics["conversions"].sum() > 0
    assert not (out / CURVES_FILE).exists()
    block = json.loads((out / "summary.json").read_text())["retention"]
    assert block["retention_7d"] is None and block["active_at_end"] is None
    assert block["conversions"] == int(metrics["conversions"].sum())


@pytest.mark.slow
def test_satiation_alone_has_no_satisfaction_to_report(tmp_path: Path) -> None:
    """Satiation without churn or a session sensitivity: satisfaction stays at the reference
    by construction, so it is NaN, not a flat line; nobody churns."""
    out = _run(tmp_path, "sat", days=3, **{"world.satiation": 0.5})
    metrics = pl.read_parquet(out / "metrics.parquet")
    assert metrics["satisfaction_mean"].is_nan().all()
    assert (metrics["churn_rate"] == 0).all() and metrics["return_rate"].is_nan().all()
    assert metrics["conversions"].is_nan().all()
    curves = pl.read_parquet(out / CURVES_FILE)
    assert (curves["share"] == 1.0).all()


@pytest.mark.slow
def test_off_writes_nothing_new(tmp_path: Path) -> None:
    out = _run(tmp_path, "off", days=2)
    assert pl.read_parquet(out / "metrics.parquet").columns == list(METRIC_COLUMNS)
    summary = json.loads((out / "summary.json").read_text())
    assert "retention" not in summary
    assert not set(RETENTION_COLUMNS) & set(summary["final"])
    assert not (out / CURVES_FILE).exists()
