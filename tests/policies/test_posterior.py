"""The posteriors behind UCB and Thompson sampling, against independent dense computations.

``score_distribution(user_ids, candidates) -> (mean, G)`` must describe the candidates' scores as
``mean + Gᵀz`` with ``z ~ N(0, I)``, i.e. covariance ``GᵀG``:

* ALS (implicit's weighted least squares, confidence ``c_ui = α·r_ui`` on clicked items and 1
  elsewhere): ``A_u = Yᵀ C_u Y + λI`` built densely, ``x̂_u = A_u⁻¹ Yᵀ(c_u ⊙ p_u)`` with
  ``p_ui = 1`` for clicked items; mean ``Y_C x̂_u``, covariance ``Y_C A_u⁻¹ Y_Cᵀ``;
* the linear bandit (ridge regression on ``φ = [x_i, p_u ⊙ x_i]``): ``A = λI + Σ φφᵀ``,
  ``b = Σ click·φ`` over the logged impressions, each with the profile of the model version that
  served it (none for the bootstrap); ``θ̂ = A⁻¹b``, mean ``Φθ̂``, covariance ``Φ A⁻¹ Φᵀ``.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import policy_config

import policies.models
from policies.als import ALSScorer
from policies.interactions import Interactions, RoundImpressions
from policies.linear_bandit import LinearScorer

# --------------------------------------------------------------------------------------------
# ALS
# --------------------------------------------------------------------------------------------

N_USERS, N_ITEMS, F = 30, 25, 4
LAMBDA, ALPHA = 0.3, 3.0
HEAVY, COLD = 3, 7  # a user with many (repeated) clicks, a user with none


@pytest.fixture(scope="module")
def als():
    rng = np.random.default_rng(0)
    users = rng.integers(0, N_USERS, 250)
    items = rng.integers(0, N_ITEMS, 250)
    users = np.concatenate([users[users != COLD], np.full(30, HEAVY)])
    items = np.concatenate([items[: users.shape[0] - 30], rng.integers(0, 8, 30)])
    inter = Interactions.from_pairs(users, items, N_USERS, N_ITEMS)
    assert inter.clicks.max() > 1, "want repeated clicks (counts > 1)"
    assert inter.user_activity[COLD] == 0
    scorer = ALSScorer(
        factors=F,
        regularization=LAMBDA,
        alpha=ALPHA,
        iterations=5,
        random_state=1,
        exact_user_solve=True,
    )
    return inter, scorer.fit(inter, version=0)


def dense_als_posterior(inter: Interactions, model, user: int, candidates: np.ndarray):
    """Independent: implicit's normal equations written densely for one user."""
    y = model.item_factors.astype(np.float64)
    r = inter.clicks.toarray()[user].astype(np.float64)
    clicked = r > 0
    c = np.where(clicked, ALPHA * r, 1.0)
    a = y.T @ (c[:, None] * y) + LAMBDA * np.eye(F)
    x_hat = np.linalg.solve(a, y.T @ (c * clicked))
    yc = y[candidates]
    return yc @ x_hat, yc @ np.linalg.solve(a, yc.T), x_hat


def _als_batch():
    users = np.array([0, HEAVY, COLD, 11, HEAVY, 20])
    rng = np.random.default_rng(5)
    candidates = np.array([rng.permutation(N_ITEMS)[:7] for _ in users])
    candidates[1, :3] = [0, 1, 2]  # the heavy user's clicked items among its candidates
    return users, candidates


def test_als_posterior_matches_dense_normal_equations(als):
    inter, model = als
    users, candidates = _als_batch()
    mean, g = model.score_distribution(users, candidates)
    assert mean.shape == candidates.shape and g.shape == (users.shape[0], F, candidates.shape[1])
    assert mean.dtype == g.dtype == np.float64
    for row, user in enumerate(users):
        want_mean, want_cov, x_hat = dense_als_posterior(inter, model, user, candidates[row])
        cov = g[row].T @ g[row]
        np.testing.assert_allclose(cov, want_cov, rtol=1e-9, atol=1e-12, err_msg=f"user {user}")
        # the mean uses the float32 user factors that implicit recomputed: x̂ to float32 accuracy
        np.testing.assert_allclose(model.user_factors[user], x_hat, rtol=1e-4, atol=1e-6)
        scale = np.abs(want_mean).max() + 1e-3
        np.testing.assert_allclose(mean[row], want_mean, rtol=0, atol=1e-5 * scale)


def test_als_posterior_mean_is_the_served_score(als):
    _, model = als
    users, candidates = _als_batch()
    mean, _ = model.score_distribution(users, candidates)
    np.testing.assert_allclose(mean, model.score(users, candidates), rtol=1e-5, atol=1e-6)


def test_als_clicks_only_shrink_the_posterior(als):
    """With ``α·r ≥ 1`` every click adds ``(c − 1) y yᵀ ⪰ 0`` to ``A_u``: a user's score variances
    are at most the cold user's (prior) ones on the same candidates, strictly smaller for the
    heavy user's clicked items."""
    _, model = als
    candidates = np.tile(np.arange(N_ITEMS), (3, 1))
    _, g = model.score_distribution(np.array([COLD, HEAVY, 0]), candidates)
    var = np.einsum("nfc,nfc->nc", g, g)
    assert (var[1:] <= var[0] * (1 + 1e-12)).all()
    assert (var[1, :3] < 0.99 * var[0, :3]).all()


def test_als_posterior_is_batch_and_chunk_independent(als, monkeypatch):
    """UCB and Thompson are only batch-independent if the posterior is: the same rows served
    alone, in another batch, or in smaller posterior chunks give bit-identical output."""
    _, model = als
    users, candidates = _als_batch()
    mean, g = model.score_distribution(users, candidates)
    for row in range(users.shape[0]):
        m1, g1 = model.score_distribution(users[row : row + 1], candidates[row : row + 1])
        np.testing.assert_array_equal(m1[0], mean[row])
        np.testing.assert_array_equal(g1[0], g[row])
    monkeypatch.setattr(policies.models, "POSTERIOR_CHUNK", 2)
    m2, g2 = model.score_distribution(users, candidates)
    np.testing.assert_array_equal(m2, mean)
    np.testing.assert_array_equal(g2, g)


def test_als_posterior_of_an_empty_batch(als):
    _, model = als
    mean, g = model.score_distribution(np.array([], dtype=np.int64), np.empty((0, 5), np.int64))
    assert mean.shape == (0, 5) and g.shape == (0, F, 5)


# --------------------------------------------------------------------------------------------
# Linear bandit
# --------------------------------------------------------------------------------------------

L_USERS, L_ITEMS, D = 12, 20, 4
RIDGE = 0.7


@pytest.fixture
def content():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(L_ITEMS, D)) * [1.0, 3.0, 0.2, 1.0] + [0.0, 5.0, -1.0, 0.0]
    x[:, 3] = 2.5  # a constant feature: standardizes to zero
    return x.astype(np.float32)


def standardized(content: np.ndarray) -> np.ndarray:
    x = content.astype(np.float64)
    out = np.zeros_like(x)
    for j in range(x.shape[1]):
        sd = x[:, j].std()
        if sd > 0:
            out[:, j] = (x[:, j] - x[:, j].mean()) / sd
    return out


def profiles_of(inter: Interactions, x: np.ndarray) -> np.ndarray:
    """Per user: the click-count-weighted sum of clicked items' content, unit norm (0 if none)."""
    out = np.zeros((inter.n_users, x.shape[1]))
    counts = inter.clicks.toarray()
    for u in range(inter.n_users):
        total = counts[u] @ x
        norm = np.linalg.norm(total)
        if norm > 0:
            out[u] = total / norm
    return out


def phi(x_item: np.ndarray, profile: np.ndarray) -> np.ndarray:
    return np.concatenate([x_item, profile * x_item])


def _log(seed: int, n_clicks: int, served_by: list[int]) -> Interactions:
    """Clicks so far plus the latest round's impressions, each served by a given version."""
    rng = np.random.default_rng(seed)
    users = rng.integers(0, L_USERS - 2, n_clicks)  # the last two users never click
    items = rng.integers(0, L_ITEMS, n_clicks)
    m = len(served_by)
    rnd = RoundImpressions(
        user_ids=rng.integers(0, L_USERS, m),
        item_ids=rng.integers(0, L_ITEMS, m),
        clicked=rng.random(m) < 0.4,
        model_version=np.array(served_by),
    )
    return Interactions.from_pairs(users, items, L_USERS, L_ITEMS, latest_round=rnd)


def ridge(rows: list[tuple[np.ndarray, bool]]):
    a = RIDGE * np.eye(2 * D)
    b = np.zeros(2 * D)
    for f, clicked in rows:
        a += np.outer(f, f)
        b += float(clicked) * f
    return a, b


def round_rows(inter: Interactions, x: np.ndarray, profiles: dict[int, np.ndarray]):
    """The features of each impression of the latest round, at decision time."""
    rnd = inter.latest_round
    out = []
    for u, i, clicked, v in zip(
        rnd.user_ids, rnd.item_ids, rnd.clicked, rnd.model_version, strict=True
    ):
        p = profiles[int(v)][u] if int(v) in profiles else np.zeros(D)
        out.append((phi(x[i], p), bool(clicked)))
    return out


def check_linear_model(model, inter: Interactions, x: np.ndarray, a: np.ndarray, b: np.ndarray):
    theta = np.linalg.solve(a, b)
    np.testing.assert_allclose(model.chol @ model.chol.T, a, rtol=1e-12, atol=1e-10)
    np.testing.assert_allclose(model.theta, theta, rtol=1e-9, atol=1e-12)
    users = np.array([0, 3, L_USERS - 1, 3])  # the last user has no clicks: zero profile
    candidates = np.array([[0, 4, 7, 19, 2], [1, 2, 3, 4, 5], [9, 8, 7, 6, 5], [5, 4, 3, 2, 1]])
    mean, g = model.score_distribution(users, candidates)
    assert g.shape == (4, 2 * D, 5)
    prof = profiles_of(inter, x)
    for row, u in enumerate(users):
        big_phi = np.array([phi(x[i], prof[u]) for i in candidates[row]])
        np.testing.assert_allclose(mean[row], big_phi @ theta, rtol=1e-9, atol=1e-12)
        want_cov = big_phi @ np.linalg.solve(a, big_phi.T)
        np.testing.assert_allclose(g[row].T @ g[row], want_cov, rtol=1e-9, atol=1e-12)
    # retrieval and logged scores are the same linear function (float32)
    np.testing.assert_allclose(model.score(users, candidates), mean, rtol=1e-5, atol=1e-5)
    served = model.retrieve(users, 5, inter.clicks[users] * 0)
    np.testing.assert_allclose(
        served.scores, np.einsum("nf,nkf->nk", model._query(users), x[served.items]), rtol=1e-5
    )


def test_linear_first_fit_is_the_prior(content):
    inter = _log(0, 40, [])
    model = LinearScorer(content, regularization=RIDGE).fit(inter, version=0)
    x = standardized(content)
    np.testing.assert_allclose(model.content, x, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(model.profiles, profiles_of(inter, x), rtol=1e-12, atol=1e-12)
    check_linear_model(model, inter, x, *ridge([]))
    assert model.version == 0


def test_linear_update_uses_the_serving_versions_profiles(content):
    """First update after the prior: rows served by version 0 use version 0's profiles (from
    ITS training clicks, not the new ones); bootstrap rows (-1) use none."""
    x = standardized(content)
    scorer = LinearScorer(content, regularization=RIDGE)
    first = _log(0, 40, [])
    scorer.fit(first, version=0)
    second = _log(1, 60, [0] * 30 + [-1] * 10)
    model = scorer.fit(second, version=1)
    a, b = ridge(round_rows(second, x, {0: profiles_of(first, x)}))
    check_linear_model(model, second, x, a, b)


def test_linear_fit_returns_the_requested_version(content):
    scorer = LinearScorer(content, regularization=RIDGE)
    scorer.fit(_log(0, 40, []), version=0)
    assert scorer.fit(_log(1, 60, [0] * 20), version=1).version == 1


def test_linear_two_updates_use_each_serving_versions_profiles(content):
    x = standardized(content)
    scorer = LinearScorer(content, regularization=RIDGE)
    logs = [
        _log(0, 40, []),
        _log(1, 60, [0] * 30 + [-1] * 10),
        _log(2, 80, [1] * 25 + [0] * 10 + [-1] * 5),
    ]
    scorer.fit(logs[0], version=0)
    scorer.fit(logs[1], version=1)
    model = scorer.fit(logs[2], version=2)
    profiles = {v: profiles_of(logs[v], x) for v in (0, 1)}
    rows = round_rows(logs[1], x, {0: profiles[0]}) + round_rows(logs[2], x, profiles)
    check_linear_model(model, logs[2], x, *ridge(rows))


@pytest.mark.parametrize("selector", ["ucb", "thompson", "greedy", "softmax"])
def test_posterior_selectors_get_the_exact_user_solve(selector):
    from policies import build_policy

    policy = build_policy(policy_config(selector=selector), n_items=50, n_users=20, seed=0)
    assert policy.scorer.exact_user_solve == (selector in ("ucb", "thompson"))
