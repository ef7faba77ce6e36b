"""model_ndcg: the probe against a plain-Python NDCG, and its place in a run's metrics."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp

from policies.models import Retrieval
from sim.model_quality import NDCGProbe, sample_probe_users


class FixedRanking:
    """A model that ranks items by a fixed per-user score table (and filters like any model)."""

    def __init__(self, scores: np.ndarray, seen: sp.csr_matrix):
        self.version = 0
        self.seen = seen
        self.scores = scores

    def retrieve(self, user_ids, n, filter_rows):
        s = self.scores[user_ids].copy()
        for r in range(len(user_ids)):
            s[r, filter_rows.indices[filter_rows.indptr[r] : filter_rows.indptr[r + 1]]] = -np.inf
        ids = np.argsort(-s, axis=1, kind="stable")[:, :n]
        return Retrieval(ids, np.take_along_axis(s, ids, 1), np.zeros(len(user_ids), np.int8))


def _reference_ndcg(rel: np.ndarray, scores: np.ndarray, seen: list[set[int]], k: int) -> float:
    values = []
    for u in range(rel.shape[0]):
        allowed = [i for i in range(rel.shape[1]) if i not in seen[u]]
        ranked = sorted(allowed, key=lambda i: (-scores[u, i], i))[:k]
        ideal = sorted((rel[u, i] for i in allowed), reverse=True)[:k]
        dcg = sum(rel[u, i] / math.log2(pos + 2) for pos, i in enumerate(ranked))
        idcg = sum(g / math.log2(pos + 2) for pos, g in enumerate(ideal))
        values.append(dcg / idcg)
    return float(np.mean(values))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_probe_matches_plain_python(seed):
    rng = np.random.default_rng(seed)
    n_users, n_items, k = 7, 15, 4
    rel = rng.random((n_users, n_items))
    scores = rel + rng.normal(0, 0.3, rel.shape)  # a noisy model
    seen_sets = [
        set(rng.choice(n_items, rng.integers(0, 5), replace=False).tolist()) for _ in range(n_users)
    ]
    rows = [sorted(s) for s in seen_sets]
    seen = sp.csr_matrix(
        (
            np.ones(sum(map(len, rows))),
            np.concatenate([r for r in rows] + [[]]).astype(int),
            np.r_[0, np.cumsum([len(r) for r in rows])],
        ),
        shape=(n_users, n_items),
    )
    users = np.arange(n_users)
    probe = NDCGProbe(users, k, lambda u: rel[u])
    got = probe(FixedRanking(scores, seen))
    assert got == pytest.approx(_reference_ndcg(rel, scores, seen_sets, k), abs=1e-12)
    # ranking by the truth itself is perfect; by its reverse it is worse
    assert probe(FixedRanking(rel, seen)) == pytest.approx(1.0, abs=1e-12)
    assert probe(FixedRanking(-rel, seen)) < got


@pytest.mark.parametrize("seed", [0, 1])
def test_probe_leaves_out_items_not_in_the_catalog(seed):
    """A living catalog: the unavailable items are in neither the model's ranking nor the ideal
    one — the same as if the user had clicked them (the reference's ``seen``)."""
    rng = np.random.default_rng(seed)
    n_users, n_items, k = 6, 20, 4
    rel = rng.random((n_users, n_items))
    scores = rel + rng.normal(0, 0.3, rel.shape)
    unavailable = np.sort(rng.choice(n_items, 6, replace=False)).astype(np.int64)
    seen = sp.csr_matrix((n_users, n_items))
    probe = NDCGProbe(np.arange(n_users), k, lambda u: rel[u], unavailable=lambda: unavailable)
    gone = set(unavailable.tolist())
    expected = _reference_ndcg(rel, scores, [gone] * n_users, k)
    assert probe(FixedRanking(scores, seen)) == pytest.approx(expected, abs=1e-12)
    # the best unavailable item no longer caps the ideal: ranking by truth is still perfect
    assert probe(FixedRanking(rel, seen)) == pytest.approx(1.0, abs=1e-12)


def test_probe_users_are_a_fixed_sample():
    a = sample_probe_users(100, 10, np.random.default_rng(5))
    b = sample_probe_users(100, 10, np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)
    assert len(set(a.tolist())) == 10 and np.all(np.diff(a) > 0)
    assert sample_probe_users(4, 10, np.random.default_rng(0)).tolist() == [0, 1, 2, 3]


@pytest.mark.slow
def test_model_ndcg_in_a_run(tmp_path):
    from experiments.run import run

    cfg = {
        "seed": 0,
        "world": {"n_users": 300, "n_items": 120},
        "policy": {"name": "g", "scorer": "als", "selector": "greedy", "slate_size": 5},
        "sim": {"days": 4},
        "metrics": {"ndcg_users": 50, "ndcg_k": 5},
        "report": {"enabled": False},
        "progress": False,
    }
    run(cfg, tmp_path / "run")
    m = pl.read_parquet(tmp_path / "run" / "metrics.parquet")
    dep = pl.read_parquet(tmp_path / "run" / "logs" / "deployments.parquet")
    assert dep["model_ndcg"].is_between(0.0, 1.0).all()
    by_version = dict(zip(dep["model_version"].to_list(), dep["model_ndcg"].to_list(), strict=True))
    for version, value in zip(m["model_version"].to_list(), m["model_ndcg"].to_list(), strict=True):
        if version < 0:
            assert math.isnan(value)  # the bootstrap is not a learned model
        else:
            assert value == by_version[version]


def test_a_model_that_ranks_nothing_has_no_ndcg():
    """The uniform random policy's NoModel retrieves no items: its NDCG is undefined (NaN),
    not 0, so reports do not plot a model quality for a policy without a model."""
    from policies.models import NoModel

    rel = np.random.default_rng(0).random((6, 10))
    probe = NDCGProbe(np.arange(6), 3, lambda u: rel[u])
    assert math.isnan(probe(NoModel(version=0, seen=sp.csr_matrix((6, 10)))))
    # the same probe scores a model that does rank
    assert 0.0 < probe(FixedRanking(rel, sp.csr_matrix((6, 10)))) == pytest.approx(1.0)
