"""Constrained reranking: maximize relevance subject to a per-slate floor and exposure caps.

``policy/rerank=constrained`` (:class:`ConstrainedRerank`). The platform does not know true
topics, so the floors are on what it does know (:class:`agents.catalog.ItemMetadata`): the number
of distinct **creators** in a slate (``creator_id``) and the **content diversity** of a slate
(mean pairwise cosine distance of ``content``). The caps are on the share of impressions of an
item and of a creator over a rolling window.

Per request (vectorized over the batch; the only loops are over repair steps, at most K):

1. **Relevance** ``r = (s − min s) / (max s − min s)`` over the request's C candidates (the
   model's candidate scores ``ctx.scores``; 0 when all are equal): a unit-free score in [0, 1],
   so the multipliers are in units of "the request's score range".
2. **Lagrangian score** ``ℓ = r − λ_item[i] − λ_creator[creator(i)]`` with the multipliers of the
   last constraint tick. With ``block_at_cap`` (default), an item or creator whose rolling share
   was at or over its cap at the last tick is *blocked* until the next tick: its candidates rank
   below every unblocked one (they still fill the slate when too few others are left). This
   primal guard is what bounds an overshoot to one tick's worth of traffic; the multipliers alone
   approach the cap from above over several ticks.
3. **Top K** by ``ℓ`` (ties: the retrieval order), then **repair** the floor:

   * *creators* — while the slate has fewer than ``min_creators`` distinct creators, swap its
     lowest-ℓ item whose creator appears twice for the best-ℓ outside candidate of a creator not
     yet in the slate. Each swap adds one creator, so this reaches the floor exactly when the C
     candidates span at least ``min_creators`` creators; otherwise the slate is **infeasible**
     (its candidates had too few creators) and keeps the most creators it can.
   * *diversity* — while the slate's mean pairwise cosine distance is below
     ``min_content_diversity``: among the swaps (slate item out, outside candidate in) that raise
     it and keep the creator floor, take the one with the best ℓ-balance ``ℓ_in − ℓ_out`` that
     reaches the floor, else the one that raises the diversity most. At most K swaps; a slate
     still below the floor then (no improving swap left) is counted **infeasible** (the greedy
     repair's best; the exact maximum-diversity subset is NP-hard, so this is infeasible *for the
     repair*, not proven infeasible).

4. The candidates are reordered: the slate best-ℓ first, then the rest by ℓ, so a greedy
   selector's top K is the constrained slate, and epsilon-greedy / softmax / boost select from it
   with their exact propensities. The selector sees as ``scores`` the Lagrangian score, with the
   slate lifted by ``max ℓ_rest − min ℓ_slate + 0.001`` where that is ≥ 0, so the slate scores
   strictly above the rest (:data:`SLATE_MARGIN`) and the order is non-increasing (blocked
   candidates shifted below the unblocked by the request's ℓ range + 1).

**Dual ascent** at fixed simulated-time ticks (``tick_hours``; the engine's ``constraints``
process, :mod:`sim.engine`): with ``share_i`` the item's share of all impressions served in the
rolling window (the last ``⌈window_hours / tick_hours⌉`` ticks, every served impression counted,
fallback and cached ones included),

    λ_i ← min(1, max(0, λ_i + step_size · (share_i − cap) / cap))

(the constraint violation relative to the cap, so ``step_size`` means the same at every cap;
projected onto [0, 1], :data:`MULTIPLIER_MAX`), and the same per creator. Multipliers change
only at ticks, so how requests are batched changes nothing. Every tick appends one row to the
constraint ledger (``logs/constraints.parquet``, :data:`LEDGER_SCHEMA`) and, when slates were
infeasible, one row per reason to ``logs/constraints_infeasible.parquet``
(:data:`INFEASIBLE_SCHEMA`: how many, the floor, the mean best they achieved, and why).

Caveats: the floor counts (``n_floor_met``) are of the constrained slate the reranker puts in
the selector's top K — the shown slate under greedy; an exploring selector (epsilon-greedy,
softmax, boost) may show other candidates, and the floor then binds its greedy part only. A
cap below 1 / (number of items or creators) is refused (the shares sum to 1); the bootstrap's,
the fallback's and the cache's impressions count but are not controlled, so the "cap + one
tick's traffic" bound holds once the window holds model-served traffic only — and, because a
share is relative to the window's total, only while traffic does not drop sharply between ticks
(a quiet tick raises every share without a single new impression); a blocked item still fills
a slate when too few unblocked candidates are left, and the floor takes precedence over the
caps.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from math import ceil
from typing import Any, ClassVar

import numpy as np
import polars as pl

from agents.catalog import ItemMetadata
from policies.learned_rerank import permute_candidates
from policies.models import Retrieval
from policies.objectives import Diversity
from policies.rerank import Reranker
from policies.selection import SelectionContext

# One row per constraint tick (the contract of logs/constraints.parquet).
LEDGER_SCHEMA = {
    "t": pl.Float64,
    "n_slates": pl.Int64,
    "n_floor_met": pl.Int64,
    "n_floor_infeasible": pl.Int64,
    "item_max_share": pl.Float64,
    "creator_max_share": pl.Float64,
    "item_cap": pl.Float64,
    "creator_cap": pl.Float64,
    "item_multiplier_max": pl.Float64,
    "creator_multiplier_max": pl.Float64,
    "n_items_penalized": pl.Int64,
    "n_creators_penalized": pl.Int64,
}
LEDGER_FILE = "constraints.parquet"
# Why slates were infeasible: one row per tick and reason with at least one such slate.
INFEASIBLE_FILE = "constraints_infeasible.parquet"
INFEASIBLE_SCHEMA = {
    "t": pl.Float64,  # the tick that closed the period
    "reason": pl.String,  # creators | diversity
    "n_slates": pl.Int64,  # slates below that floor since the previous tick
    "floor": pl.Float64,  # min_creators or min_content_diversity
    "mean_achieved": pl.Float64,  # their mean distinct creators / content diversity
    "explanation": pl.String,
}
EXPLANATIONS = {
    "creators": "the request's candidates span fewer creators than min_creators; the slate "
    "holds every creator they have",
    "diversity": "no swap with an outside candidate raised the slate's content diversity to "
    "the floor (greedy repair, at most K swaps)",
}
# Projected dual ascent onto [0, 1]: a multiplier of 1 (the request's whole score range) already
# ranks its item below every unpenalized candidate, so a larger one would only wind up while the
# cap cannot be met (the bootstrap's uncontrolled traffic) and delay the release afterwards.
MULTIPLIER_MAX = 1.0
DIVERSITY_TOL = 1e-9
# A repaired slate scores at least this much above the best candidate left out (selector units).
SLATE_MARGIN = 1e-3  # a slate at the floor up to rounding meets it


@dataclass(frozen=True)
class ConstrainedRerank(Reranker):
    """Relevance subject to a creator / content-diversity floor per slate and exposure caps per
    item and creator over a rolling window (module docstring)."""

    min_creators: int = 0
    min_content_diversity: float = 0.0
    item_cap: float | None = None
    creator_cap: float | None = None
    window_hours: float = 24.0
    tick_hours: float = 1.0
    step_size: float = 1.0
    block_at_cap: bool = True
    name: ClassVar[str] = "constrained"

    def __post_init__(self) -> None:
        m = self.min_creators
        if not (isinstance(m, (int, np.integer)) and not isinstance(m, bool) and m >= 0):
            self._fail("min_creators", "must be an integer >= 0 (0 = off)")
        # Cosine distance lies in [0, 2]; the policy tightens the bound to what K items can reach.
        self._number("min_content_diversity", 0.0, 2.0)
        for key in ("item_cap", "creator_cap"):
            if getattr(self, key) is not None:
                self._number(key, 0.0, 1.0, low_open=True)
        self._number("tick_hours", 0.0, low_open=True)
        self._number("window_hours", 0.0, low_open=True)
        if self.window_hours < self.tick_hours:
            self._fail("window_hours", f"must be >= policy.rerank.tick_hours={self.tick_hours}")
        self._number("step_size", 0.0)
        self._bool("block_at_cap")

    def check_policy(self, slate_size: int, selector: Any, scorer: Any) -> None:
        """Cross-checks with the rest of the policy (``PolicyConfig``)."""
        if self.min_creators > slate_size:
            self._fail("min_creators", f"a slate holds policy.slate_size={slate_size} items")
        if self.min_content_diversity > 0:
            if slate_size < 2:
                self._fail("min_content_diversity", "needs policy.slate_size >= 2 (pairs)")
            # ‖Σ u_k‖² ≥ 0 gives Σ_{a≠b} cos ≥ −K, so a slate's mean pairwise cosine distance is
            # at most 1 + 1/(K−1): a higher floor no slate of K items can meet.
            top = 1.0 + 1.0 / (slate_size - 1)
            if self.min_content_diversity > top:
                self._fail(
                    "min_content_diversity",
                    f"no slate of policy.slate_size={slate_size} items reaches it (the mean "
                    f"pairwise cosine distance of K vectors is at most 1 + 1/(K-1) = {top:.4g})",
                )
        if selector.needs_posterior:
            raise ValueError(
                f"policy.rerank='constrained': selector {selector.label!r} draws from the "
                "model's posterior, not from the reranked order; use greedy, epsilon_greedy, "
                "softmax or boost"
            )
        if not scorer.retrieves:
            raise ValueError(
                f"policy.rerank='constrained': scorer {scorer.label!r} retrieves no candidates "
                "to rerank; use a scorer that ranks"
            )

    def check_world(self, n_items: int, n_creators: int) -> None:
        """The shares sum to 1, so a cap below 1 / (number of items or creators) cannot hold."""
        for key, n in (("item_cap", n_items), ("creator_cap", n_creators)):
            cap = getattr(self, key)
            if cap is not None and cap * n < 1:
                self._fail(
                    key,
                    f"infeasible: {n} {key.split('_')[0]}s cannot all stay below it (the shares "
                    f"sum to 1; needs a cap >= 1/{n} = {1 / n:.4g})",
                )

    @property
    def n_buckets(self) -> int:
        """Ticks in the rolling window (the window is rounded up to whole ticks)."""
        return max(1, ceil(self.window_hours / self.tick_hours - 1e-9))

    def initial_state(
        self, items: ItemMetadata | None, n_items: int, slate_size: int
    ) -> ConstraintState:
        """The runtime state at hour 0: no multipliers, nothing blocked, an empty window."""
        if items is None:
            raise ValueError(
                "policy.rerank='constrained': needs the platform's item metadata (creators, "
                "content)"
            )
        creator = np.asarray(items.creator_id, dtype=np.int64)
        n_creators = int(creator.max(initial=-1)) + 1
        unit = Diversity.unit_catalog(items)
        b = self.n_buckets
        return ConstraintState(
            config=self,
            slate_size=slate_size,
            creator=creator,
            unit_content=unit,
            item_multiplier=np.zeros(n_items),
            creator_multiplier=np.zeros(n_creators),
            item_blocked=np.zeros(n_items, dtype=bool),
            creator_blocked=np.zeros(n_creators, dtype=bool),
            item_buckets=np.zeros((b, n_items), dtype=np.int64),
            creator_buckets=np.zeros((b, n_creators), dtype=np.int64),
            total_buckets=np.zeros(b, dtype=np.int64),
        )

    def rerank(self, ctx: SelectionContext) -> SelectionContext:
        return ctx  # without its runtime state (a unit test): the retrieval order

    def rerank_serving(
        self, ctx: SelectionContext, retrieval: Retrieval, state: ConstraintState | None
    ) -> tuple[SelectionContext, Retrieval]:
        """The constrained order of every request's candidates (module docstring); records the
        batch's floor outcomes in ``state``."""
        if state is None:
            return self.rerank(ctx), retrieval
        result = constrained_slates(self, ctx.candidates, ctx.scores, state)
        state.record(result)
        order = result.order
        # Keep each candidate's rank in its retriever before permuting (the candidates log's
        # ``retriever_rank``); ``rank`` is then the order the selector sees.
        retrieval = dataclasses.replace(retrieval, rank=retrieval.retriever_rank.copy())
        retrieval = permute_candidates(retrieval, order)
        ctx = dataclasses.replace(
            ctx, candidates=retrieval.items, scores=result.scores.astype(np.float32)
        )
        return ctx, retrieval


@dataclass(frozen=True)
class Slates:
    """What :func:`constrained_slates` decided for a batch."""

    order: np.ndarray  # (n, C) candidate columns: the slate first, then the rest
    scores: np.ndarray  # (n, C) the score the selector sees, non-increasing along ``order``
    floor_met: np.ndarray  # (n,) bool
    infeasible: np.ndarray  # (n,) bool: the floor could not be met from the candidates
    n_creators: np.ndarray  # (n,) distinct creators in the slate
    diversity: np.ndarray  # (n,) mean pairwise cosine distance of the slate (NaN for K < 2)


def normalized_relevance(scores: np.ndarray) -> np.ndarray:
    """Per-row min-max scaling of the model scores to [0, 1] (0 where a row is constant)."""
    s = np.asarray(scores, dtype=np.float64)
    lo = s.min(axis=1, keepdims=True)
    span = s.max(axis=1, keepdims=True) - lo
    return np.divide(s - lo, span, out=np.zeros_like(s), where=span > 0)


def distinct_count(values: np.ndarray) -> np.ndarray:
    """Distinct values per row of a 2-D integer array."""
    if values.shape[1] == 0:
        return np.zeros(values.shape[0], dtype=np.int64)
    v = np.sort(values, axis=1)
    return 1 + (np.diff(v, axis=1) != 0).sum(axis=1)


def mean_pairwise_distance(sim: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Mean pairwise cosine distance ``1 − cos`` of the slate ``idx`` (n, K) given the candidate
    cosine similarities ``sim`` (n, C, C); NaN for K < 2."""
    k = idx.shape[1]
    if k < 2:
        return np.full(idx.shape[0], np.nan)
    sub = np.take_along_axis(np.take_along_axis(sim, idx[:, :, None], axis=1), idx[:, None, :], 2)
    off = sub.sum(axis=(1, 2)) - np.trace(sub, axis1=1, axis2=2)
    return 1.0 - off / (k * (k - 1))


def constrained_slates(
    config: ConstrainedRerank,
    candidates: np.ndarray,
    scores: np.ndarray,
    state: ConstraintState,
) -> Slates:
    """The constrained slate of every request (module docstring), vectorized over requests."""
    n, c = candidates.shape
    k = min(state.slate_size, c)
    creator = state.creator[candidates]  # (n, C)
    lag = normalized_relevance(scores)
    lag = lag - state.item_multiplier[candidates] - state.creator_multiplier[creator]
    blocked = state.item_blocked[candidates] | state.creator_blocked[creator]
    if blocked.any():
        span = lag.max(axis=1, keepdims=True) - lag.min(axis=1, keepdims=True) + 1.0
        lag = np.where(blocked, lag - span, lag)
    ranked = np.argsort(-lag, axis=1, kind="stable")  # ties: the retrieval order
    slate, rest = ranked[:, :k].copy(), ranked[:, k:].copy()

    m = int(config.min_creators)
    reachable = distinct_count(creator) if m > 0 else np.zeros(n, dtype=np.int64)
    target = np.minimum(m, reachable)  # the most creators a slate of these candidates can hold
    if m > 0 and rest.shape[1]:
        for _ in range(m):  # each swap adds one creator: at most m steps
            sc = np.take_along_axis(creator, slate, axis=1)  # (n, K)
            active = np.flatnonzero(distinct_count(sc) < target)
            if active.size == 0:
                break
            sc, s_idx, r_idx = sc[active], slate[active], rest[active]
            rc = np.take_along_axis(creator[active], r_idx, axis=1)  # (a, R)
            dup = (sc[:, :, None] == sc[:, None, :]).sum(axis=2) > 1  # (a, K)
            new = ~(rc[:, :, None] == sc[:, None, :]).any(axis=2)  # (a, R)
            lag_s = np.take_along_axis(lag[active], s_idx, axis=1)
            lag_r = np.take_along_axis(lag[active], r_idx, axis=1)
            out = np.argmin(np.where(dup, lag_s, np.inf), axis=1)  # lowest-ℓ duplicate
            into = np.argmax(np.where(new, lag_r, -np.inf), axis=1)  # best-ℓ new creator
            a = np.arange(active.size)
            removed = s_idx[a, out].copy()
            s_idx[a, out] = r_idx[a, into]
            r_idx[a, into] = removed
            slate[active], rest[active] = s_idx, r_idx

    delta = float(config.min_content_diversity)
    sim = None
    if delta > 0 and k >= 2:
        unit = state.unit_content[candidates]  # (n, C, d)
        sim = np.einsum("ncd,nmd->ncm", unit, unit)
    if delta > 0 and rest.shape[1] and sim is not None:
        for _ in range(k):
            div = mean_pairwise_distance(sim, slate)
            active = np.flatnonzero(div < delta - DIVERSITY_TOL)
            if active.size == 0:
                break
            s_idx, r_idx, sim_a = slate[active], rest[active], sim[active]
            a_rows = np.arange(active.size)[:, None, None]
            in_s = np.zeros((active.size, c))
            np.put_along_axis(in_s, s_idx, 1.0, axis=1)
            rowsum = np.einsum("ncm,nm->nc", sim_a, in_s)  # Σ_{s∈S} sim(x, s)
            pairs = k * (k - 1)  # ordered pairs
            self_s = np.take_along_axis(sim_a.diagonal(axis1=1, axis2=2), s_idx, axis=1)  # (a, K)
            out_part = np.take_along_axis(rowsum, s_idx, axis=1) - self_s  # (a, K)
            total = out_part.sum(axis=1)  # Σ_{a≠b∈S} sim over ordered pairs
            in_part = np.take_along_axis(rowsum, r_idx, axis=1)  # (a, R)
            cross = sim_a[a_rows, r_idx[:, :, None], s_idx[:, None, :]]  # (a, R, K) sim(j, r)
            # Σ_{a≠b} sim after swapping slate item r for outside j (each pair counted twice)
            new_total = (
                total[:, None, None] - 2 * out_part[:, None, :] + 2 * (in_part[:, :, None] - cross)
            )
            new_div = 1.0 - new_total / pairs  # (a, R, K)
            gain = new_div - div[active][:, None, None]
            ok = gain > 1e-12
            if m > 0:
                sc = np.take_along_axis(creator[active], s_idx, axis=1)
                rc = np.take_along_axis(creator[active], r_idx, axis=1)
                cnt_s = (sc[:, :, None] == sc[:, None, :]).sum(axis=2)  # (a, K)
                cnt_r = (rc[:, :, None] == sc[:, None, :]).sum(axis=2)  # (a, R)
                same = rc[:, :, None] == sc[:, None, :]  # (a, R, K)
                lost = (cnt_s == 1)[:, None, :]
                gained = (cnt_r[:, :, None] - same) == 0
                after = distinct_count(sc)[:, None, None] - lost + gained
                ok &= after >= target[active][:, None, None]
            lag_a = lag[active]
            balance = (
                np.take_along_axis(lag_a, r_idx, axis=1)[:, :, None]
                - np.take_along_axis(lag_a, s_idx, axis=1)[:, None, :]
            )
            reaches = ok & (new_div >= delta - DIVERSITY_TOL)
            key = np.where(
                reaches.any(axis=(1, 2))[:, None, None],
                np.where(reaches, balance, -np.inf),
                np.where(ok, gain, -np.inf),
            ).reshape(active.size, -1)
            best = np.argmax(key, axis=1)
            can = np.isfinite(key[np.arange(active.size), best])
            if not can.any():
                break
            j, r = np.divmod(best[can], k)
            rows_c = active[can]
            removed = slate[rows_c, r].copy()
            slate[rows_c, r] = rest[rows_c, j]
            rest[rows_c, j] = removed

    n_creators = distinct_count(np.take_along_axis(creator, slate, axis=1))
    diversity = mean_pairwise_distance(sim, slate) if sim is not None else np.full(n, np.nan)
    met = np.ones(n, dtype=bool)
    if m > 0:
        met &= n_creators >= m
    if delta > 0:
        met &= diversity >= delta - DIVERSITY_TOL
    # Slate best-ℓ first, then the rest by ℓ.
    lag_s = np.take_along_axis(lag, slate, axis=1)
    slate = np.take_along_axis(slate, np.argsort(-lag_s, axis=1, kind="stable"), axis=1)
    lag_r = np.take_along_axis(lag, rest, axis=1)
    rest = np.take_along_axis(rest, np.argsort(-lag_r, axis=1, kind="stable"), axis=1)
    order = np.concatenate([slate, rest], axis=1)
    seen = np.take_along_axis(lag, order, axis=1)
    if rest.shape[1]:
        gap = seen[:, k:].max(axis=1) - seen[:, :k].min(axis=1)
        lift = np.where(gap >= 0, gap + SLATE_MARGIN, 0.0)
        seen[:, :k] += lift[:, None]
    return Slates(order, seen, met, ~met, n_creators, diversity)


@dataclass
class ConstraintState:
    """The constrained reranker's runtime state, part of the simulation state (the serving
    policy holds it, so a paused or deep-copied run continues identically): the multipliers and
    blocks of the last tick, the rolling window's per-tick impression buckets, the floor counts
    since the last tick and the ledger rows."""

    config: ConstrainedRerank
    slate_size: int  # policy.slate_size
    creator: np.ndarray  # (n_items,) int64 ItemMetadata.creator_id
    unit_content: np.ndarray  # (n_items, d) ItemMetadata.content scaled to unit length
    item_multiplier: np.ndarray  # (n_items,) λ_item
    creator_multiplier: np.ndarray  # (n_creators,) λ_creator
    item_blocked: np.ndarray  # (n_items,) bool: at or over the item cap at the last tick
    creator_blocked: np.ndarray  # (n_creators,) bool
    item_buckets: np.ndarray  # (B, n_items) int64 impressions per tick (ring buffer)
    creator_buckets: np.ndarray  # (B, n_creators) int64
    total_buckets: np.ndarray  # (B,) int64
    current: int = 0  # the bucket filling now
    n_ticks: int = 0
    n_slates: int = 0  # since the last tick
    n_floor_met: int = 0
    n_floor_infeasible: int = 0
    ledger: list[dict[str, float | int]] = field(default_factory=list)
    # Why slates since the last tick were infeasible: reason -> (slates, Σ best achieved value)
    shortfalls: dict[str, tuple[int, float]] = field(default_factory=dict)
    explanations: list[dict[str, float | int | str]] = field(default_factory=list)

    def record(self, slates: Slates) -> None:
        """Count a batch's floor outcomes, and why each unmet slate missed it."""
        cfg = self.config
        self.n_slates += int(slates.floor_met.size)
        self.n_floor_met += int(slates.floor_met.sum())
        self.n_floor_infeasible += int(slates.infeasible.sum())
        checks = (
            ("creators", cfg.min_creators, slates.n_creators.astype(np.float64)),
            ("diversity", cfg.min_content_diversity, slates.diversity),
        )
        for reason, floor, achieved in checks:
            if not floor:
                continue
            short = slates.infeasible & ~(achieved >= floor - DIVERSITY_TOL)
            if short.any():
                n, total = self.shortfalls.get(reason, (0, 0.0))
                self.shortfalls[reason] = (
                    n + int(short.sum()),
                    total + float(achieved[short].sum()),
                )

    def observe(self, items: np.ndarray) -> None:
        """Count a served batch's impressions (every slot of every slate) in the current tick."""
        flat = np.asarray(items, dtype=np.int64).ravel()
        flat = flat[flat >= 0]
        b = self.current
        self.item_buckets[b] += np.bincount(flat, minlength=self.item_buckets.shape[1])
        self.creator_buckets[b] += np.bincount(
            self.creator[flat], minlength=self.creator_buckets.shape[1]
        )
        self.total_buckets[b] += flat.size

    def tick(self, t: float) -> dict[str, float | int]:
        """Close the current tick at hour ``t``: shares over the window, dual ascent, blocks,
        one ledger row; then open the next bucket."""
        cfg = self.config
        total = int(self.total_buckets.sum())
        item_share = self.item_buckets.sum(axis=0) / total if total else None
        creator_share = self.creator_buckets.sum(axis=0) / total if total else None
        for cap, share, lam, blocked in (
            (cfg.item_cap, item_share, self.item_multiplier, self.item_blocked),
            (cfg.creator_cap, creator_share, self.creator_multiplier, self.creator_blocked),
        ):
            if cap is None:
                continue
            s = np.zeros_like(lam) if share is None else share
            lam[:] = np.clip(lam + cfg.step_size * (s - cap) / cap, 0.0, MULTIPLIER_MAX)
            blocked[:] = (s >= cap) if cfg.block_at_cap else False
        row = {
            "t": float(t),
            "n_slates": self.n_slates,
            "n_floor_met": self.n_floor_met,
            "n_floor_infeasible": self.n_floor_infeasible,
            "item_max_share": float(item_share.max(initial=0.0)) if total else float("nan"),
            "creator_max_share": float(creator_share.max(initial=0.0)) if total else float("nan"),
            "item_cap": float("nan") if cfg.item_cap is None else float(cfg.item_cap),
            "creator_cap": float("nan") if cfg.creator_cap is None else float(cfg.creator_cap),
            "item_multiplier_max": float(self.item_multiplier.max(initial=0.0)),
            "creator_multiplier_max": float(self.creator_multiplier.max(initial=0.0)),
            "n_items_penalized": int((self.item_multiplier > 0).sum()),
            "n_creators_penalized": int((self.creator_multiplier > 0).sum()),
        }
        self.ledger.append(row)
        for reason, (n, total) in sorted(self.shortfalls.items()):
            floor = cfg.min_creators if reason == "creators" else cfg.min_content_diversity
            self.explanations.append(
                {
                    "t": float(t),
                    "reason": reason,
                    "n_slates": n,
                    "floor": float(floor),
                    "mean_achieved": total / n,
                    "explanation": EXPLANATIONS[reason],
                }
            )
        self.shortfalls = {}
        self.n_ticks += 1
        self.n_slates = self.n_floor_met = self.n_floor_infeasible = 0
        self.current = (self.current + 1) % self.total_buckets.size
        self.item_buckets[self.current] = 0
        self.creator_buckets[self.current] = 0
        self.total_buckets[self.current] = 0
        return row

    def ledger_frame(self) -> pl.DataFrame:
        return pl.DataFrame(self.ledger, schema=LEDGER_SCHEMA)

    def explanation_frame(self) -> pl.DataFrame:
        return pl.DataFrame(self.explanations, schema=INFEASIBLE_SCHEMA)
