"""The learned reranker (``policy/rerank=learned``, :mod:`policies.learned_rerank`).

Features against an independent per-row computation on a hand-written two-round log; a planted
signal is learned; fits are deterministic; before it can train it keeps the retrieval order and
logs NaN; the selection contract holds with a trained reranker; batch size changes no log; bad
input stops the CLI with one line.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import test_selection_contract as contract
from conftest import policy_config, run_recloop, tiny_config

from experiments.config import parse_policy
from experiments.run import run
from policies import Interactions
from policies.components import BuildContext
from policies.interactions import RerankData, RerankRows
from policies.learned_rerank import LearnedRerank, RerankTrainer, feature_names
from policies.models import SOURCE_CODE, SOURCES
from policies.propensity import EXACT, EXACT_SEQUENTIAL_MC_MARGINAL
from policies.randomness import Randomness
from sim.event_log import CANDIDATES_SCHEMA, IMPRESSIONS_SCHEMA, partition_path
from sim.training_data import TrainingLog

# The selection contract's fixtures and checks, run on this module's ``server`` (trained rerankers).
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

# --------------------------------------------------------------------------------------------
# Features: the training rows against an independent computation on a tiny hand-written log
# --------------------------------------------------------------------------------------------

N_USERS, N_ITEMS, K = 4, 6, 2


def _impressions(rows: list[tuple]) -> pl.DataFrame:
    """rows: (request_id, t, user, item, position, model_version, score, clicked, source)."""
    cols = list(zip(*rows, strict=True))
    df = pl.DataFrame(
        {
            "request_id": cols[0],
            "t": cols[1],
            "user_id": cols[2],
            "item_id": cols[3],
            "position": cols[4],
            "model_version": cols[5],
            "policy": ["p"] * len(rows),
            "score": cols[6],
            "propensity": [1.0] * len(rows),
            "clicked": cols[7],
            "source": cols[8],
            "prefix_propensity": [1.0] * len(rows),
            "slate_propensity": [1.0] * len(rows),
            "propensity_method": ["exact"] * len(rows),
            "intervention": ["none"] * len(rows),
            "original_position": cols[4],
            "latency_ms": [20.0] * len(rows),
            "degraded": ["none"] * len(rows),
            "cache_hit": [False] * len(rows),
            "slate_age_h": [0.0] * len(rows),
            "rerank_score": [float("nan")] * len(rows),
        }
    )
    return df.select(list(IMPRESSIONS_SCHEMA)).cast(IMPRESSIONS_SCHEMA)


def _candidates(rows: list[tuple], retriever_rank: bool) -> pl.DataFrame:
    """rows: (request_id, item, score, rank, source[, retriever_rank])."""
    cols = list(zip(*rows, strict=True))
    data = {
        "request_id": cols[0],
        "item_id": cols[1],
        "score": cols[2],
        "rank": cols[3],
        "shown": [True] * len(rows),
        "show_probability": [1.0] * len(rows),
        "source": cols[4],
    }
    # Without the column: a log written before policy/retrieve existed.
    schema = {name: dtype for name, dtype in CANDIDATES_SCHEMA.items() if name != "retriever_rank"}
    if retriever_rank:
        data["retriever_rank"] = cols[5]
        schema["retriever_rank"] = pl.Int16()
    return pl.DataFrame(data).cast(schema)


NAN = float("nan")
# Round 0: the bootstrap (no model) and a model-served request; round 1: two model-served
# requests, one slot explored from beyond the candidates.
ROUND_IMPRESSIONS = [
    [
        (0, 1.0, 0, 0, 0, -1, NAN, True, "bootstrap"),
        (0, 1.0, 0, 1, 1, -1, NAN, False, "bootstrap"),
        (1, 5.0, 1, 2, 0, 0, 0.9, False, "als"),
        (1, 5.0, 1, 3, 1, 0, 0.5, True, "als"),
    ],
    [
        (2, 30.0, 0, 3, 0, 1, 0.8, True, "als"),
        (2, 30.0, 0, 4, 1, 1, 0.3, False, "explore"),
        (3, 31.0, 2, 0, 0, 1, 0.7, False, "als"),
        (3, 31.0, 2, 5, 1, 1, 0.6, True, "als"),
    ],
]
# Candidates, logged in a reranked order (rank) that is not the score order.
ROUND_CANDIDATES = [
    [
        (1, 2, 0.9, 1, "als", 0),
        (1, 3, 0.5, 0, "als", 1),
        (1, 1, 0.2, 2, "als", 2),
    ],
    [
        (2, 3, 0.8, 0, "als", 0),
        (2, 2, 0.1, 1, "als", 1),
        (3, 5, 0.6, 0, "als", 1),
        (3, 0, 0.7, 1, "als", 0),
        (3, 1, 0.65, 2, "popularity", 0),
    ],
]


def _write_log(root: Path, retriever_rank: bool) -> TrainingLog:
    log = TrainingLog(N_USERS, N_ITEMS, rerank_rounds=2)
    for r, (imp, cand) in enumerate(zip(ROUND_IMPRESSIONS, ROUND_CANDIDATES, strict=True)):
        ip, cp = partition_path(root, "impressions", r), partition_path(root, "candidates", r)
        ip.parent.mkdir(parents=True)
        cp.parent.mkdir(parents=True)
        _impressions(imp).write_parquet(ip)
        _candidates(cand, retriever_rank).write_parquet(cp)
        log.add_partition(ip, cp)
    return log


def _expected_rows(retriever_rank: bool) -> list[dict]:
    """Per model-served impression, computed row by row from the lists above."""
    out = []
    for r, imp in enumerate(ROUND_IMPRESSIONS):
        before = [row for rr in range(r) for row in ROUND_IMPRESSIONS[rr]]
        as_of = max((row[1] for row in before), default=0.0)
        for rid, _t, user, item, pos, version, score, clicked, source in imp:
            if version < 0:
                continue
            rank = NAN
            for c_rid, c_item, c_score, _rank, c_source, c_rr in ROUND_CANDIDATES[r]:
                if (c_rid, c_item) == (rid, item):
                    if retriever_rank:
                        rank = c_rr
                    else:  # its rank by score among the request's candidates of its source
                        rank = sum(
                            1
                            for o in ROUND_CANDIDATES[r]
                            if o[0] == rid and o[4] == c_source and o[2] > c_score
                        )
            out.append(
                {
                    "user": user,
                    "item": item,
                    "position": pos,
                    "score": score,
                    "clicked": clicked,
                    "source": SOURCE_CODE[source],
                    "rank": rank,
                    "item_clicks": sum(1 for b in before if b[3] == item and b[7]),
                    "item_impressions": sum(1 for b in before if b[3] == item),
                    "user_clicks": sum(1 for b in before if b[2] == user and b[7]),
                    "user_impressions": sum(1 for b in before if b[2] == user),
                    "as_of": as_of,
                }
            )
    return out


@pytest.mark.parametrize("retriever_rank", [False, True])
def test_training_rows_match_an_independent_computation(tmp_path, retriever_rank):
    log = _write_log(tmp_path, retriever_rank)
    data = log.interactions().rerank
    rows = data.rows
    expected = _expected_rows(retriever_rank)
    assert rows.n == len(expected) == 6  # bootstrap rows are left out
    got = {
        "user": rows.user_ids,
        "item": rows.item_ids,
        "position": rows.position,
        "score": rows.score,
        "clicked": rows.clicked,
        "source": rows.source,
        "rank": rows.retriever_rank,
        "item_clicks": rows.item_clicks,
        "item_impressions": rows.item_impressions,
        "user_clicks": rows.user_clicks,
        "user_impressions": rows.user_impressions,
        "as_of": rows.as_of_t,
    }
    for key, values in got.items():
        want = np.array([e[key] for e in expected], dtype=float)
        np.testing.assert_allclose(np.asarray(values, dtype=float), want, err_msg=key)
    # serving-time counts: the whole log
    all_rows = [row for imp in ROUND_IMPRESSIONS for row in imp]
    item_clicks = [sum(1 for b in all_rows if b[3] == i and b[7]) for i in range(N_ITEMS)]
    user_imps = [sum(1 for b in all_rows if b[2] == u) for u in range(N_USERS)]
    np.testing.assert_array_equal(data.item_clicks, item_clicks)
    np.testing.assert_array_equal(data.user_impressions, user_imps)
    assert data.now == 31.0


def test_feature_matrix_columns_are_the_named_features(tmp_path):
    log = _write_log(tmp_path, retriever_rank=False)
    inter = log.interactions()
    rng = np.random.default_rng(0)
    content = rng.normal(size=(N_ITEMS, 3))
    arrival = np.array([0.0, 2.0, 4.0, 0.0, 1.0, 3.0])
    from policies.learned_rerank import training_features

    rows = inter.rerank.rows
    x = training_features(rows, content, arrival)
    names = feature_names(3)
    assert x.shape == (rows.n, len(names))
    col = {n: x[:, j] for j, n in enumerate(names)}
    for i in range(rows.n):  # one row at a time
        item = rows.item_ids[i]
        assert col["item_age_h"][i] == rows.as_of_t[i] - arrival[item]
        np.testing.assert_array_equal([col[f"content_{j}"][i] for j in range(3)], content[item])
        assert col["position"][i] == rows.position[i]
        assert col["source"][i] == rows.source[i]
    np.testing.assert_array_equal(col["model_score"], rows.score)
    np.testing.assert_array_equal(col["user_impressions"], rows.user_impressions)


# --------------------------------------------------------------------------------------------
# Learning a planted signal; determinism
# --------------------------------------------------------------------------------------------

P_ITEMS, P_USERS, P_ROWS = 300, 200, 30_000


P_CONTENT = np.random.default_rng(100).normal(size=(P_ITEMS, 4))


def _planted(seed: int = 0, n_rows: int = P_ROWS) -> tuple[np.ndarray, RerankData]:
    """A synthetic log whose clicks depend on content feature 0 only (plus position)."""
    rng = np.random.default_rng(seed)
    content = P_CONTENT
    users = rng.integers(0, P_USERS, n_rows)
    items = rng.integers(0, P_ITEMS, n_rows)
    position = rng.integers(0, 5, n_rows)
    logit = 1.5 * content[items, 0] - 2.0 - 0.3 * position
    clicked = rng.random(n_rows) < 1 / (1 + np.exp(-logit))
    z = np.zeros(n_rows)
    rows = RerankRows(
        user_ids=users,
        item_ids=items,
        position=position,
        score=rng.normal(size=n_rows),  # the model score carries no signal here
        clicked=clicked,
        source=np.full(n_rows, SOURCE_CODE["als"]),
        retriever_rank=rng.integers(0, 10, n_rows).astype(float),
        item_clicks=z,
        item_impressions=z,
        user_clicks=z,
        user_impressions=z,
        as_of_t=z,
    )
    data = RerankData(
        rows, np.zeros(P_ITEMS), np.zeros(P_ITEMS), np.zeros(P_USERS), np.zeros(P_USERS), 0.0
    )
    return content, data


def _trainer(content: np.ndarray, seed: int = 3, **keys) -> RerankTrainer:
    ctx = BuildContext(n_users=P_USERS, n_items=P_ITEMS, slate_size=5, seed=0, item_content=content)
    return LearnedRerank(**keys).build(ctx, seed)


def _inter(data: RerankData) -> Interactions:
    return Interactions(Interactions.empty(P_USERS, P_ITEMS).clicks, rerank=data)


def _auc(score: np.ndarray, label: np.ndarray) -> float:
    """P(score of a random positive > that of a random negative), ties half (by brute force)."""
    pos, neg = score[label], score[~label]
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (pos.size * neg.size))


def _candidate_retrieval(n: int, c: int, seed: int):
    from policies.models import Retrieval

    rng = np.random.default_rng(seed)
    items = np.array([rng.choice(P_ITEMS, c, replace=False) for _ in range(n)])
    scores = np.sort(rng.normal(size=(n, c)), axis=1)[:, ::-1].astype(np.float32)
    return Retrieval(items, scores, np.full(n, SOURCE_CODE["als"], dtype=np.int8))


def _ctx(retrieval, users):
    from policies.selection import SelectionContext

    return SelectionContext(
        user_ids=users,
        candidates=retrieval.items,
        scores=retrieval.scores,
        excluded=np.empty((users.size, 0), dtype=np.int64),
        n_items=P_ITEMS,
        model=None,
        model_version=1,
        item_impressions=np.zeros(P_ITEMS),
    )


@pytest.mark.parametrize("position_ipw", [False, True])
def test_reranker_learns_a_planted_content_signal(position_ipw):
    content, data = _planted()
    fitted = _trainer(content, position_ipw=position_ipw).fit(_inter(data), version=1)
    assert fitted is not None
    # held-out impressions: AUC of the predicted click probability
    _, test = _planted(seed=1, n_rows=4000)
    from policies.learned_rerank import training_features

    p = fitted.predict(training_features(test.rows, content, np.zeros(P_ITEMS)))
    assert _auc(p, test.rows.clicked) > 0.7
    # serving: candidates come out ordered by content feature 0
    n, c = 50, 10
    retrieval = _candidate_retrieval(n, c, seed=2)
    users = np.arange(n)
    ctx, reordered, prob = fitted.rerank(_ctx(retrieval, users), retrieval)
    assert (np.diff(prob, axis=1) <= 0).all()
    np.testing.assert_array_equal(ctx.candidates, reordered.items)
    np.testing.assert_array_equal(np.sort(reordered.items, 1), np.sort(retrieval.items, 1))
    first = content[reordered.items[:, 0], 0]
    best = content[retrieval.items, 0].max(axis=1)
    top3 = np.sort(content[retrieval.items, 0], axis=1)[:, -3]
    assert (first >= top3).mean() > 0.9  # the top pick is among the 3 best by the planted feature
    assert (first == best).mean() > 0.6
    # the model's score follows each candidate; the selector sees logit(p)
    for r in range(n):
        before = dict(zip(retrieval.items[r], retrieval.scores[r], strict=True))
        after = dict(zip(reordered.items[r], reordered.scores[r], strict=True))
        assert before == after
    np.testing.assert_allclose(1 / (1 + np.exp(-ctx.scores.astype(float))), prob, rtol=1e-5)


def test_fits_are_deterministic_and_survive_a_deep_copy():
    content, data = _planted()
    a = _trainer(content).fit(_inter(data), version=2)
    b = _trainer(content).fit(_inter(data), version=2)
    retrieval = _candidate_retrieval(40, 8, seed=5)
    users = np.arange(40)
    pa = a.rerank(_ctx(retrieval, users), retrieval)[2]
    np.testing.assert_array_equal(pa, b.rerank(_ctx(retrieval, users), retrieval)[2])
    np.testing.assert_array_equal(pa, copy.deepcopy(a).rerank(_ctx(retrieval, users), retrieval)[2])
    assert a.booster.model_to_string() == b.booster.model_to_string()
    # another seed draws another subsample
    small = {"max_training_rows": 5000}
    c1 = _trainer(content, seed=3, **small).fit(_inter(data), version=2)
    c2 = _trainer(content, seed=4, **small).fit(_inter(data), version=2)
    assert c1.booster.model_to_string() != c2.booster.model_to_string()


def test_too_few_clicks_trains_nothing():
    content, data = _planted(n_rows=400)
    n_clicks = int(data.rows.clicked.sum())
    assert _trainer(content, min_train_clicks=n_clicks + 1).fit(_inter(data), 1) is None
    assert _trainer(content, min_train_clicks=n_clicks).fit(_inter(data), 1) is not None
    assert _trainer(content).fit(Interactions.empty(P_USERS, P_ITEMS), 1) is None


# --------------------------------------------------------------------------------------------
# Inside a serving policy: identity before training, the selection contract after
# --------------------------------------------------------------------------------------------


def _contract_rerank_data(inter: Interactions, seed: int = 0) -> Interactions:
    """The contract's log plus reranker rows over its tiny catalog (clicks favour low item ids)."""
    rng = np.random.default_rng(seed)
    m = 3000
    users = rng.integers(0, contract.N_USERS, m)
    items = rng.integers(0, contract.N_ITEMS, m)
    clicked = rng.random(m) < np.where(items < 10, 0.4, 0.05)
    z = np.zeros(m)
    rows = RerankRows(
        users,
        items,
        rng.integers(0, contract.K, m),
        rng.normal(size=m),
        clicked,
        np.full(m, SOURCE_CODE["als"]),
        rng.integers(0, contract.C, m).astype(float),
        z,
        z,
        z,
        z,
        z,
    )
    data = RerankData(
        rows,
        np.bincount(items[clicked], minlength=contract.N_ITEMS).astype(float),
        np.bincount(items, minlength=contract.N_ITEMS).astype(float),
        np.bincount(users[clicked], minlength=contract.N_USERS).astype(float),
        np.bincount(users, minlength=contract.N_USERS).astype(float),
        0.0,
    )
    return dataclasses.replace(inter, rerank=data)


def _rerank_policy(world, selector: str = "greedy", **keys):
    config = contract._tiny(
        contract.CONFIG_DIR / "greedy.yaml",
        selector=selector,
        rerank="learned",
        **{
            "rerank.n_estimators": 20,
            "rerank.min_child_samples": 5,
            "rerank.min_train_clicks": 10,
        },
        **keys,
    )
    return config, contract._build(config, world)


def test_before_training_the_order_is_the_retrieval_order_and_rerank_score_nan(world, clicks):
    inter, _ = clicks
    users = np.arange(contract.N_USERS)
    plain = contract._build(contract._tiny(contract.CONFIG_DIR / "greedy.yaml"), world)
    plain.deploy(plain.fit(inter, version=1))
    expected = plain.serve(users, Randomness.from_seed(0))
    _, policy = _rerank_policy(world)
    assert policy.serve(users, Randomness.from_seed(0)).rerank_score is None  # bootstrap
    empty = _contract_rerank_data(inter)
    empty = dataclasses.replace(
        empty, rerank=dataclasses.replace(empty.rerank, rows=RerankRows.concat([]))
    )
    for log in (inter, empty):  # no reranker rows at all; none served by a model yet
        policy.deploy(policy.fit(log, version=1))
        assert policy.deployment.reranker is None
        batch = policy.serve(users, Randomness.from_seed(0))
        assert batch.rerank_score is None
        for f in contract.SLATE_FIELDS:
            a, b = getattr(batch, f), getattr(expected, f)
            if isinstance(a, np.ndarray):
                np.testing.assert_array_equal(a, b, err_msg=f)
            elif f != "policy_name":
                assert a == b, f


def test_trained_policy_reorders_and_logs_rerank_score(world, clicks):
    inter, _ = clicks
    _, policy = _rerank_policy(world)
    policy.deploy(policy.fit(_contract_rerank_data(inter), version=1))
    assert policy.deployment.reranker is not None
    users = np.arange(contract.N_USERS)
    batch = policy.serve(users, Randomness.from_seed(0))
    assert batch.rerank_score.dtype == np.float32 and np.isfinite(batch.rerank_score).all()
    assert (np.diff(batch.rerank_score, axis=1) <= 0).all()  # greedy shows them best first
    np.testing.assert_array_equal(batch.items, batch.candidates[:, : contract.K])
    # the logged score stays the model's (retrieval) score of the item
    plain = contract._build(contract._tiny(contract.CONFIG_DIR / "greedy.yaml"), world)
    plain.deploy(plain.fit(inter, version=1))
    retrieved = plain.serve(users, Randomness.from_seed(0))
    for u in users:
        score_of = dict(zip(retrieved.candidates[u], retrieved.candidate_scores[u], strict=True))
        assert [score_of[i] for i in batch.items[u]] == list(batch.score[u])
        assert sorted(batch.candidates[u]) == sorted(retrieved.candidates[u])
    # low item ids were planted as clicked more: they move up
    assert (batch.items < 10).mean() > (batch.candidates < 10).mean()


def _rerank_server(selector: str, world, clicks) -> contract.Server:
    inter, per_user = clicks
    config, policy = _rerank_policy(world, selector)
    policy.deploy(policy.fit(_contract_rerank_data(inter), version=contract.FIT_VERSION))
    assert policy.deployment.reranker is not None

    def serve(ctx, rand):
        batch = policy.serve(contract.POLICY_USERS[np.asarray(ctx, dtype=np.int64)], rand)
        out = {f: getattr(batch, f) for f in contract.SLATE_FIELDS}
        out["slate_propensity"] = batch.slate_propensity
        out["method"] = out.pop("propensity_method")
        return out

    clicked = [per_user[u] for u in contract.POLICY_USERS]
    method = EXACT_SEQUENTIAL_MC_MARGINAL if selector == "softmax" else EXACT
    return contract.Server(
        name=f"rerank:{selector}",
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
    return _rerank_server(request.param, world, clicks)


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"learning_rate": 0}, "policy.rerank.learning_rate=0"),
        ({"n_estimators": 0}, "policy.rerank.n_estimators=0"),
        ({"num_leaves": 1}, "policy.rerank.num_leaves=1"),
        ({"training_rounds": -1}, "policy.rerank.training_rounds=-1"),
        ({"max_training_rows": 1.5}, "policy.rerank.max_training_rows=1.5"),
        ({"position_ipw": "yes"}, "policy.rerank.position_ipw='yes'"),
        ({"ipw_propensity": "oracle"}, "policy.rerank.ipw_propensity='oracle'"),
        ({"ipw_clip": 0.5}, "policy.rerank.ipw_clip=0.5"),
        ({"reference_slot": -1}, "policy.rerank.reference_slot=-1"),
        ({"reference_slot": 10}, "policy.rerank.reference_slot=10: must be < policy.slate_size"),
    ],
)
def test_bad_hyperparameters_name_the_key(keys, message):
    raw = tiny_config(**{"policy.rerank": "learned"})["policy"]
    raw["slate_size"] = 10
    raw["rerank"].update(keys)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(".", r"\.")):
        parse_policy(raw)


@pytest.mark.parametrize(
    ("groups", "message"),
    [
        (("scorer=random", "selector=uniform"), "policy.rerank='learned': scorer 'random'"),
        (("selector=ucb",), "policy.rerank='learned': selector 'ucb' draws from the model's"),
        (("selector=thompson",), "policy.rerank='learned': selector 'thompson'"),
    ],
)
def test_incompatible_components_are_refused(groups, message):
    with pytest.raises(ValueError, match=message):
        policy_config(rerank="learned", **dict(g.split("=") for g in groups))


def test_randomized_ipw_needs_shuffled_traffic():
    keys = {"rerank.position_ipw": True, "rerank.ipw_propensity": "randomized"}
    with pytest.raises(ValueError, match=r"policy\.rerank\.ipw_propensity='randomized'"):
        policy_config(rerank="learned", **keys)
    config = policy_config(rerank="learned", intervention="shuffle", **keys)
    assert config.rerank.position_ipw and config.intervention.kind == "shuffle"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["policy/scorer=random", "policy/selector=uniform"], "scorer 'random'"),
        (["policy/selector=ucb"], "selector 'ucb'"),
        (["policy.rerank.num_leaves=0"], "policy.rerank.num_leaves=0"),
    ],
)
def test_cli_refuses_bad_rerank_input_with_one_line(tmp_path, args, message):
    out = tmp_path / "out"
    proc = run_recloop("policy/rerank=learned", *args, f"hydra.run.dir={out}", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "policy.rerank" in lines[0] and message in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists()


# --------------------------------------------------------------------------------------------
# End to end: batch size changes nothing; the log carries rerank_score
# --------------------------------------------------------------------------------------------


def _tables(run_dir: Path) -> dict[str, pl.DataFrame]:
    logs = run_dir / "logs"
    return {
        t: pl.read_parquet(logs / t / "**" / "*.parquet", hive_partitioning=True).sort(
            ["request_id", "position" if t != "candidates" else "rank"]
        )
        for t in ("impressions", "candidates", "truth")
    }


@pytest.mark.slow
def test_batch_size_changes_no_log_end_to_end(tmp_path):
    keys = {
        "policy.rerank": "learned",
        "sim.days": 5,
        "metrics.ndcg_users": 0,
        "report.enabled": False,
        "policy.rerank.min_train_clicks": 10,
        "policy.rerank.n_estimators": 30,
    }
    run(tiny_config(**keys), tmp_path / "whole")
    run(tiny_config(**keys, **{"sim.max_batch_requests": 1}), tmp_path / "one")
    whole, one = _tables(tmp_path / "whole"), _tables(tmp_path / "one")
    for table in whole:
        assert whole[table].equals(one[table], null_equal=True), table
    imp = whole["impressions"]
    served = imp.filter(pl.col("rerank_score").is_not_nan())
    assert served.height > 0 and served["model_version"].min() >= 1  # v0 trains on bootstrap
    assert imp.filter(pl.col("model_version") <= 0)["rerank_score"].is_nan().all()
    assert ((served["rerank_score"] > 0) & (served["rerank_score"] < 1)).all()
    assert list(imp.columns[: len(IMPRESSIONS_SCHEMA)]) == list(IMPRESSIONS_SCHEMA)


@pytest.mark.slow
def test_without_the_reranker_rerank_score_is_nan(tmp_path):
    run(tiny_config(**{"sim.days": 3, "report.enabled": False}), tmp_path / "r")
    imp = _tables(tmp_path / "r")["impressions"]
    assert imp["rerank_score"].dtype == pl.Float32 and imp["rerank_score"].is_nan().all()


def test_sources_are_codes_of_the_enum():
    assert SOURCES.index("als") == SOURCE_CODE["als"]
