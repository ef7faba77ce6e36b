"""The serving metrics of ``sim.metrics`` on synthetic logs with the serving system's columns.

The logs are written here in the layout ``sim.event_log`` defines (one Parquet partition per
round, windows straddling rounds); every expected value is computed independently: per request
with plain Python, percentiles with ``numpy.percentile`` over each window's request latencies,
AUC by counting every (clicked, unclicked) pair.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from sim.metrics import METRIC_COLUMNS, compute_metrics, mann_whitney_auc

EVERY = 10.0  # hours per window
N_WINDOWS = 3
K = 3  # slots per request
N_ITEMS = 20
DEGRADED = pl.Enum(["none", "budget", "overload"])
SERVING = (
    "latency_p50_ms",
    "latency_p95_ms",
    "latency_p99_ms",
    "fallback_share_budget",
    "fallback_share_overload",
    "cum_fallback_share",
    "cache_hit_rate",
    "staleness_h",
    "retrieval_recall",
    "retrieval_recall_n",
    "reranker_auc",
)
# model_version -> t_deployed; version 7 appears in the log but not here (left out of staleness)
DEPLOYED = {0: 8.0, 1: 18.0, 2: 25.0}
RECALL = {0: 0.9, 1: 0.75, 2: 0.6}
RECALL_N = {0: 1.0, 1: 0.95, 2: 0.8}
SNAPSHOT_VERSIONS = [0, 1, 2]  # the model deployed at each window's end


def ref_auc(score: np.ndarray, clicked: np.ndarray) -> float:
    """Every (clicked, unclicked) pair: 1 if the clicked one scores higher, ½ on a tie."""
    pos, neg = score[clicked], score[~clicked]
    if pos.size == 0 or neg.size == 0:
        return math.nan
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
    return wins / (pos.size * neg.size)


def _requests(seed: int = 0, n: int = 150) -> pl.DataFrame:
    """One row per request with its serving fields."""
    rng = np.random.default_rng(seed)
    t = np.sort(rng.uniform(0, EVERY * N_WINDOWS, n))
    t[-1] = EVERY * N_WINDOWS  # at the horizon: clipped into the last window
    current = np.searchsorted(np.array(sorted(DEPLOYED.values())), t, side="right") - 1
    cache_hit = rng.random(n) < 0.3
    age = np.where(cache_hit, rng.uniform(0, 6, n), 0.0)
    # a cache hit may carry the version before the current one (filled before a deployment)
    version = np.where(cache_hit & (rng.random(n) < 0.5), np.maximum(current - 1, -1), current)
    version[5] = 7  # unknown to the deployments table
    degraded = rng.choice(["none", "budget", "overload"], size=n, p=[0.7, 0.2, 0.1])
    latency = rng.lognormal(3.0, 1.0, n).astype(np.float32)
    return pl.DataFrame(
        {
            "request_id": np.arange(n, dtype=np.int64) * 3 + 11,  # ids need not be dense
            "t": t,
            "user_id": rng.integers(0, 40, n).astype(np.int32),
            "model_version": version.astype(np.int32),
            "latency_ms": latency,
            "degraded": pl.Series(degraded, dtype=DEGRADED),
            "cache_hit": cache_hit,
            "slate_age_h": age.astype(np.float32),
        }
    )


def _impressions(requests: pl.DataFrame, seed: int = 1) -> pl.DataFrame:
    """K rows per request; reranker scores rounded (ties) and NaN on a fifth of the rows."""
    rng = np.random.default_rng(seed)
    rows = requests.select(pl.all().repeat_by(K).explode())
    n = rows.height
    score = np.round(rng.random(n), 1).astype(np.float32)
    score[rng.random(n) < 0.2] = np.nan
    clicked = rng.random(n) < 0.25 + 0.5 * np.nan_to_num(score)  # informative scores
    return rows.with_columns(
        item_id=pl.Series(rng.integers(0, N_ITEMS, n).astype(np.int32)),
        position=(pl.int_range(n) % K).cast(pl.Int16),
        clicked=pl.Series(clicked),
        source=pl.lit("als"),
        propensity=pl.lit(1.0),
        rerank_score=pl.Series(score),
    )


def write_log(root: Path, impressions: pl.DataFrame, deployments: pl.DataFrame | None) -> Path:
    """Two round partitions split at t = 15 (inside window 1), truth, snapshots, deployments."""
    for rnd, part in enumerate(
        (impressions.filter(pl.col("t") < 15), impressions.filter(pl.col("t") >= 15))
    ):
        path = root / "impressions" / f"round={rnd:04d}" / "part.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        part.sample(fraction=1.0, shuffle=True, seed=rnd).write_parquet(path)  # unsorted
        truth = part.select(
            "request_id", "position", relevance=(pl.col("item_id") / N_ITEMS).cast(pl.Float64)
        )
        path = root / "truth" / f"round={rnd:04d}" / "part.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        truth.write_parquet(path)
    pl.DataFrame(
        {
            "window": list(range(N_WINDOWS)),
            "t_start": [EVERY * w for w in range(N_WINDOWS)],
            "t_end": [EVERY * (w + 1) for w in range(N_WINDOWS)],
            "model_version": SNAPSHOT_VERSIONS,
        }
    ).cast({"window": pl.Int32, "model_version": pl.Int32}).write_parquet(
        root / "snapshots.parquet"
    )
    if deployments is not None:
        deployments.write_parquet(root / "deployments.parquet")
    return root


def deployments_table(with_recall: bool = True) -> pl.DataFrame:
    data = {
        "model_version": list(DEPLOYED),
        "t_train_start": [t - 1 for t in DEPLOYED.values()],
        "t_deployed": list(DEPLOYED.values()),
        "model_ndcg": [0.3, 0.35, 0.4],
    }
    if with_recall:
        data |= {
            "retrieval_recall": list(RECALL.values()),
            "retrieval_recall_n": list(RECALL_N.values()),
        }
    return pl.DataFrame(data).cast({"model_version": pl.Int32})


def ref_serving_metrics(log_root: Path, n_windows: int, every: float) -> dict[str, np.ndarray]:
    """The serving columns recomputed from the partitions: per request in plain Python; NaN
    for a metric whose log column is absent."""
    files = sorted((log_root / "impressions").glob("round=*/part.parquet"))
    imp = pl.concat([pl.read_parquet(f, hive_partitioning=False) for f in files], how="diagonal")
    cols = set(imp.columns)
    dep_path = log_root / "deployments.parquet"
    dep = pl.read_parquet(dep_path) if dep_path.exists() else pl.DataFrame()
    snaps = pl.read_parquet(log_root / "snapshots.parquet").sort("window")
    nan = [math.nan] * n_windows
    out: dict[str, list[float]] = {c: list(nan) for c in SERVING}

    def window_of(t: float) -> int:
        return min(max(math.floor(t / every), 0), n_windows - 1)

    requests: dict[int, dict] = {}
    for row in imp.sort("request_id", "position").iter_rows(named=True):
        requests.setdefault(row["request_id"], row)  # the first row (position 0)
    by_window: list[list[dict]] = [[] for _ in range(n_windows)]
    for row in requests.values():
        by_window[window_of(row["t"])].append(row)
    t_dep = (
        dict(zip(dep["model_version"].to_list(), dep["t_deployed"].to_list(), strict=True))
        if "t_deployed" in dep.columns
        else {}
    )
    total_req, total_fb = 0, 0
    for w, rows in enumerate(by_window):
        n = len(rows)
        if "latency_ms" in cols and n:
            lat = [r["latency_ms"] for r in rows]
            for q in (50, 95, 99):
                out[f"latency_p{q}_ms"][w] = float(np.percentile(lat, q))
        if "degraded" in cols:
            budget = sum(r["degraded"] == "budget" for r in rows)
            overload = sum(r["degraded"] == "overload" for r in rows)
            total_req += n
            total_fb += budget + overload
            out["fallback_share_budget"][w] = budget / n if n else math.nan
            out["fallback_share_overload"][w] = overload / n if n else math.nan
            out["cum_fallback_share"][w] = total_fb / total_req if total_req else math.nan
        if "cache_hit" in cols:
            out["cache_hit_rate"][w] = (
                sum(bool(r["cache_hit"]) for r in rows) / n if n else math.nan
            )
        if "slate_age_h" in cols:
            ages = []
            for r in rows:
                v = r["model_version"]
                deployed = 0.0 if v < 0 else t_dep.get(v)
                if deployed is not None:
                    ages.append(r["t"] - deployed)  # t − slate_age − t_deployed + slate_age
            out["staleness_h"][w] = sum(ages) / len(ages) if ages else math.nan
        if "rerank_score" in cols:
            sel = imp.filter(
                pl.col("rerank_score").is_not_nan()
                & (pl.col("t").map_elements(window_of, return_dtype=pl.Int64) == w)
            )
            if "degraded" in cols:  # the fallback's rows are not the reranker's
                sel = sel.filter(pl.col("degraded") == "none")
            out["reranker_auc"][w] = ref_auc(
                sel["rerank_score"].to_numpy().astype(float), sel["clicked"].to_numpy()
            )
    for col in ("retrieval_recall", "retrieval_recall_n"):
        if col in dep.columns:
            of = dict(zip(dep["model_version"].to_list(), dep[col].to_list(), strict=True))
            out[col] = [of.get(v, math.nan) for v in snaps["model_version"].to_list()]
    return {k: np.array(v, dtype=float) for k, v in out.items()}


def _metrics(root: Path) -> pl.DataFrame:
    factors = np.random.default_rng(5).normal(size=(N_ITEMS, 4))
    return compute_metrics(root, N_ITEMS, factors, EVERY, np.random.default_rng(0), 50)


@pytest.fixture
def serving_log(tmp_path: Path) -> Path:
    return write_log(tmp_path / "logs", _impressions(_requests()), deployments_table())


def test_serving_metrics_match_independent_computation(serving_log: Path) -> None:
    m = _metrics(serving_log)
    assert m.columns == list(METRIC_COLUMNS)
    expected = ref_serving_metrics(serving_log, N_WINDOWS, EVERY)
    for col in SERVING:
        assert np.isfinite(expected[col]).all(), col  # the fixture exercises every metric
        np.testing.assert_allclose(
            m[col].to_numpy(), expected[col], rtol=1e-6, atol=1e-9, err_msg=col
        )
    # window 1 straddles the two rounds: its percentiles use both rounds' requests
    assert m["n_requests"].to_list() == [
        len(r)
        for r in (_requests().filter((pl.col("t") // EVERY).clip(0, 2) == w) for w in range(3))
    ]


def test_percentiles_are_over_requests_not_rows(tmp_path: Path) -> None:
    """One request with 3 rows at 1 ms and one with 3 rows at 100 ms, plus one 5-slot request
    would skew a row percentile: over requests the median of {1, 100, 1000} is 100."""
    req = (
        _requests()
        .head(3)
        .with_columns(
            t=pl.Series([1.0, 2.0, 3.0]),
            latency_ms=pl.Series([1.0, 100.0, 1000.0], dtype=pl.Float32),
        )
    )
    imp = _impressions(req)
    imp = pl.concat(
        [imp, imp.filter(pl.col("latency_ms") == 1.0).with_columns(position=pl.col("position") + K)]
    )
    m = _metrics(write_log(tmp_path / "logs", imp, deployments_table()))
    assert m["latency_p50_ms"][0] == pytest.approx(100.0)
    assert m["latency_p95_ms"][0] == pytest.approx(np.percentile([1.0, 100.0, 1000.0], 95))


def test_staleness_by_hand(tmp_path: Path) -> None:
    """t = 20: model 1 (deployed 18) fresh → 2 h; a cache hit of model 0 (deployed 8) filled
    3 h ago → 12 h (its age 3 h counted once); bootstrap at t = 5 → 5 h; version 7: left out."""
    req = (
        _requests()
        .head(4)
        .with_columns(
            t=pl.Series([20.0, 20.0, 5.0, 21.0]),
            model_version=pl.Series([1, 0, -1, 7], dtype=pl.Int32),
            slate_age_h=pl.Series([0.0, 3.0, 0.0, 0.0], dtype=pl.Float32),
            cache_hit=pl.Series([False, True, False, False]),
        )
    )
    m = _metrics(write_log(tmp_path / "logs", _impressions(req), deployments_table()))
    assert m["staleness_h"].to_list()[0] == pytest.approx(5.0)
    assert m["staleness_h"].to_list()[2] == pytest.approx((2.0 + 12.0) / 2)
    assert math.isnan(m["staleness_h"][1])  # no request in window 1


def test_absent_columns_give_nan(tmp_path: Path) -> None:
    """A log of an older run: no serving column, no recall in deployments → every serving
    metric NaN, the others unchanged."""
    imp = _impressions(_requests())
    full = _metrics(write_log(tmp_path / "full", imp, deployments_table()))
    old_imp = imp.drop("latency_ms", "degraded", "cache_hit", "slate_age_h", "rerank_score")
    old = _metrics(write_log(tmp_path / "old", old_imp, deployments_table(with_recall=False)))
    assert old.columns == list(METRIC_COLUMNS)
    for col in SERVING:
        assert old[col].is_nan().all(), col
    others = [c for c in METRIC_COLUMNS if c not in SERVING]
    assert old.select(others).equals(full.select(others))
    # one feature's column alone: only its metric
    latency_only = _metrics(
        write_log(
            tmp_path / "lat", imp.drop("degraded", "cache_hit", "slate_age_h", "rerank_score"), None
        )
    )
    assert latency_only["latency_p50_ms"].is_finite().all()
    for col in set(SERVING) - {"latency_p50_ms", "latency_p95_ms", "latency_p99_ms"}:
        assert latency_only[col].is_nan().all(), col


def test_auc_nan_without_both_classes_and_all_nan_scores(tmp_path: Path) -> None:
    imp = _impressions(_requests())
    no_reranker = imp.with_columns(rerank_score=pl.lit(float("nan"), dtype=pl.Float32))
    m = _metrics(write_log(tmp_path / "a", no_reranker, deployments_table()))
    assert m["reranker_auc"].is_nan().all()
    all_clicked = imp.with_columns(clicked=pl.lit(True))
    m = _metrics(write_log(tmp_path / "b", all_clicked, deployments_table()))
    assert m["reranker_auc"].is_nan().all()


@pytest.mark.parametrize("seed", range(5))
def test_mann_whitney_auc_matches_pair_count(seed: int) -> None:
    rng = np.random.default_rng(seed)
    score = np.round(rng.normal(size=60), 1)  # many ties
    clicked = rng.random(60) < 0.3
    assert mann_whitney_auc(score, clicked) == pytest.approx(ref_auc(score, clicked))
    assert mann_whitney_auc(score, np.ones(60, bool)) != mann_whitney_auc(score, np.ones(60, bool))


def test_partitioning_changes_nothing(tmp_path: Path) -> None:
    """The same log as one round or as two (split inside a window): identical metrics."""
    imp = _impressions(_requests())
    two = _metrics(write_log(tmp_path / "two", imp, deployments_table()))
    one_root = write_log(tmp_path / "one", imp, deployments_table())
    for table in ("impressions", "truth"):
        parts = sorted((one_root / table).glob("round=*/part.parquet"))
        merged = pl.concat([pl.read_parquet(p, hive_partitioning=False) for p in parts])
        for p in parts:
            p.unlink()
        merged.write_parquet(parts[0])
    one = _metrics(one_root)
    assert one.select(SERVING).equals(two.select(SERVING))  # exactly: no sum over rounds
    for col in METRIC_COLUMNS:  # the older metrics sum over rounds: equal up to rounding
        np.testing.assert_allclose(one[col].to_numpy(), two[col].to_numpy(), rtol=1e-12)
