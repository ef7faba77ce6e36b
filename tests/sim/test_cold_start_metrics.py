"""Cold-start metrics (:mod:`sim.cold_start_metrics`) against independent computations.

Kaplan–Meier against a product-limit table worked by hand and, without censoring, against the
empirical survival function; the newcomer columns against one plain-Python pass over the rows
of a synthetic two-round log; the run-level block (first impression/click, onboarding, the
hand-off jump, the content map) against hand-made tables; and NaN/None without arrivals.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_serving_metrics import EVERY, N_ITEMS, N_WINDOWS, _impressions, _requests, write_log

from agents.catalog import ItemMetadata
from sim.cold_start_metrics import (
    MIN_HANDOFF_IMPRESSIONS,
    NEWCOMER_COLUMNS,
    handoffs,
    kaplan_meier,
    measure_cold_start,
)
from sim.metrics import METRIC_COLUMNS, measure_log

N_USERS = 40


def test_kaplan_meier_matches_the_hand_worked_table() -> None:
    # durations 2 3 3+ 5 7+ 8 (+ = censored). At t=2: 6 at risk, 1 event → 5/6; t=3: 5 at
    # risk (the censored 3 still is), 1 event → 5/6·4/5 = 2/3; t=5: 3 at risk → 2/3·2/3 = 4/9;
    # t=8: 1 at risk → 0.
    curve = kaplan_meier(np.array([3, 2, 3, 5, 7, 8.0]), np.array([0, 1, 1, 1, 0, 1], bool))
    np.testing.assert_allclose(curve.time, [2, 3, 5, 8])
    np.testing.assert_array_equal(curve.at_risk, [6, 5, 3, 1])
    np.testing.assert_allclose(curve.survival, [5 / 6, 2 / 3, 4 / 9, 0.0])
    assert curve.median == 5.0  # first time with S ≤ 1/2
    assert curve.at(1.0) == 1.0 and curve.at(4.0) == pytest.approx(2 / 3)
    assert curve.at(100.0) == 0.0  # past the follow-up, but everyone was reached
    open_end = kaplan_meier(np.array([1.0, 4.0, 6.0]), np.array([1, 0, 0], bool))
    assert math.isnan(open_end.median)  # S stays at 2/3
    assert open_end.at(5.0) == pytest.approx(2 / 3)
    assert math.isnan(open_end.at(7.0))  # beyond the longest follow-up: unknown
    # S reaches one half exactly at 3 (8/10 · 6/8 · 5/6), which floating point rounds up a hair
    exact_half = kaplan_meier(np.array([1, 1, 2, 2, 3, 4, 4, 4, 4, 4.0]), np.ones(10, bool))
    assert exact_half.median == 3.0
    # restricted mean within 6 of the hand-worked curve: the area under the steps,
    # 2·1 + 1·5/6 + 2·2/3 + 1·4/9
    assert curve.restricted_mean(6.0) == pytest.approx(2 + 5 / 6 + 4 / 3 + 4 / 9)
    assert curve.restricted_mean(20.0) == pytest.approx(2 + 5 / 6 + 4 / 3 + 3 * 4 / 9)  # S=0 at 8
    assert open_end.restricted_mean(5.0) == pytest.approx(1 + 4 * 2 / 3)
    assert math.isnan(open_end.restricted_mean(7.0))  # not followed up to 7


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, 30), min_size=1, max_size=40), st.integers(1, 35))
def test_restricted_mean_without_censoring_is_the_mean_capped_time(durations, tau) -> None:
    d = np.array(durations, dtype=float)
    got = kaplan_meier(d, np.ones(d.size, bool)).restricted_mean(float(tau))
    assert got == pytest.approx(np.mean(np.minimum(d, tau)))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 30), min_size=1, max_size=40))
def test_kaplan_meier_without_censoring_is_the_empirical_survival(durations: list[int]) -> None:
    d = np.array(durations, dtype=float)
    curve = kaplan_meier(d, np.ones(d.size, bool))
    for t in range(0, 32):
        assert curve.at(float(t)) == pytest.approx(np.mean(d > t))
    expected = min(x for x in d if np.mean(d <= x) >= 0.5)
    assert curve.median == expected


def _world(n_items: int = N_ITEMS) -> tuple[ItemMetadata, np.ndarray]:
    arrival = np.zeros(n_items)
    arrival[12:] = [1.0, 4.0, 9.5, 12.0, 15.0, 21.0, 26.0, 35.0]  # the last after the run
    depart = np.full(n_items, np.inf)
    depart[13] = 14.0
    rng = np.random.default_rng(3)
    items = ItemMetadata(
        content=rng.standard_normal((n_items, 3)).astype(np.float32),
        creator_id=np.arange(n_items, dtype=np.int32),
        price=np.ones(n_items, dtype=np.float32),
        arrival_t=arrival,
        depart_t=depart,
    )
    users = np.zeros(N_USERS)
    users[30:] = np.linspace(0.5, 20.0, 10)
    return items, users


def _living_log(tmp_path: Path, items: ItemMetadata) -> pl.DataFrame:
    """The serving tests' synthetic log with items shown only once they arrived."""
    imp = _impressions(_requests())
    arrived = items.arrival_t[imp["item_id"].to_numpy()] <= imp["t"].to_numpy()
    return imp.filter(pl.Series(arrived))


def ref_newcomers(
    rows: list[dict], items: ItemMetadata, users: np.ndarray, new_hours: float, k: int
) -> dict[str, list[float]]:
    """The newcomer columns in one plain pass: requests in id order, counted per user."""
    seen: dict[int, int] = {}
    first_k: set[int] = set()
    for q in sorted({r["request_id"] for r in rows}):
        u = next(r["user_id"] for r in rows if r["request_id"] == q)
        if users[u] > 0 and seen.get(u, 0) < k:
            first_k.add(q)
        seen[u] = seen.get(u, 0) + 1
    out: dict[str, list[float]] = {c: [] for c in NEWCOMER_COLUMNS}
    for w in range(N_WINDOWS):
        sel = [r for r in rows if min(int(r["t"] // EVERY), N_WINDOWS - 1) == w]
        new = [
            r
            for r in sel
            if items.arrival_t[r["item_id"]] > 0
            and r["t"] - items.arrival_t[r["item_id"]] < new_hours
        ]
        mine = [r["relevance"] for r in sel if r["request_id"] in first_k]
        rest = [r["relevance"] for r in sel if r["request_id"] not in first_k]
        out["new_item_exposure_share"].append(len(new) / len(sel))
        out["new_item_ctr"].append(sum(r["clicked"] for r in new) / len(new) if new else math.nan)
        out["new_user_utility"].append(sum(mine) / len(mine) if mine else math.nan)
        out["established_utility"].append(sum(rest) / len(rest))
        horizon = EVERY * N_WINDOWS
        arrived = [a for a in items.arrival_t if 0 < a < horizon and a // EVERY == w]
        out["new_items_arrived"].append(float(len(arrived)))
    return out


def test_newcomer_columns_match_a_plain_pass(tmp_path: Path) -> None:
    items, users = _world()
    imp = _living_log(tmp_path, items)
    root = write_log(tmp_path / "logs", imp, None)
    factors = np.random.default_rng(5).normal(size=(N_ITEMS, 4))
    m = measure_log(
        root, N_ITEMS, factors, EVERY, np.random.default_rng(0), 50, items, users, 0.5, 2
    ).metrics
    assert m.columns == list(METRIC_COLUMNS)
    rows = imp.with_columns(relevance=(pl.col("item_id") / N_ITEMS).cast(pl.Float64)).to_dicts()
    expected = ref_newcomers(rows, items, users, new_hours=12.0, k=2)
    assert sum(np.isfinite(expected["new_user_utility"])) >= 2  # the log exercises it
    assert sum(v > 0 for v in expected["new_item_exposure_share"]) >= 2
    # by hand: arrivals 1.0, 4.0, 9.5 → window 0; 12, 15 → 1; 21, 26 → 2; 35 after the run
    assert expected["new_items_arrived"] == [3.0, 2.0, 2.0]
    for col in NEWCOMER_COLUMNS:
        np.testing.assert_allclose(m[col].to_numpy(), expected[col], rtol=1e-12, err_msg=col)


def test_no_arrivals_gives_nan_columns_and_no_block(tmp_path: Path) -> None:
    items, _ = _world()
    fixed = ItemMetadata(
        content=items.content,
        creator_id=items.creator_id,
        price=items.price,
        arrival_t=np.zeros(N_ITEMS),
    )
    imp = _impressions(_requests())
    root = write_log(tmp_path / "logs", imp, None)
    factors = np.random.default_rng(5).normal(size=(N_ITEMS, 4))
    m = measure_log(
        root, N_ITEMS, factors, EVERY, np.random.default_rng(0), 50, fixed, np.zeros(N_USERS)
    ).metrics
    for col in NEWCOMER_COLUMNS:
        assert m[col].is_nan().all(), col
    assert measure_cold_start(root, fixed, np.zeros(N_USERS), horizon=30.0) is None


def test_run_level_block_matches_hand_made_tables(tmp_path: Path) -> None:
    items, users = _world()
    imp = _living_log(tmp_path, items)
    root = write_log(tmp_path / "logs", imp, None)
    # hand-made item ranks: item 12 hands off at version 2 (v1 had no click), item 14 at
    # version 1; item 15 never; item 16 has a click from its first row (no hand-off)
    ranks = pl.DataFrame(
        {
            "model_version": [0, 1, 2, 0, 1, 2, 1, 2, 2],
            "item_id": [12, 12, 12, 14, 14, 14, 15, 15, 16],
            "n_clicks": [0, 0, 3, 0, 2, 4, 0, 0, 1],
            "rank_pct": [0.2, 0.3, 0.7, 0.5, 0.4, 0.45, 0.1, 0.1, 0.9],
        }
    ).with_columns(t=pl.col("model_version") * 10.0, learned_weight=pl.lit(0.5))
    ranks.write_parquet(root / "item_ranks.parquet")
    pl.DataFrame(
        {
            "request_id": [1, 1, 1, 1, 2, 2, 3],
            "t": [1.0] * 7,
            "user_id": [30, 30, 30, 30, 31, 31, 32],
            "screen": [0, 0, 1, 1, 0, 0, 0],
            "position": [0, 1, 0, 1, 0, 1, 0],
            "item_id": [1, 2, 3, 4, 1, 2, 5],
            "clicked": [True, False, False, True, False, False, True],
            "completed": [True, True, True, True, False, False, False],
        }
    ).write_parquet(root / "onboarding.parquet")
    pl.DataFrame(
        {
            "model_version": [1, 0],
            "lambda": [1.0, 10.0],
            "cv_r2": [0.4, 0.2],
            "n_warm": [100, 90],
            "r2_true": [0.6, 0.3],
            "r2_ceiling": [0.8, 0.8],
            "content_noise": [0.5, 0.5],
        }
    ).write_parquet(root / "content_map.parquet")
    out = measure_cold_start(root, items, users, horizon=30.0)
    assert out is not None
    s = out.summary
    new_ids = [i for i in range(N_ITEMS) if 0 < items.arrival_t[i] < 30.0]
    assert s["new_items"] == len(new_ids) == 7 and s["new_users"] == 10
    # first impression / click per item by a plain pass, censored at min(depart, horizon)
    rows = imp.to_dicts()
    durations, seen, clicks, clicked = [], [], [], []
    for i in new_ids:
        a, end = items.arrival_t[i], min(items.depart_t[i], 30.0)
        shown = [r["t"] for r in rows if r["item_id"] == i]
        hit = [r["t"] for r in rows if r["item_id"] == i and r["clicked"]]
        durations.append(min(shown) - a if shown else end - a)
        seen.append(bool(shown))
        clicks.append(min(hit) - a if hit else end - a)
        clicked.append(bool(hit))
    table = out.items.sort("item_id")
    got = table["first_impression_h"].to_numpy()
    np.testing.assert_allclose(got[np.array(seen)], np.array(durations)[np.array(seen)])
    assert s["first_impression_censored"] == len(seen) - sum(seen)
    assert s["first_click_censored"] == len(clicked) - sum(clicked)
    # the click curve's value at 24 h, by the product-limit formula written out
    d, e = np.array(clicks), np.array(clicked)
    surv = 1.0
    for t in sorted(set(d[e])):
        if t <= 24.0:
            surv *= 1 - np.sum((d == t) & e) / np.sum(d >= t)
    assert s["first_click_within_24h"] == pytest.approx(1 - surv)
    # onboarding: users 30 (completed, 2 screens), 31 (1 screen), 32 (1 screen)
    assert s["onboarding_users"] == 3
    assert s["onboarding_completion_rate"] == pytest.approx(1 / 3)
    assert s["onboarding_mean_screens"] == pytest.approx(4 / 3)
    # hand-off: item 12 jumps 0.7 − 0.3 = 0.4 at v2, item 14 jumps 0.4 − 0.5 = −0.1 at v1
    assert s["handoff_count"] == 2
    assert s["handoff_median_jump_rank"] == pytest.approx((0.4 - 0.1) / 2)
    assert s["handoff_median_abs_jump_rank"] == pytest.approx((0.4 + 0.1) / 2)
    jumps = dict(zip(table["item_id"].to_list(), table["jump_rank"].to_list(), strict=True))
    assert jumps[12] == pytest.approx(0.4) and jumps[14] == pytest.approx(-0.1)
    assert jumps[15] is None and jumps[16] is None
    # content map: the last fit (model_version 1)
    assert s["content_map_model_version"] == 1
    assert (s["content_map_r2_true"], s["content_map_cv_r2"]) == (0.6, 0.4)
    assert (s["content_map_r2_ceiling"], s["content_map_content_noise"]) == (0.8, 0.5)


def test_handoff_ctr_needs_enough_impressions_on_both_models(tmp_path: Path) -> None:
    """jump_ctr = CTR under the hand-off model − under the one before, each over ≥ 20 rows."""
    n = MIN_HANDOFF_IMPRESSIONS
    # item 21 arrives at hour 1: 25 rows under v0 (5 clicks), 20 under v1 (8 clicks);
    # item 22: 25 under v0, 19 under v1 (too few: NaN)
    rows = []
    for item, counts in ((21, ((0, 25, 5), (1, n, 8))), (22, ((0, 25, 5), (1, n - 1, 8)))):
        for version, k, c in counts:
            rows += [(item, version, j < c) for j in range(k)]
    m = len(rows)
    imp = pl.DataFrame(
        {
            "request_id": np.arange(m, dtype=np.int64),
            "t": np.linspace(2.0, 20.0, m),
            "user_id": np.zeros(m, dtype=np.int32),
            "item_id": np.array([r[0] for r in rows], dtype=np.int32),
            "position": np.zeros(m, dtype=np.int16),
            "model_version": np.array([r[1] for r in rows], dtype=np.int32),
            "clicked": [r[2] for r in rows],
        }
    )
    root = tmp_path / "logs"
    path = root / "impressions" / "round=0000" / "part.parquet"
    path.parent.mkdir(parents=True)
    imp.write_parquet(path)
    pl.DataFrame(
        {
            "model_version": [0, 1, 0, 1],
            "item_id": [21, 21, 22, 22],
            "n_clicks": [0, 5, 0, 5],
            "rank_pct": [0.5, 0.6, 0.5, 0.6],
        }
    ).write_parquet(root / "item_ranks.parquet")
    arrival = np.zeros(23)
    arrival[21:] = 1.0
    items = ItemMetadata(
        content=np.ones((23, 2), np.float32),
        creator_id=np.arange(23, dtype=np.int32),
        price=np.ones(23, np.float32),
        arrival_t=arrival,
    )
    out = measure_cold_start(root, items, None, horizon=24.0)
    jump = dict(zip(out.items["item_id"].to_list(), out.items["jump_ctr"].to_list(), strict=True))
    assert jump[21] == pytest.approx(8 / 20 - 5 / 25)
    assert jump[22] is None
    assert out.summary["handoff_ctr_count"] == 1
    assert out.summary["onboarding_users"] is None  # no onboarding log: null, not an error
    assert out.summary["content_map_r2_true"] is None


def test_handoffs_takes_the_first_qualifying_model() -> None:
    ranks = pl.DataFrame(
        {
            "model_version": [3, 1, 2, 4],
            "item_id": [7, 7, 7, 7],
            "n_clicks": [0, 0, 1, 2],  # v2: first click; v3 back to 0 (a window), v4 again
            "rank_pct": [0.1, 0.2, 0.6, 0.9],
        }
    )
    got = handoffs(ranks)
    assert got.height == 1
    row = got.row(0, named=True)
    assert (row["handoff_version"], row["previous_version"]) == (2, 1)
    assert row["jump_rank"] == pytest.approx(0.4)


@pytest.mark.parametrize("users", [None, np.zeros(N_USERS)])
def test_item_arrivals_alone_leave_new_user_utility_nan(tmp_path: Path, users) -> None:
    """Nobody arrives: no request is a new user's, so established utility is the utility."""
    items, _ = _world()
    imp = _living_log(tmp_path, items)
    root = write_log(tmp_path / "logs", imp, None)
    factors = np.random.default_rng(5).normal(size=(N_ITEMS, 4))
    m = measure_log(root, N_ITEMS, factors, EVERY, np.random.default_rng(0), 50, items, users)
    m = m.metrics
    assert m["new_user_utility"].is_nan().all()
    np.testing.assert_allclose(m["established_utility"].to_numpy(), m["utility"].to_numpy())
    assert (m["new_item_exposure_share"] > 0).any()


def test_onboarding_read_from_round_partitions(tmp_path: Path) -> None:
    """``logs/onboarding/round=*/part.parquet`` is read like the single file."""
    from sim.cold_start_metrics import onboarding_summary

    root = tmp_path / "logs"
    assert onboarding_summary(root)["onboarding_users"] is None
    parts = {
        0: {"user_id": [5, 5, 6], "screen": [0, 1, 0], "completed": [True, True, False]},
        1: {"user_id": [7, 7, 7], "screen": [0, 1, 2], "completed": [True, True, True]},
    }
    for rnd, cols in parts.items():
        path = root / "onboarding" / f"round={rnd:04d}" / "part.parquet"
        path.parent.mkdir(parents=True)
        n = len(cols["user_id"])
        pl.DataFrame(
            cols
            | {
                "request_id": list(range(n)),
                "t": [1.0] * n,
                "position": [0] * n,
                "item_id": [1] * n,
                "clicked": [False] * n,
            }
        ).cast({"user_id": pl.Int32, "screen": pl.Int16}).write_parquet(path)
    got = onboarding_summary(root)
    # users 5 (2 screens, completed), 6 (1 screen), 7 (3 screens, completed)
    assert got == {
        "onboarding_users": 3,
        "onboarding_completion_rate": pytest.approx(2 / 3),
        "onboarding_mean_screens": pytest.approx(2.0),
    }
