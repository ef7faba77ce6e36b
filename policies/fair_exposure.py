"""Stochastic fair-exposure ranking (Singh & Joachims 2018, "Fairness of Exposure in Rankings").

Per request, over the top ``M = min(ceil(candidate_factor · K), C)`` retrieved candidates:

1. **Merit / utility** ``u_i`` of candidate ``i`` from the model's scores, min-max shifted within
   the request: ``u_i = floor + (1 − floor)·(s_i − min s)/(max s − min s)`` (``merit_floor``;
   all ``1`` when the scores are equal). Positive, in ``[floor, 1]``, unit-free.
2. **Position exposure** ``v_k = 1/log2(k + 2)`` (the DCG discount; the platform does not know
   the true examination curve), ``V = Σ_k v_k``.
3. **LP** (``scipy.optimize.linprog``, HiGHS) for the slot-assignment matrix ``P`` (M × K):
   maximize ``(1/V) Σ_ik u_i P_ik v_k − λ Σ_g s_g`` subject to ``P ≥ 0``, each candidate's row
   sum ``≤ 1``, each slot's column sum ``= 1`` and, for each group ``g`` among the ``M``
   candidates, ``|E_g/V − m_g| ≤ δ + s_g`` with ``s_g ≥ 0``: the group's share of the slate's
   exposure (``E_g = Σ_{i∈g,k} P_ik v_k``) is within ``delta`` of its share of the candidates'
   merit (``m_g = Σ_{i∈g} u_i / Σ_i u_i``). Since every slot is filled the total exposure is
   ``V``, so with ``δ = 0`` this is exactly Singh & Joachims' "exposure proportional to merit"
   (``E_g/M_g`` equal across groups). The slack ``s_g``, penalized by ``slack_penalty`` (λ, in
   units of the normalized utility per unit of exposure share), keeps the LP feasible where no
   ranking of these candidates can meet the constraint (e.g. one group holding most of the
   merit but fewer members than slots); with λ large the LP first minimizes the total violation.
   Groups are creators (``ItemMetadata.creator_id``) or popularity tiers (``n_tiers`` quantile
   bins of the item impressions in the model's training log, ``SelectionContext.item_impressions``).
   The greedy assignment (the top K by merit, in merit order) is the unconstrained optimum
   (rearrangement inequality, ``v`` decreasing): where it already meets every group constraint
   (always with one group among the candidates, or ``δ ≥ 1``) it is an optimum of the LP with zero
   slack, so the LP is skipped there (checked for the whole batch at once) and ``P`` is greedy.
4. **Birkhoff–von Neumann**: ``P`` (rounded to 1e-12) is completed to a square doubly
   stochastic matrix (the ``M − K`` dummy slots take each row's deficit ``1 − Σ_k P_ik`` by the
   north-west-corner rule: few non-zeros, hence few permutations) and decomposed into weighted
   permutation matrices (a maximum-weight perfect matching on the remaining support each step,
   :func:`scipy.optimize.linear_sum_assignment`). A permutation's first ``K`` columns are a
   ranking; one is drawn per request with one uniform from ``rand.uniform`` (request order).

Exact probabilities: the served distribution is the finite mixture of rankings, so the marginal
of (slot, item), the prefix probability (sum of the weights of the rankings that agree with the
shown prefix) and each candidate's show probability are sums of mixture weights: all
``exact``. The marginals equal ``P`` up to the LP's tolerance (they are the mixture's, which is
what is sampled). Requests of a batch are solved one at a time (HiGHS has no batched form; a
block-diagonal LP of many requests is not used: its optimum need not be the per-request one
where a request's LP has ties); identical requests in one batch are solved once. Each request's
result depends on its own row only, so serving a batch whole or in pieces is bit-identical.

Off-policy evaluation: replayable (``probabilities`` decomposes the logged context again). The
reward-model estimators' ``first_slot`` needs the candidates' item ids and groups, which
``Selector.first_slot`` does not receive: fair_exposure has none, so OPE gives it the weighting
estimators only (as for UCB and Thompson).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from policies.propensity import EXACT, candidate_index
from policies.randomness import Randomness
from policies.selection import Selection, SelectionContext, Selector

GROUPINGS = ("creators", "popularity_tiers")
ROUND = 1e-12  # P is rounded to this grid: solver noise below it cannot change a decomposition
TOL = 1e-9  # BvN: entries at or below this are zero


def exposure_weights(k: int) -> np.ndarray:
    """Position exposure ``v_k = 1/log2(k + 2)``, k = 0..K−1."""
    return 1.0 / np.log2(np.arange(k) + 2.0)


def merits(scores: np.ndarray, floor: float) -> np.ndarray:
    """Per-row min-max shifted scores in ``[floor, 1]`` (n, M) float64; ``1`` for equal scores."""
    s = np.asarray(scores, dtype=np.float64)
    lo = s.min(axis=1, keepdims=True)
    span = s.max(axis=1, keepdims=True) - lo
    scaled = np.divide(s - lo, span, out=np.ones(s.shape), where=span > 0)
    return floor + (1.0 - floor) * scaled


def popularity_tiers(impressions: np.ndarray, n_tiers: int) -> np.ndarray:
    """Tier of every item, 0 (least shown) .. n_tiers−1: the number of the ``i/n_tiers``
    quantiles (i = 1..n_tiers−1) of all items' impressions strictly below the item's count
    (items tied at a quantile share the lower tier)."""
    imp = np.asarray(impressions, dtype=np.float64)
    edges = np.quantile(imp, np.arange(1, n_tiers) / n_tiers)
    return np.searchsorted(edges, imp, side="left").astype(np.int64)


def greedy_is_fair(
    u: np.ndarray, labels: np.ndarray, greedy: np.ndarray, v: np.ndarray, delta: float
) -> np.ndarray:
    """Whether each request's greedy assignment (pool indices ``greedy`` (n, K) in slot order)
    meets ``|E_g/V − m_g| ≤ δ`` for every group (n,) bool; row by row, in the same order
    whatever the batch."""
    n, m = u.shape
    order = np.argsort(labels, axis=1, kind="stable")
    ranked = np.take_along_axis(labels, order, axis=1)
    new = np.ones(ranked.shape, dtype=bool)
    new[:, 1:] = ranked[:, 1:] != ranked[:, :-1]
    dense = np.empty_like(order)
    np.put_along_axis(dense, order, np.cumsum(new, axis=1) - 1, axis=1)  # group 0..G-1 per row
    exposure = np.zeros((n, m))
    np.put_along_axis(exposure, greedy, np.broadcast_to(v / v.sum(), greedy.shape), axis=1)
    flat = (dense + m * np.arange(n)[:, None]).ravel()
    group_exposure = np.bincount(flat, weights=exposure.ravel(), minlength=n * m)
    group_merit = np.bincount(flat, weights=u.ravel(), minlength=n * m).reshape(n, m)
    share = group_merit / u.sum(axis=1, keepdims=True)
    return (np.abs(group_exposure.reshape(n, m) - share) <= delta + 1e-12).all(axis=1)


@functools.cache
def _assignment_blocks(m: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The constraint rows every request of size (M, K) shares, on ``P.ravel()`` (row-major):
    slot sums (K, M·K) and candidate sums (M, M·K). Read-only."""
    columns = np.zeros((k, m * k))
    columns[np.tile(np.arange(k), m), np.arange(m * k)] = 1.0
    rows = np.zeros((m, m * k))
    rows[np.repeat(np.arange(m), k), np.arange(m * k)] = 1.0
    columns.flags.writeable = rows.flags.writeable = False
    return columns, rows


def assignment_lp(
    u: np.ndarray, labels: np.ndarray, v: np.ndarray, delta: float, penalty: float
) -> tuple[np.ndarray, np.ndarray]:
    """Solve the fair-exposure LP for one request: ``(P (M, K), slack (G,))``, groups in
    ``np.unique(labels)`` order. ``P`` is rounded to :data:`ROUND` and clipped to [0, 1]."""
    m, k = u.shape[0], v.shape[0]
    total_v = v.sum()
    groups, g_of = np.unique(labels, return_inverse=True)
    n_g = groups.shape[0]
    share = np.bincount(g_of, weights=u, minlength=n_g) / u.sum()
    nvar = m * k + n_g
    c = np.concatenate([-(u[:, None] * v[None, :]).ravel() / total_v, np.full(n_g, penalty)])
    columns, rows = _assignment_blocks(m, k)
    a_eq = np.zeros((k, nvar))
    a_eq[:, : m * k] = columns
    a_ub = np.zeros((m + 2 * n_g, nvar))
    a_ub[:m, : m * k] = rows
    expo = np.zeros((n_g, nvar))
    expo[np.repeat(g_of, k), np.arange(m * k)] = np.tile(v / total_v, m)
    a_ub[m : m + n_g] = expo
    a_ub[m + n_g :] = -expo
    a_ub[m : m + n_g, m * k + np.arange(n_g)] = -1.0
    a_ub[m + n_g :, m * k + np.arange(n_g)] = -1.0
    b_ub = np.concatenate([np.ones(m), delta + share, delta - share])
    bounds = [(0.0, 1.0)] * (m * k) + [(0.0, None)] * n_g
    from scipy.optimize import linprog  # lazily: start-up time

    res = linprog(
        c, A_ub=a_ub, b_ub=b_ub, A_eq=a_eq, b_eq=np.ones(k), bounds=bounds, method="highs"
    )
    if res.status != 0:  # the slack makes it always feasible and bounded
        raise RuntimeError(f"fair_exposure LP failed: {res.message}")
    p = np.clip(np.round(res.x[: m * k].reshape(m, k) / ROUND) * ROUND, 0.0, 1.0)
    return p, res.x[m * k :]


def complete(p: np.ndarray) -> np.ndarray:
    """``P`` (M, K) widened to a square (M, M) doubly stochastic matrix: the ``M − K`` dummy
    columns take the rows' deficits ``1 − Σ_k P_ik`` in north-west-corner order."""
    m, k = p.shape
    q = np.zeros((m, m))
    q[:, :k] = p
    deficit = np.clip(1.0 - p.sum(axis=1), 0.0, None)
    j, room = k, 1.0
    for i in range(m):  # M + (M − K) steps at most
        left = deficit[i]
        while left > TOL and j < m:
            take = min(left, room)
            q[i, j] += take
            left -= take
            room -= take
            if room <= TOL:
                j, room = j + 1, 1.0
    return q


def birkhoff(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Birkhoff–von Neumann decomposition of the assignment ``p`` (M, K): ``(rankings (R, K)
    candidate indices, weights (R,))`` with weights summing to 1 and ``Σ_r w_r·[ranking_r] ≈ p``
    (to the rounding of ``p``)."""
    m, k = p.shape
    rem = complete(p)
    rankings, weights = [], []
    total = 0.0
    for _ in range(m * m):
        support = rem > TOL
        from scipy.optimize import linear_sum_assignment  # lazily: start-up time

        rows, cols = linear_sum_assignment(np.where(support, -rem, float(m + 1)))
        if not support[rows, cols].all():
            break  # what is left is rounding noise
        w = rem[rows, cols].min()
        rem[rows, cols] -= w
        ranking = np.empty(k, dtype=np.int64)
        real = cols < k
        ranking[cols[real]] = rows[real]
        rankings.append(ranking)
        weights.append(w)
        total += w
        if total >= 1.0 - TOL:
            break
    if total < 1.0 - 1e-6:  # P was not (nearly) doubly stochastic: never sample a distortion
        raise RuntimeError(f"fair_exposure: the decomposition covers only {total:.9f} of P")
    w = np.array(weights)
    return np.array(rankings, dtype=np.int64).reshape(-1, k), w / w.sum()


@dataclass(frozen=True)
class FairExposure(Selector):
    """Fair exposure of groups (creators or popularity tiers) in proportion to merit, by an LP
    per request and a Birkhoff–von Neumann draw (see the module docstring)."""

    slate_size: int
    groups: str = "creators"
    n_tiers: int = 4
    delta: float = 0.05
    candidate_factor: float = 2.0
    slack_penalty: float = 100.0
    merit_floor: float = 0.1
    name: ClassVar[str] = "fair_exposure"

    def __post_init__(self) -> None:
        if self.groups not in GROUPINGS:
            self._fail("groups", f"unknown; choose one of {', '.join(GROUPINGS)}")
        self._positive_int("n_tiers")
        if self.n_tiers < 2:
            self._fail("n_tiers", "must be at least 2")
        self._number("delta", 0.0)
        self._number("candidate_factor", 1.0)
        self._number("slack_penalty", 0.0, low_open=True)
        self._number("merit_floor", 0.0, 1.0, low_open=True)

    # --- the per-request distribution ----------------------------------------------------
    def pool_size(self, n_candidates: int) -> int:
        """``M``: candidates the LP assigns (at least K, at most the retrieved ones)."""
        k = self.slate_size
        return max(min(math.ceil(self.candidate_factor * k - 1e-9), n_candidates), k)

    def labels(self, ctx: SelectionContext, pool: np.ndarray) -> np.ndarray:
        """Group of each pool candidate (n, M) int64."""
        if self.groups == "creators":
            if ctx.items is None:
                raise ValueError(
                    "policy.selector.groups='creators': needs the catalog's item metadata "
                    "(SelectionContext.items); use groups=popularity_tiers without it"
                )
            return ctx.items.creator_id[pool].astype(np.int64)
        tiers = popularity_tiers(ctx.item_impressions, self.n_tiers)
        return tiers[pool]

    def decompose(self, ctx: SelectionContext) -> tuple[np.ndarray, np.ndarray]:
        """Every request's ranking distribution: ``(rankings (n, R, K) candidate indices,
        weights (n, R))``, padded with weight 0 (ranking -1) to the batch's largest ``R``."""
        k, n = self.slate_size, ctx.n
        m = self.pool_size(ctx.candidates.shape[1])
        pool = ctx.candidates[:, :m]
        if n == 0:
            return np.zeros((0, 1, k), dtype=np.int64), np.zeros((0, 1))
        u = merits(ctx.scores[:, :m], self.merit_floor)
        labels = self.labels(ctx, np.clip(pool, 0, None))
        v = exposure_weights(k)
        greedy = np.argsort(-u, axis=1, kind="stable")[:, :k]
        skip = greedy_is_fair(u, labels, greedy, v, self.delta) | (pool < 0).any(axis=1)
        greedy = np.where((pool < 0).any(axis=1, keepdims=True), np.arange(k), greedy)
        # Identical requests (same merits and groups) have the same distribution: solve once.
        key = np.concatenate([u.view(np.int64), labels], axis=1)
        unique, first, inverse = np.unique(key, axis=0, return_index=True, return_inverse=True)
        solved = []
        for row in first:  # the LP and its decomposition: one request at a time
            if skip[row]:
                solved.append((greedy[row][None, :], np.ones(1)))
                continue
            p, _ = assignment_lp(u[row], labels[row], v, self.delta, self.slack_penalty)
            solved.append(birkhoff(p))
        r_max = max(r.shape[0] for r, _ in solved)
        rankings = np.full((unique.shape[0], r_max, k), -1, dtype=np.int64)
        weights = np.zeros((unique.shape[0], r_max))
        for j, (r, w) in enumerate(solved):
            rankings[j, : r.shape[0]] = r
            weights[j, : w.shape[0]] = w
        inverse = inverse.ravel()
        return rankings[inverse], weights[inverse]

    @staticmethod
    def _mixture_sums(weights: np.ndarray, match: np.ndarray) -> np.ndarray:
        """``Σ_r w_r·match_r`` along axis 1, summed strictly in order (padding adds exact
        zeros, so a request's sums do not depend on the batch's largest R); at most 1 (the
        weights sum to 1 up to rounding)."""
        terms = weights.reshape(weights.shape + (1,) * (match.ndim - 2)) * match
        return np.minimum(np.cumsum(terms, axis=1)[:, -1], 1.0)

    def _slot_probabilities(
        self, rankings: np.ndarray, weights: np.ndarray, slate: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact ``(marginal, prefix)`` of ``slate`` (n, K) candidate indices under the mixture:
        the weights of the rankings that put each slot's item there / that agree with the slate
        up to and including the slot."""
        same = rankings == slate[:, None, :]
        marginal = self._mixture_sums(weights, same)
        prefix = self._mixture_sums(weights, np.cumprod(same, axis=2, dtype=bool))
        return marginal, prefix

    def select(self, ctx: SelectionContext, rand: Randomness) -> Selection:
        k = self.slate_size
        rankings, weights = self.decompose(ctx)
        draw = rand.uniform.random(ctx.n)
        cum = np.cumsum(weights, axis=1)
        pick = (cum <= draw[:, None] * cum[:, -1:]).sum(axis=1)
        pick = np.minimum(pick, (weights > 0).sum(axis=1) - 1) if ctx.n else pick
        order = rankings[np.arange(ctx.n), pick]  # (n, K) candidate indices
        marginal, prefix = self._slot_probabilities(rankings, weights, order)
        c = ctx.candidates.shape[1]
        contains = (rankings[:, :, :, None] == np.arange(c)).any(axis=2)  # (n, R, C)
        show = self._mixture_sums(weights, contains)
        return Selection(
            items=np.take_along_axis(ctx.candidates, order, axis=1),
            propensity=marginal,
            prefix_propensity=prefix,
            explored=order != np.arange(k),
            candidate_show_probability=show,
            method=EXACT,
        )

    def probabilities(
        self, ctx: SelectionContext, items: np.ndarray, rand: Randomness | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact: the mixture weights of the rankings that put each logged item in its slot
        (marginal) and that agree with the logged prefix (prefix); 0 for an item outside the
        request's top-M candidates."""
        rankings, weights = self.decompose(ctx)
        found, index = candidate_index(ctx.candidates, items)
        index = np.where(found, index, -2)  # never equal to a ranking entry (or its padding)
        return self._slot_probabilities(rankings, weights, index)
