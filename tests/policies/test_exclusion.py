"""Properties of the exclusion helpers (``policies.exclusion``) against brute-force Python."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from policies.exclusion import PAD, batch_filter, n_excluded, nth_allowed, padded_rows

SETTINGS = settings(max_examples=100, deadline=None)


def _manual_padded(rows: list[list[int]], width: int | None = None) -> np.ndarray:
    """Sorted rows padded with PAD to a common width, built with plain Python."""
    width = max((len(r) for r in rows), default=0) if width is None else width
    return np.array(
        [sorted(r) + [int(PAD)] * (width - len(r)) for r in rows], dtype=np.int64
    ).reshape(len(rows), width)


@st.composite
def exclusion_cases(draw):
    """A batch of rows, each with its own excluded set and a valid index j."""
    n = draw(st.integers(1, 60))
    n_rows = draw(st.integers(1, 6))
    excluded, js = [], []
    for _ in range(n_rows):
        ex = draw(st.sets(st.integers(0, n - 1), max_size=n - 1))
        j = draw(st.integers(0, n - len(ex) - 1))
        excluded.append(sorted(ex))
        js.append(j)
    extra_width = draw(st.integers(0, 3))  # extra PAD columns must not change anything
    return n, excluded, js, extra_width


@SETTINGS
@given(exclusion_cases())
def test_nth_allowed_matches_brute_force(case):
    n, excluded, js, extra_width = case
    width = max(len(e) for e in excluded) + extra_width
    padded = _manual_padded(excluded, width)
    got = nth_allowed(padded, np.array(js, dtype=np.int64))
    expected = [sorted(set(range(n)) - set(ex))[j] for ex, j in zip(excluded, js, strict=True)]
    assert got.tolist() == expected
    assert n_excluded(padded).tolist() == [len(e) for e in excluded]


@SETTINGS
@given(st.integers(1, 40), st.data())
def test_nth_allowed_enumerates_every_allowed_item_in_order(n, data):
    ex = sorted(data.draw(st.sets(st.integers(0, n - 1), max_size=n - 1)))
    allowed = sorted(set(range(n)) - set(ex))
    m = len(allowed)
    padded = np.tile(_manual_padded([ex]), (m, 1))
    assert nth_allowed(padded, np.arange(m, dtype=np.int64)).tolist() == allowed


def test_nth_allowed_with_no_exclusions_is_identity():
    j = np.array([0, 3, 17], dtype=np.int64)
    assert nth_allowed(np.empty((3, 0), dtype=np.int64), j).tolist() == [0, 3, 17]


@st.composite
def sparse_rows(draw, max_rows=8, max_cols=30):
    n_rows = draw(st.integers(1, max_rows))
    n_cols = draw(st.integers(1, max_cols))
    rows = [
        sorted(draw(st.sets(st.integers(0, n_cols - 1), max_size=n_cols))) for _ in range(n_rows)
    ]
    return n_cols, rows


def _csr(rows: list[list[int]], n_cols: int, shuffle_seed: int | None = None) -> sp.csr_matrix:
    indptr = np.cumsum([0] + [len(r) for r in rows])
    indices = np.array([c for r in rows for c in r], dtype=np.int32)
    if shuffle_seed is not None:  # unsorted column indices within each row
        rng = np.random.default_rng(shuffle_seed)
        for a, b in itertools.pairwise(indptr):
            indices[a:b] = rng.permutation(indices[a:b])
    data = np.ones(indices.shape[0], dtype=np.float32)
    return sp.csr_matrix((data, indices, indptr), shape=(len(rows), n_cols))


@SETTINGS
@given(sparse_rows(), st.integers(0, 2**31 - 1), st.integers(0, 3))
def test_padded_rows_equals_sorted_rows(case, seed, n_extra):
    n_cols, rows = case
    m = _csr(rows, n_cols, shuffle_seed=seed)
    got = padded_rows(m)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, _manual_padded(rows))

    # with extra columns (e.g. the greedy top-K): sorted union, still PAD-padded at the end
    rng = np.random.default_rng(seed)
    extra = np.array(
        [rng.choice(np.setdiff1d(np.arange(n_cols + 5), r), n_extra, replace=False) for r in rows]
    ).reshape(len(rows), n_extra)
    got = padded_rows(m, extra)
    expected = _manual_padded(
        [r + extra[i].tolist() for i, r in enumerate(rows)],
        width=max(len(r) for r in rows) + n_extra,
    )
    np.testing.assert_array_equal(got, expected)


def test_padded_rows_empty_matrix_has_zero_width():
    m = sp.csr_matrix((4, 10), dtype=np.float32)
    assert padded_rows(m).shape == (4, 0)
    assert n_excluded(padded_rows(m)).tolist() == [0, 0, 0, 0]


@SETTINGS
@given(sparse_rows(max_rows=10, max_cols=25), st.data())
def test_batch_filter_relaxes_exactly_users_with_too_few_eligible_items(case, data):
    n_items, rows = case
    seen = _csr(rows, n_items, shuffle_seed=0)
    n_users = len(rows)
    user_ids = np.array(
        data.draw(st.lists(st.integers(0, n_users - 1), min_size=0, max_size=12)), dtype=np.int64
    )
    min_allowed = data.draw(st.integers(0, n_items + 1))
    out = batch_filter(seen, user_ids, min_allowed)
    assert out.shape == (len(user_ids), n_items)
    for r, u in enumerate(user_ids):
        got = out.indices[out.indptr[r] : out.indptr[r + 1]].tolist()
        eligible = n_items - len(rows[u])
        if eligible < min_allowed:
            assert got == [], f"user {u}: {eligible} eligible < {min_allowed} must be relaxed"
        else:
            assert got == sorted(rows[u]), f"user {u} must keep its full, sorted filter"
    # the input is not modified
    np.testing.assert_array_equal(seen.toarray(), _csr(rows, n_items).toarray())


def test_batch_filter_boundary_is_strictly_fewer():
    # user 0 has 3 eligible of 5, user 1 has 2 eligible: min_allowed=3 relaxes only user 1
    seen = _csr([[0, 1], [0, 1, 2]], 5)
    out = batch_filter(seen, np.array([0, 1, 0]), min_allowed=3)
    assert [out[i].indices.tolist() for i in range(3)] == [[0, 1], [], [0, 1]]
    np.testing.assert_array_equal(
        padded_rows(out), np.array([[0, 1], [PAD, PAD], [0, 1]], dtype=np.int64)
    )


@pytest.mark.parametrize("min_allowed", [0, 1])
def test_batch_filter_never_relaxes_when_threshold_trivial(min_allowed):
    seen = _csr([[0, 1, 2, 3]], 5)
    out = batch_filter(seen, np.array([0]), min_allowed)
    assert out.indices.tolist() == [0, 1, 2, 3]


@given(
    n_items=st.integers(4, 30),
    data=st.data(),
)
@SETTINGS
def test_unavailable_items_are_in_every_row_and_never_relaxed(n_items, data):
    """``batch_filter(..., unavailable=)``: each row is the user's clicked items (unless that
    leaves fewer than ``min_allowed`` available items: then only the unavailable ones) plus every
    unavailable item, once — brute force over Python sets."""
    n_users = data.draw(st.integers(1, 5))
    clicked = [
        set(data.draw(st.lists(st.integers(0, n_items - 1), max_size=n_items)))
        for _ in range(n_users)
    ]
    gone = set(data.draw(st.lists(st.integers(0, n_items - 1), max_size=n_items - 1)))
    unavailable = np.array(sorted(gone), dtype=np.int64)
    min_allowed = data.draw(st.integers(1, n_items))
    rows = [sorted(c) for c in clicked]
    seen = sp.csr_matrix(
        (
            np.ones(sum(map(len, rows))),
            np.array([i for r in rows for i in r], dtype=np.int64),
            np.r_[0, np.cumsum([len(r) for r in rows])],
        ),
        shape=(n_users, n_items),
    )
    users = np.arange(n_users)
    got = batch_filter(seen, users, min_allowed, unavailable=unavailable)
    for u in range(n_users):
        allowed_after_clicks = n_items - len(clicked[u] | gone)
        expected = (clicked[u] | gone) if allowed_after_clicks >= min_allowed else gone
        row = got.indices[got.indptr[u] : got.indptr[u + 1]].tolist()
        assert row == sorted(expected)
    # nothing unavailable: exactly the old filter
    plain = batch_filter(seen, users, min_allowed)
    again = batch_filter(seen, users, min_allowed, unavailable=np.empty(0, dtype=np.int64))
    assert (plain != again).nnz == 0 and np.array_equal(plain.indptr, again.indptr)
