"""Engagement and conversions in the closed loop (tiny runs): churned users do not come back
until they return, conversions land in the round in which they happen and belong to a logged
click, the outcome does not depend on batching, and with everything off nothing changes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from conftest import tiny_config

from agents.streams import Streams
from agents.world import build_world
from experiments.config import parse_config
from experiments.run import run

ON = {
    "world.churn": {"base_rate": 0.08, "sensitivity": 6.0},
    "world.return_rate": 0.4,
    "world.satisfaction": {"memory": 0.3, "reference": 0.2, "session_sensitivity": 1.0},
    "world.satiation": 0.5,
    "world.conversion": {"base": 0.3, "relevance_weight": 1.0, "price_weight": 0.5},
    "world.conversion_delay": {"distribution": "exponential", "mean_hours": 20.0, "shape": 1.0},
    "world.user_arrival_rate": 30.0,
    "sim.days": 6,
}


@pytest.fixture(scope="module")
def on_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("engagement") / "run"
    run(tiny_config(**ON), out)
    return out


def test_conversions_land_in_the_round_they_happen_and_join_a_logged_click(on_run):
    logs = on_run / "logs"
    rounds = sorted(p.name for p in (logs / "conversions").iterdir())
    assert rounds == sorted(p.name for p in (logs / "impressions").iterdir())  # one each
    conv = pl.read_parquet(logs / "conversions", hive_partitioning=True)
    assert conv.height > 20
    # round r holds [24 r, 24 (r + 1)): retrain daily, the last round ends at the horizon
    lo, hi = conv["round"] * 24.0, (conv["round"] + 1) * 24.0
    assert ((conv["t"] >= lo) & (conv["t"] < hi)).all()
    assert (conv["t"] > conv["click_t"]).all()
    shown = pl.read_parquet(logs / "impressions", hive_partitioning=False)
    clicks = shown.filter(pl.col("clicked"))
    joined = conv.join(
        clicks.select("request_id", "item_id", "user_id", pl.col("t").alias("shown_t")),
        on=["request_id", "item_id"],
        how="left",
    )
    assert joined["shown_t"].null_count() == 0  # each conversion is of a logged click
    assert (joined["user_id"] == joined["user_id_right"]).all()
    assert (joined["shown_t"] == joined["click_t"]).all()
    world = build_world(parse_config(tiny_config(**ON)).world, Streams(0), days=6)
    price = world.catalog.metadata.price[conv["item_id"].to_numpy()]
    np.testing.assert_array_equal(conv["value"].to_numpy(), price.astype(np.float64))
    # each click converts at most once
    assert conv.select("request_id", "item_id").is_duplicated().sum() == 0


def test_churned_users_send_no_request_until_they_return(on_run):
    logs = on_run / "logs"
    events = pl.read_parquet(logs / "engagement.parquet")
    assert events.filter(pl.col("event") == "churn").height > 0
    assert events.filter(pl.col("event") == "return").height > 0
    requests = pl.read_parquet(logs / "impressions").select("request_id", "user_id", "t").unique()
    # each user's status by day from the events alone (an independent replay)
    away: dict[int, list[tuple[float, float]]] = {}
    for user, t, event in events.sort("t").iter_rows():
        if event == "churn":
            away.setdefault(user, []).append((t, np.inf))
        else:
            start, _ = away[user].pop()
            away[user].append((start, t))
    seen = requests.filter(pl.col("user_id").is_in(list(away)))
    for user, t in seen.select("user_id", "t").iter_rows():
        assert not any(a <= t < b for a, b in away[user]), (user, t, away[user])
    days = pl.read_parquet(logs / "engagement_days.parquet")
    assert days["t"].to_list() == [24.0 * d for d in range(6)]
    # churned so far = churns - returns up to each boundary
    for t, n_churned in days.select("t", "n_churned").iter_rows():
        upto = events.filter(pl.col("t") <= t)
        want = (upto["event"] == "churn").sum() - (upto["event"] == "return").sum()
        assert n_churned == want


def test_batching_does_not_change_anything(on_run, tmp_path):
    other = tmp_path / "small_batches"
    run(tiny_config(**{**ON, "sim.max_batch_requests": 29}), other)
    files = sorted(p.relative_to(on_run) for p in (on_run / "logs").rglob("*.parquet"))
    assert files == sorted(p.relative_to(other) for p in (other / "logs").rglob("*.parquet"))
    for name in [*files, Path("metrics.parquet")]:
        assert pl.read_parquet(on_run / name).equals(pl.read_parquet(other / name)), name


def test_off_by_default_writes_no_new_table(run_tiny):
    out = run_tiny()
    logs = out / "logs"
    assert not (logs / "conversions").exists()
    assert not (logs / "engagement.parquet").exists()
    assert not (logs / "engagement_days.parquet").exists()


def test_unhappy_users_churn_more(tmp_path):
    """Sensitivity links churn to satisfaction: at a high reference (everyone below it) far
    more users churn than at a low one (everyone above it), same seed."""
    counts = []
    for reference in (0.0, 2.0):
        cfg = tiny_config(
            **{
                "world.churn": {"base_rate": 0.05, "sensitivity": 2.0},
                "world.satisfaction": {
                    "memory": 0.5,
                    "reference": reference,
                    "session_sensitivity": 0.0,
                },
                "sim.days": 5,
            }
        )
        out = tmp_path / f"reference_{reference}"
        run(cfg, out)
        events = pl.read_parquet(out / "logs" / "engagement.parquet")
        counts.append(int((events["event"] == "churn").sum()))
    assert counts[1] > 2 * counts[0] > 0
