"""The scalarization reranker inside a serving policy (``policy/rerank=scalarized``).

The selection contract holds for greedy, epsilon-greedy, softmax and exposure boost drawing from
the scalarized order; the served order is the fitted reranker's order and ``rerank_score`` the
calibrated relevance of each shown item; the calibration is refit at every retrain; bad weights
stop the CLI with one line naming the key; end to end the batch size changes no log.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import test_selection_contract as contract
from conftest import policy_config, run_recloop, tiny_config

from experiments.config import parse_policy
from experiments.run import run
from policies.interactions import RerankData, RerankRows
from policies.models import SOURCE_CODE, SOURCES
from policies.objectives import fit_calibration, sigmoid
from policies.propensity import EXACT, EXACT_SEQUENTIAL_MC_MARGINAL
from policies.randomness import Randomness
from policies.scalarized import FittedScalarized
from sim.training_data import TrainingLog

# The selection contract's fixtures and checks, run on this module's ``server``.
world = contract.world
clicks = contract.clicks
test_slates_are_valid = contract.test_slates_are_valid
test_explored_marks_slots_that_differ_from_the_greedy_choice = (
    contract.test_explored_marks_slots_that_differ_from_the_greedy_choice
)
test_empty_batch = contract.test_empty_batch
test_logged_marginals_and_show_probabilities_match_frequencies = (
    contract.test_logged_marginals_and_show_probabilities_match_frequencies
)
test_same_seed_same_output_different_seed_different_slates = (
    contract.test_same_seed_same_output_different_seed_different_slates
)
test_batch_independence = contract.test_batch_independence

WEIGHTS = {"relevance": 1.0, "revenue": 0.5, "freshness": 0.3, "diversity": 0.7, "fairness": 0.2}


def _rows(seed: int = 0, slope: float = 4.0) -> RerankData:
    """Reranker rows over the contract's catalog whose clicks rise with the logged ALS score's
    gap to the request's best candidate (``top_score``)."""
    rng = np.random.default_rng(seed)
    m = 3000
    users = rng.integers(0, contract.N_USERS, m)
    items = rng.integers(0, contract.N_ITEMS, m)
    score = rng.normal(0.3, 0.2, m)
    gap = -rng.exponential(0.15, m)
    position = rng.integers(0, contract.K, m)
    clicked = rng.random(m) < sigmoid(-1.0 + slope * gap - 0.3 * position)
    z = np.zeros(m)
    rows = RerankRows(
        users,
        items,
        position,
        score,
        clicked,
        np.full(m, SOURCE_CODE["als"]),
        z,
        z,
        z,
        z,
        z,
        z,
    )
    zi, zu = np.zeros(contract.N_ITEMS), np.zeros(contract.N_USERS)
    return RerankData(rows, zi, zi, zu, zu, 40.0, score - gap)


def _policy(world, selector: str = "greedy", weights=None):
    config = contract._tiny(contract.CONFIG_DIR / "greedy.yaml", selector=selector)
    rerank = policy_config(rerank="scalarized").rerank
    rerank = dataclasses.replace(rerank, weights=weights or WEIGHTS, min_calibration_clicks=20)
    config = dataclasses.replace(config, rerank=rerank)
    return config, contract._build(config, world)


def _fit(policy, inter, version=contract.FIT_VERSION, seed=0):
    policy.deploy(policy.fit(dataclasses.replace(inter, rerank=_rows(seed)), version=version))
    fitted = policy.deployment.reranker
    assert isinstance(fitted, FittedScalarized)
    return fitted


def _server(selector: str, world, clicks) -> contract.Server:
    inter, per_user = clicks
    config, policy = _policy(world, selector)
    fitted = _fit(policy, inter)
    assert fitted.calibration.fitted_sources() == [SOURCE_CODE["als"]]

    def serve(ctx, rand):
        batch = policy.serve(contract.POLICY_USERS[np.asarray(ctx, dtype=np.int64)], rand)
        out = {f: getattr(batch, f) for f in contract.SLATE_FIELDS}
        out["slate_propensity"] = batch.slate_propensity
        out["method"] = out.pop("propensity_method")
        return out

    clicked = [per_user[u] for u in contract.POLICY_USERS]
    method = EXACT_SEQUENTIAL_MC_MARGINAL if selector == "softmax" else EXACT
    return contract.Server(
        name=f"scalarized:{selector}",
        k=contract.K,
        clicked=clicked,
        relaxed=[contract.N_ITEMS - len(s) < contract.K for s in clicked],
        closed=[selector in ("greedy", "softmax")] * 3,
        method=method,
        mc=config.selector.mc_samples if selector == "softmax" else 0,
        rb=selector == "softmax",
        stochastic=selector != "greedy",
        serve=serve,
    )


@pytest.fixture(scope="module", params=["greedy", "epsilon_greedy", "softmax", "boost"])
def server(request, world, clicks) -> contract.Server:
    return _server(request.param, world, clicks)


# --------------------------------------------------------------------------------------------
# What it serves and logs
# --------------------------------------------------------------------------------------------


def test_serves_the_scalarized_order_and_logs_the_calibrated_relevance(world, clicks):
    inter, _ = clicks
    _, policy = _policy(world)
    users = np.arange(contract.N_USERS)
    assert policy.serve(users, Randomness.from_seed(0)).rerank_score is None  # bootstrap
    fitted = _fit(policy, inter)
    times = np.linspace(0.0, 100.0, users.size)
    batch = policy.serve(users, Randomness.from_seed(0), times)
    # the retrieval order, reranked by the fitted reranker's own order
    plain = contract._build(contract._tiny(contract.CONFIG_DIR / "greedy.yaml"), world)
    plain.deploy(plain.fit(inter, version=contract.FIT_VERSION))
    retrieved = plain.serve(users, Randomness.from_seed(0))
    ctx = dataclasses.replace(
        contract.make_context(retrieved.candidates, [set()] * users.size, contract.N_ITEMS),
        scores=retrieved.candidate_scores,
        item_impressions=inter.item_impressions,
        items=world.catalog.metadata,
        times=times,
    )
    order, _, _ = fitted.order(ctx, retrieved.candidate_source.astype(np.int64))
    expected = np.take_along_axis(retrieved.candidates, order, axis=1)
    np.testing.assert_array_equal(batch.candidates, expected)
    np.testing.assert_array_equal(batch.items, expected[:, : contract.K])  # greedy
    # score stays the model's; rerank_score = σ(a + b·score) of the shown item at slot 0
    a, b = fitted.calibration.raw(SOURCE_CODE["als"])
    for u in users:
        score_of = dict(zip(retrieved.candidates[u], retrieved.candidate_scores[u], strict=True))
        assert [score_of[i] for i in batch.items[u]] == list(batch.score[u])
    cal = fitted.calibration
    als, pop = SOURCE_CODE["als"], SOURCE_CODE["popularity_fallback"]
    assert cal.fallback[pop] == "too_few_rows" and np.isnan(cal.center[pop])
    expected_p = np.empty(batch.items.shape)
    for u in users:
        for k, (s, src) in enumerate(
            zip(batch.score[u].astype(float), batch.source[u], strict=True)
        ):
            if src == als:  # fitted: σ(a + b·gap), the gap clipped to the logged range
                lo, hi = cal.center[als] + cal.scale[als] * np.array(
                    [cal.z_low[als], cal.z_high[als]]
                )
                mine = batch.candidate_source[u] == src
                gap = s - batch.candidate_scores[u][mine].astype(float).max()
                expected_p[u, k] = 1 / (1 + np.exp(-(a + b * min(max(gap, lo), hi))))
            else:  # a cold user's popularity scores, never logged: the default on the request's
                assert src == pop  # own standardized candidate scores
                c = batch.candidate_scores[u].astype(float)
                z = (s - c.mean()) / c.std()
                expected_p[u, k] = 1 / (1 + np.exp(-(np.log(0.05 / 0.95) + z)))
    assert {als, pop} <= set(np.unique(batch.source))
    assert batch.rerank_score.dtype == np.float32
    np.testing.assert_allclose(batch.rerank_score, expected_p, rtol=1e-5)
    assert b > 0 and np.isfinite(a)
    # the weights do something: the order differs from the retrieval order
    assert not np.array_equal(batch.candidates, retrieved.candidates)


def test_calibration_is_refit_at_every_retrain(world, clicks):
    inter, _ = clicks
    _, policy = _policy(world)
    first = _fit(policy, inter, version=3, seed=0)
    second = _fit(policy, inter, version=4, seed=1)
    assert first.version == 3 and second.version == 4
    assert first.calibration.intercept[1] != second.calibration.intercept[1]
    assert policy.reranker.fits == 2 and not policy.reranker.fallbacks
    policy.deploy(policy.fit(inter, version=5))  # a log without reranker rows: the default
    assert policy.deployment.reranker.calibration.fallback[1] == "too_few_rows"
    assert policy.reranker.fallbacks == {"too_few_rows": 1}


def test_relevance_only_keeps_the_model_order_on_one_source(world, clicks):
    """σ(a + b·s) with b ≥ 0 is monotone in the score: the retrieval order stays."""
    inter, _ = clicks
    _, policy = _policy(world, weights={"relevance": 1.0})
    plain = contract._build(contract._tiny(contract.CONFIG_DIR / "greedy.yaml"), world)
    plain.deploy(plain.fit(inter, version=contract.FIT_VERSION))
    _fit(policy, inter)
    users = np.arange(contract.N_USERS)
    a = policy.serve(users, Randomness.from_seed(0))
    b = plain.serve(users, Randomness.from_seed(0))
    assert (b.candidate_source == b.candidate_source[:, :1]).all()  # one source per request
    np.testing.assert_array_equal(a.candidates, b.candidates)
    np.testing.assert_array_equal(a.items, b.items)


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"weights": {"bogus": 1.0}}, "policy.rerank.weights.bogus=1.0: unknown objective"),
        ({"weights": {"revenue": -0.5}}, "policy.rerank.weights.revenue=-0.5: must be a number"),
        ({"weights": {"revenue": "abc"}}, "policy.rerank.weights.revenue='abc': must be a number"),
        ({"weights": {"revenue": True}}, "policy.rerank.weights.revenue=True: must be a number"),
        ({"weights": {"relevance": 0.0}}, "policy.rerank.weights=.*: all weights are 0"),
        ({"weights": [1, 2]}, "policy.rerank.weights=[1, 2]: must be a mapping"),
        ({"freshness_halflife_days": 0}, "policy.rerank.freshness_halflife_days=0"),
        ({"training_rounds": 0}, "policy.rerank.training_rounds=0"),
        ({"min_calibration_clicks": 1.5}, "policy.rerank.min_calibration_clicks=1.5"),
    ],
)
def test_bad_settings_name_the_key(keys, message):
    raw = tiny_config(**{"policy.rerank": "scalarized"})["policy"]
    for key, value in keys.items():
        if key == "weights" and isinstance(value, dict):
            raw["rerank"]["weights"] = {o: 0.0 for o in raw["rerank"]["weights"]} | value
        else:
            raw["rerank"][key] = value
    pattern = message.replace("(", r"\(").replace("[", r"\[").replace("]", r"\]")
    with pytest.raises(ValueError, match=pattern.replace(".", r"\.").replace(r"\.*", ".*")):
        parse_policy(raw)


def test_missing_objectives_weigh_zero():
    raw = tiny_config(**{"policy.rerank": "scalarized"})["policy"]
    raw["rerank"]["weights"] = {"freshness": 2}
    assert parse_policy(raw).rerank.weights == {
        "relevance": 0.0,
        "revenue": 0.0,
        "freshness": 2.0,
        "diversity": 0.0,
        "fairness": 0.0,
    }


@pytest.mark.parametrize(
    ("groups", "message"),
    [
        (("scorer=random", "selector=uniform"), "policy.rerank='scalarized': scorer 'random'"),
        (("selector=ucb",), "policy.rerank='scalarized': selector 'ucb' draws from the model's"),
        (("selector=thompson",), "policy.rerank='scalarized': selector 'thompson'"),
    ],
)
def test_incompatible_components_are_refused(groups, message):
    with pytest.raises(ValueError, match=message):
        policy_config(rerank="scalarized", **dict(g.split("=") for g in groups))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["+policy.rerank.weights.bogus=1"], "policy.rerank.weights.bogus=1: unknown objective"),
        (["policy.rerank.weights.revenue=-1"], "policy.rerank.weights.revenue=-1: must be"),
        (["policy.rerank.weights.revenue=abc"], "policy.rerank.weights.revenue='abc': must be"),
        (
            [
                "policy.rerank.weights.relevance=0",
                "policy.rerank.weights.revenue=0",
                "policy.rerank.weights.diversity=0",
            ],
            "all weights are 0",
        ),
        (["policy/selector=ucb"], "selector 'ucb'"),
    ],
)
def test_cli_refuses_bad_weights_with_one_line(tmp_path, args, message):
    out = tmp_path / "out"
    proc = run_recloop("policy=scalarized", *args, f"hydra.run.dir={out}", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "policy.rerank" in lines[0] and message in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists()


# --------------------------------------------------------------------------------------------
# End to end: the log carries rerank_score; batch size changes nothing
# --------------------------------------------------------------------------------------------


def _tables(run_dir: Path) -> dict[str, pl.DataFrame]:
    logs = run_dir / "logs"
    return {
        t: pl.read_parquet(logs / t / "**" / "*.parquet", hive_partitioning=True).sort(
            ["request_id", "position" if t != "candidates" else "rank"]
        )
        for t in ("impressions", "candidates")
    }


@pytest.mark.slow
def test_end_to_end_logs_calibrated_relevance_and_batch_size_changes_nothing(tmp_path):
    keys = {"sim.days": 5, "metrics.ndcg_users": 0, "policy.rerank.min_calibration_clicks": 10}
    run(tiny_config("policy=scalarized", **keys), tmp_path / "whole")
    run(tiny_config("policy=scalarized", **keys, **{"sim.max_batch_requests": 1}), tmp_path / "one")
    whole, one = _tables(tmp_path / "whole"), _tables(tmp_path / "one")
    for table in whole:
        assert whole[table].equals(one[table], null_equal=True), table
    imp = whole["impressions"]
    served = imp.filter(pl.col("model_version") >= 0)
    assert served.height > 0 and served["rerank_score"].is_finite().all()
    assert ((served["rerank_score"] > 0) & (served["rerank_score"] < 1)).all()
    assert imp.filter(pl.col("model_version") < 0)["rerank_score"].is_nan().all()
    # the candidates table is logged in the reranked order: greedy shows its first K
    cands = whole["candidates"].filter(pl.col("shown"))
    assert (cands["rank"] < 5).all()
    # the calibration's fits and fallbacks are counted in the summary: the first model trains
    # on bootstrap traffic (no model-served row: the default), the later ones on the log
    summary = json.loads((tmp_path / "whole" / "summary.json").read_text())
    calibration = summary["rerank_calibration"]
    expected: dict[str, int] = {}
    top = (
        whole["candidates"].group_by("request_id", "source").agg(pl.col("score").max().alias("top"))
    )
    for version in range(calibration["fits"]):  # fit v: model-served rows of rounds v-2..v
        rows = imp.filter(
            pl.col("round").is_between(version - 2, version) & (pl.col("model_version") >= 0)
        ).join(top, on=["request_id", "source"], how="left")
        cal = fit_calibration(
            (rows["score"] - rows["top"]).fill_null(np.nan).to_numpy(),
            rows["position"].to_numpy(),
            rows["clicked"].to_numpy(),
            rows["source"].to_physical().to_numpy(),
            5,
            len(SOURCES),
            10,
        )
        reasons = [cal.fallback[r] for r in np.flatnonzero(cal.n_rows)] or ["too_few_rows"]
        for why in filter(None, reasons):
            expected[why] = expected.get(why, 0) + 1
    assert calibration["fits"] == 4 and calibration["fallbacks"] == expected
    # the training view's top_score: the best candidate score of each row's request and source
    logs = tmp_path / "whole" / "logs"
    training = TrainingLog(300, 150, rerank_rounds=3)
    for part in sorted((logs / "impressions").glob("round=*")):
        training.add_partition(
            part / "part.parquet", logs / "candidates" / part.name / "part.parquet"
        )
    data = training.interactions().rerank
    best: dict[tuple[int, str], float] = {}
    for rid, src, score in whole["candidates"].select("request_id", "source", "score").iter_rows():
        best[rid, src] = max(best.get((rid, src), -np.inf), score)
    last = imp.filter(
        (pl.col("round") >= imp["round"].max() - 2) & (pl.col("model_version") >= 0)
    ).sort("request_id", "position")
    want = [
        best.get((rid, src), np.nan) for rid, src in last.select("request_id", "source").iter_rows()
    ]
    assert data.top_score.shape == (data.rows.n,) == (last.height,)
    np.testing.assert_array_equal(data.top_score, np.asarray(want, dtype=np.float32).astype(float))
    assert expected["too_few_rows"] >= 1  # the first model: bootstrap traffic only


@pytest.mark.slow
def test_a_paused_and_copied_run_continues_like_the_uninterrupted_one(tmp_path):
    """The trainer's fallback counts and the deployed calibration are part of the state."""
    from tests.sim.test_state import _assert_same_files, _paused_copy_continued

    keys = {"policy.rerank.min_calibration_clicks": 10, "policy.rerank.weights.fairness": 0.5}
    cfg = tiny_config("policy=scalarized", **keys)
    whole, original, copied = _paused_copy_continued(tmp_path, cfg, 40.0)
    _assert_same_files(whole, original)
    _assert_same_files(whole, copied)
