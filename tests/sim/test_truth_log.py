"""The logged truth is the world's: every ``logs/truth`` row's ``relevance`` equals
``World.relevance(user, item)`` for the user and item logged in ``logs/impressions`` at the same
(request, position).

Utility, the headline of every study, is summed from ``logs/truth``; a truth row attached to the
wrong slot, the wrong request or the wrong quantity (the conformity-shifted attraction instead of
the intrinsic relevance) would leave every metric formula test green. Here the world is rebuilt
from the run's seed, independently of the run, and scored on the logged pairs.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from conftest import tiny_config

from agents.streams import Streams
from agents.world import build_world
from experiments.config import parse_config
from experiments.run import build_simulation, run
from sim.event_log import scan_table

# Worlds whose relevance is static over a run (no preference drift), so the world rebuilt from
# the seed is the world of every round.
STATIC_WORLDS = {
    "pbm": {},
    # relevance ≠ attraction: logging the conformity-shifted attraction would fail here
    "conformity": {"world.conformity": 1.5, "world.conformity_halflife_days": 1.0},
    "cascade": {"world.click_model": "cascade"},
    # randomized slot orders: a truth row must follow its item to the slot it was shown in
    "shuffled": {"policy.intervention": "shuffle", "policy.intervention.share": 0.5},
}


def _logged_pairs(logs: Path) -> pl.DataFrame:
    """Impressions joined with truth on (request_id, position); checks that they pair 1:1."""
    imp = scan_table(logs, "impressions").select(
        "round", "request_id", "position", "t", "user_id", "item_id"
    )
    truth = scan_table(logs, "truth").select("round", "request_id", "position", "relevance")
    imp_df, truth_df = imp.collect(), truth.collect()
    assert truth_df.height == imp_df.height > 0
    assert truth_df.select("request_id", "position").is_duplicated().sum() == 0
    joined = imp_df.join(truth_df, on=["request_id", "position"], how="inner", suffix="_truth")
    assert joined.height == imp_df.height, "truth rows without an impression (or vice versa)"
    # a request's truth is written in the same round partition as its impressions
    assert (joined["round"] == joined["round_truth"]).all()
    return joined.sort("request_id", "position")


@pytest.mark.parametrize("world", sorted(STATIC_WORLDS))
def test_logged_truth_is_the_worlds_relevance_of_the_logged_pair(world, tmp_path):
    cfg = tiny_config(**STATIC_WORLDS[world])
    run(cfg, tmp_path / "run")
    rc = parse_config(cfg)
    assert rc.world.drift_rate == 0  # relevance static: one rebuilt world scores every round
    rebuilt = build_world(rc.world, Streams(rc.seed))
    pairs = _logged_pairs(tmp_path / "run" / "logs")
    n_rounds = rc.sim.days  # a retrain every day: one round per day
    assert sorted(pairs["round"].unique().to_list()) == list(range(n_rounds))
    expected = rebuilt.relevance(
        pairs["user_id"].to_numpy().astype(np.int64), pairs["item_id"].to_numpy().astype(np.int64)
    )
    logged = pairs["relevance"].to_numpy()
    bad = np.flatnonzero(~np.isclose(logged, expected, rtol=1e-12, atol=0.0))
    assert bad.size == 0, (
        f"{bad.size} of {logged.size} truth rows differ from the world, first: "
        f"{pairs[int(bad[0])].to_dicts()} expected relevance {expected[bad[0]]}"
        if bad.size
        else ""
    )


def test_logged_truth_follows_a_drifting_world(tmp_path):
    """With preference drift the relevance of a pair changes during the run: each row must be the
    relevance in the world *as it was when the slate was served*.

    The world changes only at event boundaries where serving happens (``World.advance``). With
    ``train_hours = 0`` those are the retrain cut-offs (the deployment at the same hour serves
    nothing and has no new clicks to apply), so the world a paused run holds after the cut-off at
    hour ``c`` is the world that serves every request in ``[c, c + 24)``; before the first
    cut-off it is the world rebuilt from the seed.
    """
    # several batches per serving: the world must not change between them
    cfg = tiny_config(
        **{"world.drift_rate": 0.2, "sim.train_hours": 0.0, "sim.max_batch_requests": 97}
    )
    rc = parse_config(cfg)
    simulation = build_simulation(rc, tmp_path / "logs")
    worlds = [(0.0, build_world(rc.world, Streams(rc.seed)))]
    for cutoff in (24.0, 48.0, 72.0):
        simulation.run(until=cutoff)
        assert simulation.state.now == cutoff and not simulation.state.done
        worlds.append((cutoff, copy.deepcopy(simulation.world)))
    simulation.run()
    pairs = _logged_pairs(tmp_path / "logs")
    users = pairs["user_id"].to_numpy().astype(np.int64)
    items = pairs["item_id"].to_numpy().astype(np.int64)
    t = pairs["t"].to_numpy()
    logged = pairs["relevance"].to_numpy()
    ends = [start for start, _ in worlds[1:]] + [np.inf]
    drifted = 0
    for (start, world), end in zip(worlds, ends, strict=True):
        rows = (t >= start) & (t < end)
        assert rows.any()
        np.testing.assert_allclose(
            logged[rows], world.relevance(users[rows], items[rows]), rtol=1e-12, atol=0.0
        )
        drifted += int(
            (world.relevance(users, items) != worlds[0][1].relevance(users, items)).sum()
        )
    assert drifted > 0  # the world did drift: the static rebuild would not have matched
