"""Onboarding end to end: who is asked, what they answer, where it goes, what it leaves alone."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from conftest import tiny_config

from agents.streams import Streams
from agents.world import WorldConfig, build_world
from experiments.run import run
from sim.event_log import scan_table
from sim.onboarding import OnboardingRandomness, elicit

REPO = Path(__file__).resolve().parents[2]
N_USERS = 300  # the tiny world's initial users (conftest.TINY_OVERRIDES)
ONBOARDING_DTYPES = {  # the table's contract, written out independently
    "request_id": pl.Int64,
    "t": pl.Float64,
    "user_id": pl.Int32,
    "screen": pl.Int16,
    "position": pl.Int16,
    "item_id": pl.Int32,
    "clicked": pl.Boolean,
    "completed": pl.Boolean,
}
LIVING = {"world.user_arrival_rate": 40.0, "world.item_arrival_rate": 5.0}


def _world(n_users: int = 4000):
    return build_world(WorldConfig(n_users=n_users, n_items=60, dim=8), Streams(0))


@pytest.mark.parametrize(("q", "d"), [(3, 0.2), (2, 0.5), (5, 0.1), (1, 0.0)])
def test_completion_and_screens_answered_follow_the_drop_rate(q, d):
    world = _world()
    n = world.users.n_users
    screens = np.arange(q * 4).reshape(q, 4)
    ans = elicit(
        world,
        np.arange(n),
        np.zeros(n),
        screens,
        d,
        OnboardingRandomness.from_streams(Streams(1)),
    )
    p = (1 - d) ** q
    assert abs(ans.completed.mean() - p) <= 4 * np.sqrt(p * (1 - p) / n) + 1e-12
    # Screens answered: 1 + the leading run of "go on", capped at q.
    expected = np.array([(1 - d) ** (s - 1) * (d if s < q else 1) for s in range(1, q + 1)])
    counts = np.bincount(ans.n_answered, minlength=q + 1)[1:]
    sd = np.sqrt(expected * (1 - expected) / n)
    assert np.all(np.abs(counts / n - expected) <= 4 * sd + 1e-12)
    assert np.all(ans.n_answered[ans.completed] == q)
    unanswered = np.arange(q)[None, :] >= ans.n_answered[:, None]
    assert not ans.clicked[unanswered].any()


def test_clicks_follow_the_true_attraction():
    world = _world()
    n = world.users.n_users
    screens = np.arange(12).reshape(3, 4)
    ans = elicit(
        world,
        np.arange(n),
        np.zeros(n),
        screens,
        0.0,
        OnboardingRandomness.from_streams(Streams(2)),
    )
    # Position-based clicks: P(click) = θ_position · relevance, per screen.
    theta = world.click_model.examination(4)
    rel = world.relevance(np.arange(n)[:, None, None], np.broadcast_to(screens, (n, 3, 4)))
    want = (theta[None, None, :] * rel).mean(axis=0)
    got = ans.clicked.mean(axis=0)
    assert np.all(np.abs(got - want) <= 4 * np.sqrt(want * (1 - want) / n) + 1e-9)


def test_answers_do_not_depend_on_how_requests_are_split():
    world = _world(200)
    users = np.arange(200)
    screens = np.arange(15).reshape(3, 5)
    whole = elicit(
        world, users, np.zeros(200), screens, 0.3, OnboardingRandomness.from_streams(Streams(3))
    )
    rand = OnboardingRandomness.from_streams(Streams(3))
    parts = [
        elicit(world, users[a:b], np.zeros(b - a), screens, 0.3, rand)
        for a, b in ((0, 7), (7, 200))
    ]
    np.testing.assert_array_equal(whole.clicked, np.concatenate([p.clicked for p in parts]))
    np.testing.assert_array_equal(whole.completed, np.concatenate([p.completed for p in parts]))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Tiny living worlds: onboarding on, on with small batches, and off."""
    root = tmp_path_factory.mktemp("onboarding")
    out = {}
    for name, extra in (
        ("on", {"onboarding.enabled": True}),
        ("on_chunked", {"onboarding.enabled": True, "sim.max_batch_requests": 16}),
        ("off", {}),
    ):
        run(tiny_config(**LIVING, **extra), root / name)
        out[name] = root / name
    return out


def _table(run_dir: Path) -> pl.DataFrame:
    return pl.read_parquet(run_dir / "logs" / "onboarding.parquet")


def _impressions(run_dir: Path) -> pl.DataFrame:
    return scan_table(run_dir / "logs", "impressions").collect().sort("request_id", "position")


def test_table_schema(runs):
    table = _table(runs["on"])
    assert dict(table.schema) == ONBOARDING_DTYPES
    assert table.height > 0
    assert not (runs["off"] / "logs" / "onboarding.parquet").exists()


def test_only_new_users_are_onboarded_once_at_their_first_request(runs):
    table = _table(runs["on"])
    imp = _impressions(runs["on"])
    per_request = table.group_by("request_id").agg(
        pl.col("user_id").first(), pl.col("t").first(), pl.col("user_id").n_unique().alias("n")
    )
    assert (per_request["n"] == 1).all()
    assert per_request["user_id"].min() >= N_USERS  # arrived after hour 0
    assert per_request["user_id"].n_unique() == per_request.height  # each once
    first = imp.group_by("user_id").agg(pl.col("request_id").min(), pl.col("t").min())
    new = first.filter(pl.col("user_id") >= N_USERS).sort("user_id")
    # Every new user who made a request was onboarded, at that first request.
    assert new.select("user_id", "request_id", "t").equals(
        per_request.sort("user_id").select("user_id", "request_id", "t")
    )


def test_answered_screens_are_whole_and_completion_is_per_request(runs):
    table = _table(runs["on"])
    slots = table.group_by("request_id", "screen").len()
    assert (slots["len"] == 5).all()  # items_per_screen
    per = table.group_by("request_id").agg(
        pl.col("screen").max(),
        pl.col("completed").n_unique().alias("k"),
        pl.col("completed").first(),
    )
    assert (per["k"] == 1).all()
    assert per.filter(pl.col("completed"))["screen"].eq(2).all()
    shown = table.group_by("request_id", "screen").agg(pl.col("item_id").sort())
    assert shown.group_by("screen").agg(pl.col("item_id").n_unique())["item_id"].min() >= 1


def test_impressions_hold_no_onboarding_rows(runs):
    on, off = _impressions(runs["on"]), _impressions(runs["off"])
    # The same requests, each with one full slate: onboarding added no impression.
    keys = ["request_id", "t", "user_id", "position"]
    assert on.select(keys).equals(off.select(keys))
    m_on = pl.read_parquet(runs["on"] / "metrics.parquet")
    m_off = pl.read_parquet(runs["off"] / "metrics.parquet")
    assert m_on["n_requests"].equals(m_off["n_requests"])


def test_clickers_are_served_by_the_model_at_once_and_non_clickers_stay_cold(runs):
    table = _table(runs["on"])
    answered = table.group_by("request_id").agg(pl.col("clicked").any().alias("answered"))
    imp = _impressions(runs["on"])
    first = (
        imp.filter(pl.col("position") == 0)
        .join(answered, on="request_id")
        .filter(pl.col("model_version") >= 0)
    )
    assert (first.filter(~pl.col("answered"))["source"] == "popularity_fallback").all()
    clickers = first.filter(pl.col("answered"))
    assert (clickers["source"] == "als").sum() > 0
    # A clicker left cold clicked only items without factors: none clicked before the cut-off
    # of the model serving (no clicks in its training log).
    cutoff = pl.read_parquet(runs["on"] / "logs" / "deployments.parquet").select(
        "model_version", "t_train_start"
    )
    cold = clickers.filter(pl.col("source") != "als").join(cutoff, on="model_version")
    for row in cold.iter_rows(named=True):
        items = table.filter((pl.col("request_id") == row["request_id"]) & pl.col("clicked"))
        trained = imp.filter(
            pl.col("clicked")
            & (pl.col("t") < row["t_train_start"])
            & pl.col("item_id").is_in(items["item_id"].implode())
        )
        assert trained.height == 0
    # Without onboarding the same new users' first requests fall back to popularity.
    off = _impressions(runs["off"]).filter(
        pl.col("request_id").is_in(first["request_id"].implode()) & (pl.col("position") == 0)
    )
    assert (off["source"] == "popularity_fallback").all()


def test_batching_does_not_change_anything(runs):
    a, b = runs["on"], runs["on_chunked"]
    assert _table(a).equals(_table(b))
    assert _impressions(a).equals(_impressions(b))
    assert (a / "metrics.parquet").read_bytes() == (b / "metrics.parquet").read_bytes()


def _log_bytes(run_dir: Path) -> dict[str, bytes]:
    files = [*sorted((run_dir / "logs").rglob("*.parquet")), run_dir / "metrics.parquet"]
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in files}


def test_disabled_or_without_new_users_gives_byte_identical_logs(tmp_path):
    base = tiny_config(**{"world.item_arrival_rate": 5.0})
    run(base, tmp_path / "default")
    absent = {k: v for k, v in base.items() if k != "onboarding"}  # as before the section
    run(absent, tmp_path / "absent")
    enabled = tiny_config(**{"world.item_arrival_rate": 5.0, "onboarding.enabled": True})
    run(enabled, tmp_path / "no_new_users")
    want = _log_bytes(tmp_path / "default")
    assert _log_bytes(tmp_path / "absent") == want
    got = _log_bytes(tmp_path / "no_new_users")
    assert got.pop("logs/onboarding.parquet") and got == want
    assert _table(tmp_path / "no_new_users").height == 0


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["onboarding.enabled=true", "onboarding.screens=40", "onboarding.items_per_screen=5"],
            "recloop: error: onboarding.screens=40: screens × items_per_screen = 200",
        ),
        (["onboarding.screens=0"], "recloop: error: onboarding.screens=0"),
        (["onboarding.items_per_screen=-2"], "recloop: error: onboarding.items_per_screen=-2"),
        (["onboarding.drop_per_screen=1"], "recloop: error: onboarding.drop_per_screen=1"),
        (
            ["onboarding.enabled=true", "policy/scorer=bpr"],
            "recloop: error: onboarding.enabled=true: folds the answers into ALS item factors;"
            " policy.scorer='bpr'",
        ),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, args, expected):
    out = tmp_path / "out"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "experiments.cli",
            "world.n_items=150",
            *args,
            f"hydra.run.dir={out}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(expected), proc.stderr
    assert not out.exists()
