"""Which items a request may not be shown: the user's already-clicked items, and the items not
in the catalog (not arrived yet, or departed: ``world.item_arrival_rate``, ``item_lifetime_days``).

The clicked-items filter is part of the deployed model's knowledge (clicks in its training data),
so it changes only at deployment; the catalog changes only at its own events (the engine serves
what is pending first). Serving results do not depend on how requests are batched.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

PAD = np.int64(2**40)  # sorts after every item id and never counts as "<= j"


def batch_filter(
    seen: sp.csr_matrix,
    user_ids: np.ndarray,
    min_allowed: int,
    unavailable: np.ndarray | None = None,
) -> sp.csr_matrix:
    """Rows of ``seen`` for ``user_ids``; a user left with fewer than ``min_allowed`` eligible
    items gets an empty row (the filter is relaxed rather than producing a short slate).

    ``unavailable`` (sorted item ids not in the catalog now) is in every row and is never
    relaxed: an item that is not in the catalog is never shown."""
    if unavailable is not None and unavailable.size:
        return with_unavailable(
            _seen_filter(seen, user_ids, min_allowed + unavailable.size, unavailable),
            unavailable,
        )
    return _seen_filter(seen, user_ids, min_allowed)


def with_unavailable(rows: sp.csr_matrix, unavailable: np.ndarray | None) -> sp.csr_matrix:
    """``rows`` (sorted CSR) with the ``unavailable`` item ids added to every row (once)."""
    if unavailable is None or unavailable.size == 0:
        return rows
    n, n_items = rows.shape
    keep = ~np.isin(rows.indices, unavailable)
    row_of = np.repeat(np.arange(n), np.diff(rows.indptr))
    all_rows = np.concatenate([row_of[keep], np.repeat(np.arange(n), unavailable.size)])
    all_cols = np.concatenate([rows.indices[keep], np.tile(unavailable, n)])
    out = sp.csr_matrix(
        (np.ones(all_rows.size, dtype=rows.dtype), (all_rows, all_cols)), shape=(n, n_items)
    )
    out.sort_indices()
    return out


def _seen_filter(
    seen: sp.csr_matrix,
    user_ids: np.ndarray,
    min_allowed: int,
    unavailable: np.ndarray | None = None,
) -> sp.csr_matrix:
    rows = seen[user_ids]
    n_items = seen.shape[1]
    n_seen = np.diff(rows.indptr)
    if unavailable is not None:  # seen items that left the catalog count once, as unavailable
        row_of = np.repeat(np.arange(rows.shape[0]), n_seen)
        gone = np.bincount(row_of[np.isin(rows.indices, unavailable)], minlength=rows.shape[0])
        n_seen = n_seen - gone
    too_many = (n_items - n_seen) < min_allowed
    if too_many.any():
        keep = np.repeat(~too_many, np.diff(rows.indptr))
        counts = np.where(too_many, 0, np.diff(rows.indptr))
        indptr = np.concatenate([[0], np.cumsum(counts)])
        rows = sp.csr_matrix((rows.data[keep], rows.indices[keep], indptr), shape=rows.shape)
    rows.sort_indices()
    return rows


def padded_rows(rows: sp.csr_matrix, extra: np.ndarray | None = None) -> np.ndarray:
    """Each CSR row's column indices (plus ``extra`` columns) as a sorted ``(n, width)`` int64
    array padded with ``PAD``. Vectorized: no Python loop over rows."""
    counts = np.diff(rows.indptr)
    width = int(counts.max(initial=0))
    out = np.full((rows.shape[0], width), PAD, dtype=np.int64)
    if rows.nnz:
        row_of = np.repeat(np.arange(rows.shape[0]), counts)
        col_of = np.arange(rows.nnz) - np.repeat(rows.indptr[:-1], counts)
        out[row_of, col_of] = rows.indices
    if extra is not None and extra.size:
        out = np.concatenate([out, extra.astype(np.int64)], axis=1)
    out.sort(axis=1)
    return out


def nth_allowed(excluded: np.ndarray, j: np.ndarray) -> np.ndarray:
    """The ``j``-th (0-based) item id not in each row of ``excluded`` (sorted, PAD-padded).

    With the excluded ids ``x_0 < x_1 < …`` the answer is ``j + s`` where
    ``s = #{t : x_t - t <= j}`` — the number of excluded ids at or below the answer.
    """
    shifted = excluded - np.arange(excluded.shape[1])
    return j + (shifted <= j[:, None]).sum(axis=1)


def n_excluded(excluded: np.ndarray) -> np.ndarray:
    return (excluded < PAD).sum(axis=1)


def is_member(sorted_rows: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``values[r, j]`` is in row ``r`` of ``sorted_rows`` (sorted, PAD-padded). Vectorized."""
    if sorted_rows.shape[1] == 0:
        return np.zeros(values.shape, dtype=bool)
    pos = np.empty(values.shape, dtype=np.int64)
    for j in range(values.shape[1]):  # K slots, vectorized over requests
        pos[:, j] = (sorted_rows < values[:, j, None]).sum(axis=1)
    pos = np.minimum(pos, sorted_rows.shape[1] - 1)
    return np.take_along_axis(sorted_rows, pos, axis=1) == values
