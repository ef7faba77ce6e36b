"""The serving system (sim/serving_system.py): the compiled pass against a plain per-request
simulation, queueing theory (Erlang-C), the fallback list, and the engine end to end."""

from __future__ import annotations

import heapq
import itertools
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp
from conftest import run_recloop, tiny_config
from scipy import stats

from experiments.config import ConfigError, parse_config
from experiments.run import run
from policies.models import first_unfiltered, ranking_order
from sim.serving_system import (
    BUDGET,
    HIT,
    MODEL,
    MS_PER_HOUR,
    OVERLOAD,
    ServiceConfig,
    ServingConfig,
    ServingSystemState,
    route,
)


# --- an independent reference: one request at a time, servers in a heap ---------------------
def reference(t, users, service, expected, versions, c, budget, ttl, invalidate, cache_ms, fb_ms):
    """The module docstring's rules, request by request (global row numbers for hits)."""
    free = [0.0] * c
    heapq.heapify(free)
    entry: dict[int, tuple[float, int, int]] = {}  # user -> (fill time, version, row)
    status, latency, hit_row, fill_t = [], [], [], []
    for i, (ti, u) in enumerate(zip(t.tolist(), users.tolist(), strict=True)):
        e = entry.get(u)
        if (
            ttl > 0
            and e is not None
            and ti - e[0] < ttl
            and (not invalidate or e[1] == versions[i])
        ):
            status.append(HIT), latency.append(cache_ms), hit_row.append(e[2]), fill_t.append(e[0])
            continue
        wait = max(0.0, (free[0] - ti) * MS_PER_HOUR) if c else 0.0
        if budget is not None and wait > budget:
            status.append(OVERLOAD), latency.append(fb_ms), hit_row.append(-1), fill_t.append(0.0)
            continue
        if budget is not None and wait + expected > budget:
            status.append(BUDGET), latency.append(fb_ms), hit_row.append(-1), fill_t.append(0.0)
            continue
        lat = wait + service[i]
        if c:
            heapq.heapreplace(free, ti + lat / MS_PER_HOUR)
        if ttl > 0:
            entry[u] = (ti, int(versions[i]), i)
        status.append(MODEL), latency.append(lat), hit_row.append(-1), fill_t.append(0.0)
    return np.array(status), np.array(latency), np.array(hit_row), np.array(fill_t)


@pytest.mark.parametrize("seed", range(40))
def test_the_compiled_pass_equals_a_per_request_simulation_in_any_chunking(seed):
    rng = np.random.default_rng(seed)
    n, n_users = int(rng.integers(1, 400)), int(rng.integers(1, 30))
    t = np.sort(rng.uniform(0, 48, n))
    if seed % 3 == 0:
        t = np.round(t, 1)  # simultaneous arrivals and exact ties of free times
    users = rng.integers(0, n_users, n)
    c = [None, 1, 2, 3, 5][seed % 5]
    budget = [None, 2.0e5, 6.0e5, 1.5e6][seed % 4]
    ttl = [0.0, 0.5, 3.0][seed % 3]
    expected = float(rng.uniform(1e4, 5e5))
    service = expected * rng.exponential(size=n)
    # deployments between chunks: the version steps at a few chunk boundaries
    cuts = np.unique(np.concatenate([[0, n], rng.integers(0, n, rng.integers(0, 8))]))
    chunk_version = np.cumsum(rng.integers(0, 2, cuts.size - 1))
    versions = np.repeat(chunk_version, np.diff(cuts))
    config = ServingConfig(
        model_servers=c,
        latency_budget_ms=budget,
        cache_ttl_hours=ttl,
        cache_ms=0.5,
        fallback_ms=3.0,
        cache_invalidate_on_deploy=bool(seed % 2),
    )
    state = ServingSystemState.initial(config, n_users, 3)
    parts = []
    for lo, hi, v in zip(cuts[:-1], cuts[1:], chunk_version, strict=True):
        r = route(state, config, t[lo:hi], users[lo:hi], service[lo:hi], expected, int(v))
        parts.append((r, lo))
    got_status = np.concatenate([r.status for r, _ in parts])
    got_latency = np.concatenate([r.latency_ms for r, _ in parts])
    got_row = np.concatenate([np.where(r.hit_row >= 0, r.hit_row + lo, -1) for r, lo in parts])
    got_fill = np.concatenate([r.fill_t for r, _ in parts])
    want = reference(
        t, users, service, expected, versions, c or 0, budget, ttl, bool(seed % 2), 0.5, 3.0
    )
    np.testing.assert_array_equal(got_status, want[0])
    np.testing.assert_array_equal(got_latency, want[1])  # exactly: the same float operations
    np.testing.assert_array_equal(got_fill, want[3])
    # a hit inside a chunk names its filling row there; across chunks it reads the cache arrays
    starts = np.repeat(cuts[:-1], np.diff(cuts))
    want_row = np.where(want[2] >= starts, want[2], -1)
    np.testing.assert_array_equal(got_row, want_row)


# --- queueing theory ------------------------------------------------------------------------
def erlang_c(c: int, a: float) -> float:
    """P(wait > 0) in M/M/c with offered load a = λ/μ (Erlang's C formula)."""
    rho = a / c
    top = a**c / math.factorial(c) / (1 - rho)
    return top / (sum(a**k / math.factorial(k) for k in range(c)) + top)


def mmc_tail(c: int, rho: float, mean_ms: float, x_ms: float) -> float:
    """P(W > x) in M/M/c without balking: C(c, a)·e^{−(cμ−λ)x}."""
    mu = 1.0 / mean_ms
    return erlang_c(c, rho * c) * math.exp(-(c * mu - rho * c * mu) * x_ms)


def simulate_queue(c, rho, mean_ms, n, seed, budget=None):
    """Poisson arrivals at λ = ρ·c/E[S], exponential service: the routing of n requests."""
    rng = np.random.default_rng(seed)
    lam = rho * c * MS_PER_HOUR / mean_ms  # per hour
    t = np.cumsum(rng.exponential(1 / lam, n))
    config = ServingConfig(
        model_servers=c,
        latency_budget_ms=budget,
        service=ServiceConfig("exponential", mean_ms, 1.0, 0.0),
    )
    service = mean_ms * config.service.unit_draws(rng, n)
    state = ServingSystemState.initial(config, 1, 1)
    return route(state, config, t, np.zeros(n, dtype=np.int64), service, mean_ms, 0), service


def batch_means(x: np.ndarray, n_batches: int = 30) -> tuple[float, float, float]:
    """Mean and 95% interval from batch means (batches long against the queue's memory)."""
    means = x[: x.size // n_batches * n_batches].reshape(n_batches, -1).mean(axis=1)
    half = stats.t.ppf(0.975, n_batches - 1) * means.std(ddof=1) / math.sqrt(n_batches)
    return float(means.mean()), float(means.mean() - half), float(means.mean() + half)


@pytest.mark.parametrize("c", [1, 2, 4])
@pytest.mark.parametrize("rho", [0.5, 0.8])
def test_waits_match_erlang_c(c, rho):
    mean_ms, n, warmup = 1000.0, 330_000, 30_000
    routing, service = simulate_queue(c, rho, mean_ms, n, seed=17 + c)
    wait = np.maximum(routing.latency_ms[warmup:] - service[warmup:], 0.0)  # latency = wait + S
    a = rho * c
    p_wait = erlang_c(c, a)
    mean_wait = p_wait * mean_ms / (c * (1 - rho))  # C(c, a) / (cμ − λ), in ms
    m, lo, hi = batch_means(wait)
    assert lo <= mean_wait <= hi, (m, lo, hi, mean_wait)
    s, slo, shi = batch_means((wait > 1e-9).astype(float))
    assert slo <= p_wait <= shi, (s, slo, shi, p_wait)


def test_fallback_share_rises_with_load_and_stays_under_the_mm_c_tail():
    """With a budget b, degraded requests leave without service (balking), so the queue that
    remains is lighter than M/M/c: its overload share P(W > b) and its total fallback share
    (wait > b − E[S]) stay below the M/M/c tail C(c, a)·e^{−(cμ−λ)x}, and rise with the load."""
    c, mean_ms, n = 2, 1000.0, 200_000
    budget = 3000.0
    shares = []
    for rho in (0.5, 0.8, 0.95, 1.2):
        routing, _ = simulate_queue(c, rho, mean_ms, n, seed=5, budget=budget)
        status = routing.status[20_000:]
        fallback = float(np.isin(status, (BUDGET, OVERLOAD)).mean())
        overload = float((status == OVERLOAD).mean())
        shares.append(fallback)
        if rho < 1:
            assert fallback <= mmc_tail(c, rho, mean_ms, budget - mean_ms) * 1.05
            assert overload <= mmc_tail(c, rho, mean_ms, budget) * 1.05
    assert all(x < y for x, y in itertools.pairwise(shares)), shares
    assert shares[-1] > 0.15  # past saturation a large share degrades


@pytest.mark.parametrize("rho", [0.5, 0.8, 0.95, 1.2])
def test_single_server_fallback_share_matches_mm1_with_balking(rho):
    """The two budget rules admit a request iff its wait <= τ = b − E[S] (overload, wait > b,
    is the rarer case of it). With one server that is M/M/1 with balking on the known wait
    (M/M/1+D): P(degraded) = ρ(1−ρ)e^{−(μ−λ)τ} / (1 − ρ²e^{−(μ−λ)τ}) (Baccelli, Boyer and
    Hébuterne 1984; τ = 0 gives Erlang-B a/(1+a)), also past saturation."""
    mean_ms, budget = 1000.0, 3000.0
    routing, _ = simulate_queue(1, rho, mean_ms, 330_000, seed=11, budget=budget)
    degraded = np.isin(routing.status[30_000:], (BUDGET, OVERLOAD)).astype(float)
    mu = 1.0 / mean_ms
    e = math.exp(-(mu - rho * mu) * (budget - mean_ms))
    predicted = rho * (1 - rho) * e / (1 - rho**2 * e)
    m, lo, hi = batch_means(degraded)
    assert lo <= predicted <= hi, (m, lo, hi, predicted)


# --- the fallback list -------------------------------------------------------------------
def test_fallback_is_the_popularity_order_minus_what_the_user_clicked():
    rng = np.random.default_rng(0)
    clicks = rng.integers(0, 4, 40)
    order = ranking_order(clicks)
    assert [(-clicks[i], i) for i in order] == sorted((-clicks[i], i) for i in range(40))
    seen = sp.random(6, 40, density=0.3, random_state=1, format="csr")
    got = first_unfiltered(order, 5, seen)
    for u in range(6):
        clicked = set(seen[u].indices.tolist())
        assert got[u].tolist() == [i for i in order if i not in clicked][:5]


# --- config ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("model_servers", 0),
        ("latency_budget_ms", 0),
        ("latency_budget_ms", -5.0),
        ("cache_ttl_hours", -1.0),
        ("fallback_ms", -1.0),
    ],
)
def test_bad_serving_values_fail_with_one_line_naming_the_key(key, value):
    cfg = tiny_config(**{f"serving.{key}": value})
    with pytest.raises(ConfigError, match=rf"^serving\.{key}={value!r}: "):
        parse_config(cfg)


def test_bad_service_distribution_names_its_key():
    cfg = tiny_config(**{"serving.service.distribution": "gamma"})
    with pytest.raises(ConfigError, match=r"^serving\.service\.distribution='gamma': "):
        parse_config(cfg)


@pytest.mark.slow
@pytest.mark.parametrize(
    "arg",
    ["serving.model_servers=0", "serving.latency_budget_ms=-1", "serving.cache_ttl_hours=-0.5"],
)
def test_bad_serving_input_exits_2_with_one_line(tmp_path, arg):
    out = tmp_path / "out"
    proc = run_recloop(arg, f"hydra.run.dir={out}", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("recloop: error: serving."), proc.stderr
    assert arg.split("=")[0] in lines[0]
    assert not out.exists()


def test_ope_refuses_a_non_default_serving_system():
    from experiments.ope import check_ope

    cfg = tiny_config(**{"serving.model_servers": 2, "ope.targets": ["greedy"]})
    with pytest.raises(ConfigError, match=r"^serving: runner=ope needs the default"):
        check_ope(cfg)


# --- end to end ------------------------------------------------------------------------
BUSY = {
    "serving.model_servers": 1,
    "serving.latency_budget_ms": 60_000.0,
    "serving.service.distribution": "exponential",
    "serving.service.mean_ms": 30_000.0,  # ~75 requests/h x 30 s: ρ ≈ 0.6 at the mean, > 1 at peaks
    "serving.cache_ttl_hours": 3.0,
    "world.diurnal": "evening_peak",
}


def _tables(run_dir: Path) -> dict[str, pl.DataFrame]:
    return {
        t: pl.read_parquet(run_dir / "logs" / t / "**" / "*.parquet").sort(
            ["request_id", "position" if t != "candidates" else "rank"]
        )
        for t in ("impressions", "candidates", "truth")
    }


@pytest.mark.slow
@pytest.mark.parametrize(
    "policy",
    [
        {},
        # stochastic selectors: explore draws, Monte-Carlo propensities (mixed methods per batch)
        {"policy.name": "epsilon_greedy", "policy.selector": "epsilon_greedy"},
        {"policy.name": "thompson", "policy.selector": "thompson", "policy.mc_samples": 20},
    ],
    ids=["greedy", "epsilon_greedy", "thompson"],
)
def test_batch_size_changes_nothing_with_queue_budget_and_cache(tmp_path, policy):
    cfg = tiny_config(**BUSY, **policy, **{"sim.days": 4})
    run(cfg, tmp_path / "default")
    one = tiny_config(**BUSY, **policy, **{"sim.days": 4, "sim.max_batch_requests": 1})
    run(one, tmp_path / "one")
    a, b = _tables(tmp_path / "default"), _tables(tmp_path / "one")
    for table in a:
        assert a[table].equals(b[table]), table
    imp = a["impressions"]
    counts = imp.filter(pl.col("position") == 0).group_by("degraded", "cache_hit").len()
    assert counts.height == 4, counts  # model, hit, budget and overload all occur


@pytest.mark.slow
def test_hits_carry_the_filling_draw_and_fallbacks_are_deterministic(tmp_path):
    run(tiny_config(**BUSY, **{"sim.days": 4}), tmp_path / "r")
    imp = _tables(tmp_path / "r")["impressions"]
    cand = _tables(tmp_path / "r")["candidates"]
    cols = ["item_id", "propensity", "prefix_propensity", "score", "source", "model_version"]
    served = imp.filter(
        ~pl.col("cache_hit") & (pl.col("degraded") == "none") & (pl.col("model_version") >= 0)
    )
    hits = imp.filter(pl.col("cache_hit"))
    assert hits.height > 0
    # the filler of a hit: that user's last model-served request before it (hits never refill)
    filler = hits.sort("t").join_asof(
        served.select("user_id", "position", "t", *cols).with_columns(t_fill=pl.col("t")).sort("t"),
        on="t",
        by=["user_id", "position"],
        strategy="backward",
        allow_exact_matches=False,
        check_sortedness=False,
        suffix="_fill",
    )
    for col in cols:
        assert filler[col].equals(filler[f"{col}_fill"], check_names=False), col
    age = (filler["t"] - filler["t_fill"]).cast(pl.Float32)
    assert (age - filler["slate_age_h"]).abs().max() < 1e-5
    assert filler["slate_age_h"].max() < 3.0
    assert (imp.filter(~pl.col("cache_hit"))["slate_age_h"] == 0).all()
    assert cand.filter(pl.col("request_id").is_in(hits["request_id"].implode())).height == 0
    fb = imp.filter(pl.col("degraded") != "none")
    assert fb.height > 0
    assert (fb["source"] == "degraded_fallback").all() and (fb["propensity"] == 1).all()
    assert (fb["propensity_method"] == "exact").all() and (fb["latency_ms"] == 2.0).all()
    fb_cand = cand.filter(pl.col("request_id").is_in(fb["request_id"].implode()))
    assert fb_cand.height == fb.height and fb_cand["shown"].all()
    assert (hits["latency_ms"] == 1.0).all()  # serving.cache_ms


@pytest.mark.slow
@pytest.mark.skipif("RECLOOP_BASE" not in os.environ, reason="needs RECLOOP_BASE=<checkout>")
def test_default_serving_leaves_every_existing_column_as_at_the_base_commit(tmp_path):
    """RECLOOP_BASE: a checkout of the commit before the serving system (e.g. ``git archive
    2af81b5 | tar -x -C /tmp/base``); the same tiny run there and here."""
    base = Path(os.environ["RECLOOP_BASE"])
    script = (
        "import sys; sys.path.insert(0, sys.argv[1] + '/tests'); from pathlib import Path;"
        "from conftest import tiny_config; from experiments.run import run;"
        "cfg = tiny_config(**{'sim.days': 5, 'sim.max_batch_requests': 300});"
        "cfg.pop('serving', None); run(cfg, Path(sys.argv[2]))"
    )
    env = {**os.environ, "PYTHONPATH": str(base)}
    subprocess.run(
        [sys.executable, "-c", script, str(base), str(tmp_path / "base")],
        env=env,
        check=True,
        cwd=base,
    )
    run(tiny_config(**{"sim.days": 5, "sim.max_batch_requests": 300}), tmp_path / "new")
    old, new = _tables(tmp_path / "base"), _tables(tmp_path / "new")
    for table in old:
        assert new[table].select(old[table].columns).equals(old[table]), table
    assert new["impressions"]["latency_ms"].is_not_null().all()
