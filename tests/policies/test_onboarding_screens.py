"""Onboarding's platform side: the fold-in is ALS's own user solve, the screens, the config."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from implicit.cpu.als import AlternatingLeastSquares
from threadpoolctl import threadpool_limits

from policies.exclusion import PAD
from policies.models import ALSModel, PopularityModel
from policies.onboarding import (
    Onboarding,
    OnboardingConfig,
    choose_diverse,
    choose_variance,
    fold_in,
)
from policies.pipeline import Deployment


def _padded(lists: list[list[int]]) -> np.ndarray:
    width = max(len(x) for x in lists)
    out = np.full((len(lists), width), PAD, dtype=np.int64)
    for r, items in enumerate(lists):
        out[r, : len(items)] = items
    return out


def _normal_equations(y, lam, alpha, clicked, prior):
    """One user's ALS normal equations written out term by term (implicit's c = alpha·r)."""
    f = y.shape[1]
    a = lam * np.eye(f)
    for i in range(y.shape[0]):  # every item, unobserved ones with confidence 1
        a += np.outer(y[i], y[i])
    b = lam * prior
    for i in clicked:
        a += (alpha - 1.0) * np.outer(y[i], y[i])
        b = b + alpha * y[i]
    return np.linalg.solve(a, b)


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    lam=st.floats(0.01, 5.0),
    alpha=st.floats(1.0, 40.0),
    with_prior=st.booleans(),
)
def test_fold_in_solves_the_normal_equations_built_by_hand(seed, lam, alpha, with_prior):
    rng = np.random.default_rng(seed)
    n_items, f = 30, 6
    y = rng.normal(size=(n_items, f)) * 0.3
    lists = [sorted(rng.choice(n_items, size=rng.integers(1, 8), replace=False).tolist())]
    lists += [sorted(rng.choice(n_items, size=rng.integers(1, 8), replace=False).tolist())]
    prior = rng.normal(size=(2, f)) if with_prior else np.zeros((2, f))
    got = fold_in(y, lam, alpha, _padded(lists), prior if with_prior else None)
    for r in range(2):
        want = _normal_equations(y, lam, alpha, lists[r], prior[r])
        np.testing.assert_allclose(got[r], want, rtol=1e-9, atol=1e-12)


def test_fold_in_equals_implicit_recalculate_user():
    rng = np.random.default_rng(7)
    n_items, f, lam, alpha = 50, 8, 0.1, 10.0
    y = (rng.normal(size=(n_items, f)) * 0.2).astype(np.float32)
    clicked = [3, 17, 41]
    als = AlternatingLeastSquares(factors=f, regularization=lam, alpha=alpha, random_state=0)
    als.item_factors = y
    als.user_factors = np.zeros((1, f), dtype=np.float32)
    row = sp.csr_matrix((np.ones(3), ([0, 0, 0], clicked)), shape=(1, n_items))
    with threadpool_limits(1, "blas"):
        want = als.recalculate_user(0, row)
    got = fold_in(y, lam, alpha, _padded([clicked]))[0]
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=1e-6)  # implicit solves in float32


def _deployment(n_users=20, n_items=40, f=4, version=0, seed=0, clicks=None):
    rng = np.random.default_rng(seed)
    seen = clicks if clicks is not None else sp.csr_matrix((n_users, n_items))
    pop = PopularityModel(version, seen, np.zeros(n_items), np.zeros(n_items))
    model = ALSModel(
        version=version,
        seen=seen,
        user_factors=np.zeros((n_users, f), dtype=np.float32),
        item_factors=rng.normal(size=(n_items, f)).astype(np.float32),
        fallback=pop,
        cold=np.ones(n_users, dtype=bool),
        regularization=0.5,
        alpha=5.0,
    )
    return Deployment(model, np.zeros(n_items))


def _onboarding(**kw) -> Onboarding:
    cfg = OnboardingConfig(enabled=True, screens=2, items_per_screen=3, min_item_clicks=1, **kw)
    return Onboarding.build(cfg, 20, 40, np.random.default_rng(0))


def _answer(ob, dep, users, clicked):
    screens = ob.screens(dep, None)
    m = len(users)
    ob.record(
        np.arange(m, dtype=np.int64),
        np.zeros(m),
        np.asarray(users),
        screens,
        clicked,
        np.full(m, screens.shape[0]),
        np.ones(m, dtype=bool),
        dep,
    )
    return screens


def test_record_seeds_clickers_at_once_and_leaves_non_clickers_cold():
    dep = _deployment()
    ob = _onboarding()
    clicked = np.zeros((2, 2, 3), dtype=bool)
    clicked[0, 0, 1] = clicked[0, 1, 2] = True  # user 5 clicks two items; user 6 none
    screens = _answer(ob, dep, [5, 6], clicked)
    model = dep.model
    assert not model.cold[5] and model.cold[6]
    want = fold_in(model.item_factors, 0.5, 5.0, _padded([[screens[0, 1], screens[1, 2]]]))
    np.testing.assert_allclose(model.user_factors[5], want[0], rtol=1e-5)
    assert not model.user_factors[6].any()
    assert ob.onboarded[[5, 6]].all() and ob.onboarded.sum() == 2


def test_a_vector_from_an_earlier_layer_is_the_ridge_prior():
    dep = _deployment()
    prior = np.arange(4, dtype=np.float32) / 10
    dep.model.seed_users(np.array([5]), prior[None, :])  # e.g. transfer's mapped vector
    ob = _onboarding()
    clicked = np.zeros((1, 2, 3), dtype=bool)
    clicked[0, 0, 0] = True
    screens = _answer(ob, dep, [5], clicked)
    want = _normal_equations(
        dep.model.item_factors.astype(np.float64), 0.5, 5.0, [screens[0, 0]], prior
    )
    np.testing.assert_allclose(dep.model.user_factors[5], want, rtol=1e-5)


def test_on_deploy_refolds_only_users_still_without_clicks():
    ob = _onboarding()
    first = _deployment(version=0)
    clicked = np.zeros((2, 2, 3), dtype=bool)
    clicked[:, 0, 0] = True
    _answer(ob, first, [1, 2], clicked)
    # The next model: user 2 has clicks in its training log, user 1 none.
    seen = sp.csr_matrix((np.ones(1), ([2], [7])), shape=(20, 40))
    second = _deployment(version=1, seed=1, clicks=seen)
    second.model.user_factors[2] = 9.0  # learned from its clicks: must stay
    second.model.cold[2] = False
    ob.on_deploy(second)
    assert not second.model.cold[1]
    want = fold_in(second.model.item_factors, 0.5, 5.0, _padded([[int(ob.clicked_items[0])]]))
    np.testing.assert_allclose(second.model.user_factors[1], want[0], rtol=1e-5)
    assert (second.model.user_factors[2] == 9.0).all()


def test_due_takes_each_new_users_first_request_once():
    ob = _onboarding()
    users = np.array([3, 4, 3, 7, 4, 8])
    is_new = np.array([True, False, True, True, False, True])
    ob.onboarded[8] = True
    np.testing.assert_array_equal(ob.due(users, is_new), [0, 3])


def test_screens_hold_distinct_available_items_and_change_with_the_model_or_catalog():
    seen = sp.csr_matrix(np.random.default_rng(3).integers(0, 3, size=(20, 40)).astype(float))
    dep = _deployment(clicks=seen)
    for chooser in ("diverse", "variance"):
        ob = _onboarding(chooser=chooser)
        boot = ob.screens(None, np.array([0, 1, 2]))
        assert boot.shape == (2, 3) and np.unique(boot).size == 6 and boot.min() > 2
        a = ob.screens(dep, np.array([5, 6]))
        assert np.unique(a).size == 6 and not np.isin(a, [5, 6]).any()
        assert ob.screens(dep, np.array([5, 6])) is a  # cached: the same for every user
        b = ob.screens(dep, a[0, :1].copy())  # an item of the screens left the catalog
        assert a[0, 0] not in b


def test_diverse_picks_one_item_per_direction_before_repeating():
    # Three tight clusters of directions: the first three picks cover all three.
    rng = np.random.default_rng(0)
    centers = np.eye(3)
    factors = np.repeat(centers, 10, axis=0) + 0.01 * rng.normal(size=(30, 3))
    picks = choose_diverse(factors, np.arange(30), 3)
    assert sorted(set(picks // 10)) == [0, 1, 2]


def test_variance_first_pick_is_the_largest_prior_variance():
    rng = np.random.default_rng(1)
    y = rng.normal(size=(25, 4))
    lam = 0.3
    cov = np.linalg.inv(y.T @ y + lam * np.eye(4))
    var = np.array([yi @ cov @ yi for yi in y])
    picks = choose_variance(y, np.arange(25), 4, lam, 5.0)
    assert picks[0] == int(np.argmax(var)) and np.unique(picks).size == 4


def test_onboarding_state_deep_copies():
    ob = _onboarding()
    dep = _deployment()
    clicked = np.ones((1, 2, 3), dtype=bool)
    _answer(ob, dep, [4], clicked)
    twin = copy.deepcopy(ob)
    np.testing.assert_array_equal(twin.table()["item_id"], ob.table()["item_id"])
    twin.onboarded[9] = True
    assert not ob.onboarded[9]


@pytest.mark.parametrize(
    ("kw", "expected"),
    [
        ({"screens": 0}, "onboarding.screens=0"),
        ({"items_per_screen": -1}, "onboarding.items_per_screen=-1"),
        ({"screens": 2.5}, "onboarding.screens=2.5"),
        ({"drop_per_screen": 1.0}, "onboarding.drop_per_screen=1.0: must be in [0, 1)"),
        ({"drop_per_screen": -0.1}, "onboarding.drop_per_screen=-0.1"),
        ({"chooser": "kmeans"}, "onboarding.chooser='kmeans'"),
        ({"enabled": "yes"}, "onboarding.enabled='yes'"),
    ],
)
def test_bad_config_names_the_key(kw, expected):
    with pytest.raises(ValueError, match=None) as info:
        OnboardingConfig(**kw)
    assert str(info.value).startswith(expected), info.value


def test_screens_larger_than_the_catalog_name_onboarding_screens():
    cfg = OnboardingConfig(enabled=True, screens=4, items_per_screen=5)
    cfg.check_catalog(20)
    with pytest.raises(ValueError, match=r"^onboarding\.screens=4: .*world\.n_items=19"):
        cfg.check_catalog(19)
