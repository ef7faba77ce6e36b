"""The closed loop on a living world (issue 17): what arrives, leaves and may be served.

Every check reads the run's own log and the world rebuilt from its config: an item is shown only
while it is in the catalog, a user only after they arrive; chunking stays invisible; the item
metrics count the catalog of the window; a paused run resumes with its catalog.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from conftest import tiny_config

from agents.streams import Streams
from agents.world import build_world
from experiments.config import ConfigError, parse_config
from experiments.run import run
from sim.event_log import scan_table
from sim.metrics import gini

LIVING = {
    "world.item_arrival_rate": 15.0,
    "world.item_lifetime_days": 12.0,
    "world.user_arrival_rate": 25.0,
    "sim.days": 6,
}


def _impressions(run_dir):
    return scan_table(run_dir / "logs", "impressions").collect().sort("request_id", "position")


def _world_of(cfg):
    rc = parse_config(cfg)
    return build_world(rc.world, Streams(rc.seed), days=rc.sim.days)


def _assert_served_only_what_exists(cfg, run_dir):
    world = _world_of(cfg)
    imp = _impressions(run_dir)
    t = imp["t"].to_numpy()
    items = imp["item_id"].to_numpy()
    users = imp["user_id"].to_numpy()
    meta = world.catalog.metadata
    assert np.all(meta.arrival_t[items] <= t), "an item was shown before it arrived"
    assert np.all(t < meta.depart_t[items]), "an item was shown after it left"
    assert np.all(world.users.arrival_t[users] <= t), "a user was served before arriving"
    # the world really is living: new items, departures and new users all happen in the run
    assert np.any(meta.arrival_t[items] > 0)
    assert np.any(meta.depart_t < 6 * 24.0)
    assert np.any(world.users.arrival_t[users] > 0)
    # no slate repeats an item
    slates = imp["item_id"].to_numpy().reshape(-1, cfg["policy"]["slate_size"])
    assert all(np.unique(row).size == row.size for row in slates[:500])


PRESETS = ["greedy", "epsilon_greedy", "random", "item_boost", "softmax", "thompson", "popularity"]


@pytest.mark.parametrize("preset", PRESETS)
def test_only_items_in_the_catalog_and_arrived_users_are_served(preset, tmp_path):
    cfg = tiny_config(f"policy={preset}", **LIVING)
    run(cfg, tmp_path / "run")
    _assert_served_only_what_exists(cfg, tmp_path / "run")


@pytest.mark.parametrize(
    "serving",
    [
        # ~12 requests an hour: offered load ~0.8; the budget degrades the queued ones
        {
            "serving.model_servers": 1,
            "serving.service.mean_ms": 240_000.0,
            "serving.latency_budget_ms": 400_000.0,
        },
        {"serving.cache_ttl_hours": 48.0, "serving.cache_invalidate_on_deploy": False},
    ],
    ids=["budget_fallback", "cache"],
)
def test_the_degraded_fallback_and_the_cache_serve_only_what_exists(serving, tmp_path):
    cfg = tiny_config(**LIVING, **serving)
    run(cfg, tmp_path / "run")
    imp = _impressions(tmp_path / "run")
    if "serving.cache_ttl_hours" in serving:
        assert imp["cache_hit"].any()
    else:
        assert (imp["degraded"].cast(pl.Utf8) == "budget").any()
    _assert_served_only_what_exists(cfg, tmp_path / "run")


def test_chunking_stays_invisible_in_a_living_world(tmp_path):
    kw = {"policy.selector": "epsilon_greedy", "policy.epsilon": 0.3, "policy.name": "eps"}
    whole = tmp_path / "whole"
    chunked = tmp_path / "chunked"
    run(tiny_config(**LIVING, **kw), whole)
    run(tiny_config(**LIVING, **kw, **{"sim.max_batch_requests": 7}), chunked)
    for table in ("impressions", "candidates", "truth"):
        a = scan_table(whole / "logs", table).collect()
        b = scan_table(chunked / "logs", table).collect()
        assert a.equals(b), table
    assert (whole / "metrics.parquet").read_bytes() == (chunked / "metrics.parquet").read_bytes()


def test_item_metrics_count_the_catalog_of_the_window(tmp_path):
    cfg = tiny_config(**LIVING)
    run(cfg, tmp_path / "run")
    world = _world_of(cfg)
    meta = world.catalog.metadata
    imp = _impressions(tmp_path / "run")
    metrics = pl.read_parquet(tmp_path / "run" / "metrics.parquet")
    n = world.catalog.n_items
    for row in metrics.iter_rows(named=True):
        lo, hi = row["t_start"], row["t_end"]
        in_window = (meta.arrival_t < hi) & (meta.depart_t > lo)
        shown = imp.filter((pl.col("t") >= lo) & (pl.col("t") < hi))["item_id"].to_numpy()
        e = np.bincount(shown, minlength=n)[in_window]
        assert row["coverage_exposure"] == pytest.approx((e > 0).mean(), abs=1e-12)
        assert row["gini_exposure"] == pytest.approx(gini(e), abs=1e-12)
        # fewer items than the whole pre-allocated catalog, more than the initial one at the end
        assert in_window.sum() < n


def test_a_catalog_that_shrinks_below_a_request_is_refused_before_anything_runs():
    cfg = tiny_config(
        **{"world.item_lifetime_days": 0.5, "world.item_arrival_rate": 1.0, "sim.days": 6}
    )
    with pytest.raises(ConfigError, match=r"world\.item_lifetime_days=0\.5: the catalog shrinks"):
        parse_config(cfg)


def test_creator_gini_counts_the_creators_in_the_catalog_of_the_window(tmp_path):
    """A creator whose only items have not arrived (or have left) is not a zero in the Gini."""
    cfg = tiny_config(**LIVING, **{"world.new_creator_share": 0.5})
    run(cfg, tmp_path / "run")
    world = _world_of(cfg)
    meta = world.catalog.metadata
    imp = _impressions(tmp_path / "run")
    metrics = pl.read_parquet(tmp_path / "run" / "metrics.parquet")
    creators = meta.creator_id.astype(np.int64)
    n_creators = int(creators.max()) + 1
    for row in metrics.iter_rows(named=True):
        lo, hi = row["t_start"], row["t_end"]
        in_window = (meta.arrival_t < hi) & (meta.depart_t > lo)
        shown = imp.filter((pl.col("t") >= lo) & (pl.col("t") < hi))["item_id"].to_numpy()
        per_creator = np.bincount(creators[shown], minlength=n_creators)
        active = np.zeros(n_creators, dtype=bool)
        active[creators[in_window]] = True
        assert row["creator_gini_exposure"] == pytest.approx(gini(per_creator[active]), abs=1e-12)
        assert active.sum() < n_creators  # some creators are not in this window's catalog
