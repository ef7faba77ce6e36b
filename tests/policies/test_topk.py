"""Retrieval top-K against brute force, for light and heavy (>HEAVY_FILTER filtered) requests."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from policies.models import HEAVY_FILTER, topk_by_vector


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


def test_light_and_heavy_requests_match_brute_force_and_do_not_depend_on_the_batch():
    rng = np.random.default_rng(3)
    n_items, f, n = 400, 8, 12
    items = rng.standard_normal((n_items, f)).astype(np.float32)
    query = rng.standard_normal((30, f)).astype(np.float32)
    sizes = rng.choice([0, 5, HEAVY_FILTER + 1, 3 * HEAVY_FILTER], size=30)
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
