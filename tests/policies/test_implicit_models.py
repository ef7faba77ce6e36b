"""implicit's BPR, logistic MF and item-kNN as scorers: each one's retrieval is checked against an
independent computation (numpy on the factors, a dense similarity of our own, or implicit's own
``recommend``), and against the serving contract: filtered items never come back, users without
clicks get the popularity ranking, a seed fixes the result, the batch layout does not matter, and
a bad config key is named.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import compose_config
from implicit.cpu.bpr import BayesianPersonalizedRanking
from implicit.cpu.lmf import LogisticMatrixFactorization
from implicit.nearest_neighbours import BM25Recommender, CosineRecommender

import policies.implicit_models as im
from experiments.config import build_policy_config, instantiate
from policies.baselines import PopularityScorer
from policies.components import BuildContext, ScorerSpec, registered
from policies.implicit_models import BPR, ItemKNN, LogisticMF, top_n_ranked
from policies.interactions import Interactions
from policies.models import SOURCE_CODE, SOURCES

N_USERS, N_ITEMS, N_COLD = 60, 40, 5
N = 6  # items retrieved per request
SEED = 7
SPECS = {
    "bpr": BPR(factors=6, iterations=30, learning_rate=0.05),
    "lmf": LogisticMF(factors=6, iterations=10),
    "item_knn": ItemKNN(K=N_ITEMS),
    "item_knn_bm25": ItemKNN(similarity="bm25", K=10),
}


def tiny_interactions(seed: int = 0) -> Interactions:
    """Users 0..54 click 8 times each (some items twice or three times); the last 5 never click.
    Two communities: the first half of the users clicks only the first half of the items, so each
    user has items that no similarity reaches (score 0: the kNN tie rule matters)."""
    rng = np.random.default_rng(seed)
    active = N_USERS - N_COLD
    users = np.repeat(np.arange(active), 8)
    half = N_ITEMS // 2
    weights = rng.lognormal(0.0, 1.0, half)
    items = rng.choice(half, users.size, p=weights / weights.sum())
    items = items + half * (users >= active // 2)
    repeats = rng.integers(1, 4, users.size)
    return Interactions.from_pairs(
        np.repeat(users, repeats), np.repeat(items, repeats), N_USERS, N_ITEMS
    )


def ctx(seed: int = SEED) -> BuildContext:
    return BuildContext(n_users=N_USERS, n_items=N_ITEMS, slate_size=5, seed=seed)


def fit(key: str, interactions: Interactions, seed: int = SEED):
    return SPECS[key].build(ctx(seed)).fit(interactions, version=3)


def reference_top(scores: np.ndarray, filter_rows: sp.csr_matrix, n: int, tie_key: np.ndarray):
    """Independent top-n: mask the filter densely, sort each row by (-score, tie_key)."""
    masked = scores.astype(np.float64).copy()
    masked[filter_rows.toarray() > 0] = -np.inf
    order = np.lexsort((np.broadcast_to(tie_key, masked.shape), -masked), axis=1)[:, :n]
    return order, np.take_along_axis(masked, order, axis=1)


# --- rankings against independent computations ------------------------------------------------


@pytest.mark.parametrize(
    ("key", "estimator"),
    [
        (
            "bpr",
            lambda: BayesianPersonalizedRanking(
                factors=6, iterations=30, learning_rate=0.05, num_threads=1, random_state=SEED
            ),
        ),
        (
            "lmf",
            lambda: LogisticMatrixFactorization(
                factors=6, iterations=10, num_threads=1, random_state=SEED
            ),
        ),
    ],
)
def test_factor_models_rank_by_implicits_full_factors(key, estimator):
    interactions = tiny_interactions()
    model = fit(key, interactions)
    direct = estimator()
    direct.fit(interactions.clicks, show_progress=False)
    # the serving factors are implicit's, bias columns included
    np.testing.assert_array_equal(model.user_factors, direct.user_factors)
    np.testing.assert_array_equal(model.item_factors, direct.item_factors)
    assert model.user_factors.shape[1] > 6  # BPR: + item bias; LMF: + user and item bias

    users = np.arange(N_USERS - N_COLD)
    filter_rows = interactions.clicks[users]
    got = model.retrieve(users, N, filter_rows)
    dense = direct.user_factors[users].astype(np.float64) @ direct.item_factors.T.astype(np.float64)
    ids, scores = reference_top(dense, filter_rows, N, np.arange(N_ITEMS))  # ties by item id
    np.testing.assert_array_equal(got.items, ids)
    np.testing.assert_allclose(got.scores, scores, rtol=1e-6, atol=1e-7)
    assert (got.source == SOURCE_CODE[key]).all()
    np.testing.assert_allclose(model.score(users, got.items), got.scores, rtol=1e-6, atol=1e-7)


def cosine_similarity(clicks: sp.csr_matrix, k: int) -> np.ndarray:
    """Our own dense cosine between item columns, each row cut to its k largest entries."""
    x = clicks.toarray().astype(np.float64)
    norms = np.linalg.norm(x, axis=0)
    x = np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)
    sim = x.T @ x
    if k < sim.shape[1]:
        cut = -np.sort(-sim, axis=1)[:, k - 1 : k]
        sim = np.where(sim >= cut, sim, 0.0)
    return sim


def popularity_tie_key(interactions: Interactions) -> np.ndarray:
    """Position of each item in (clicks descending, item id) order."""
    pop = interactions.item_popularity
    key = np.empty(N_ITEMS, dtype=np.int64)
    key[np.lexsort((np.arange(N_ITEMS), -pop))] = np.arange(N_ITEMS)
    return key


def test_item_knn_cosine_is_clicks_times_an_independent_similarity():
    interactions = tiny_interactions()
    model = fit("item_knn", interactions)  # K = every item: the full similarity
    sim = cosine_similarity(interactions.clicks, N_ITEMS)
    np.testing.assert_allclose(model.similarity.toarray(), sim, rtol=1e-12, atol=1e-12)

    users = np.arange(N_USERS - N_COLD)
    filter_rows = interactions.clicks[users]
    n = N_ITEMS - 10  # deep enough that most rows reach the items scoring 0 (the tie rule)
    got = model.retrieve(users, n, filter_rows)
    dense = interactions.clicks[users].toarray().astype(np.float64) @ sim
    ids, scores = reference_top(dense, filter_rows, n, popularity_tie_key(interactions))
    assert ((scores == 0).sum(axis=1) >= 2).all()
    np.testing.assert_array_equal(got.items, ids)
    np.testing.assert_allclose(got.scores, scores, rtol=1e-6)
    assert (got.source == SOURCE_CODE["item_knn"]).all()
    np.testing.assert_allclose(model.score(users, got.items), got.scores, rtol=1e-6)


def test_item_knn_keeps_each_items_k_most_similar():
    interactions = tiny_interactions()
    k = 5
    model = ItemKNN(K=k).build(ctx()).fit(interactions, version=0)
    full = cosine_similarity(interactions.clicks, N_ITEMS)
    kept = model.similarity.toarray()
    # the kept values of each row are its k largest (compared as sorted values: robust to ties)
    top_values = -np.sort(-full, axis=1)[:, :k]
    kept_values = -np.sort(-kept, axis=1)[:, :k]
    np.testing.assert_allclose(kept_values, top_values, rtol=1e-12, atol=1e-12)
    assert (np.diff(model.similarity.indptr) <= k).all()


def test_item_knn_bm25_matches_implicits_recommend():
    interactions = tiny_interactions()
    model = fit("item_knn_bm25", interactions)
    reference = BM25Recommender(K=10, K1=1.2, B=0.75, num_threads=1)
    with pytest.warns(Warning, match="CSR"):  # implicit's own COO hand-off, silenced by us
        reference.fit(interactions.clicks, show_progress=False)
    clicks = interactions.clicks
    users = np.arange(0, N_USERS - N_COLD, 5)
    got = model.retrieve(users, N, clicks[users])
    compared = 0
    for row, user in enumerate(users):  # a handful of users, in the test only
        ids, scores = reference.recommend(user, clicks[user], N=N + 1)
        if scores[N - 1] <= 0 or np.isclose(scores[N - 1], scores[N]):
            continue  # implicit pads with filtered (zero-score) items; or a tie at the cut
        np.testing.assert_array_equal(got.items[row], ids[:N])
        np.testing.assert_allclose(got.scores[row], scores[:N], rtol=1e-6)
        compared += 1
    assert compared >= 5


def test_top_n_ranked_breaks_ties_by_rank():
    scores = np.array([[1.0, 3.0, 3.0, 0.0, 0.0, 0.0, -np.inf], [0.0] * 7])
    rank = np.array([6, 5, 4, 3, 2, 1, 0])  # a lower rank wins a tie
    ids, top = top_n_ranked(scores, 4, rank)
    np.testing.assert_array_equal(ids, [[2, 1, 0, 5], [6, 5, 4, 3]])
    np.testing.assert_array_equal(top[0], [3.0, 3.0, 1.0, 0.0])


# --- the serving contract ---------------------------------------------------------------------


@pytest.mark.parametrize("key", SPECS)
def test_filtered_items_are_never_returned(key):
    interactions = tiny_interactions()
    model = fit(key, interactions)
    rng = np.random.default_rng(1)
    users = np.arange(N_USERS)
    extra = sp.csr_matrix(rng.random((N_USERS, N_ITEMS)) < 0.3, dtype=np.float32)
    filter_rows = (interactions.clicks + extra).tocsr()
    filter_rows.sort_indices()
    got = model.retrieve(users, N, filter_rows)
    blocked = filter_rows.toarray() > 0
    assert not np.take_along_axis(blocked, got.items, axis=1).any()
    assert all(np.unique(row).size == N for row in got.items)


@pytest.mark.parametrize("key", SPECS)
def test_users_without_clicks_get_the_popularity_ranking(key):
    interactions = tiny_interactions()
    model = fit(key, interactions)
    users = np.arange(N_USERS)
    got = model.retrieve(users, N, interactions.clicks[users])
    cold = np.arange(N_USERS - N_COLD, N_USERS)
    popularity = PopularityScorer(random_state=SEED + 1).fit(interactions, 3)
    expected = popularity.retrieve(cold, N, interactions.clicks[cold])
    np.testing.assert_array_equal(got.items[cold], expected.items)
    np.testing.assert_array_equal(got.scores[cold], expected.scores)
    assert (got.source[cold] == SOURCE_CODE["popularity_fallback"]).all()
    assert (got.source[: N_USERS - N_COLD] == SOURCE_CODE[SPECS[key].name]).all()


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("key", SPECS)
def test_no_clicks_at_all_serves_popularity(key):
    model = fit(key, Interactions.empty(N_USERS, N_ITEMS))
    users = np.arange(N_USERS)
    got = model.retrieve(users, N, sp.csr_matrix((N_USERS, N_ITEMS), dtype=np.float32))
    assert (got.source == SOURCE_CODE["popularity_fallback"]).all()


@pytest.mark.parametrize("key", SPECS)
def test_same_seed_same_model_and_rankings(key):
    interactions = tiny_interactions()
    users = np.arange(N_USERS)
    a, b = fit(key, interactions), fit(key, interactions)
    ra, rb = (m.retrieve(users, N, interactions.clicks[users]) for m in (a, b))
    np.testing.assert_array_equal(ra.items, rb.items)
    np.testing.assert_array_equal(ra.scores, rb.scores)
    if key in ("bpr", "lmf"):
        np.testing.assert_array_equal(a.user_factors, b.user_factors)
        np.testing.assert_array_equal(a.item_factors, b.item_factors)
        other = fit(key, interactions, seed=SEED + 1)
        assert not np.array_equal(a.item_factors, other.item_factors)
    else:
        assert (a.similarity != b.similarity).nnz == 0


@pytest.mark.parametrize("recommender", [CosineRecommender, BM25Recommender])
def test_knn_similarity_does_not_depend_on_threads(recommender):
    """Why the kNN scorer may use every core (the SGD ones may not: module docstring)."""
    clicks = tiny_interactions().clicks
    fitted = []
    for threads in (1, 2):
        model = recommender(K=8, num_threads=threads)
        with pytest.warns(Warning, match="CSR"):
            model.fit(clicks, show_progress=False)
        fitted.append(model.similarity)
    assert (fitted[0] != fitted[1]).nnz == 0


@pytest.mark.parametrize("key", SPECS)
def test_rows_do_not_depend_on_the_batch(key, monkeypatch):
    monkeypatch.setattr(im, "DENSE_BLOCK_ELEMENTS", 3 * N_ITEMS)  # kNN: blocks of 3 requests
    interactions = tiny_interactions()
    model = fit(key, interactions)
    users = np.random.default_rng(2).permutation(N_USERS)
    whole = model.retrieve(users, N, interactions.clicks[users])
    half = N_USERS // 2 + 1
    parts = [model.retrieve(u, N, interactions.clicks[u]) for u in (users[:half], users[half:])]
    np.testing.assert_array_equal(whole.items, np.concatenate([p.items for p in parts]))
    np.testing.assert_array_equal(whole.scores, np.concatenate([p.scores for p in parts]))
    np.testing.assert_array_equal(whole.source, np.concatenate([p.source for p in parts]))
    one = model.retrieve(users[:1], N, interactions.clicks[users[:1]])
    np.testing.assert_array_equal(one.items[0], whole.items[0])


# --- config nodes -----------------------------------------------------------------------------


def test_registered_without_posterior():
    scorers = registered("scorer")
    for name, cls in (("bpr", BPR), ("lmf", LogisticMF), ("item_knn", ItemKNN)):
        assert scorers[name] is cls
        assert cls.has_posterior is False
    assert SOURCES[:8] == (
        "bootstrap",
        "als",
        "popularity",
        "popularity_fallback",
        "oracle",
        "random",
        "explore",
        "linear",
    )  # appended, not inserted: logged codes keep their meaning


PRESETS = {
    "bpr": (BPR, {"factors": 32, "learning_rate": 0.01, "iterations": 100}),
    "lmf": (LogisticMF, {"factors": 32, "neg_prop": 30}),
    "item_knn": (ItemKNN, {"similarity": "cosine", "K": 50}),
    "item_knn_bm25": (ItemKNN, {"similarity": "bm25", "K": 50, "K1": 1.2, "B": 0.75}),
}


@pytest.mark.parametrize("preset", PRESETS)
def test_presets_compose_to_their_scorer(preset):
    cls, values = PRESETS[preset]
    config = build_policy_config(compose_config(f"policy={preset}")["policy"])
    assert config.name == preset
    assert type(config.scorer) is cls
    assert {k: getattr(config.scorer, k) for k in values} == values
    assert type(config.selector).__name__ == "Greedy"


@pytest.mark.parametrize(
    ("preset", "key", "value"),
    [
        ("bpr", "factors", 0),
        ("bpr", "iterations", 2.5),
        ("bpr", "learning_rate", 0),
        ("bpr", "regularization", -0.1),
        ("bpr", "verify_negative_samples", "yes"),
        ("lmf", "neg_prop", 0),
        ("lmf", "learning_rate", "fast"),
        ("item_knn", "similarity", "jaccard"),
        ("item_knn", "K", 0),
        ("item_knn_bm25", "K1", -1.0),
        ("item_knn_bm25", "B", 1.5),
    ],
)
def test_bad_values_name_the_key(preset, key, value):
    raw = compose_config(f"policy={preset}")["policy"]
    raw["scorer"][key] = value
    with pytest.raises(ValueError, match=rf"^policy\.scorer\.{key}={value!r}: "):
        build_policy_config(raw)


def test_unknown_key_is_named():
    node = {"_target_": "policies.implicit_models.BPR", "alpha": 1.0}
    with pytest.raises(ValueError, match=r"policy\.scorer\.alpha: unknown key for BPR"):
        instantiate(node, ScorerSpec, "policy.scorer")
