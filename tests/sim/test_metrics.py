"""Tests of ``sim.metrics`` against the definitions in its module docstring.

Every expected value is computed here independently (plain Python / numpy / polars), never read
back from the code under test. The end-to-end test re-derives every per-window metric from the
impression and truth parquet files of a real run and compares with ``metrics.parquet``.
"""

from __future__ import annotations

import itertools
import math
import zlib
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from reports.inequality import lorenz as lorenz_curve
from sim.metrics import (
    CONSTRAINT_COLUMNS,
    METRIC_COLUMNS,
    NEWCOMER_COLUMNS,
    OBJECTIVE_COLUMNS,
    compute_metrics,
    gini,
    mean_jaccard,
    popularity_percentile,
    slate_diversity,
)

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- independent reference implementations ---------------------------------------------------


def ref_gini(x) -> float:
    """Mean-absolute-difference Gini: Σ_i Σ_j |x_i − x_j| / (2 n² mean); NaN if Σx = 0."""
    x = np.asarray(x, dtype=np.float64)
    n = x.size
    if n == 0 or x.sum() <= 0:
        return float("nan")
    return float(np.abs(x[:, None] - x[None, :]).sum() / (2.0 * n * n * x.mean()))


def ref_percentiles(values) -> np.ndarray:
    """(average 1-based rank − 0.5) / n, ties sharing their average rank (pure Python)."""
    values = list(values)
    n = len(values)
    order = sorted(range(n), key=lambda i: values[i])
    out = [0.0] * n
    pos = 0
    while pos < n:
        end = pos
        while end + 1 < n and values[order[end + 1]] == values[order[pos]]:
            end += 1
        avg_rank = (pos + 1 + end + 1) / 2.0
        for j in range(pos, end + 1):
            out[order[j]] = (avg_rank - 0.5) / n
        pos = end + 1
    return np.array(out)


def ref_jaccard_pairs(users, items, n_pairs, rng) -> float:
    """Replicates the documented pair draws (a uniform, b = (a + U{1..m−1}) % m over the sorted
    distinct users) and computes Jaccard with Python sets."""
    distinct = sorted(set(int(u) for u in users))
    m = len(distinct)
    if m < 2:
        return float("nan")
    sets = {u: set() for u in distinct}
    for u, i in zip(users, items, strict=True):
        sets[int(u)].add(int(i))
    a = rng.integers(0, m, size=n_pairs)
    b = (a + rng.integers(1, m, size=n_pairs)) % m
    vals = []
    for ia, ib in zip(a, b, strict=True):
        sa, sb = sets[distinct[ia]], sets[distinct[ib]]
        vals.append(len(sa & sb) / len(sa | sb))
    return sum(vals) / len(vals)


def ref_slate_diversity(vectors: np.ndarray) -> float:
    """Mean over unordered pairs of 1 − cos, brute force; NaN for a single item."""
    k = len(vectors)
    if k < 2:
        return float("nan")
    d = []
    for i, j in itertools.combinations(range(k), 2):
        a, b = vectors[i], vectors[j]
        d.append(1.0 - float(a @ b) / (np.linalg.norm(a) * np.linalg.norm(b)))
    return sum(d) / len(d)


def homogenization_rng(seed: int) -> np.random.Generator:
    """The ``metrics.homogenization`` stream, derived independently from the Streams contract."""
    ss = np.random.SeedSequence(seed, spawn_key=(zlib.crc32(b"metrics.homogenization"),))
    return np.random.Generator(np.random.PCG64(ss))


# --- gini ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("x", "expected"),
    [
        ([3, 3, 3, 3], 0.0),
        ([0, 0, 0, 5], 0.75),  # one item takes all: 1 − 1/n
        ([0, 0, 0, 0, 0, 0, 0, 0, 0, 1], 0.9),
        ([0, 0, 1, 1], 0.5),
        ([1, 1, 0, 0], 0.5),
        ([1, 2, 3, 4, 5], 4 / 15),
        ([0, 1], 0.5),
        ([7], 0.0),
        ([1, 3], 0.25),  # |1−3|·2 / (2·4·2)
    ],
)
def test_gini_textbook(x, expected):
    assert gini(np.array(x)) == pytest.approx(expected, abs=1e-12)
    assert ref_gini(x) == pytest.approx(expected, abs=1e-12)  # the reference agrees too


@pytest.mark.parametrize("x", [[], [0], [0, 0, 0], [0.0, 0.0]])
def test_gini_undefined_is_nan(x):
    assert math.isnan(gini(np.array(x, dtype=float)))


def test_gini_one_takes_all_is_one_minus_one_over_n():
    for n in (1, 2, 3, 10, 1000):
        x = np.zeros(n)
        x[n // 2] = 42.0
        assert gini(x) == pytest.approx(1 - 1 / n, abs=1e-12)


def test_gini_accepts_integer_counts():
    assert gini(np.array([0, 0, 2, 2], dtype=np.int64)) == pytest.approx(0.5)
    assert gini([1, 2, 3, 4, 5]) == pytest.approx(4 / 15)


nonneg_vectors = arrays(
    np.float64,
    st.integers(1, 40),
    elements=st.floats(0, 1e6, allow_nan=False, allow_infinity=False, allow_subnormal=False),
).filter(lambda a: a.sum() > 0)


@FAST
@given(nonneg_vectors)
def test_gini_matches_mean_absolute_difference(x):
    assert gini(x) == pytest.approx(ref_gini(x), rel=1e-9, abs=1e-9)


@FAST
@given(
    arrays(np.int64, st.integers(1, 40), elements=st.integers(0, 50)).filter(lambda a: a.sum() > 0)
)
def test_gini_matches_mad_on_counts(x):
    assert gini(x) == pytest.approx(ref_gini(x), rel=1e-9, abs=1e-12)


@FAST
@given(nonneg_vectors, st.floats(1e-3, 1e3))
def test_gini_scale_invariant(x, c):
    assert gini(c * x) == pytest.approx(gini(x), rel=1e-9, abs=1e-9)


@FAST
@given(nonneg_vectors, st.integers(0, 2**32 - 1))
def test_gini_permutation_invariant(x, seed):
    perm = np.random.default_rng(seed).permutation(x.size)
    assert gini(x[perm]) == pytest.approx(gini(x), rel=1e-12, abs=1e-12)


@FAST
@given(nonneg_vectors)
def test_gini_bounds(x):
    g = gini(x)
    n = x.size
    assert -1e-12 <= g <= 1 - 1 / n + 1e-12


# --- lorenz curve ----------------------------------------------------------------------------


@FAST
@given(nonneg_vectors)
def test_lorenz_curve_shape_and_gini_relation(x):
    share_items, cum = lorenz_curve(x)
    n = x.size
    np.testing.assert_allclose(share_items, np.arange(n + 1) / n)
    assert cum[0] == 0.0
    assert cum[-1] == pytest.approx(1.0)
    assert np.all(np.diff(cum) >= -1e-12)
    assert np.all(cum <= share_items + 1e-9)  # below the equality line
    # G = 1 − Σ_k (L_{k−1} + L_k) / n (trapezoid area under the Lorenz curve)
    trapezoid = float(np.sum(cum[:-1] + cum[1:]) / n)
    assert 1 - trapezoid == pytest.approx(ref_gini(x), abs=1e-9)


def test_lorenz_curve_zero_total_is_undefined():
    share_items, cum = lorenz_curve(np.zeros(3))
    np.testing.assert_allclose(share_items, [0, 1 / 3, 2 / 3, 1])
    assert np.isnan(cum).all()


# --- popularity percentile -------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 7, 100])
def test_popularity_percentile_all_ties_is_half(n):
    np.testing.assert_allclose(popularity_percentile(np.full(n, 3.0)), 0.5)
    np.testing.assert_allclose(popularity_percentile(np.zeros(n)), 0.5)


def test_popularity_percentile_strictly_increasing():
    n = 8
    counts = np.array([0, 1, 4, 5, 9, 20, 21, 100])
    np.testing.assert_allclose(popularity_percentile(counts), (np.arange(1, n + 1) - 0.5) / n)
    # order of the input does not matter, only ranks
    perm = np.array([3, 0, 7, 1, 6, 2, 5, 4])
    np.testing.assert_allclose(
        popularity_percentile(counts[perm]), (np.arange(1, n + 1)[perm] - 0.5) / n
    )


def test_popularity_percentile_mixed_ties():
    # 0s share ranks 1,2 → 1.5; 1 → 3; 2 → 4
    np.testing.assert_allclose(
        popularity_percentile(np.array([2, 0, 1, 0])), [0.875, 0.25, 0.625, 0.25]
    )


@FAST
@given(arrays(np.int64, st.integers(1, 50), elements=st.integers(0, 6)))
def test_popularity_percentile_matches_average_rank(x):
    pct = popularity_percentile(x)
    np.testing.assert_allclose(pct, ref_percentiles(x.tolist()), rtol=1e-12)
    assert np.all((pct > 0) & (pct < 1))
    assert pct.mean() == pytest.approx(0.5)


# --- homogenization (mean Jaccard) -----------------------------------------------------------


@FAST
@given(
    st.lists(st.tuples(st.integers(0, 12), st.integers(0, 9)), min_size=0, max_size=60),
    st.integers(1, 40),
    st.integers(0, 2**32 - 1),
)
def test_mean_jaccard_matches_python_sets(pairs, n_pairs, seed):
    users = np.array([p[0] for p in pairs], dtype=np.int32)
    items = np.array([p[1] for p in pairs], dtype=np.int64)
    got = mean_jaccard(users, items, 10, n_pairs, np.random.default_rng(seed))
    expected = ref_jaccard_pairs(users, items, n_pairs, np.random.default_rng(seed))
    if math.isnan(expected):
        assert math.isnan(got)
    else:
        assert got == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_mean_jaccard_identical_sets_is_one():
    users = np.repeat([4, 9, 2, 30], 3)
    items = np.tile([1, 5, 7], 4)
    assert mean_jaccard(users, items, 8, 200, np.random.default_rng(0)) == pytest.approx(1.0)


def test_mean_jaccard_disjoint_sets_is_zero():
    users = np.array([0, 0, 1, 1, 2, 5])
    items = np.array([0, 1, 2, 3, 4, 5])
    assert mean_jaccard(users, items, 6, 200, np.random.default_rng(0)) == 0.0


def test_mean_jaccard_duplicates_are_sets_not_counts():
    # user 0 clicked item 1 three times and item 2 once; user 1 clicked item 1 once → J = 1/2
    users = np.array([0, 0, 0, 0, 1])
    items = np.array([1, 1, 1, 2, 1])
    assert mean_jaccard(users, items, 3, 50, np.random.default_rng(1)) == pytest.approx(0.5)


def test_mean_jaccard_never_pairs_a_user_with_itself():
    # two users with disjoint sets: any self-pair would push the mean above 0
    users = np.array([3, 8])
    items = np.array([0, 1])
    assert mean_jaccard(users, items, 2, 1000, np.random.default_rng(2)) == 0.0


def test_mean_jaccard_fewer_than_two_users_is_nan():
    assert math.isnan(
        mean_jaccard(
            np.array([], dtype=int), np.array([], dtype=int), 3, 10, np.random.default_rng(0)
        )
    )
    assert math.isnan(
        mean_jaccard(np.array([2, 2]), np.array([0, 1]), 3, 10, np.random.default_rng(0))
    )


# --- intra-list diversity --------------------------------------------------------------------


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@FAST
@given(
    st.lists(st.integers(1, 8), min_size=1, max_size=12),
    st.integers(2, 6),
    st.integers(0, 2**32 - 1),
)
def test_slate_diversity_matches_brute_force(sizes, dim, seed):
    rng = np.random.default_rng(seed)
    ids = rng.choice(10_000, size=len(sizes), replace=False)  # arbitrary, not sorted
    request_index = np.repeat(ids, sizes)
    vectors = _unit(rng.standard_normal((request_index.size, dim)))
    got = slate_diversity(request_index, vectors)
    assert got.shape == (len(sizes),)
    start = 0
    for s, size in enumerate(sizes):
        exp = ref_slate_diversity(vectors[start : start + size])
        start += size
        if size == 1:
            assert math.isnan(got[s])
        else:
            assert got[s] == pytest.approx(exp, abs=1e-9)


def test_slate_diversity_known_values():
    e1, e2 = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    request_index = np.array([0, 0, 1, 1, 2, 2, 2, 3])
    vectors = np.array([e1, e1, e1, -e1, e1, e2, -e1, e2])
    got = slate_diversity(request_index, vectors)
    # identical → 0; opposite → 2; {e1, e2, −e1}: pairs 1, 2, 1 → 4/3; single → NaN
    np.testing.assert_allclose(got[:3], [0.0, 2.0, 4 / 3], atol=1e-12)
    assert math.isnan(got[3])


# --- compute_metrics on a hand-made log ------------------------------------------------------


def _write(df: pl.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    df.write_parquet(path)


def _impressions(rows) -> pl.DataFrame:
    """Rows (request, t, user, item, position, clicked[, source, propensity]); the last two
    default to a greedy slot ("als", 1.0)."""
    rows = [(*r, "als", 1.0) if len(r) == 6 else r for r in rows]
    return pl.DataFrame(
        rows,
        schema={
            "request_id": pl.Int64,
            "t": pl.Float64,
            "user_id": pl.Int32,
            "item_id": pl.Int32,
            "position": pl.Int16,
            "clicked": pl.Boolean,
            "source": pl.String,
            "propensity": pl.Float64,
        },
        orient="row",
    )


def _truth(rows) -> pl.DataFrame:
    return pl.DataFrame(
        rows,
        schema={"request_id": pl.Int64, "position": pl.Int16, "relevance": pl.Float64},
        orient="row",
    )


@pytest.fixture
def handmade_log(tmp_path: Path) -> Path:
    """4 items, 3 windows of 10 h; window 1 is empty; one impression sits exactly at the horizon
    (t = 30, must clip into the last window). Two rounds."""
    root = tmp_path / "logs"
    # (request, t, user, item, position, clicked)
    r0 = [(0, 1.0, 0, 0, 0, True), (0, 1.0, 0, 1, 1, False)]
    r1 = [(1, 5.0, 1, 0, 0, True), (1, 5.0, 1, 2, 1, True)]
    r3 = [(3, 25.0, 2, 1, 0, False, "explore", 0.05), (3, 25.0, 2, 3, 1, False, "als", 0.9)]
    r2 = [(2, 30.0, 0, 3, 0, False), (2, 30.0, 0, 0, 1, True)]
    _write(_impressions(r0 + r1), root / "impressions/round=0000/part.parquet")
    _write(_impressions(r3 + r2), root / "impressions/round=0001/part.parquet")  # unsorted
    _write(
        _truth([(0, 0, 0.9), (0, 1, 0.2), (1, 0, 0.8), (1, 1, 0.6)]),
        root / "truth/round=0000/part.parquet",
    )
    _write(
        _truth([(2, 1, 0.5), (2, 0, 0.1), (3, 0, 0.3), (3, 1, 0.4)]),
        root / "truth/round=0001/part.parquet",
    )
    _write(
        pl.DataFrame(
            {
                "window": [2, 0, 1],
                "t_start": [20.0, 0.0, 10.0],
                "t_end": [30.0, 10.0, 20.0],
                "model_version": [1, -1, 0],
            },
            schema={
                "window": pl.Int32,
                "t_start": pl.Float64,
                "t_end": pl.Float64,
                "model_version": pl.Int32,
            },
        ),
        root / "snapshots.parquet",
    )
    return root


HANDMADE_FACTORS = np.array([[1.0, 0.0], [0.0, 3.0], [2.0, 2.0], [-0.5, 0.0]])


def test_compute_metrics_handmade(handmade_log):
    m = compute_metrics(handmade_log, 4, HANDMADE_FACTORS, 10.0, np.random.default_rng(0), 100)
    assert m.columns == list(METRIC_COLUMNS)
    assert m.height == 3
    r = {c: m[c].to_list() for c in m.columns}
    nan = float("nan")
    expected = {
        "window": [0, 1, 2],
        "t_start": [0.0, 10.0, 20.0],
        "t_end": [10.0, 20.0, 30.0],
        "model_version": [-1, 0, 1],
        "n_requests": [2, 0, 2],
        "n_impressions": [4, 0, 4],
        "n_clicks": [3, 0, 1],
        # window 0: e = [2,1,1,0], c = [2,0,1,0]; window 2: e = [1,1,0,2], c = [1,0,0,0]
        "coverage_exposure": [0.75, 0.0, 0.75],
        "coverage_clicks": [0.5, 0.0, 0.25],
        "gini_exposure": [ref_gini([2, 1, 1, 0]), nan, ref_gini([1, 1, 0, 2])],
        "gini_clicks": [ref_gini([2, 0, 1, 0]), nan, ref_gini([1, 0, 0, 0])],
        "ctr": [0.75, nan, 0.25],
        "utility": [(0.9 + 0.2 + 0.8 + 0.6) / 4, nan, (0.1 + 0.5 + 0.3 + 0.4) / 4],
        "utility_clicked": [(0.9 + 0.8 + 0.6) / 3, nan, 0.5],
        "cumulative_utility": [2.3, 2.3, 2.8],
        # prior clicks before window 2: [2,0,1,0] → pct [0.875, 0.25, 0.625, 0.25]
        "popularity_percentile": [0.5, nan, (0.875 + 0.25 + 2 * 0.25) / 4],
        "popularity_drift": [0.0, nan, (0.875 + 0.25 + 2 * 0.25) / 4 - 0.5],
        # window 0 has no prior clicks: no item is in the head, so no long tail either
        "long_tail_share": [nan, nan, 0.75],
        "top1pct_exposure_share": [0.5, nan, 0.5],
        # window 0 users {0}: {0}, {1}: {0,2} → J = 1/2; window 2: one clicking user → NaN
        "homogenization": [0.5, nan, nan],
        # slates {0,1}: 1 − 0 = 1; {0,2}: 1 − 1/√2; {3,0}: 2; {1,3}: 1
        "intra_list_diversity": [(1 + 1 - 1 / math.sqrt(2)) / 2, nan, 1.5],
        "exploration_share": [0.0, nan, 0.25],
        "min_propensity": [1.0, nan, 0.05],
        "cum_coverage_exposure": [0.75, 0.75, 1.0],
        "cum_gini_exposure": [
            ref_gini([2, 1, 1, 0]),
            ref_gini([2, 1, 1, 0]),
            ref_gini([3, 2, 1, 2]),
        ],
    }
    for col, exp in expected.items():
        np.testing.assert_allclose(
            np.array(r[col], dtype=float), np.array(exp, dtype=float), atol=1e-12, err_msg=col
        )


# --- end to end on a real run ----------------------------------------------------------------


def _e2e_configs() -> dict:
    from conftest import compose_config

    return {
        "greedy_24h": compose_config(
            "seed=0",
            "world.n_users=300",
            "world.n_items=150",
            "policy.slate_size=5",
            "policy.n_candidates=15",
            "sim.days=4",
            "metrics.homogenization_pairs=500",
            "report.enabled=false",
            "progress=false",
        ),
        # windows not aligned with days or retrains (0-36, 36-72, 72-96), exploration, drift
        "egreedy_36h_drift": compose_config(
            "seed=3",
            "world.n_users=300",
            "world.n_items=150",
            "world.drift_rate=0.05",
            "policy=epsilon_greedy",
            "policy.name=eps",
            "policy.selector.epsilon=0.2",
            "policy.slate_size=4",
            "policy.n_candidates=12",
            "sim.days=4",
            "sim.train_hours=2.0",
            "sim.snapshot_every_hours=36",
            "sim.max_batch_requests=100",
            "metrics.homogenization_pairs=300",
            "report.enabled=false",
            "progress=false",
        ),
    }


def _serving_e2e_config() -> dict:
    """The serving system's shortcuts all on (one saturated server, a budget, a slate cache): the
    serving metrics recomputed from its log. Only once the ``serving`` config group exists (it
    is added by the serving-system branch of issue 15)."""
    from conftest import compose_config

    if "serving" not in compose_config():
        return {}
    # 300 users x 1 session/day = 300 requests/day = 0.0035/s; 300 s of service on 1 server:
    # utilization about 1.04, so requests queue, and some exceed the 600 s budget
    return {
        "serving_shortcuts": compose_config(
            "seed=5",
            "world.n_users=300",
            "world.n_items=150",
            "policy.slate_size=4",
            "policy.n_candidates=12",
            "sim.days=4",
            "serving.model_servers=1",
            "serving.service.mean_ms=300000",
            "serving.latency_budget_ms=600000",
            "serving.cache_ttl_hours=6",
            "metrics.homogenization_pairs=300",
            "report.enabled=false",
            "progress=false",
        )
    }


E2E_CONFIGS = _e2e_configs() | _serving_e2e_config()


@pytest.fixture(scope="module", params=sorted(E2E_CONFIGS))
def e2e_run(request, tmp_path_factory):
    from experiments.run import run

    cfg = E2E_CONFIGS[request.param]
    out = tmp_path_factory.mktemp(request.param) / "run"
    summary = run(cfg, out)
    return cfg, out, summary


def _read_partitions(root: Path, table: str, columns: list[str]) -> pl.DataFrame:
    files = sorted((root / table).glob("round=*/part.parquet"))
    assert files, f"no {table} partitions"
    return pl.concat([pl.read_parquet(f, hive_partitioning=False).select(columns) for f in files])


def _independent_metrics(cfg: dict, log_root: Path) -> dict[str, np.ndarray]:
    from agents.streams import Streams  # item factors only (the latent truth metrics may use)
    from agents.world import WorldConfig, build_world

    n_items = cfg["world"]["n_items"]
    every = float(cfg["sim"]["snapshot_every_hours"])
    horizon = 24.0 * cfg["sim"]["days"]
    n_windows = math.ceil(horizon / every)
    snaps = pl.read_parquet(log_root / "snapshots.parquet").sort("window")
    assert snaps.height == n_windows

    imp = _read_partitions(
        log_root,
        "impressions",
        ["request_id", "t", "user_id", "item_id", "position", "clicked", "source", "propensity"],
    )
    truth = _read_partitions(log_root, "truth", ["request_id", "position", "relevance"])
    assert imp.height == truth.height
    df = imp.join(truth, on=["request_id", "position"], how="inner")
    assert df.height == imp.height  # every impression has its truth row
    df = df.sort("request_id", "position")

    t = df["t"].to_numpy()
    assert t.min() >= 0 and t.max() <= horizon
    win = np.clip(np.floor(t / every).astype(np.int64), 0, n_windows - 1)
    item = df["item_id"].to_numpy().astype(np.int64)
    user = df["user_id"].to_numpy().astype(np.int64)
    clicked = df["clicked"].to_numpy().astype(bool)
    rel = df["relevance"].to_numpy()
    req = df["request_id"].to_numpy()
    explore = (df["source"].cast(pl.String) == "explore").to_numpy()
    prop = df["propensity"].to_numpy()

    catalog = build_world(WorldConfig(**cfg["world"]), Streams(cfg["seed"])).catalog
    factors = catalog.factors
    h_rng = homogenization_rng(cfg["seed"])
    n_pairs = cfg["metrics"]["homogenization_pairs"]

    # the serving columns: their own independent recomputation (NaN where the log lacks them)
    from test_objective_metrics import ref_objectives
    from test_serving_metrics import SERVING, ref_serving_metrics

    skip = ("window", "model_version", *SERVING, *OBJECTIVE_COLUMNS)
    out: dict[str, list] = {k: [] for k in METRIC_COLUMNS if k not in skip}
    prior = np.zeros(n_items)
    cum_e = np.zeros(n_items)
    cum_util = 0.0
    top_m = math.ceil(n_items / 100)
    for w in range(n_windows):
        sel = win == w
        e = np.bincount(item[sel], minlength=n_items).astype(float)
        c = np.bincount(item[sel & clicked], minlength=n_items).astype(float)
        cum_e += e
        n_imp, n_clk = int(sel.sum()), int((sel & clicked).sum())
        out["t_start"].append(w * every)
        out["t_end"].append(min((w + 1) * every, horizon))
        out["n_impressions"].append(n_imp)
        out["n_clicks"].append(n_clk)
        out["n_requests"].append(len(set(req[sel].tolist())))
        out["coverage_exposure"].append(float(np.mean(e > 0)))
        out["coverage_clicks"].append(float(np.mean(c > 0)))
        out["gini_exposure"].append(ref_gini(e))
        out["gini_clicks"].append(ref_gini(c))
        out["ctr"].append(n_clk / n_imp if n_imp else math.nan)
        out["utility"].append(float(rel[sel].mean()) if n_imp else math.nan)
        out["utility_clicked"].append(float(rel[sel & clicked].mean()) if n_clk else math.nan)
        cum_util += float(rel[sel & clicked].sum())
        out["cumulative_utility"].append(cum_util)
        pct = ref_percentiles(prior.tolist())
        shown_pct = pct[item[sel]]
        out["popularity_percentile"].append(float(shown_pct.mean()) if n_imp else math.nan)
        has_head = len(set(prior.tolist())) > 1  # all tied (no clicks yet): no head, no tail
        out["long_tail_share"].append(
            float(np.mean(shown_pct <= 0.8)) if n_imp and has_head else math.nan
        )
        top = sum(sorted(e.tolist(), reverse=True)[:top_m])
        out["top1pct_exposure_share"].append(top / n_imp if n_imp else math.nan)
        # homogenization: clickers of this window, replicating the documented pair draws
        out["homogenization"].append(
            ref_jaccard_pairs(user[sel & clicked], item[sel & clicked], n_pairs, h_rng)
        )
        # intra-list diversity: brute force per slate, mean over slates of the window
        divs = []
        for r in np.unique(req[sel]):
            rows = np.flatnonzero(req == r)
            d = ref_slate_diversity(factors[item[rows]])
            if not math.isnan(d):
                divs.append(d)
        out["intra_list_diversity"].append(float(np.mean(divs)) if divs else math.nan)
        out["cum_coverage_exposure"].append(float(np.mean(cum_e > 0)))
        out["cum_gini_exposure"].append(ref_gini(cum_e))
        out["exploration_share"].append(float(explore[sel].mean()) if n_imp else math.nan)
        out["min_propensity"].append(float(prop[sel].min()) if n_imp else math.nan)
        prior += c  # clicks before the next window
    first = out["popularity_percentile"][0]
    out["popularity_drift"] = [p - first for p in out["popularity_percentile"]]
    for col in CONSTRAINT_COLUMNS:  # no constraint ledger in these runs (policy/rerank=constrained)
        out[col] = [math.nan] * n_windows
    for col in NEWCOMER_COLUMNS:  # a fixed world: nothing arrives (sim.cold_start_metrics)
        out[col] = [math.nan] * n_windows
    # model_ndcg: the simulator's score of the model deployed at each window's end
    deployed = pl.read_parquet(log_root / "deployments.parquet")
    ndcg_of = dict(
        zip(deployed["model_version"].to_list(), deployed["model_ndcg"].to_list(), strict=True)
    )
    out["model_ndcg"] = [ndcg_of.get(v, math.nan) for v in snaps["model_version"].to_list()]
    serving = ref_serving_metrics(log_root, n_windows, every)
    rows = df.select("t", "request_id", "item_id", "clicked").to_dicts()
    out |= ref_objectives(rows, catalog.metadata, n_windows, every)
    return {k: np.array(v, dtype=float) for k, v in out.items()} | serving


def test_end_to_end_metrics_match_independent_recomputation(e2e_run):
    cfg, out, summary = e2e_run
    metrics = pl.read_parquet(out / "metrics.parquet")
    assert metrics.columns == list(METRIC_COLUMNS)
    expected = _independent_metrics(cfg, out / "logs")
    assert metrics.height == len(expected["n_impressions"])
    np.testing.assert_array_equal(metrics["window"].to_numpy(), np.arange(metrics.height))
    for col, exp in expected.items():
        got = metrics[col].to_numpy().astype(float)
        np.testing.assert_allclose(got, exp, rtol=1e-9, atol=1e-12, equal_nan=True, err_msg=col)
    # totals agree with the run summary
    assert int(expected["n_impressions"].sum()) == summary["n_impressions"]
    assert int(expected["n_clicks"].sum()) == summary["n_clicks"]
    assert int(expected["n_requests"].sum()) == summary["n_requests"]


def test_end_to_end_log_shape(e2e_run):
    cfg, out, summary = e2e_run
    k = cfg["policy"]["slate_size"]
    imp = _read_partitions(out / "logs", "impressions", ["request_id", "position", "item_id"])
    per_req = imp.group_by("request_id").agg(
        pl.len().alias("n"),
        pl.col("position").sort().alias("pos"),
        pl.col("item_id").n_unique().alias("distinct"),
    )
    assert (per_req["n"] == k).all()
    assert all(p == list(range(k)) for p in per_req["pos"].to_list())
    assert (per_req["distinct"] == k).all()  # a slate never repeats an item
    ids = np.sort(per_req["request_id"].to_numpy())
    np.testing.assert_array_equal(ids, np.arange(ids.size))
    assert summary["n_windows"] == math.ceil(
        24 * cfg["sim"]["days"] / cfg["sim"]["snapshot_every_hours"]
    )
    assert summary["status"] == "complete"


def test_end_to_end_metric_ranges(e2e_run):
    _, out, _ = e2e_run
    m = pl.read_parquet(out / "metrics.parquet")
    for col in (
        "coverage_exposure",
        "coverage_clicks",
        "ctr",
        "utility",
        "utility_clicked",
        "long_tail_share",
        "top1pct_exposure_share",
        "popularity_percentile",
        "cum_coverage_exposure",
        "homogenization",
    ):
        v = m[col].drop_nans().to_numpy()
        assert np.all((v >= 0) & (v <= 1)), col
    for col in ("gini_exposure", "gini_clicks", "cum_gini_exposure"):
        v = m[col].drop_nans().to_numpy()
        assert np.all((v >= 0) & (v < 1)), col
    v = m["intra_list_diversity"].drop_nans().to_numpy()
    assert np.all((v >= 0) & (v <= 2))
    assert np.all(np.diff(m["cumulative_utility"].to_numpy()) >= 0)
    assert np.all(np.diff(m["cum_coverage_exposure"].to_numpy()) >= 0)
    # window 0 has no prior clicks: every item sits at percentile 0.5, none in the head, so
    # the long-tail share is undefined there (it would be 100% by construction) and only there
    assert m["popularity_percentile"][0] == pytest.approx(0.5)
    assert np.isnan(m["long_tail_share"][0])
    later = m.slice(1).filter(pl.col("n_impressions") > 0)
    assert m["n_clicks"][0] > 0 and not later["long_tail_share"].is_nan().any()


def test_end_to_end_item_exposure_matches_a_recount_of_the_log(e2e_run):
    """``item_exposure.parquet`` against a recount from the impression files, windows taken
    from the snapshot bounds (``t_start <= t < t_end``, the last window closed on the right)."""
    cfg, out, _ = e2e_run
    n_items = cfg["world"]["n_items"]
    imp = _read_partitions(out / "logs", "impressions", ["t", "item_id", "clicked"])
    snaps = pl.read_parquet(out / "logs" / "snapshots.parquet").sort("window")
    last = snaps["window"].max()
    expected = []
    for w, t_start, t_end in snaps.select("window", "t_start", "t_end").iter_rows():
        upper = pl.col("t") <= t_end if w == last else pl.col("t") < t_end
        part = imp.filter((pl.col("t") >= t_start) & upper)
        shown = np.bincount(part["item_id"].to_numpy(), minlength=n_items)
        clicked = np.bincount(part.filter(pl.col("clicked"))["item_id"], minlength=n_items)
        for item in np.flatnonzero(shown):
            expected.append((w, int(item), int(shown[item]), int(clicked[item])))
    got = pl.read_parquet(out / "item_exposure.parquet")
    assert got.schema == {
        "window": pl.Int32,
        "item_id": pl.Int32,
        "impressions": pl.Int64,
        "clicks": pl.Int64,
    }
    assert got.rows() == expected  # sorted by window then item, rows with impressions only
    assert got["impressions"].sum() == imp.height
    # the exposure Gini of each window is the Gini of these counts, zeros included
    metrics = pl.read_parquet(out / "metrics.parquet")
    for w in range(metrics.height):
        rows = got.filter(pl.col("window") == w)
        dense = np.zeros(n_items)
        dense[rows["item_id"].to_numpy()] = rows["impressions"].to_numpy()
        assert metrics["gini_exposure"][w] == pytest.approx(ref_gini(dense), rel=1e-12)


# --- degenerate inputs -----------------------------------------------------------------------


def test_slate_diversity_empty_input():
    got = slate_diversity(np.empty(0, dtype=np.int64), np.empty((0, 3)))
    assert got.shape == (0,)


def test_compute_metrics_empty_log(tmp_path):
    """A valid world can log nothing (users who never arrive): metrics are NaN/0, no crash."""
    from sim.event_log import IMPRESSIONS_SCHEMA, TRUTH_SCHEMA

    root = tmp_path / "logs"
    for rnd in range(2):
        _write(
            pl.DataFrame(schema=IMPRESSIONS_SCHEMA),
            root / f"impressions/round={rnd:04d}/part.parquet",
        )
        _write(pl.DataFrame(schema=TRUTH_SCHEMA), root / f"truth/round={rnd:04d}/part.parquet")
    _write(
        pl.DataFrame(
            {
                "window": [0, 1],
                "t_start": [0.0, 24.0],
                "t_end": [24.0, 48.0],
                "model_version": [-1, 0],
            },
            schema={
                "window": pl.Int32,
                "t_start": pl.Float64,
                "t_end": pl.Float64,
                "model_version": pl.Int32,
            },
        ),
        root / "snapshots.parquet",
    )
    m = compute_metrics(root, 4, HANDMADE_FACTORS, 24.0, np.random.default_rng(0), 10)
    assert m.height == 2
    assert m["n_impressions"].to_list() == [0, 0]
    assert m["n_requests"].to_list() == [0, 0]
    assert m["coverage_exposure"].to_list() == [0.0, 0.0]
    assert m["cumulative_utility"].to_list() == [0.0, 0.0]
    for col in ("ctr", "utility", "gini_exposure", "intra_list_diversity", "homogenization"):
        assert all(math.isnan(v) for v in m[col].to_list()), col
