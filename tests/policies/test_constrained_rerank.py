"""policy/rerank=constrained: the floor, the caps, the ticks, the ledger and their metrics."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from agents.catalog import ItemMetadata
from experiments.config import parse_config
from experiments.run import run
from policies.constrained_rerank import ConstrainedRerank, constrained_slates
from sim.metrics import CONSTRAINT_COLUMNS, constraint_columns
from tests.conftest import policy_config, run_recloop, tiny_config
from tests.sim.test_state import _assert_same_files, _paused_copy_continued

N_ITEMS = 60


def _metadata(rng: np.random.Generator, n_creators: int = 12, dim: int = 4) -> ItemMetadata:
    return ItemMetadata(
        content=rng.standard_normal((N_ITEMS, dim)).astype(np.float32),
        creator_id=rng.integers(0, n_creators, N_ITEMS).astype(np.int32),
        price=np.ones(N_ITEMS, dtype=np.float32),
        arrival_t=np.zeros(N_ITEMS),
    )


def _batch(rng: np.random.Generator, n: int, c: int) -> tuple[np.ndarray, np.ndarray]:
    cands = np.stack([rng.choice(N_ITEMS, c, replace=False) for _ in range(n)])
    scores = -np.sort(-rng.standard_normal((n, c)), axis=1)
    return cands, scores


def _pairwise_distance(content: np.ndarray, items: np.ndarray) -> float:
    v = content[np.asarray(items)].astype(np.float64)
    u = v / np.linalg.norm(v, axis=1, keepdims=True)
    return float(np.mean([1 - u[a] @ u[b] for a, b in itertools.combinations(range(len(u)), 2)]))


def test_without_floors_or_multipliers_the_order_is_the_retrieval_order():
    rng = np.random.default_rng(0)
    cfg = ConstrainedRerank()
    state = cfg.initial_state(_metadata(rng), N_ITEMS, 5)
    cands, scores = _batch(rng, 50, 12)
    out = constrained_slates(cfg, cands, scores, state)
    assert (out.order == np.arange(12)).all()
    assert out.floor_met.all()
    assert (np.diff(out.scores, axis=1) <= 0).all()


@pytest.mark.parametrize("m", [3, 4, 5])
def test_creator_floor_is_met_exactly_when_the_candidates_allow_it(m):
    rng = np.random.default_rng(m)
    items = _metadata(rng, n_creators=6)
    cfg = ConstrainedRerank(min_creators=m)
    state = cfg.initial_state(items, N_ITEMS, 5)
    cands, scores = _batch(rng, 400, 8)
    out = constrained_slates(cfg, cands, scores, state)
    slate = np.take_along_axis(cands, out.order[:, :5], axis=1)
    got = np.array([len(set(items.creator_id[s])) for s in slate])
    available = np.array([len(set(items.creator_id[c])) for c in cands])
    feasible = available >= m
    assert (got[feasible] >= m).all()  # 100% of feasible slates
    assert (got[~feasible] == available[~feasible]).all()  # the most an infeasible one can get
    assert (out.infeasible == ~feasible).all() and (out.floor_met == feasible).all()
    if m == 5:
        assert 0 < (~feasible).sum() < feasible.sum()  # both kinds occur in this draw
    plain = np.array([len(set(items.creator_id[c[:5]])) for c in cands]) >= m
    assert (feasible & ~plain).sum() > 0  # the repair was needed on some slates
    state.record(out)
    state.tick(1.0)
    why = state.explanation_frame()
    if (~feasible).any():
        assert why.row(0, named=True)["n_slates"] == (~feasible).sum()
        assert why["mean_achieved"][0] == pytest.approx(available[~feasible].mean())
        assert why["reason"][0] == "creators" and "fewer creators" in why["explanation"][0]
    else:
        assert why.height == 0
    # A slate already meeting the floor is the plain top 5.
    assert (np.sort(out.order[plain, :5], axis=1) == np.arange(5)).all()


def test_diversity_floor_met_slates_really_reach_it_and_the_rest_are_counted():
    rng = np.random.default_rng(3)
    items = _metadata(rng)
    cfg = ConstrainedRerank(min_content_diversity=1.05, min_creators=3)
    state = cfg.initial_state(items, N_ITEMS, 4)
    cands, scores = _batch(rng, 200, 10)
    out = constrained_slates(cfg, cands, scores, state)
    slate = np.take_along_axis(cands, out.order[:, :4], axis=1)
    div = np.array([_pairwise_distance(items.content, s) for s in slate])
    creators = np.array([len(set(items.creator_id[s])) for s in slate])
    np.testing.assert_allclose(out.diversity, div, atol=1e-9)
    assert (div[out.floor_met] >= 1.05 - 1e-9).all() and (creators[out.floor_met] >= 3).all()
    assert (div[out.infeasible] < 1.05).all() or (creators[out.infeasible] < 3).any()
    assert (out.floor_met ^ out.infeasible).all()
    before = np.array([_pairwise_distance(items.content, c[:4]) for c in cands])
    assert out.floor_met.mean() > (before >= 1.05).mean()  # the repair did something


def test_multipliers_and_blocks_push_items_down():
    rng = np.random.default_rng(1)
    items = _metadata(rng)
    cfg = ConstrainedRerank(item_cap=0.1)
    state = cfg.initial_state(items, N_ITEMS, 3)
    cands, scores = _batch(rng, 30, 8)
    top = cands[:, 0]
    state.item_blocked[top] = True
    out = constrained_slates(cfg, cands, scores, state)
    shown = np.take_along_axis(cands, out.order[:, :3], axis=1)
    assert not np.isin(top, shown).any() or state.item_blocked[cands].sum(1).max() > 5


def test_dual_ascent_tick_follows_the_formula():
    rng = np.random.default_rng(2)
    items = _metadata(rng, n_creators=4)
    cfg = ConstrainedRerank(item_cap=0.05, creator_cap=0.3, window_hours=2.0, tick_hours=1.0)
    state = cfg.initial_state(items, N_ITEMS, 5)
    slates = [rng.integers(0, N_ITEMS, (40, 5)) for _ in range(3)]
    lam_i, lam_c = np.zeros(N_ITEMS), np.zeros(4)
    for t, batch in enumerate(slates, start=1):
        state.observe(batch)
        row = state.tick(float(t))
        window = np.concatenate(slates[max(0, t - 2) : t]).ravel()
        share_i = np.bincount(window, minlength=N_ITEMS) / window.size
        share_c = np.bincount(items.creator_id[window], minlength=4) / window.size
        lam_i = np.clip(lam_i + (share_i - 0.05) / 0.05, 0, 1)
        lam_c = np.clip(lam_c + (share_c - 0.3) / 0.3, 0, 1)
        np.testing.assert_allclose(state.item_multiplier, lam_i)
        np.testing.assert_allclose(state.creator_multiplier, lam_c)
        assert (state.item_blocked == (share_i >= 0.05)).all()
        assert row["item_max_share"] == pytest.approx(share_i.max())
        assert row["creator_max_share"] == pytest.approx(share_c.max())
        assert row["n_items_penalized"] == (lam_i > 0).sum()


CONSTRAINED = {
    "policy.name": "constrained",
    "policy.rerank": "constrained",
    "policy.rerank.min_creators": 4,
    "policy.rerank.creator_cap": 0.1,
    "policy.rerank.item_cap": 0.03,
    "policy.rerank.window_hours": 12.0,
    "policy.rerank.tick_hours": 2.0,
}


@pytest.fixture(scope="module")
def constrained_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("constrained") / "run"
    run(tiny_config(**CONSTRAINED), out)
    return out


def test_floor_from_the_log_itself(constrained_run):
    """Every model-served slate has >= 4 creators, or its candidates had fewer; the ledger
    counts agree with the log."""
    creator = _creators(constrained_run)
    imp = pl.read_parquet(constrained_run / "logs/impressions/**/*.parquet")
    cand = pl.read_parquet(constrained_run / "logs/candidates/**/*.parquet")
    served = (
        imp.filter(pl.col("model_version") >= 0)
        .with_columns(creator=pl.col("item_id").map_elements(lambda i: int(creator[i]), pl.Int64))
        .group_by("request_id")
        .agg(shown=pl.col("creator").n_unique())
    )
    avail = (
        cand.with_columns(
            creator=pl.col("item_id").map_elements(lambda i: int(creator[i]), pl.Int64)
        )
        .group_by("request_id")
        .agg(available=pl.col("creator").n_unique())
    )
    both = served.join(avail, on="request_id")
    assert both.height == served.height > 100
    feasible = both.filter(pl.col("available") >= 4)
    assert (feasible["shown"] >= 4).all()
    ledger = pl.read_parquet(constrained_run / "logs/constraints.parquet")
    assert ledger["n_slates"].sum() == both.height
    assert ledger["n_floor_met"].sum() == feasible.height
    assert ledger["n_floor_infeasible"].sum() == both.height - feasible.height


def _creators(run_dir: Path) -> np.ndarray:
    from agents.streams import Streams
    from agents.world import build_world

    rc = parse_config(tiny_config(**CONSTRAINED))
    return build_world(rc.world, Streams(rc.seed)).catalog.metadata.creator_id


def test_caps_are_exceeded_by_at_most_one_ticks_traffic(constrained_run):
    """From the impressions log alone: at every tick once the window holds no bootstrap traffic,
    each item's / creator's rolling share <= cap + that tick's share of the window's traffic."""
    creator = _creators(constrained_run)
    imp = pl.read_parquet(constrained_run / "logs/impressions/**/*.parquet")
    t, item = imp["t"].to_numpy(), imp["item_id"].to_numpy()
    deployed = pl.read_parquet(constrained_run / "logs/deployments.parquet")["t_deployed"].min()
    tick, window, horizon = 2.0, 12.0, 96.0
    ledger = pl.read_parquet(constrained_run / "logs/constraints.parquet")
    np.testing.assert_allclose(ledger["t"].to_numpy(), np.arange(tick, horizon + tick, tick))
    checked = 0
    for end in np.arange(tick, horizon + tick / 2, tick):
        if end - window < deployed:
            continue
        sel = (t >= end - window) & (t < end)
        last = (t >= end - tick) & (t < end)
        total = sel.sum()
        slack = last.sum() / total
        item_share = np.bincount(item[sel]).max() / total
        creator_share = np.bincount(creator[item[sel]]).max() / total
        assert item_share <= 0.03 + slack + 1e-12, end
        assert creator_share <= 0.1 + slack + 1e-12, end
        row = ledger.filter(pl.col("t") == end)
        assert row["creator_max_share"][0] == pytest.approx(creator_share)
        checked += 1
    assert checked >= 30


def test_metrics_read_the_ledger(constrained_run):
    m = pl.read_parquet(constrained_run / "metrics.parquet")
    ledger = pl.read_parquet(constrained_run / "logs/constraints.parquet")
    for row in m.iter_rows(named=True):
        ticks = ledger.filter((pl.col("t") > row["t_start"]) & (pl.col("t") <= row["t_end"]))
        n = ticks["n_slates"].sum()
        if n:
            assert row["floor_met_share"] == pytest.approx(ticks["n_floor_met"].sum() / n)
        assert row["creator_max_share_window"] == pytest.approx(ticks["creator_max_share"].max())
        assert row["creator_cap"] == 0.1 and row["item_cap"] == 0.03
        assert 0 < row["multiplier_max"] <= 1
    none = constraint_columns(None, m.select("t_start", "t_end"))
    assert none.columns == list(CONSTRAINT_COLUMNS) and all(
        none[c].is_nan().all() for c in none.columns
    )


def test_batching_changes_nothing(constrained_run, tmp_path):
    small = tmp_path / "small"
    run(tiny_config(**CONSTRAINED, **{"sim.max_batch_requests": 7}), small)
    _assert_same_files(constrained_run, small)


def test_a_paused_and_copied_run_continues_identically(tmp_path):
    cfg = tiny_config(**{**CONSTRAINED, "policy.rerank.min_content_diversity": 0.9})
    whole, original, copied = _paused_copy_continued(tmp_path, cfg, 40.0)
    assert (whole / "logs/constraints.parquet").exists()
    _assert_same_files(whole, original)
    _assert_same_files(whole, copied)


def test_validation_names_the_key():
    with pytest.raises(ValueError, match=r"policy.rerank.min_creators=6: a slate holds"):
        policy_config("constrained", slate_size=5, **{"rerank.min_creators": 6})
    with pytest.raises(ValueError, match=r"policy.rerank.min_content_diversity=1.3"):
        policy_config("constrained", slate_size=5, **{"rerank.min_content_diversity": 1.3})
    policy_config("constrained", slate_size=5, **{"rerank.min_content_diversity": 1.25})
    with pytest.raises(ValueError, match=r"selector 'thompson'"):
        policy_config("constrained", selector="thompson")


@pytest.mark.parametrize(
    "override, message",
    [
        ("policy.rerank.creator_cap=0", "policy.rerank.creator_cap=0: must be in (0, 1]"),
        ("policy.rerank.item_cap=1.5", "policy.rerank.item_cap=1.5: must be in (0, 1]"),
        ("policy.rerank.min_creators=11", "policy.rerank.min_creators=11:"),
        ("policy.rerank.min_content_diversity=-0.1", "policy.rerank.min_content_diversity=-0.1"),
        ("policy.rerank.tick_hours=0", "policy.rerank.tick_hours=0:"),
        ("policy.rerank.window_hours=0.5", "policy.rerank.window_hours=0.5:"),
        ("policy.rerank.creator_cap=0.001", "policy.rerank.creator_cap=0.001: infeasible"),
    ],
)
def test_cli_refuses_bad_keys_with_exit_2(override, message, tmp_path):
    out = run_recloop("policy=constrained", override, "sim.days=1", cwd=tmp_path)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0]


def test_ope_refuses_a_constrained_policy(tmp_path):
    out = run_recloop("+study=ope", "policy=constrained", cwd=tmp_path)
    assert out.returncode == 2 and "policy.rerank='constrained'" in out.stderr


@pytest.mark.parametrize("selector", ["greedy", "epsilon_greedy", "softmax"])
def test_selectors_draw_from_the_constrained_order(selector):
    """Greedy (and epsilon-greedy with ε = 0, softmax at a tiny temperature) show the
    constrained slate; the retrieval is permuted alongside (scores and ranks follow the items)."""
    from policies.models import Retrieval
    from policies.plackett_luce import Softmax
    from policies.randomness import Randomness
    from policies.selection import EpsilonGreedy, Greedy, SelectionContext

    rng = np.random.default_rng(4)
    items = _metadata(rng, n_creators=6)
    cfg = ConstrainedRerank(min_creators=4)
    state = cfg.initial_state(items, N_ITEMS, 4)
    cands, scores = _batch(rng, 100, 9)
    ctx = SelectionContext(
        user_ids=np.arange(100),
        candidates=cands,
        scores=scores.astype(np.float32),
        excluded=np.empty((100, 0), dtype=np.int64),
        n_items=N_ITEMS,
        model=None,
        model_version=0,
        item_impressions=np.zeros(N_ITEMS),
        items=items,
    )
    retrieval = Retrieval(cands, scores.astype(np.float32), np.zeros(100, dtype=np.int8))
    new_ctx, new_retrieval = cfg.rerank_serving(ctx, retrieval, state)
    expected = constrained_slates(cfg, cands, scores, cfg.initial_state(items, N_ITEMS, 4))
    slate = np.take_along_axis(cands, expected.order[:, :4], axis=1)
    sel = {
        "greedy": Greedy(4),
        "epsilon_greedy": EpsilonGreedy(4, epsilon=0.0),
        "softmax": Softmax(4, temperature=1e-4, mc_samples=10),
    }[selector]
    shown = sel.select(new_ctx, Randomness.from_seed(0)).items
    assert (np.sort(shown, axis=1) == np.sort(slate, axis=1)).all()
    assert (new_retrieval.items == new_ctx.candidates).all()
    # each item keeps its model score and its original rank
    col = (cands[:, None, :] == new_retrieval.items[:, :, None]).argmax(axis=2)
    assert (new_retrieval.rank == col).all()
    assert (new_retrieval.scores == np.take_along_axis(scores.astype(np.float32), col, 1)).all()
    assert state.n_slates == 100 and state.n_floor_met + state.n_floor_infeasible == 100


def test_cached_and_fallback_impressions_count_toward_exposure(tmp_path):
    """With the slate cache and a latency budget on, the ledger's rolling shares at every tick
    equal the shares recomputed from every logged impression (cached and degraded included)."""
    out = tmp_path / "cached"
    cfg = tiny_config(
        **CONSTRAINED,
        **{
            "serving.cache_ttl_hours": 6.0,
            "serving.model_servers": 1,
            "serving.latency_budget_ms": 100_000.0,
            "serving.service.mean_ms": 60_000.0,
        },
    )
    run(cfg, out)
    imp = pl.read_parquet(out / "logs/impressions/**/*.parquet")
    assert imp["cache_hit"].any() and (imp["degraded"].cast(pl.String) != "none").any()
    creator = _creators(out)
    t, item = imp["t"].to_numpy(), imp["item_id"].to_numpy()
    ledger = pl.read_parquet(out / "logs/constraints.parquet")
    for row in ledger.iter_rows(named=True):
        sel = (t >= row["t"] - 12.0) & (t < row["t"])
        if not sel.any():
            continue
        assert row["item_max_share"] == pytest.approx(np.bincount(item[sel]).max() / sel.sum())
        share = np.bincount(creator[item[sel]]).max() / sel.sum()
        assert row["creator_max_share"] == pytest.approx(share)


def test_diversity_repair_is_a_good_local_search():
    """With an unreachable floor the repair maximizes diversity by improving swaps: never below
    the plain top K, and on small cases at the best subset's diversity (brute force) mostly."""
    rng = np.random.default_rng(0)
    items = _metadata(rng, n_creators=20, dim=3)
    cfg = ConstrainedRerank(min_content_diversity=1.5)
    state = cfg.initial_state(items, N_ITEMS, 3)
    cands, scores = _batch(rng, 300, 6)
    out = constrained_slates(cfg, cands, scores, state)
    best = np.array(
        [
            max(_pairwise_distance(items.content, s) for s in itertools.combinations(c, 3))
            for c in cands
        ]
    )
    first = np.array([_pairwise_distance(items.content, c[:3]) for c in cands])
    assert (out.diversity >= first - 1e-9).all()
    assert (out.diversity <= best + 1e-9).all()
    assert np.mean(out.diversity >= best - 1e-9) > 0.9
    assert out.infeasible.all()  # 1.5 > 1 + 1/(K-1) is out of reach: every slate is counted


def test_default_runs_start_no_constraint_process(tmp_path):
    from experiments.run import build_simulation

    rc = parse_config(tiny_config(**{"sim.days": 2}))
    simulation = build_simulation(rc, tmp_path / "logs")
    simulation.run()
    assert simulation.state.constraints is None
    assert "constraints" not in simulation.state.wakeups
    assert not (tmp_path / "logs/constraints.parquet").exists()
