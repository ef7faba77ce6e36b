"""Retrieval top-K against brute force, for every filter tier and the dense (heavy user) path."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from policies.models import dense_limit, largest_tie, topk_by_vector


def _brute(items, query, n, filt):
    out = []
    for r in range(query.shape[0]):
        scores = items.astype(np.float64) @ query[r].astype(np.float64)
        banned = set(filt.indices[filt.indptr[r] : filt.indptr[r + 1]].tolist())
        ranked = sorted(
            (i for i in range(items.shape[0]) if i not in banned), key=lambda i: (-scores[i], i)
        )
        out.append(ranked[:n])
    return np.array(out)


@pytest.mark.parametrize("n_items", [400, 5000])  # limits 24 and 160
def test_light_and_heavy_requests_match_brute_force_and_do_not_depend_on_the_batch(n_items):
    rng = np.random.default_rng(3)
    f, n = 8, 12
    items = rng.standard_normal((n_items, f)).astype(np.float32)
    query = rng.standard_normal((30, f)).astype(np.float32)
    limit = dense_limit(n_items)
    assert limit == {400: 24, 5000: 160}[n_items]  # the largest step within 1/30 of the catalog
    # both paths: none filtered, a few, exactly at the limit (fused), one past it and far past
    # it (dense)
    sizes = rng.choice([0, 5, limit // 2, limit, limit + 1, 3 * limit], size=30)
    sizes[:3] = [limit + 1, 0, limit]
    rows = [np.sort(rng.choice(n_items, s, replace=False)) for s in sizes]
    filt = sp.csr_matrix(
        (np.ones(sum(sizes)), np.concatenate(rows), np.r_[0, np.cumsum(sizes)]),
        shape=(30, n_items),
    )
    ids, scores = topk_by_vector(items, query, n, filt)
    np.testing.assert_array_equal(ids, _brute(items, query, n, filt))
    exact = np.einsum("nf,nkf->nk", query.astype(np.float64), items[ids].astype(np.float64))
    np.testing.assert_array_equal(scores, exact.astype(np.float32))
    for r in (0, 7, 29):  # alone, a request gets the same answer as inside the mixed batch
        one_ids, one_scores = topk_by_vector(items, query[r : r + 1], n, filt[r : r + 1])
        np.testing.assert_array_equal(one_ids[0], ids[r])
        np.testing.assert_array_equal(one_scores[0], scores[r])


@pytest.mark.parametrize("chunk", [1, 7, 64])
def test_requests_sorted_into_proposal_chunks_get_the_answer_they_get_alone(monkeypatch, chunk):
    """Light requests go to the fused top-K sorted by filtered count, ``PROPOSAL_CHUNK`` at a
    time (each chunk's ``k`` from its heaviest request): whatever chunk a request lands in, its
    answer is the brute-force one and the one it gets served alone."""
    import policies.models as models

    monkeypatch.setattr(models, "PROPOSAL_CHUNK", chunk)
    rng = np.random.default_rng(chunk)
    n_items, f, n, rows_n = 600, 8, 10, 90
    items = rng.standard_normal((n_items, f)).astype(np.float32)
    items[50:60] = items[40]  # a tie group the margin covers
    query = rng.standard_normal((rows_n, f)).astype(np.float32)
    sizes = rng.integers(0, dense_limit(n_items) + 5, rows_n)  # a few dense ones too
    rows = [np.sort(rng.choice(n_items, s, replace=False)) for s in sizes]
    filt = sp.csr_matrix(
        (np.ones(sizes.sum()), np.concatenate(rows), np.r_[0, np.cumsum(sizes)]),
        shape=(rows_n, n_items),
    )
    ids, scores = topk_by_vector(items, query, n, filt)
    np.testing.assert_array_equal(ids, _brute(items, query, n, filt))
    for r in range(rows_n):
        one_ids, one_scores = topk_by_vector(items, query[r : r + 1], n, filt[r : r + 1])
        np.testing.assert_array_equal(one_ids[0], ids[r])
        np.testing.assert_array_equal(one_scores[0], scores[r])


def test_largest_tie_counts_identical_item_vectors():
    vectors = np.array([[0.0, 1.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [2.0, 2.0]])
    assert largest_tie(vectors) == 3
    assert largest_tie(np.empty((0, 2))) == 0
