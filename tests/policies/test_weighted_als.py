"""Weighted ALS solves its objective exactly: checked against dense loops written here, and
against implicit's own solver where the two models coincide."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from implicit.cpu.als import AlternatingLeastSquares
from threadpoolctl import threadpool_limits

import policies.weighted_als as weighted_als
from policies.weighted_als import (
    WeightedALS,
    exposure_weights,
    solve_factors,
    weighted_objective,
)

N_USERS, N_ITEMS, F = 30, 20, 4
W0, LAM = 0.7, 0.3


def weight_problem(seed: int) -> tuple[sp.csr_matrix, sp.csr_matrix, np.ndarray, np.ndarray]:
    """Disjoint positives/negatives plus their dense masks. Negative weights straddle ``W0``
    (so ``w − w₀`` takes both signs); user 0 has no entries, user 1 only negatives."""
    rng = np.random.default_rng(seed)
    kind = rng.choice(3, size=(N_USERS, N_ITEMS), p=[0.6, 0.2, 0.2])  # 0 none, 1 pos, 2 neg
    kind[0] = 0
    kind[1] = np.where(kind[1] == 1, 2, kind[1])
    pos_mask, neg_mask = kind == 1, kind == 2
    pos = sp.csr_matrix(np.where(pos_mask, rng.uniform(0.5, 3.0, kind.shape), 0.0))
    neg = sp.csr_matrix(np.where(neg_mask, rng.uniform(0.05, 1.5, kind.shape), 0.0))
    return pos, neg, pos_mask, neg_mask


def dense_weights(pos, neg, pos_mask, neg_mask) -> tuple[np.ndarray, np.ndarray]:
    w = np.full(pos.shape, W0)
    w[pos_mask] = pos.toarray()[pos_mask]
    w[neg_mask] = neg.toarray()[neg_mask]
    return w, pos_mask.astype(np.float64)


def dense_half_step(w: np.ndarray, target: np.ndarray, fixed: np.ndarray) -> np.ndarray:
    out = np.empty((w.shape[0], fixed.shape[1]))
    for u in range(w.shape[0]):
        a = fixed.T @ np.diag(w[u]) @ fixed + LAM * np.eye(fixed.shape[1])
        out[u] = np.linalg.solve(a, fixed.T @ (w[u] * target[u]))
    return out


def dense_objective(w, target, x, y) -> float:
    return float(np.sum(w * (target - x @ y.T) ** 2) + LAM * (np.sum(x**2) + np.sum(y**2)))


@pytest.fixture(autouse=True)
def one_blas_thread():
    with threadpool_limits(1, "blas"):
        yield


def test_half_steps_match_dense_solves():
    pos, neg, pos_mask, neg_mask = weight_problem(0)
    w, target = dense_weights(pos, neg, pos_mask, neg_mask)
    rng = np.random.default_rng(1)
    y, x = rng.normal(size=(N_ITEMS, F)), rng.normal(size=(N_USERS, F))

    users = solve_factors(pos, neg, y, unobserved_weight=W0, regularization=LAM)
    np.testing.assert_allclose(users, dense_half_step(w, target, y), rtol=0, atol=1e-9)
    assert np.all(users[0] == 0) and np.all(users[1] == 0)  # no positives: b = 0
    items = solve_factors(pos.T, neg.T, x, unobserved_weight=W0, regularization=LAM)
    np.testing.assert_allclose(items, dense_half_step(w.T, target.T, x), rtol=0, atol=1e-9)

    model = WeightedALS(F, LAM, iterations=3, unobserved_weight=W0).fit(pos, neg)
    fitted_items = model.item_factors_.astype(np.float64)
    recalculated = model.recalculate_users(np.arange(N_USERS), pos, neg)
    np.testing.assert_allclose(
        recalculated, dense_half_step(w, target, fitted_items), rtol=0, atol=1e-9
    )
    # user_factors_ are the solve against the final items (no half-sweep lag), up to float32.
    np.testing.assert_allclose(model.user_factors_, recalculated, rtol=1e-4, atol=1e-6)
    some = np.array([5, 2, 5])
    np.testing.assert_array_equal(model.recalculate_users(some, pos, neg), recalculated[some])


@pytest.mark.parametrize("block_size", [1, 7, 1000])
def test_blocking_does_not_change_the_solution(block_size, monkeypatch):
    pos, neg, *_ = weight_problem(2)
    y = np.random.default_rng(3).normal(size=(N_ITEMS, F))
    ref = solve_factors(pos, neg, y, unobserved_weight=W0, regularization=LAM, block_size=256)
    monkeypatch.setattr(weighted_als, "ENTRY_BUDGET", 9)  # also force the memory cap to split
    got = solve_factors(
        pos, neg, y, unobserved_weight=W0, regularization=LAM, block_size=block_size
    )
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12)


def test_loss_is_monotone_and_matches_dense_objective():
    pos, neg, pos_mask, neg_mask = weight_problem(4)
    w, target = dense_weights(pos, neg, pos_mask, neg_mask)
    model = WeightedALS(F, LAM, iterations=12, unobserved_weight=W0, random_state=5).fit(pos, neg)
    loss = model.loss_
    assert loss.shape == (12,)
    assert np.all(np.diff(loss) <= 1e-12 * loss[:-1]), loss
    x, y = model.user_factors_.astype(np.float64), model.item_factors_.astype(np.float64)
    # loss_ is evaluated on the float64 factors; the stored ones are float32
    assert loss[-1] == pytest.approx(dense_objective(w, target, x, y), rel=1e-7)

    rng = np.random.default_rng(6)
    x, y = rng.normal(size=(N_USERS, F)), rng.normal(size=(N_ITEMS, F))
    got = weighted_objective(pos, neg, x, y, unobserved_weight=W0, regularization=LAM)
    assert got == pytest.approx(dense_objective(w, target, x, y), rel=1e-12)


def test_warm_start_continues_from_user_factors():
    pos, neg, *_ = weight_problem(7)
    first = WeightedALS(F, LAM, iterations=4, unobserved_weight=W0).fit(pos, neg)
    more = WeightedALS(F, LAM, iterations=2, unobserved_weight=W0)
    more.fit(pos, neg, init_user_factors=first.user_factors_)
    assert more.loss_[0] <= first.loss_[-1] * (1 + 1e-6)


def implicit_model(counts: sp.csr_matrix, alpha: float, lam: float) -> AlternatingLeastSquares:
    model = AlternatingLeastSquares(
        factors=F,
        regularization=lam,
        alpha=alpha,
        use_cg=False,
        iterations=1,
        random_state=0,
        num_threads=1,
        calculate_training_loss=False,
    )
    model.fit(counts, show_progress=False)
    return model


def relative_error(got: np.ndarray, ref: np.ndarray) -> float:
    return float(np.linalg.norm(got - ref) / np.linalg.norm(ref))


def test_user_half_step_matches_implicit():
    """implicit: c = alpha·r, A = YᵀY + λI + Σ (c − 1) y yᵀ, b = Σ c y, λ not scaled by counts;
    a stored negative value −w is an exposed negative of weight w."""
    alpha, lam = 2.0, 0.1
    rng = np.random.default_rng(8)
    dense = rng.integers(1, 4, size=(N_USERS, N_ITEMS)) * (rng.random((N_USERS, N_ITEMS)) < 0.3)
    dense[0] = 0  # a user without clicks: zero factors in both
    counts = sp.csr_matrix(dense.astype(np.float32))
    model = implicit_model(counts, alpha, lam)
    items = model.item_factors
    users = np.arange(N_USERS)

    def ours(pos: sp.csr_matrix, neg: sp.csr_matrix | None = None) -> np.ndarray:
        return solve_factors(pos, neg, items, unobserved_weight=1.0, regularization=lam)

    # implicit's own convention: positives weigh alpha·r
    ref = model.recalculate_user(users, counts)
    assert relative_error(ours(alpha * counts), ref) < 1e-5
    assert np.all(ref[0] == 0)

    # Hu, Koren & Volinsky's c = 1 + alpha·r is implicit fed (1 + alpha·r) / alpha
    hkv = counts.copy()
    hkv.data = 1.0 + alpha * hkv.data
    assert relative_error(ours(hkv), model.recalculate_user(users, hkv / alpha)) < 1e-5

    # exposed negatives: implicit reads a negative stored value as weight |c| with target 0
    shown = (dense == 0) & (rng.random(dense.shape) < 0.4)
    neg_w = np.where(shown, rng.uniform(0.1, 2.0, dense.shape), 0.0)
    signed = sp.csr_matrix((dense - neg_w / alpha).astype(np.float32))
    got = ours(alpha * counts, sp.csr_matrix(neg_w))
    assert relative_error(got, model.recalculate_user(users, signed)) < 1e-5


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"factors": 0}, "factors"),
        ({"factors": 4.0}, "factors"),
        ({"iterations": True}, "iterations"),
        ({"block_size": 0}, "block_size"),
        ({"regularization": 0.0}, "regularization"),
        ({"regularization": float("nan")}, "regularization"),
        ({"unobserved_weight": -1.0}, "unobserved_weight"),
        ({"random_state": np.random.RandomState(0)}, "random_state"),
        ({"num_threads": -1}, "num_threads"),
    ],
)
def test_bad_parameters_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=f"^{field}="):
        WeightedALS(**kwargs)


def test_bad_weights_name_the_argument():
    pos, neg, pos_mask, _ = weight_problem(9)
    model = WeightedALS(F, LAM, iterations=1)
    bad = pos.copy()
    bad.data[0] = -1.0
    with pytest.raises(ValueError, match=r"^positives: weights must be finite and >= 0"):
        model.fit(bad, neg)
    with pytest.raises(ValueError, match=r"^negatives: weights must be finite and >= 0"):
        model.fit(pos, -neg)
    with pytest.raises(ValueError, match=r"^negatives: .* overlap positives"):
        model.fit(pos, neg + sp.csr_matrix(pos_mask.astype(np.float64)))
    with pytest.raises(ValueError, match=r"^negatives: shape"):
        model.fit(pos, neg[:, :-1])
    with pytest.raises(ValueError, match=r"^positives: must be a scipy sparse matrix"):
        model.fit(pos.toarray())
    with pytest.raises(ValueError, match=r"^init_user_factors: shape"):
        model.fit(pos, init_user_factors=np.zeros((N_USERS, F + 1)))
    with pytest.raises(ValueError, match="not fitted"):
        model.recalculate_users(np.arange(3), pos)


def test_exposure_weights():
    users = np.array([0, 0, 0, 1, 1, 2, 2])
    items = np.array([3, 3, 1, 3, 0, 2, 2])
    clicked = np.array([True, True, False, False, True, False, False])
    propensity = np.array([0.5, 0.25, 1.0, 1.0, 0.5, 1.0, 1.0])
    pos, neg = exposure_weights(users, items, clicked, 3, 4, 1.0 / propensity, 0.2)
    # repeated clicks sum their weights; repeated unclicked impressions sum too
    np.testing.assert_allclose(
        pos.toarray(), [[0, 0, 0, 6.0], [2.0, 0, 0, 0], [0, 0, 0, 0]], rtol=0, atol=1e-15
    )
    np.testing.assert_allclose(
        neg.toarray(), [[0, 0.2, 0, 0], [0, 0, 0, 0.2], [0, 0, 0.4, 0]], rtol=0, atol=1e-15
    )

    # clicked once and also shown without a click: a positive only
    pos, neg = exposure_weights(np.array([0, 0]), np.array([1, 1]), np.array([False, True]), 1, 2)
    assert pos.nnz == 1 and neg.nnz == 0

    with pytest.raises(ValueError, match=r"^positive_weight:"):
        exposure_weights(users, items, clicked, 3, 4, np.ones(3))
    with pytest.raises(ValueError, match=r"^negative_weight:"):
        exposure_weights(users, items, clicked, 3, 4, 1.0, -0.1)
    with pytest.raises(ValueError, match=r"^item_ids: out of range"):
        exposure_weights(users, items, clicked, 3, 3)
    with pytest.raises(ValueError, match=r"^clicked: must be boolean"):
        exposure_weights(users, items, clicked.astype(int), 3, 4)


def test_deterministic_under_random_state():
    pos, neg, *_ = weight_problem(10)

    def fit(seed: int) -> WeightedALS:
        return WeightedALS(F, LAM, iterations=3, random_state=seed).fit(pos, neg)

    a, b, c = fit(3), fit(3), fit(4)
    np.testing.assert_array_equal(a.user_factors_, b.user_factors_)
    np.testing.assert_array_equal(a.item_factors_, b.item_factors_)
    np.testing.assert_array_equal(a.loss_, b.loss_)
    assert not np.array_equal(a.item_factors_, c.item_factors_)
    assert a.user_factors_.dtype == a.item_factors_.dtype == np.float32


def test_threads_do_not_change_the_result():
    pos, neg, *_ = weight_problem(11)

    def fit(num_threads: int) -> WeightedALS:
        model = WeightedALS(F, LAM, iterations=3, block_size=4, num_threads=num_threads)
        return model.fit(pos, neg)

    one, three = fit(1), fit(3)
    np.testing.assert_array_equal(one.user_factors_, three.user_factors_)
    np.testing.assert_array_equal(one.loss_, three.loss_)


def test_targets_half_step_and_loss_match_a_dense_computation():
    """With targets t on the positives (e.g. Y/θ), each user solves
    (Σ_i W_ui y_i y_iᵀ + λI) x = Σ_i W_ui p_ui y_i with p = t on P, 0 elsewhere — written densely."""
    import scipy.sparse as sparse

    from policies.weighted_als import WeightedALS, solve_factors, weighted_objective

    rng = np.random.default_rng(11)
    n_u, n_i, f, lam, w0 = 9, 13, 3, 0.2, 1.0
    mask = rng.random((n_u, n_i)) < 0.25
    w = np.where(mask, 1.0, 0.0)
    t = np.where(mask, rng.uniform(1.0, 6.0, (n_u, n_i)), 0.0)
    pos, targets = sparse.csr_matrix(w), sparse.csr_matrix(t)
    y = rng.normal(size=(n_i, f))
    got = solve_factors(pos, None, y, unobserved_weight=w0, regularization=lam, targets=targets)
    for u in range(n_u):
        weights = np.where(mask[u], w[u], w0)
        a = y.T @ (weights[:, None] * y) + lam * np.eye(f)
        b = y.T @ (weights * np.where(mask[u], t[u], 0.0))
        np.testing.assert_allclose(got[u], np.linalg.solve(a, b), rtol=1e-9, atol=1e-12)
    model = WeightedALS(factors=f, regularization=lam, iterations=4, random_state=0)
    model.fit(pos, targets=targets)
    x64, y64 = model.user_factors_.astype(np.float64), model.item_factors_.astype(np.float64)
    dense = x64 @ y64.T
    expected = np.sum(np.where(mask, w * (t - dense) ** 2, w0 * dense**2)) + lam * (
        np.sum(x64**2) + np.sum(y64**2)
    )
    got_obj = weighted_objective(pos, None, x64, y64, regularization=lam, targets=targets)
    assert got_obj == pytest.approx(expected, rel=1e-9)
    assert np.all(np.diff(model.loss_) <= 1e-9 * abs(model.loss_[0]))
    with pytest.raises(ValueError, match="targets: must have exactly the entries"):
        model.fit(pos, targets=sparse.csr_matrix(t + (~mask) * 1.0))
