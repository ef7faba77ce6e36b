"""ALS learns real taste from logs of a uniformly random policy, and fits deterministically.

The log is simulated here with numpy (not with ``sim``): random 10-item slates, clicks drawn from
the position-based model ``P(click at slot k) = θ_k · relevance``. Quality is measured against the
world's true relevance, which the policies never see.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import policy_config

from agents.streams import Streams
from agents.world import WorldConfig, build_world
from policies import Interactions, PolicyConfig, build_policy
from policies.als import ALSScorer
from policies.policy import Deployment
from policies.randomness import Randomness

N_USERS, N_ITEMS, K = 400, 200, 10
N_REQUESTS = 16_000
# Few factors and some regularization suit a log of ~20 clicks per user.
ALS_KW = {"factors": 8, "regularization": 1.0, "alpha": 1.0, "iterations": 10}


def simulate_random_policy_log(seed: int):
    world = build_world(WorldConfig(n_users=N_USERS, n_items=N_ITEMS), Streams(seed))
    rng = np.random.default_rng(seed)
    relevance = world.relevance_matrix(np.arange(N_USERS))
    users = rng.integers(0, N_USERS, N_REQUESTS)
    slates = np.argsort(rng.random((N_REQUESTS, N_ITEMS)), axis=1)[:, :K]  # uniform, distinct
    theta = world.click_model.examination(K)
    p_click = theta[None, :] * relevance[users[:, None], slates]
    clicked = rng.random(p_click.shape) < p_click
    rows, slots = np.nonzero(clicked)
    interactions = Interactions.from_pairs(users[rows], slates[rows, slots], N_USERS, N_ITEMS)
    return world, relevance, interactions


def recommend(config: PolicyConfig, interactions: Interactions, users: np.ndarray, seed: int):
    policy = build_policy(config, N_ITEMS, N_USERS, seed=seed)
    deployment = policy.fit(interactions, version=1)
    assert deployment.version == deployment.model.version == 1
    policy.deploy(deployment)
    batch = policy.serve(users, Randomness.from_seed(0))
    assert batch.model_version == 1
    return deployment.model, batch.items


@pytest.mark.parametrize("seed", [0, 1])
def test_als_beats_popularity_on_true_relevance(seed):
    _, relevance, interactions = simulate_random_policy_log(seed)
    seen = interactions.clicks.toarray() > 0
    # sanity of the simulated log itself: clicks concentrate on relevant items
    assert relevance[seen].mean() > 1.5 * relevance.mean()
    active = np.flatnonzero(interactions.user_activity > 0)
    assert active.shape[0] > 0.9 * N_USERS

    # each user's true top-10 among the items they have not clicked yet
    eligible_rel = np.where(seen, -np.inf, relevance)
    truth = np.argsort(-eligible_rel, axis=1)[:, :K]

    results = {}
    greedy = dict(slate_size=K, n_candidates=K)
    for name, config in {
        "als": policy_config(name="greedy", scorer="als", **greedy, **ALS_KW),
        "popularity": policy_config(name="popularity", scorer="popularity", **greedy),
    }.items():
        model, recs = recommend(config, interactions, active, seed)
        assert not np.take_along_axis(seen[active], recs, axis=1).any(), "clicked item shown"
        hits = (recs[:, :, None] == truth[active][:, None, :]).any(axis=2).sum(axis=1)
        results[name] = (hits.mean() / K, relevance[active[:, None], recs].mean())
        if name == "als":  # independent retrieval check: factor dot products, clicked masked
            dots = model.user_factors[active] @ model.item_factors.T
            dots[seen[active]] = -np.inf
            top = np.argsort(-dots, axis=1)[:, :K]
            np.testing.assert_array_equal(np.sort(recs, axis=1), np.sort(top, axis=1))

    oracle_rel = np.take_along_axis(relevance[active], truth[active], axis=1).mean()
    random_rel = relevance[active][~seen[active]].mean()
    print(
        f"seed={seed} clicks={int(interactions.clicks.sum())} precision@10 / mean relevance: "
        f"als={results['als'][0]:.3f}/{results['als'][1]:.3f} "
        f"popularity={results['popularity'][0]:.3f}/{results['popularity'][1]:.3f} "
        f"random=-/{random_rel:.3f} oracle=1/{oracle_rel:.3f}"
    )
    als_p, als_rel = results["als"]
    pop_p, pop_rel = results["popularity"]
    assert als_p >= 1.5 * pop_p
    assert als_rel > pop_rel > random_rel
    assert als_rel < oracle_rel


def test_als_fit_is_deterministic_given_the_seed():
    _, _, interactions = simulate_random_policy_log(2)

    def factors(scorer: ALSScorer):
        model = scorer.fit(interactions, version=0)
        return model.user_factors, model.item_factors

    a_users, a_items = factors(ALSScorer(random_state=3, **ALS_KW))
    b_users, b_items = factors(ALSScorer(random_state=3, **ALS_KW))
    np.testing.assert_array_equal(a_users, b_users)
    np.testing.assert_array_equal(a_items, b_items)

    same_scorer = ALSScorer(random_state=3, **ALS_KW)  # a refit starts from a fresh seeded init
    first = factors(same_scorer)
    second = factors(same_scorer)
    np.testing.assert_array_equal(first[1], second[1])
    np.testing.assert_array_equal(first[1], a_items)

    warm = ALSScorer(random_state=3, warm_start=True, **ALS_KW)  # first warm fit = a cold fit
    np.testing.assert_array_equal(factors(warm)[1], a_items)

    _, c_items = factors(ALSScorer(random_state=4, **ALS_KW))
    assert not np.array_equal(a_items, c_items), "the seed must matter"


def test_same_seed_same_served_slates():
    _, _, interactions = simulate_random_policy_log(3)
    users = np.arange(N_USERS)
    config = policy_config(
        name="eg", selector="epsilon_greedy", slate_size=K, n_candidates=20, **ALS_KW
    )
    runs = []
    for _ in range(2):
        policy = build_policy(config, N_ITEMS, N_USERS, seed=11)
        policy.deploy(policy.fit(interactions, version=0))
        batch = policy.serve(users, Randomness.from_seed(5))
        runs.append(batch)
    for key in (
        "items",
        "propensity",
        "prefix_propensity",
        "candidates",
        "candidate_scores",
        "candidate_show_probability",
        "score",
        "source",
    ):
        np.testing.assert_array_equal(getattr(runs[0], key), getattr(runs[1], key), err_msg=key)
    assert (runs[0].propensity < 1).any(), "epsilon-greedy explored nowhere"


def test_warm_started_fit_does_not_change_the_deployed_model():
    """Training the next model (warm start) must not mutate the one still serving."""
    rng = np.random.default_rng(0)
    first = Interactions.from_pairs(rng.integers(0, 50, 300), rng.integers(0, 40, 300), 50, 40)
    more = Interactions.from_pairs(rng.integers(0, 50, 600), rng.integers(0, 40, 600), 50, 40)
    scorer = ALSScorer(factors=4, iterations=3, warm_start=True, random_state=1)
    deployed = scorer.fit(first, version=0)
    items, users = deployed.item_factors.copy(), deployed.user_factors.copy()
    scorer.fit(more, version=1)
    np.testing.assert_array_equal(deployed.item_factors, items)
    np.testing.assert_array_equal(deployed.user_factors, users)


def test_policy_fit_returns_a_deployment_that_serves_only_once_deployed():
    """``ServingPolicy.fit`` trains without deploying; the :class:`Deployment` carries the model
    and a copy of the log's item impressions (what exposure boost reads while it serves)."""
    rng = np.random.default_rng(1)
    impressions = rng.integers(0, 20, 40).astype(np.float64)
    inter = Interactions.from_pairs(
        rng.integers(0, 50, 300), rng.integers(0, 40, 300), 50, 40, item_impressions=impressions
    )
    config = policy_config(name="g", slate_size=5, n_candidates=8, factors=4, iterations=3)
    policy = build_policy(config, 40, 50, seed=0)
    deployment = policy.fit(inter, version=4)
    assert isinstance(deployment, Deployment)
    assert deployment.version == deployment.model.version == 4
    assert policy.model is None and policy.model_version == -1
    impressions[:] = -1.0  # the log keeps growing; the deployment keeps its snapshot
    assert (deployment.item_impressions >= 0).all()
    policy.deploy(deployment)
    assert policy.model is deployment.model and policy.model_version == 4
    batch = policy.serve(np.arange(50), Randomness.from_seed(0))
    assert batch.model_version == 4
    # greedy ALS serves the top of its own ranking, never a clicked item (all users have room)
    seen = inter.clicks.toarray() > 0
    assert not np.take_along_axis(seen, batch.items, axis=1).any()
