"""The fair-exposure ranker's LP and Birkhoff–von Neumann sampler, checked independently.

The selection contract (marginals vs draw frequencies, batch independence, enumeration of its
ranking mixture) is in ``test_selection_contract.py``; here: the LP solution is feasible, fair
and optimal (against a second formulation of the same program, solved by another HiGHS method),
large ``delta`` gives the greedy assignment, the decomposition reconstructs ``P``, replay
reproduces the logged probabilities, and bad config values are named.
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest
from conftest import policy_config
from scipy.optimize import linprog

from agents.catalog import ItemMetadata
from policies.fair_exposure import (
    FairExposure,
    assignment_lp,
    birkhoff,
    exposure_weights,
    greedy_is_fair,
    merits,
    popularity_tiers,
)
from policies.randomness import Randomness
from policies.replay import slate_probabilities
from policies.selection import SelectionContext


def _case(seed: int, m: int, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    u = np.sort(rng.uniform(0.1, 1.0, m))[::-1]
    labels = rng.integers(0, n_groups, m)
    labels[:n_groups] = np.arange(n_groups)  # every group present
    return u, rng.permutation(labels)


def _square_lp_value(u, labels, v, delta) -> float:
    """Second formulation: a square M×M doubly stochastic X (slots K..M−1 are dummies with zero
    exposure), group exposure written per group from scratch, solved with interior point. Returns
    the optimal normalized utility (``inf`` if infeasible)."""
    m, k = u.shape[0], v.shape[0]
    w = np.zeros(m)
    w[:k] = v
    total = v.sum()
    c = -np.outer(u, w).ravel() / total
    a_eq, b_eq = [], []
    for i in range(m):  # rows sum to 1
        row = np.zeros((m, m))
        row[i, :] = 1
        a_eq.append(row.ravel())
        b_eq.append(1.0)
    for j in range(m):  # columns sum to 1
        col = np.zeros((m, m))
        col[:, j] = 1
        a_eq.append(col.ravel())
        b_eq.append(1.0)
    a_ub, b_ub = [], []
    for g in sorted(set(labels.tolist())):
        members = labels == g
        merit_share = u[members].sum() / u.sum()
        expo = np.zeros((m, m))
        expo[members, :] = w / total
        a_ub += [expo.ravel(), -expo.ravel()]
        b_ub += [merit_share + delta, delta - merit_share]
    res = linprog(c, A_ub=a_ub, b_ub=b_ub, A_eq=a_eq, b_eq=b_eq, method="highs-ipm")
    return -res.fun if res.status == 0 else np.inf


def _check_feasible(p, u, labels, v, delta, slack):
    assert (p >= 0).all() and (p <= 1).all()
    np.testing.assert_allclose(p.sum(axis=0), 1.0, rtol=0, atol=1e-9)  # every slot filled
    assert (p.sum(axis=1) <= 1 + 1e-9).all()  # an item at most once
    total = sum(v)
    for gi, g in enumerate(sorted(set(labels.tolist()))):
        expo = sum(p[i, k] * v[k] for i in range(len(u)) for k in range(len(v)) if labels[i] == g)
        merit = sum(u[i] for i in range(len(u)) if labels[i] == g) / sum(u)
        assert abs(expo / total - merit) <= delta + slack[gi] + 1e-8, (g, expo / total, merit)


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("delta", [0.0, 0.03, 0.2])
def test_lp_is_feasible_fair_and_optimal(seed, delta):
    """Feasible with zero slack where the square formulation is feasible, fair within delta,
    and the same optimal utility as the second formulation (1e-7)."""
    m, k = 8, 4
    u, labels = _case(seed, m, n_groups=2 + seed % 3)
    v = exposure_weights(k)
    p, slack = assignment_lp(u, labels, v, delta, penalty=100.0)
    _check_feasible(p, u, labels, v, delta, slack)
    other = _square_lp_value(u, labels, v, delta)
    value = float((u[:, None] * p * v[None, :]).sum() / v.sum())
    if np.isfinite(other):
        np.testing.assert_allclose(slack, 0.0, atol=1e-9)
        assert abs(value - other) <= 1e-7, (value, other)
    else:  # infeasible without slack: the slack is used
        assert slack.sum() > 1e-9


def test_infeasible_fairness_is_relaxed_by_the_slack():
    """One group holds half the merit but a single member: at most the top slot's exposure
    share (1/V·v_0 ≈ 0.39 for K=3) can reach it; the slack takes the rest."""
    u = np.array([1.0, 0.2, 0.2, 0.2, 0.2, 0.2])
    labels = np.array([0, 1, 1, 1, 1, 1])
    v = exposure_weights(3)
    p, slack = assignment_lp(u, labels, v, 0.0, penalty=100.0)
    assert p[0, 0] == 1.0  # as much exposure as the group can get
    np.testing.assert_allclose(slack[0], 0.5 - v[0] / v.sum(), atol=1e-9)


def test_large_delta_is_the_greedy_assignment():
    """With delta = 1 the group constraint cannot bind: the probability ranking principle."""
    for seed in range(5):
        u, labels = _case(seed, 9, 3)
        p, _ = assignment_lp(u, labels, exposure_weights(4), 1.0, penalty=100.0)
        expected = np.zeros((9, 4))
        expected[np.arange(4), np.arange(4)] = 1.0  # u is sorted descending, distinct
        np.testing.assert_array_equal(p, expected)


def test_greedy_is_fair_agrees_with_a_hand_check_and_the_lp():
    """Where the batch check says the greedy assignment is fair, a hand-written loop agrees and
    the LP's optimal utility is the greedy one (so skipping the LP loses nothing); where it says
    unfair, the loop finds a group off by more than delta."""
    rng = np.random.default_rng(11)
    n, m, k = 60, 8, 4
    u = np.sort(rng.uniform(0.1, 1.0, (n, m)), axis=1)[:, ::-1].copy()
    labels = rng.integers(0, 3, (n, m)) * 7 + 100  # arbitrary group ids
    v = exposure_weights(k)
    greedy = np.tile(np.arange(k), (n, 1))
    for delta in (0.05, 0.1, 0.15):
        fair = greedy_is_fair(u, labels, greedy, v, delta)
        assert fair.any() and not fair.all(), delta
        for r in range(n):
            worst = 0.0
            for g in set(labels[r].tolist()):
                expo = sum(v[t] for t in range(k) if labels[r, t] == g) / v.sum()
                merit = sum(u[r, i] for i in range(m) if labels[r, i] == g) / u[r].sum()
                worst = max(worst, abs(expo - merit))
            assert fair[r] == (worst <= delta), (r, worst, delta)
            if fair[r]:
                p, slack = assignment_lp(u[r], labels[r], v, delta, 100.0)
                value = (u[r][:, None] * p * v).sum() / v.sum()
                greedy_value = (u[r, :k] * v).sum() / v.sum()
                assert abs(value - greedy_value) <= 1e-9 and slack.max() <= 1e-9


@pytest.mark.parametrize("seed", range(10))
def test_birkhoff_reconstructs_the_assignment(seed):
    u, labels = _case(seed, 10, 3)
    v = exposure_weights(4)
    p, _ = assignment_lp(u, labels, v, 0.0, penalty=100.0)
    rankings, weights = birkhoff(p)
    assert (weights > 0).all() and abs(weights.sum() - 1.0) <= 1e-15
    assert ((rankings >= 0) & (rankings < 10)).all()
    assert all(len(set(r)) == 4 for r in rankings.tolist())
    rebuilt = np.zeros_like(p)
    for r, w in zip(rankings, weights, strict=True):
        rebuilt[r, np.arange(4)] += w
    np.testing.assert_allclose(rebuilt, p, rtol=0, atol=1e-9)


def test_merits_and_tiers_by_hand():
    np.testing.assert_allclose(
        merits(np.array([[3.0, 1.0, 2.0], [5.0, 5.0, 5.0]]), 0.1),
        [[1.0, 0.1, 0.55], [1.0, 1.0, 1.0]],
    )
    imp = np.array([0, 0, 0, 1, 2, 5, 9, 30.0])
    # quartiles of imp: 0, 1.5, 6 -> tier = number of quartiles strictly below the count
    np.testing.assert_array_equal(popularity_tiers(imp, 4), [0, 0, 0, 1, 2, 2, 3, 3])
    np.testing.assert_allclose(exposure_weights(3), [1.0, 1 / np.log2(3), 0.5])


def _context(n: int, seed: int, groups_items: int = 3) -> SelectionContext:
    rng = np.random.default_rng(seed)
    n_items, c = 40, 8
    cands = np.stack([rng.choice(n_items, c, replace=False) for _ in range(n)])
    scores = -np.sort(-rng.normal(size=(n, c)), axis=1).astype(np.float32)
    items = ItemMetadata(
        content=np.zeros((n_items, 2), dtype=np.float32),
        creator_id=(np.arange(n_items) % groups_items).astype(np.int32),
        price=np.ones(n_items, dtype=np.float32),
        arrival_t=np.zeros(n_items),
    )
    return SelectionContext(
        user_ids=np.arange(n),
        candidates=cands,
        scores=scores,
        excluded=np.zeros((n, 0), dtype=np.int64),
        n_items=n_items,
        model=None,
        model_version=1,
        item_impressions=rng.integers(0, 30, n_items).astype(np.float64),
        items=items,
    )


@pytest.mark.parametrize("groups", ["creators", "popularity_tiers"])
def test_logged_marginals_are_the_lp_assignment(groups):
    """The logged marginal of each shown (slot, item) is ``P[item, slot]`` of the request's LP
    (1e-9), and the show probabilities are P's row sums."""
    sel = FairExposure(3, groups=groups, n_tiers=3, delta=0.0)
    ctx = _context(30, 1)
    out = sel.select(ctx, Randomness.from_seed(0))
    m = sel.pool_size(ctx.candidates.shape[1])
    u = merits(ctx.scores[:, :m], sel.merit_floor)
    labels = sel.labels(ctx, ctx.candidates[:, :m])
    order = (ctx.candidates[:, :, None] == out.items[:, None, :]).argmax(axis=1)
    for row in range(ctx.n):
        if len(set(labels[row].tolist())) < 2:
            p = np.eye(m, 3)
        else:
            p, _ = assignment_lp(u[row], labels[row], exposure_weights(3), 0.0, 100.0)
        np.testing.assert_allclose(out.propensity[row], p[order[row], np.arange(3)], atol=1e-9)
        show = np.zeros(ctx.candidates.shape[1])
        show[:m] = p.sum(axis=1)
        np.testing.assert_allclose(out.candidate_show_probability[row], show, atol=1e-9)


def test_single_group_is_greedy_without_an_lp():
    sel = FairExposure(3, groups="creators", delta=0.0)
    ctx = _context(5, 2, groups_items=1)  # one creator owns everything
    out = sel.select(ctx, Randomness.from_seed(0))
    np.testing.assert_array_equal(out.items, ctx.candidates[:, :3])
    np.testing.assert_array_equal(out.prefix_propensity, 1.0)


def test_replay_reproduces_the_logged_probabilities():
    """OPE replay of the served slates gives exactly the logged marginals and prefixes; a slate
    with a non-candidate item, a repeated item or a swapped prefix gets what the mixture says."""
    sel = FairExposure(3, groups="popularity_tiers", n_tiers=2, delta=0.0)
    ctx = _context(40, 3)
    out = sel.select(ctx, Randomness.from_seed(5))
    marginal, prefix = slate_probabilities(sel, ctx, out.items)
    np.testing.assert_array_equal(marginal, out.propensity)
    np.testing.assert_array_equal(prefix, out.prefix_propensity)
    outside = out.items.copy()
    outside[:, 1] = -7  # never a candidate
    marginal, prefix = slate_probabilities(sel, ctx, outside)
    np.testing.assert_array_equal(marginal[:, 1], 0.0)
    np.testing.assert_array_equal(prefix[:, 1:], 0.0)
    np.testing.assert_array_equal(marginal[:, [0, 2]], out.propensity[:, [0, 2]])
    # every slate of the mixture: replay probabilities sum to 1 over all ordered K-tuples
    _, weights = sel.decompose(ctx)
    row = int(np.argmax((weights > 0).sum(axis=1)))
    m = sel.pool_size(ctx.candidates.shape[1])
    tuples = np.array(list(itertools.permutations(ctx.candidates[row, :m].tolist(), 3)))
    rep = [row] * len(tuples)
    single = dataclasses.replace(
        ctx,
        user_ids=ctx.user_ids[rep],
        candidates=ctx.candidates[rep],
        scores=ctx.scores[rep],
        excluded=ctx.excluded[rep],
    )
    _, prefix = slate_probabilities(sel, single, tuples)
    assert abs(prefix[:, -1].sum() - 1.0) <= 1e-12
    assert (prefix[:, -1] > 0).sum() == (weights[row] > 0).sum()


def test_creators_need_item_metadata():
    ctx = _context(2, 4)
    bare = dataclasses.replace(ctx, items=None)
    with pytest.raises(ValueError, match=r"^policy\.selector\.groups='creators'"):
        FairExposure(3).select(bare, Randomness.from_seed(0))
    FairExposure(3, groups="popularity_tiers").select(bare, Randomness.from_seed(0))


def test_first_slot_is_not_available_for_reward_models():
    """OPE's DM/DR need ``first_slot`` over scores alone; fair exposure needs the groups."""
    assert not FairExposure(3).has_first_slot
    assert FairExposure(3).replayable


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("groups", "topics"),
        ("n_tiers", 1),
        ("n_tiers", 2.5),
        ("delta", -0.1),
        ("delta", float("nan")),
        ("candidate_factor", 0.5),
        ("slack_penalty", 0.0),
        ("merit_floor", 0.0),
        ("merit_floor", 1.5),
    ],
)
def test_bad_config_values_name_the_key(key, value):
    with pytest.raises(ValueError, match=rf"^policy\.selector\.{key}="):
        FairExposure(3, **{key: value})


def test_preset_composes():
    config = policy_config("fair_exposure")
    assert config.selector.name == "fair_exposure" and config.name == "fair_exposure"
    assert config.selector.groups == "creators"


@pytest.mark.slow
def test_ope_study_with_fair_exposure_as_logging_policy_and_target(tmp_path):
    """A tiny OPE study logged by fair exposure: the same policy as a target has importance
    weights 1 (its replayed probabilities equal the logged ones, bit for bit), so every weighting
    estimator returns the truth; no reward-model estimator is run for it (no ``first_slot``)."""
    import polars as pl
    from conftest import compose_config

    from experiments.ope import run_ope

    cfg = compose_config(
        "+study=ope",
        "policy=fair_exposure",
        "world.n_users=300",
        "world.n_items=150",
        "sim.days=3",
        "ope.targets=[fair_exposure,greedy]",
        "ope.seeds=[4]",
    )
    table = run_ope(cfg, tmp_path)
    same = table.filter(pl.col("target") == "fair_exposure")
    assert not same["estimator"].is_in(["DM", "DR", "SNDR", "SwitchDR"]).any()
    assert same.height > 0
    np.testing.assert_allclose(same["estimate"].to_numpy(), same["truth"].to_numpy(), rtol=1e-12)
    imp = pl.read_parquet(
        tmp_path / "seed4" / "logging" / "logs" / "impressions" / "**" / "*.parquet"
    )
    shadow = pl.read_parquet(
        tmp_path / "seed4" / "logging" / "logs" / "targets" / "**" / "*.parquet"
    )
    both = imp.join(
        shadow.filter(pl.col("target").cast(pl.String) == "fair_exposure"),
        on=["request_id", "position"],
    )
    assert both.height > 0 and (both["propensity"] < 1).any()  # it does randomize
    np.testing.assert_array_equal(both["target_marginal"], both["propensity"])
    np.testing.assert_array_equal(both["target_prefix"], both["prefix_propensity"])
    greedy = table.filter(pl.col("target") == "greedy")
    assert greedy["estimate"].is_finite().all()


@pytest.mark.slow
def test_end_to_end_run_logs_exact_fair_exposure_propensities(tmp_path):
    """``recloop policy=fair_exposure`` on a tiny world: every model-served row is ``exact``,
    each request's candidate show probabilities sum to K, the logged slate probability is the
    last prefix, and the ranker does randomize; the same config reproduces the logs."""
    import polars as pl
    from conftest import compose_config

    from experiments.run import run

    cfg = compose_config(
        "policy=fair_exposure", "world.n_users=300", "world.n_items=200", "sim.days=4"
    )
    run(cfg, tmp_path / "a")
    logs = tmp_path / "a" / "logs"
    imp = pl.read_parquet(logs / "impressions" / "**" / "*.parquet")
    served = imp.filter(pl.col("model_version") >= 0)
    assert served.height > 0
    assert set(served["propensity_method"].cast(pl.String)) == {"exact"}
    assert set(served["policy"].cast(pl.String)) == {"fair_exposure"}
    assert (served["propensity"] < 1).any() and (served["propensity"] > 0).all()
    last = served.filter(pl.col("position") == cfg["policy"]["slate_size"] - 1)
    np.testing.assert_array_equal(last["slate_propensity"], last["prefix_propensity"])
    cands = pl.read_parquet(logs / "candidates" / "**" / "*.parquet")
    ids = served["request_id"].unique().implode()
    totals = (
        cands.filter(pl.col("request_id").is_in(ids))
        .group_by("request_id")
        .agg(pl.col("show_probability").sum())
    )
    np.testing.assert_allclose(totals["show_probability"], cfg["policy"]["slate_size"], atol=1e-9)
    run(cfg, tmp_path / "b")
    for a in sorted(logs.rglob("*.parquet")):
        b = tmp_path / "b" / a.relative_to(tmp_path / "a")
        assert a.read_bytes() == b.read_bytes(), a


@pytest.mark.slow
@pytest.mark.parametrize(
    "arg",
    [
        "policy.selector.groups=topics",
        "policy.selector.n_tiers=1",
        "policy.selector.delta=-0.1",
        "policy.selector.candidate_factor=0.5",
    ],
)
def test_bad_config_exits_2_with_one_line(tmp_path, arg):
    from conftest import run_recloop

    proc = run_recloop(
        "policy=fair_exposure", arg, f"hydra.run.dir={tmp_path / 'out'}", cwd=tmp_path
    )
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    key = arg.split("=")[0]
    assert len(lines) == 1 and lines[0].startswith(f"recloop: error: {key}="), proc.stderr
