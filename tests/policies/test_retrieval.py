"""The retrieval stage (policies.retrieval): quotas, merge order, sources and retriever ranks,
co-visitation counts and recency, each against an independent per-request Python reference; the
recall probe; batch-size independence end to end; bad input through the CLI."""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp
from conftest import policy_config, run_recloop, tiny_config

from agents.streams import Streams
from agents.world import WorldConfig, build_world
from experiments.config import ConfigError, parse_config
from experiments.run import run
from policies import Interactions, build_policy
from policies.exclusion import batch_filter
from policies.models import SOURCE_CODE
from policies.retrieval import (
    RETRIEVERS,
    MixedRetrieval,
    covisitation,
    quota_slots,
    recent_clicks,
    sparse_topk,
    top_neighbours,
)
from sim.model_quality import RetrievalRecallProbe

N_USERS, N_ITEMS, K, C = 40, 30, 3, 8
QUOTAS = {"als": 0.5, "covisit": 0.25, "popularity": 0.125, "content": 0.125}
NEIGHBOURS = 4  # co-visited items kept per item: small enough to cut the tiny world's lists


# --- slots ---------------------------------------------------------------------------------


def test_slots_of_the_issue_example():
    quotas = {"model": 0.6, "covisit": 0.2, "popularity": 0.1, "content": 0.1}
    assert quota_slots(quotas, 30) == {"model": 18, "covisit": 6, "content": 3, "popularity": 3}
    # 3.6, 1.2, 0.6, 0.6 -> floors 3, 1, 0, 0; two slots left go to the largest remainders,
    # ties (0.6) in priority order: model, then content
    assert quota_slots(quotas, 6) == {"model": 4, "covisit": 1, "content": 1, "popularity": 0}


@pytest.mark.parametrize("seed", range(20))
def test_slots_add_up_to_n_and_follow_largest_remainder(seed):
    rng = np.random.default_rng(seed)
    q = rng.dirichlet(np.ones(4)) * (rng.random(4) < 0.8)
    q = q / q.sum() if q.sum() else np.array([1.0, 0, 0, 0])
    quotas = dict(zip(RETRIEVERS, q.tolist(), strict=True))
    for n in (1, 2, 7, 30, 101):
        slots = quota_slots(quotas, n)
        assert sum(slots.values()) == n
        for r in RETRIEVERS:  # never more than one slot from the exact share
            assert abs(slots[r] - quotas[r] * n) < 1.0 + 1e-9


# --- recency, co-visitation, sparse top-k --------------------------------------------------


def _events(seed: int, n_users: int = 12, n_items: int = 15, m: int = 120):
    rng = np.random.default_rng(seed)
    users = rng.integers(0, n_users, m)
    items = rng.integers(0, n_items, m)
    return users, items


def _recent_reference(users, items, limit):
    """Per user, the ``limit`` last distinct items in event order."""
    out: dict[int, list[int]] = {}
    for u, i in zip(users[::-1].tolist(), items[::-1].tolist(), strict=True):
        got = out.setdefault(u, [])
        if i not in got and len(got) < limit:
            got.append(i)
    return out


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("limit", [1, 3, 50])
def test_recent_clicks_are_the_last_distinct_clicks_in_log_order(seed, limit):
    users, items = _events(seed)
    inter = Interactions.from_pairs(users, items, 12, 15, click_positions=np.zeros(users.size))
    got = recent_clicks(inter, limit)
    ref = _recent_reference(users, items, limit)
    for u in range(12):
        assert set(got[u].indices.tolist()) == set(ref.get(u, [])), u


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("limit", [2, 50])
def test_covisitation_counts_match_a_brute_force_count(seed, limit):
    users, items = _events(seed)
    inter = Interactions.from_pairs(users, items, 12, 15, click_positions=np.zeros(users.size))
    counts = covisitation(recent_clicks(inter, limit)).toarray()
    ref = np.zeros((15, 15))
    for clicked in _recent_reference(users, items, limit).values():
        for x, y in itertools.permutations(set(clicked), 2):
            ref[x, y] += 1  # users who clicked x also clicked y
    np.testing.assert_array_equal(counts, ref)


@pytest.mark.parametrize("m", [1, 3, 40])
def test_top_neighbours_keep_each_items_largest_counts(m):
    users, items = _events(3)
    inter = Interactions.from_pairs(users, items, 12, 15, click_positions=np.zeros(users.size))
    counts = covisitation(recent_clicks(inter, 50)).toarray()
    got = top_neighbours(sp.csr_matrix(counts), m).toarray()
    for x in range(15):
        row = sorted((y for y in range(15) if counts[x, y] > 0), key=lambda y: (-counts[x, y], y))
        expected = np.zeros(15)
        expected[row[:m]] = counts[x, row[:m]]
        np.testing.assert_array_equal(got[x], expected)


@pytest.mark.parametrize("seed", range(5))
def test_sparse_topk_matches_a_per_row_sort(seed):
    rng = np.random.default_rng(seed)
    dense = rng.integers(0, 4, (9, 20)).astype(float) * (rng.random((9, 20)) < 0.5)
    filt = sp.csr_matrix((rng.random((9, 20)) < 0.2).astype(float))
    filt.sort_indices()
    items, valid = sparse_topk(sp.csr_matrix(dense), 5, filt)
    for r in range(9):
        blocked = set(filt[r].indices.tolist())
        ranked = sorted(
            (j for j in range(20) if dense[r, j] > 0 and j not in blocked),
            key=lambda j: (-dense[r, j], j),
        )[:5]
        assert items[r, valid[r]].tolist() == ranked
        assert valid[r].tolist() == [True] * len(ranked) + [False] * (5 - len(ranked))


# --- the mixed retrieval against a per-request reference -----------------------------------


@pytest.fixture(scope="module")
def world():
    cfg = WorldConfig(n_users=N_USERS, n_items=N_ITEMS, dim=4, n_topics=3, content_dim=5)
    return build_world(cfg, Streams(11))


@pytest.fixture(scope="module")
def log():
    """Clicks in log order: user 0 cold; user 1 clicked all but 4 items (filter relaxed)."""
    rng = np.random.default_rng(5)
    users, items = [], []
    for _ in range(400):
        u = int(rng.integers(2, N_USERS))
        users.append(u)
        items.append(int(rng.integers(0, N_ITEMS)) if u % 3 else int(rng.integers(0, 8)))
    users += [1] * (N_ITEMS - 4)
    items += list(range(4, N_ITEMS))
    order = rng.permutation(len(users))  # log order: not sorted by user or item
    users, items = np.array(users)[order], np.array(items)[order]
    return Interactions.from_pairs(
        users,
        items,
        N_USERS,
        N_ITEMS,
        item_impressions=np.ones(N_ITEMS),
        click_positions=np.zeros(users.size, dtype=np.int64),
    )


def _mixed_policy(world, log, preset="greedy", **keys):
    config = policy_config(
        preset,
        lenient=True,
        retrieve="mixed",
        slate_size=K,
        n_candidates=C,
        factors=4,
        iterations=3,
        **keys,
    )
    mixed = MixedRetrieval(quotas=QUOTAS, seed_clicks=3, covisit_neighbours=NEIGHBOURS)
    config = dataclasses.replace(config, retrieve=mixed)
    policy = build_policy(
        config, N_ITEMS, N_USERS, seed=3, item_content=world.catalog.metadata.content
    )
    deployment = policy.fit(log, version=0)
    policy.deploy(deployment)
    return policy, deployment


def _reference(policy, deployment, log, world, user: int):
    """One request, per item in Python: (items, sources, ranks) ranked as the stage must."""
    model = deployment.model
    seen = set(model.seen[user].indices.tolist())
    if N_ITEMS - len(seen) < max(C, 2 * K):
        seen = set()  # relaxed filter
    slots = quota_slots(policy.config.retrieve.quotas, C)
    users, items = log.click_events.user_ids, log.click_events.item_ids
    seeds = _recent_reference(users, items, 3).get(user, [])
    everyone = _recent_reference(users, items, 50)
    co = {}
    for clicked in everyone.values():
        for x, y in itertools.permutations(set(clicked), 2):
            co[(x, y)] = co.get((x, y), 0) + 1
    kept = set()  # each item's NEIGHBOURS largest co-visit counts, ties by item id
    for x in range(N_ITEMS):
        row = sorted(
            (y for y in range(N_ITEMS) if co.get((x, y), 0) > 0), key=lambda y: (-co[(x, y)], y)
        )
        kept |= {(x, y) for y in row[:NEIGHBOURS]}
    allowed = [j for j in range(N_ITEMS) if j not in seen]
    lists = {}
    covisit = {j: sum(co[(x, j)] for x in seeds if (x, j) in kept) for j in allowed}
    lists["covisit"] = sorted(
        (j for j in allowed if covisit[j] > 0), key=lambda j: (-covisit[j], j)
    )
    content = world.catalog.metadata.content.astype(np.float64)
    unit = content / np.linalg.norm(content, axis=1, keepdims=True)
    if seeds:
        mean = content[seeds].mean(axis=0)
        cos = {j: float(unit[j] @ mean) / np.linalg.norm(mean) for j in allowed}
        lists["content"] = sorted(allowed, key=lambda j: (-cos[j], j))
    else:
        lists["content"] = []
    pop = np.bincount(items, minlength=N_ITEMS)
    lists["popularity"] = sorted(allowed, key=lambda j: (-pop[j], j))
    unfiltered = sp.csr_matrix((1, N_ITEMS))
    full = model.retrieve(np.array([user]), N_ITEMS, unfiltered)  # the whole ranking
    model_items = [j for j in full.items[0].tolist() if j not in seen]
    # the model retriever's score where it fetched the item (its first 2C - slots_model allowed
    # items), else model.score
    fetched = model_items[: 2 * C - slots["model"]]
    model_score = dict(zip(full.items[0].tolist(), full.scores[0].tolist(), strict=True))
    others = np.arange(N_ITEMS)[None, :]
    scored = model.score(np.array([user]), others)[0]
    model_score = {j: model_score[j] if j in fetched else float(scored[j]) for j in range(N_ITEMS)}
    model_source = int(full.source[0])
    merged: list[tuple[int, int, int]] = []  # (item, source code, rank)
    taken: set[int] = set()

    def take(item, code, rank):
        if item not in taken and len(merged) < C:
            taken.add(item)
            merged.append((item, code, rank))

    for r, item in enumerate(model_items[: slots["model"]]):
        take(item, model_source, r)
    for name in ("covisit", "content", "popularity"):
        for r, item in enumerate(lists[name][: slots[name]]):
            take(item, SOURCE_CODE[name], r)
    for r, item in enumerate(model_items):
        if r >= slots["model"]:
            take(item, model_source, r)
    # ranked by the model's score (its retrieval score), ties in merge order
    order = sorted(range(C), key=lambda p: (-model_score[merged[p][0]], p))
    return [merged[p] for p in order], slots


def test_mixed_retrieval_matches_a_per_request_reference(world, log):
    policy, deployment = _mixed_policy(world, log)
    users = np.arange(N_USERS)
    got, _ = policy.retrieve(users, deployment)
    seen_sources = set()
    for u in users.tolist():
        ref, slots = _reference(policy, deployment, log, world, u)
        assert got.items[u].tolist() == [x[0] for x in ref], u
        assert got.candidate_source[u].tolist() == [x[1] for x in ref], u
        assert got.rank[u].tolist() == [x[2] for x in ref], u
        seen_sources |= set(got.candidate_source[u].tolist())
        # quotas: each other retriever at most its slots; unique candidates
        for name in ("covisit", "content", "popularity"):
            assert (got.candidate_source[u] == SOURCE_CODE[name]).sum() <= slots[name]
        assert len(set(got.items[u].tolist())) == C
    # the fixture exercises every retriever and the cold-user fallback
    assert {SOURCE_CODE[s] for s in ("als", "covisit", "content", "popularity")} <= seen_sources
    assert SOURCE_CODE["popularity_fallback"] in seen_sources


def test_mixed_scores_are_model_scores_ranked_best_first(world, log):
    policy, deployment = _mixed_policy(world, log)
    users = np.arange(2, N_USERS)  # warm users
    got, _ = policy.retrieve(users, deployment)
    np.testing.assert_allclose(
        got.scores, deployment.model.score(users, got.items), rtol=1e-5, atol=1e-6
    )
    assert (np.diff(got.scores, axis=1) <= 0).all()


def test_the_log_carries_each_candidates_source_and_retriever_rank(world, log):
    from policies.randomness import Randomness

    policy, deployment = _mixed_policy(world, log, preset="softmax", mc_samples=10)
    users = np.arange(N_USERS)
    batch = policy.serve(users, Randomness.from_seed(1))
    got, _ = policy.retrieve(users, deployment)
    np.testing.assert_array_equal(batch.candidates, got.items)
    np.testing.assert_array_equal(batch.candidate_source, got.candidate_source)
    np.testing.assert_array_equal(batch.candidate_retriever_rank, got.rank)
    # a shown slot's source is its candidate's (softmax never explores beyond the candidates)
    match = batch.candidates[:, :, None] == batch.items[:, None, :]
    expected = np.take_along_axis(got.candidate_source, match.argmax(axis=1), axis=1)
    explore = batch.source == SOURCE_CODE["explore"]
    np.testing.assert_array_equal(batch.source[~explore], expected[~explore])


def test_model_retrieval_is_todays_retrieve_and_its_recall_is_one(world, log):
    config = policy_config(
        "greedy", slate_size=K, n_candidates=C, factors=4, iterations=3
    )  # default retrieve=model
    policy = build_policy(config, N_ITEMS, N_USERS, seed=3)
    deployment = policy.fit(log, version=0)
    users = np.arange(N_USERS)
    got, _ = policy.retrieve(users, deployment)
    filt = batch_filter(deployment.model.seen, users, max(C, 2 * K))
    today = deployment.model.retrieve(users, C, filt)
    np.testing.assert_array_equal(got.items, today.items)
    assert got.candidate_source is None and got.rank is None
    assert RetrievalRecallProbe(users)(policy, deployment) == (1.0, 1.0)


def test_mixed_with_the_whole_quota_on_the_model_is_the_model_retrieval(world, log):
    policy, deployment = _mixed_policy(world, log)
    only_model = dataclasses.replace(policy.config.retrieve, quotas={"als": 1.0})
    policy.config = dataclasses.replace(policy.config, retrieve=only_model)
    deployment = policy.fit(log, version=0)
    users = np.arange(N_USERS)
    got, filt = policy.retrieve(users, deployment)
    today = deployment.model.retrieve(users, C, filt)
    np.testing.assert_array_equal(got.items, today.items)
    np.testing.assert_array_equal(got.scores, today.scores)
    np.testing.assert_array_equal(got.candidate_source, today.sources)
    np.testing.assert_array_equal(got.rank, np.broadcast_to(np.arange(C), (N_USERS, C)))


def test_recall_probe_against_a_brute_force_share(world, log):
    policy, deployment = _mixed_policy(world, log)
    users = np.arange(N_USERS)
    recall_k, recall_n = RetrievalRecallProbe(users)(policy, deployment)
    got, filt = policy.retrieve(users, deployment)
    exact = deployment.model.retrieve(users, C, filt).items
    share_k = [len(set(exact[u, :K]) & set(got.items[u])) / K for u in users]
    share_n = [len(set(exact[u]) & set(got.items[u])) / C for u in users]
    assert recall_k == pytest.approx(np.mean(share_k), abs=1e-12)
    assert recall_n == pytest.approx(np.mean(share_n), abs=1e-12)
    assert recall_n < 1.0  # other retrievers took slots the model would have filled


# --- config validation ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("quotas", "message"),
    [
        ({"als": 0.9, "covisit": 0.2}, "policy.retrieve.quotas={als: 0.9, covisit: 0.2}: must sum"),
        (
            {"als": 1.1, "covisit": -0.1},
            "policy.retrieve.quotas.covisit=-0.1: must be a number >= 0",
        ),
        ({"als": 0.5, "ann": 0.5}, "policy.retrieve.quotas.ann=0.5: unknown retriever"),
        ({"als": 0.5, "model": 0.5}, "policy.retrieve.quotas.model=0.5: the same retriever"),
        ({"als": "a lot"}, "policy.retrieve.quotas.als='a lot': must be a number >= 0"),
        ({"als": math.nan}, "policy.retrieve.quotas.als=nan: must be a number >= 0"),
        ({}, "policy.retrieve.quotas={}: must be a non-empty mapping"),
    ],
)
def test_bad_quotas_are_one_line_naming_the_key(quotas, message):
    with pytest.raises(ValueError) as err:
        MixedRetrieval(quotas=quotas)
    assert str(err.value).startswith(message), str(err.value)
    assert "\n" not in str(err.value)


def test_quotas_within_tolerance_are_accepted():
    MixedRetrieval(quotas={"als": 0.7, "covisit": 0.1, "content": 0.1, "popularity": 0.1})
    MixedRetrieval(quotas={"model": 1.0 - 1e-10})


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ("policy/retrieve=mixed", "policy.retrieve.seed_clicks=0"),
            "policy.retrieve.seed_clicks=0",
        ),
        (
            ("policy=random", "policy/retrieve=mixed"),
            "policy.retrieve='mixed': its model retriever",
        ),
        (("policy/retrieve=mixed", "+policy.retrieve.topk=3"), "policy.retrieve.topk: unknown key"),
    ],
)
def test_bad_retrieve_configs_name_the_key(overrides, message):
    with pytest.raises(ConfigError) as err:
        parse_config(tiny_config(*overrides))
    assert str(err.value).startswith(message), str(err.value)


@pytest.mark.parametrize(
    ("args", "key"),
    [
        (("policy/retrieve=mixed", "policy.retrieve.quotas.als=0.9"), "policy.retrieve.quotas="),
        (("policy/retrieve=mixed", "+policy.retrieve.quotas.ann=0.1"), "quotas.ann=0.1"),
        (("policy/retrieve=mixed", "policy.retrieve.quotas.covisit=-0.2"), "quotas.covisit=-0.2"),
    ],
)
def test_cli_bad_quotas_exit_2_with_one_line(tmp_path, args, key):
    out = tmp_path / "out"
    proc = run_recloop(*args, f"hydra.run.dir={out}", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and key in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists()


# --- end to end ----------------------------------------------------------------------------


def _tables(out, table):
    return pl.read_parquet(out / "logs" / table).sort("request_id", maintain_order=True)


@pytest.mark.slow
def test_mixed_retrieval_does_not_depend_on_the_batch_size(tmp_path):
    overrides = ("policy=softmax", "policy/retrieve=mixed")
    run(tiny_config(*overrides, **{"sim.days": 3}), tmp_path / "whole")
    run(tiny_config(*overrides, **{"sim.days": 3, "sim.max_batch_requests": 1}), tmp_path / "one")
    for table in ("impressions", "candidates"):
        a, b = _tables(tmp_path / "whole", table), _tables(tmp_path / "one", table)
        assert a.height > 0
        assert a.equals(b), table
    cands = _tables(tmp_path / "whole", "candidates")
    used = set(cands["source"].cast(pl.String).unique().to_list())
    assert {"als", "covisit", "content", "popularity"} <= used
    per_request = cands.group_by("request_id").agg(
        pl.len().alias("n"), pl.col("item_id").n_unique().alias("unique")
    )
    assert (per_request["n"] == per_request["unique"]).all()
    dep = pl.read_parquet(tmp_path / "whole" / "logs" / "deployments.parquet")
    assert dep["retrieval_recall_n"].is_between(0.0, 1.0).all()


def test_model_retrieval_logs_recall_one_and_retriever_rank_equal_to_rank(run_tiny):
    out = run_tiny("run", sim__days=3)
    dep = pl.read_parquet(out / "logs" / "deployments.parquet")
    assert dep.height > 0
    assert (dep["retrieval_recall"] == 1.0).all() and (dep["retrieval_recall_n"] == 1.0).all()
    cands = pl.read_parquet(out / "logs" / "candidates")
    assert cands.schema["retriever_rank"] == pl.Int16
    assert (cands["retriever_rank"] == cands["rank"]).all()


def test_recall_is_nan_without_probe_users(run_tiny):
    out = run_tiny("run", sim__days=2, metrics__ndcg_users=0)
    dep = pl.read_parquet(out / "logs" / "deployments.parquet")
    assert dep.height > 0
    assert dep["retrieval_recall"].is_nan().all() and dep["retrieval_recall_n"].is_nan().all()
