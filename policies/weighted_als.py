"""Weighted implicit-feedback ALS: per-entry weights on clicks and on shown-but-not-clicked items.

The objective, over user factors ``X`` (n_users, f) and item factors ``Y`` (n_items, f)::

    Σ_{(u,i)∈P} w⁺_ui (1 − x_u·y_i)² + Σ_{(u,i)∈N} w⁻_ui (x_u·y_i)²
        + w₀ Σ_{(u,i)∉P∪N} (x_u·y_i)² + λ (‖X‖² + ‖Y‖²)

``P`` (positives) and ``N`` (exposed negatives) are sparse weight matrices with disjoint supports;
``w₀`` (``unobserved_weight``) weighs every other entry. Each half-step is exact alternating least
squares: user ``u`` solves ``A_u x_u = b_u`` with

    A_u = w₀ YᵀY + Σ_{i∈P(u)∪N(u)} (w_ui − w₀) y_i y_iᵀ + λI,    b_u = Σ_{i∈P(u)} w⁺_ui y_i

(items likewise with ``X``). ``w_ui − w₀`` may be negative (a weak negative, or an IPW weight
below ``w₀``): that only cancels part of ``w₀ YᵀY``, and ``A_u = Σ_i w_ui y_i y_iᵀ + λI`` with every
``w ≥ 0`` and ``λ > 0`` stays positive definite.

The *support* is the stored entries: a stored zero is an entry of weight 0 (it drops out of the
objective), unlike an absent entry, which weighs ``w₀``. implicit treats stored zeros the same way.

Relation to implicit 0.7 (``implicit.cpu.als``, read from its ``_als.pyx``): it multiplies the
data by ``alpha`` (confidence ``c = alpha·r``, not Hu et al.'s ``1 + alpha·r``), solves
``A_u = YᵀY + λI + Σ (|c| − 1) y yᵀ``, ``b_u = Σ_{c>0} c y`` and does not scale ``λ`` by counts.
So ``positives = alpha·r``, no negatives, ``w₀ = 1`` is exactly implicit's model (Hu, Koren &
Volinsky's ``c = 1 + alpha·r`` is ``positives = 1 + alpha·r``). A *negative* stored value ``−w`` is
implicit's exposed negative of weight ``w``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from agents.validation import is_number, is_positive_int

# Slots (row × padded entry) in one block's gather: bounds each (B, E, f) array at
# ENTRY_BUDGET · f · 8 bytes however long the rows are (popular items have thousands of users).
ENTRY_BUDGET = 1 << 15


class _Rows(NamedTuple):
    """Positive and negative entries of each row, merged and grouped by row (CSR layout)."""

    indptr: np.ndarray  # (n_rows + 1,)
    cols: np.ndarray  # (nnz,) column of each entry
    weight: np.ndarray  # (nnz,) w⁺ or w⁻
    target_weight: np.ndarray  # (nnz,) w⁺ · target: w⁺ for positives, 0 for negatives


@dataclass
class WeightedALS:
    """Exact weighted ALS for implicit feedback with weighted positives and exposed negatives.

    Parameters
    ----------
    factors : latent dimension ``f``.
    regularization : ``λ > 0`` (keeps every ``A_u`` positive definite).
    iterations : ALS sweeps; each solves all items, then all users.
    unobserved_weight : ``w₀ ≥ 0``, the weight of entries in neither ``P`` nor ``N``.
    random_state : seed of the initial user factors (``normal · 0.01``).
    block_size : rows per batched solve; a speed knob, not a model parameter. The block's
        (B, f, f) stack should stay in L2: at f = 64, 32 was ~15% faster than 256.
    num_threads : threads solving blocks in parallel (0: one per CPU). ``fit`` limits BLAS to
        one thread meanwhile (process-wide, via threadpoolctl), so results are bitwise the same
        for any value.

    Attributes (after ``fit``)
    --------------------------
    user_factors_, item_factors_ : float32 factors (computed in float64). Each sweep ends with
        the users, so ``user_factors_`` are the exact solve against ``item_factors_`` (no
        half-sweep lag as in implicit).
    loss_ : (iterations,) the objective after each sweep (float64 factors); non-increasing.
    """

    factors: int = 32
    regularization: float = 0.05
    iterations: int = 10
    unobserved_weight: float = 1.0
    random_state: int = 0
    block_size: int = 32
    num_threads: int = 0
    # Learned state: set by fit only (absent before), left out of repr and ==.
    user_factors_: np.ndarray = field(init=False, repr=False, compare=False)
    item_factors_: np.ndarray = field(init=False, repr=False, compare=False)
    loss_: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for key in ("factors", "iterations", "block_size"):
            if not is_positive_int(getattr(self, key)):
                raise ValueError(f"{key}={getattr(self, key)!r}: must be a positive integer")
        if not is_number(self.regularization) or self.regularization <= 0:
            raise ValueError(f"regularization={self.regularization!r}: must be a number > 0")
        if not is_number(self.unobserved_weight) or self.unobserved_weight < 0:
            raise ValueError(f"unobserved_weight={self.unobserved_weight!r}: must be a number >= 0")
        # implicit crashes on a RandomState; we take the same plain int everywhere.
        if not isinstance(self.random_state, (int, np.integer)) or isinstance(
            self.random_state, bool
        ):
            raise ValueError(f"random_state={self.random_state!r}: must be an int")
        if (
            not isinstance(self.num_threads, (int, np.integer))
            or isinstance(self.num_threads, bool)
            or self.num_threads < 0
        ):
            raise ValueError(f"num_threads={self.num_threads!r}: must be an integer >= 0")

    def fit(
        self,
        positives: sp.spmatrix | sp.sparray,
        negatives: sp.spmatrix | sp.sparray | None = None,
        *,
        init_user_factors: np.ndarray | None = None,
        targets: sp.spmatrix | sp.sparray | None = None,
    ) -> WeightedALS:
        """Fit on ``P`` (``positives``) and ``N`` (``negatives``), both (n_users, n_items).

        ``init_user_factors`` warm-starts from given user factors (e.g. a previous fit's). The
        first half-step solves the items against them, so no item factors are needed.
        ``targets`` (same entries as ``P``) replaces the positives' target 1 by ``t_ui``: the
        positive term becomes ``w⁺ (t − x·y)²`` — e.g. ``t = Y/θ`` with ``w⁺ = w₀ = 1`` is the
        unbiased (Rel-MF, Saito et al. 2020) least-squares objective.
        """
        pos, neg = check_weights(positives, negatives)
        t = _targets(targets, pos)
        n_users = pos.shape[0]
        if init_user_factors is None:
            rng = np.random.default_rng(int(self.random_state))
            x = rng.normal(scale=0.01, size=(n_users, self.factors))
        else:
            x = np.array(init_user_factors, dtype=np.float64, copy=True)
            if x.shape != (n_users, self.factors):
                raise ValueError(
                    f"init_user_factors: shape {x.shape} != (n_users, factors) "
                    f"{(n_users, self.factors)}"
                )
        # The merged row layouts do not change across sweeps: build them once.
        user_rows = _merge_rows(pos, neg, t)
        t_items = sp.csr_matrix((t, pos.indices, pos.indptr), shape=pos.shape).T.tocsr().data
        item_rows = _merge_rows(pos.T.tocsr(), None if neg is None else neg.T.tocsr(), t_items)
        w0, lam = float(self.unobserved_weight), float(self.regularization)
        loss = np.empty(self.iterations)
        with _workers(self.num_threads) as pool:
            for it in range(self.iterations):
                y, _ = _half_step(item_rows, x, w0, lam, self.block_size, pool)
                x, bx = _half_step(user_rows, y, w0, lam, self.block_size, pool)
                # At the exact user solve, each user's Σ_i W_ui (p_ui − x·y_i)² + λ‖x‖² equals
                # Σ_{P(u)} w⁺t² − 2 bᵀx + xᵀAx = Σ_{P(u)} w⁺t² − bᵀx: the loss costs nothing extra.
                loss[it] = float(pos.data @ (t * t)) - bx + lam * float(np.sum(y * y))
        self.user_factors_ = x.astype(np.float32)
        self.item_factors_ = y.astype(np.float32)
        self.loss_ = loss
        return self

    def recalculate_users(
        self,
        user_ids: np.ndarray,
        positives: sp.spmatrix | sp.sparray,
        negatives: sp.spmatrix | sp.sparray | None = None,
    ) -> np.ndarray:
        """Exact user factors against the fitted ``item_factors_``, float64 (len(user_ids), f).

        ``positives`` and ``negatives`` are whole (n_rows, n_items) weight matrices, rows indexed
        by ``user_ids`` (users need not have been in the fit: a fold-in).
        """
        if not hasattr(self, "item_factors_"):
            raise ValueError("WeightedALS is not fitted: call fit first")
        pos, neg = check_weights(positives, negatives)
        if pos.shape[1] != self.item_factors_.shape[0]:
            raise ValueError(
                f"positives: {pos.shape[1]} columns != {self.item_factors_.shape[0]} fitted items"
            )
        user_ids = np.asarray(user_ids)
        if user_ids.ndim != 1 or not np.issubdtype(user_ids.dtype, np.integer):
            raise ValueError("user_ids: must be a 1-D integer array")
        if user_ids.size and (user_ids.min() < 0 or user_ids.max() >= pos.shape[0]):
            raise ValueError(f"user_ids: out of range for {pos.shape[0]} rows")
        return solve_factors(
            pos[user_ids],
            None if neg is None else neg[user_ids],
            self.item_factors_,
            unobserved_weight=self.unobserved_weight,
            regularization=self.regularization,
            block_size=self.block_size,
            num_threads=self.num_threads,
        )


def solve_factors(
    positives: sp.spmatrix | sp.sparray,
    negatives: sp.spmatrix | sp.sparray | None,
    fixed_factors: np.ndarray,
    *,
    unobserved_weight: float = 1.0,
    regularization: float,
    block_size: int = 32,
    num_threads: int = 0,
    targets: sp.spmatrix | sp.sparray | None = None,
) -> np.ndarray:
    """One exact half-step: the float64 factors of every row against ``fixed_factors``.

    For the user side pass (n_users, n_items) weights and the item factors; for the item side,
    the transposed weights and the user factors.
    """
    pos, neg = check_weights(positives, negatives)
    fixed = np.asarray(fixed_factors, dtype=np.float64)
    if fixed.ndim != 2 or fixed.shape[0] != pos.shape[1]:
        raise ValueError(
            f"fixed_factors: shape {fixed.shape} does not match {pos.shape[1]} columns of positives"
        )
    rows = _merge_rows(pos, neg, _targets(targets, pos))
    with _workers(num_threads) as pool:
        x, _ = _half_step(
            rows, fixed, float(unobserved_weight), float(regularization), block_size, pool
        )
    return x


def weighted_objective(
    positives: sp.spmatrix | sp.sparray,
    negatives: sp.spmatrix | sp.sparray | None,
    user_factors: np.ndarray,
    item_factors: np.ndarray,
    *,
    unobserved_weight: float = 1.0,
    regularization: float,
    targets: sp.spmatrix | sp.sparray | None = None,
) -> float:
    """The objective (module docstring) at the given factors, without forming dense matrices."""
    pos, neg = check_weights(positives, negatives)
    t = _targets(targets, pos)
    x = np.asarray(user_factors, dtype=np.float64)
    y = np.asarray(item_factors, dtype=np.float64)
    if x.shape[0] != pos.shape[0] or y.shape[0] != pos.shape[1] or x.shape[1] != y.shape[1]:
        raise ValueError(f"factors: shapes {x.shape}, {y.shape} do not match positives {pos.shape}")
    return _objective(pos, neg, x, y, float(unobserved_weight), float(regularization), t)


def exposure_weights(
    user_ids: np.ndarray,
    item_ids: np.ndarray,
    clicked: np.ndarray,
    n_users: int,
    n_items: int,
    positive_weight: float | np.ndarray = 1.0,
    negative_weight: float | np.ndarray = 1.0,
) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """``(P, N)`` float64 CSR weights from an impression log (one row per shown item).

    ``positive_weight`` applies to clicked rows and ``negative_weight`` to the others; each is a
    scalar or one value per row (e.g. IPW ``1/θ_k`` by slot, clipped by the caller). Repeated
    impressions of a pair *sum*: two clicks weigh twice one click, and so do two unclicked
    impressions. A pair clicked at least once is a positive only: its unclicked impressions are
    dropped. A zero weight is kept as a stored entry of weight 0 (see the module docstring).
    """
    user_ids, item_ids, clicked = np.asarray(user_ids), np.asarray(item_ids), np.asarray(clicked)
    n = user_ids.shape[0] if user_ids.ndim == 1 else -1
    for name, arr in (("user_ids", user_ids), ("item_ids", item_ids), ("clicked", clicked)):
        if arr.ndim != 1 or arr.shape[0] != n:
            raise ValueError(f"{name}: must be 1-D with one value per impression ({n})")
    for name, value in (("n_users", n_users), ("n_items", n_items)):
        if not is_positive_int(value):
            raise ValueError(f"{name}={value!r}: must be a positive integer")
    for name, ids, bound in (("user_ids", user_ids, n_users), ("item_ids", item_ids, n_items)):
        if not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(f"{name}: must be integers, got {ids.dtype}")
        if n and (ids.min() < 0 or ids.max() >= bound):
            raise ValueError(f"{name}: out of range [0, {bound})")
    if clicked.dtype != np.bool_:
        raise ValueError(f"clicked: must be boolean, got {clicked.dtype}")
    pos_w = _per_impression(positive_weight, n, "positive_weight")[clicked]
    neg_w = _per_impression(negative_weight, n, "negative_weight")[~clicked]

    shape = (n_users, n_items)
    pu, pi = user_ids[clicked].astype(np.int64), item_ids[clicked].astype(np.int64)
    nu, ni = user_ids[~clicked].astype(np.int64), item_ids[~clicked].astype(np.int64)
    keep = ~np.isin(nu * n_items + ni, pu * n_items + pi)
    # scipy sums duplicate (row, col) pairs on conversion and keeps stored zeros.
    pos = sp.csr_matrix((pos_w, (pu, pi)), shape=shape, dtype=np.float64)
    neg = sp.csr_matrix((neg_w[keep], (nu[keep], ni[keep])), shape=shape, dtype=np.float64)
    pos.sum_duplicates()
    neg.sum_duplicates()
    return pos, neg


def check_weights(positives: Any, negatives: Any) -> tuple[sp.csr_matrix, sp.csr_matrix | None]:
    """Canonical float64 CSR copies of ``P`` and ``N``; ValueError naming the bad one.

    Weights must be finite and ``≥ 0``, shapes equal, supports disjoint. ``negatives`` with no
    entries comes back as ``None`` (the plain confidence model).
    """
    pos = _as_weights(positives, "positives")
    if negatives is None:
        return pos, None
    neg = _as_weights(negatives, "negatives")
    if neg.shape != pos.shape:
        raise ValueError(f"negatives: shape {neg.shape} != positives shape {pos.shape}")
    if neg.nnz == 0:
        return pos, None
    n_cols = pos.shape[1]
    pos_keys = _rows_of(pos).astype(np.int64) * n_cols + pos.indices
    neg_keys = _rows_of(neg).astype(np.int64) * n_cols + neg.indices
    overlap = np.isin(neg_keys, pos_keys)
    if overlap.any():
        k = int(np.flatnonzero(overlap)[0])
        raise ValueError(
            f"negatives: {int(overlap.sum())} entries overlap positives, e.g. "
            f"({int(neg_keys[k] // n_cols)}, {int(neg_keys[k] % n_cols)}); supports must be disjoint"
        )
    return pos, neg


def _as_weights(matrix: Any, name: str) -> sp.csr_matrix:
    if not sp.issparse(matrix):
        raise ValueError(f"{name}: must be a scipy sparse matrix, got {type(matrix).__name__}")
    if matrix.ndim != 2:
        raise ValueError(f"{name}: must be 2-D, got shape {matrix.shape}")
    out = sp.csr_matrix(matrix, dtype=np.float64, copy=True)
    out.sum_duplicates()  # also sorts indices: one entry per (row, col)
    if not np.isfinite(out.data).all() or (out.data < 0).any():
        raise ValueError(f"{name}: weights must be finite and >= 0")
    return out


def _per_impression(weight: float | np.ndarray, n: int, name: str) -> np.ndarray:
    w = np.asarray(weight, dtype=np.float64)
    if w.ndim == 0:
        w = np.full(n, float(w))
    if w.shape != (n,):
        raise ValueError(f"{name}: must be a scalar or one value per impression ({n})")
    if not np.isfinite(w).all() or (w < 0).any():
        raise ValueError(f"{name}: weights must be finite and >= 0")
    return w


def _rows_of(m: sp.csr_matrix) -> np.ndarray:
    return np.repeat(np.arange(m.shape[0]), np.diff(m.indptr))


def _targets(targets: Any, pos: sp.csr_matrix) -> np.ndarray:
    """Targets aligned with ``pos.data`` (ones when ``None``); must have ``P``'s entries."""
    if targets is None:
        return np.ones(pos.nnz)
    if not sp.issparse(targets) or targets.shape != pos.shape:
        raise ValueError(f"targets: must be a sparse matrix of shape {pos.shape}")
    t = sp.csr_matrix(targets, dtype=np.float64, copy=True)
    t.sum_duplicates()
    if not (np.array_equal(t.indptr, pos.indptr) and np.array_equal(t.indices, pos.indices)):
        raise ValueError("targets: must have exactly the entries of positives")
    if not np.isfinite(t.data).all():
        raise ValueError("targets: must be finite")
    return t.data


def _merge_rows(
    pos: sp.csr_matrix, neg: sp.csr_matrix | None, targets: np.ndarray | None = None
) -> _Rows:
    target_weight = pos.data if targets is None else pos.data * targets
    if neg is None or neg.nnz == 0:
        return _Rows(pos.indptr, pos.indices, pos.data, target_weight)
    rows = np.concatenate([_rows_of(pos), _rows_of(neg)])
    order = np.argsort(rows, kind="stable")  # group by row; stable keeps the result reproducible
    indptr = np.zeros(pos.shape[0] + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=pos.shape[0]), out=indptr[1:])
    return _Rows(
        indptr,
        np.concatenate([pos.indices, neg.indices])[order],
        np.concatenate([pos.data, neg.data])[order],
        np.concatenate([target_weight, np.zeros(neg.nnz)])[order],
    )


@contextmanager
def _workers(num_threads: int) -> Iterator[ThreadPoolExecutor | None]:
    """A pool for the blocks (``None``: run them inline), with BLAS limited to one thread.

    Small per-row solves gain little from BLAS threads but do from running blocks side by side
    (about 2x on 2 cores); one BLAS thread per call also makes results independent of
    ``num_threads`` and keeps our threads from oversubscribing the cores.
    """
    n = num_threads or os.cpu_count() or 1
    with threadpool_limits(1, "blas"):
        if n == 1:
            yield None
        else:
            with ThreadPoolExecutor(n) as pool:
                yield pool


def _half_step(
    rows: _Rows,
    fixed: np.ndarray,
    w0: float,
    lam: float,
    block_size: int,
    pool: ThreadPoolExecutor | None,
) -> tuple[np.ndarray, float]:
    """Solve every row's normal equations against ``fixed`` in batched blocks.

    Returns the (n_rows, f) solutions and ``Σ_rows bᵀx`` (for the loss).
    """
    n_rows, f = rows.indptr.shape[0] - 1, fixed.shape[1]
    gram = w0 * (fixed.T @ fixed) + lam * np.eye(f)
    out = np.zeros((n_rows, f))
    counts = np.diff(rows.indptr)
    # A row without entries has b = 0, so x = 0 exactly: skip it. Sorting the rest by length
    # makes rows of a block similar in length, so padding them to the longest wastes little.
    order = np.flatnonzero(counts)
    order = order[np.argsort(counts[order], kind="stable")]
    blocks = []
    start = 0
    while start < order.shape[0]:
        candidates = order[start : start + block_size]
        # Lengths ascend, so the padded size (rows × longest) grows with the rows taken.
        padded = np.arange(1, candidates.shape[0] + 1) * counts[candidates]
        blocks.append(
            candidates[: max(1, int(np.searchsorted(padded, ENTRY_BUDGET, side="right")))]
        )
        start += blocks[-1].shape[0]

    def solve(block: np.ndarray) -> float:
        x, b = _solve_block(rows, counts, block, fixed, gram, w0)
        out[block] = x  # blocks hold disjoint rows
        return float(np.sum(b * x))

    # Longest rows first, so the threads finish together. map returns in submission order:
    # the sum is the same whatever thread solved which block.
    bx = map(solve, reversed(blocks)) if pool is None else pool.map(solve, reversed(blocks))
    return out, sum(bx)


def _solve_block(
    rows: _Rows,
    counts: np.ndarray,
    block: np.ndarray,
    fixed: np.ndarray,
    gram: np.ndarray,
    w0: float,
) -> tuple[np.ndarray, np.ndarray]:
    lengths = counts[block]
    slot = np.arange(lengths[-1])
    valid = slot[None, :] < lengths[:, None]
    # Padding points at any real entry; its weights are zeroed so it adds nothing.
    entry = np.where(valid, rows.indptr[block][:, None] + slot[None, :], 0)
    delta = np.where(valid, rows.weight[entry] - w0, 0.0)
    target = np.where(valid, rows.target_weight[entry], 0.0)
    g = fixed[rows.cols[entry]]  # (B, E, f)
    a = gram + np.matmul(np.swapaxes(g * delta[:, :, None], 1, 2), g)  # batched BLAS
    b = np.matmul(target[:, None, :], g)[:, 0, :]  # (B, f)
    return np.linalg.solve(a, b[:, :, None])[:, :, 0], b


def _entry_scores(m: sp.csr_matrix, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    rows = _rows_of(m)
    out = np.empty(m.nnz)
    for lo in range(0, m.nnz, ENTRY_BUDGET):  # chunks bound the (chunk, f) gathers
        hi = lo + ENTRY_BUDGET
        out[lo:hi] = np.einsum("ef,ef->e", x[rows[lo:hi]], y[m.indices[lo:hi]])
    return out


def _objective(
    pos: sp.csr_matrix,
    neg: sp.csr_matrix | None,
    x: np.ndarray,
    y: np.ndarray,
    w0: float,
    lam: float,
    targets: np.ndarray | None = None,
) -> float:
    # w₀ Σ_all s² = w₀ tr(XᵀX YᵀY); observed entries swap their w₀ s² for their own term.
    s_pos = _entry_scores(pos, x, y)
    t = np.ones(pos.nnz) if targets is None else targets
    loss = float(pos.data @ (t - s_pos) ** 2 - w0 * (s_pos @ s_pos))
    if neg is not None:
        s_neg = _entry_scores(neg, x, y)
        loss += float((neg.data - w0) @ s_neg**2)
    loss += w0 * float(np.sum((x.T @ x) * (y.T @ y)))
    return loss + lam * float(np.sum(x * x) + np.sum(y * y))
