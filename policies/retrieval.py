"""The retrieval stage: which candidates each request's ranking is drawn from.

A *retrieve* component (``configs/policy/retrieve/``) turns a batch of requests into the ranked
candidate list the selector draws from:

* ``model`` (the default): the deployed model's exact top-``n_candidates`` (what every policy did
  before issue 15; its ``source`` is the model's, e.g. ``als``, ``popularity_fallback`` for a cold
  user);
* ``mixed``: several retrievers at once, each with a quota of the list, merged and de-duplicated.

The retrievers of ``mixed``, each skipping what the request may not be shown (the same filter as
the model's, :func:`policies.exclusion.batch_filter`):

* ``model`` (config alias ``als``) — the deployed model's exact top-N, as above;
* ``covisit`` — item-to-item co-visitation: ``covisit[x, y]`` = the number of users who clicked
  both ``x`` and ``y`` (each user counted once per pair, over their ``covisit_user_clicks`` most
  recent distinct clicks), each item keeping its ``covisit_neighbours`` largest counts (ties by item
  id; the usual item-to-item table, and what bounds the serving cost), summed over the request's
  *seeds* — the user's ``seed_clicks`` most recent distinct clicks; items with a zero sum are not
  candidates; ties by item id;
* ``content`` — cosine similarity of ``ItemMetadata.content`` to the mean content of the seeds
  (users without seeds get none); ties by item id;
* ``popularity`` — clicks in the training log, ties by item id.

**Recency.** The training view lists the window's clicks in log order
(:attr:`policies.interactions.Interactions.click_events`): rounds in time order, requests in arrival
order within a round, slots in slate order within a request. A user's most recent distinct clicks
are the last distinct items in that order. (Built without log order — an ``Interactions`` with no
click events but clicks — every clicked item counts as equally recent: item id order decides.)

Everything is built once per deployment (:class:`RetrievalIndex`, beside the model in the
``Deployment``) and served for the whole batch with sparse products, ``argpartition``-based top-K
and one sort per stage — no loop over requests.

**Slots.** Retriever ``r`` gets ``round(quota_r × C)`` of the ``C = n_candidates`` slots, rounded by
largest remainder so they add up to exactly ``C``: every retriever gets ``floor(quota_r × C)``, and
the slots left go one each to the largest fractional parts (ties in :data:`RETRIEVERS` order).

**Merge.** Lists are taken in the fixed priority :data:`RETRIEVERS` order — the model's first
``slots_model`` items, then each other retriever's first ``slots_r`` items — and a duplicate keeps
the first retriever that produced it. Slots freed by duplicates, or by a retriever with too few
items (covisit for a user whose seeds co-occur with little, content or covisit for a user with no
clicks), are filled with the model's next items (its ranks ``slots_model, slots_model + 1, …``).

**Order.** The merged list goes to the selector ranked by the deployed model's score, best first
(the :class:`policies.selection.SelectionContext` contract: greedy shows the top-K by model score
among the retrieved set); equal scores keep the merge order. A candidate's score is the model
retriever's score where the model retrieved it (so a cold user's popularity fallback keeps its
counts) and ``model.score`` otherwise. Each candidate keeps its ``source`` and its rank in that
retriever's own list (``retriever_rank``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from agents.validation import is_number
from policies.components import Component
from policies.interactions import Interactions
from policies.models import SOURCE_CODE, Model, PopularityModel, Retrieval, _blocked, topk_by_vector

# Merge priority: a duplicate keeps the first retriever in this order.
RETRIEVERS: tuple[str, ...] = ("model", "covisit", "content", "popularity")
ALIASES = {"als": "model"}  # the name for the model retriever (the default scorer is ALS)
QUOTA_TOLERANCE = 1e-9


class Retriever(Component):
    """Base of every retrieve component: ``retrieve`` returns each request's ranked candidates.

    ``build_index`` runs at fit time (once per deployment) and its result is handed back to
    ``retrieve`` with the deployed model."""

    group: ClassVar[str] = "retrieve"

    def build_index(
        self, interactions: Interactions, model: Model, item_content: np.ndarray | None
    ) -> Any:
        return None

    def retrieve(
        self,
        model: Model,
        index: Any,
        user_ids: np.ndarray,
        n: int,
        filter_rows: sp.csr_matrix,
    ) -> Retrieval:
        raise NotImplementedError


@dataclass(frozen=True)
class ModelRetrieval(Retriever):
    """The deployed model's exact top-``n`` (today's behaviour)."""

    name: ClassVar[str] = "model"

    def retrieve(
        self, model: Model, index: Any, user_ids: np.ndarray, n: int, filter_rows: sp.csr_matrix
    ) -> Retrieval:
        return model.retrieve(user_ids, n, filter_rows)


@dataclass(frozen=True)
class RetrievalIndex:
    """What the ``mixed`` retrievers serve from, built from the training log at fit time."""

    recent: sp.csr_matrix  # (n_users, n_items) 1.0 at each user's seed clicks
    covisit: sp.csr_matrix  # (n_items, n_items) float64 co-click user counts, zero diagonal
    popularity: PopularityModel  # clicks per item, ties by item id
    content: np.ndarray | None  # (n_items, d) float64 content features (the seeds' mean)
    content_unit: np.ndarray | None  # the same scaled to unit rows (zero rows stay zero)


def recent_clicks(interactions: Interactions, limit: int) -> sp.csr_matrix:
    """(n_users, n_items) CSR with 1.0 at each user's ``limit`` most recent distinct clicked items
    (log order of ``interactions.click_events``; see the module docstring)."""
    n_users, n_items = interactions.n_users, interactions.n_items
    events = interactions.click_events
    users, items = events.user_ids.astype(np.int64), events.item_ids.astype(np.int64)
    if users.size == 0 and interactions.clicks.nnz:  # no log order: item id order
        coo = interactions.clicks.tocoo()
        users, items = coo.row.astype(np.int64), coo.col.astype(np.int64)
    key = users * n_items + items
    # last occurrence of each (user, item): first occurrence in the reversed events
    pairs, first_reversed = np.unique(key[::-1], return_index=True)
    last = key.size - 1 - first_reversed
    user, item = pairs // n_items, pairs % n_items
    order = np.lexsort((-last, user))  # per user, most recent first
    user, item = user[order], item[order]
    rank = np.arange(user.size) - np.searchsorted(user, user, side="left")
    keep = rank < limit
    data = np.ones(int(keep.sum()))
    out = sp.csr_matrix((data, (user[keep], item[keep])), shape=(n_users, n_items))
    out.sort_indices()
    return out


def covisitation(recent: sp.csr_matrix) -> sp.csr_matrix:
    """``covisit[x, y]`` = number of users whose ``recent`` row holds both ``x`` and ``y``
    (``x != y``)."""
    binary = recent.copy()
    binary.data[:] = 1.0
    counts = (binary.T @ binary).tocsr()
    counts.setdiag(0.0)
    counts.eliminate_zeros()
    counts.sort_indices()
    return counts


def top_neighbours(counts: sp.csr_matrix, m: int) -> sp.csr_matrix:
    """Each row of ``counts`` cut to its ``m`` largest positive entries (ties by column)."""
    empty = sp.csr_matrix((counts.shape[0], 0))
    cols, valid = sparse_topk(counts, m, empty)
    rows = np.broadcast_to(np.arange(counts.shape[0])[:, None], cols.shape)[valid]
    cols = cols[valid]
    data = np.asarray(counts[rows, cols]).ravel()
    out = sp.csr_matrix((data, (rows, cols)), shape=counts.shape)
    out.sort_indices()
    return out


def sparse_topk(
    scores: sp.csr_matrix, k: int, filter_rows: sp.csr_matrix
) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the ``k`` items with the largest positive score, skipping the row's filtered items,
    ties by item id: ``(items (n, k) int64, valid (n, k) bool)`` (``valid`` False past the end of a
    short row). One global sort of the non-zeros, no loop over rows."""
    n, n_items = scores.shape
    items = np.full((n, k), -1, dtype=np.int64)
    valid = np.zeros((n, k), dtype=bool)
    if k == 0 or scores.nnz == 0:
        return items, valid
    coo = scores.tocoo()
    row, col, val = coo.row.astype(np.int64), coo.col.astype(np.int64), coo.data
    keep = val > 0
    if filter_rows.nnz:
        counts = np.diff(filter_rows.indptr)
        frow = np.repeat(np.arange(filter_rows.shape[0], dtype=np.int64), counts)
        blocked = np.sort(frow * n_items + filter_rows.indices)
        keys = row * n_items + col
        pos = np.minimum(np.searchsorted(blocked, keys), blocked.size - 1)
        keep &= blocked[pos] != keys
    row, col, val = row[keep], col[keep], val[keep]
    order = np.lexsort((col, -val, row))
    row, col = row[order], col[order]
    rank = np.arange(row.size) - np.searchsorted(row, row, side="left")
    top = rank < k
    items[row[top], rank[top]] = col[top]
    valid[row[top], rank[top]] = True
    return items, valid


def quota_slots(quotas: Mapping[str, float], n: int) -> dict[str, int]:
    """Slots of each retriever (:data:`RETRIEVERS` order) among ``n``: largest-remainder rounding of
    ``quota × n``, so that they add up to exactly ``n``."""
    exact = np.array([quotas.get(r, 0.0) * n for r in RETRIEVERS])
    base = np.floor(exact + QUOTA_TOLERANCE * n).astype(np.int64)
    left = n - int(base.sum())
    remainder = np.round(exact - base, 9)  # 0.6 * 6 and 0.1 * 6 leave equal remainders: a tie
    # the largest remainders first, ties in priority order
    order = np.lexsort((np.arange(len(RETRIEVERS)), -remainder))
    if left > 0:
        base[order[:left]] += 1
    elif left < 0:  # cannot happen with quotas summing to 1; keep the total exact anyway
        for j in order[::-1]:
            take = min(int(base[j]), -left)
            base[j] -= take
            left += take
    return {r: int(s) for r, s in zip(RETRIEVERS, base, strict=True)}


def _canonical(name: str) -> str:
    return ALIASES.get(name, name)


@dataclass(frozen=True)
class MixedRetrieval(Retriever):
    """Several retrievers with quotas of the candidate list (see the module docstring).

    ``quotas``: share of the ``n_candidates`` slots per retriever (``model``/``als``, ``covisit``,
    ``content``, ``popularity``), non-negative, summing to 1. ``seed_clicks``: how many of the
    user's most recent distinct clicks seed covisit and content. ``covisit_user_clicks``: how many
    of each user's most recent distinct clicks count in the co-visitation counts (bounds the
    quadratic cost of very active users). ``covisit_neighbours``: co-visited items kept per item.
    """

    quotas: dict[str, float] = field(
        default_factory=lambda: {"als": 0.6, "covisit": 0.2, "popularity": 0.1, "content": 0.1}
    )
    seed_clicks: int = 5
    covisit_user_clicks: int = 50
    covisit_neighbours: int = 100
    name: ClassVar[str] = "mixed"

    def __post_init__(self) -> None:
        self._positive_int("seed_clicks", "covisit_user_clicks", "covisit_neighbours")
        raw = self.quotas
        if not isinstance(raw, Mapping) or not raw:
            self._fail("quotas", "must be a non-empty mapping retriever: share")
        known = ", ".join(f"{r} (or als)" if r == "model" else r for r in RETRIEVERS)
        clean: dict[str, float] = {}
        given: dict[str, str] = {}
        for key, value in raw.items():
            name = _canonical(str(key))
            if name not in RETRIEVERS:
                raise ValueError(
                    f"policy.retrieve.quotas.{key}={value!r}: unknown retriever; known: {known}"
                )
            if name in given:
                raise ValueError(
                    f"policy.retrieve.quotas.{key}={value!r}: the same retriever as "
                    f"quotas.{given[name]}; give one of them"
                )
            if not is_number(value) or not math.isfinite(value) or value < 0:
                raise ValueError(f"policy.retrieve.quotas.{key}={value!r}: must be a number >= 0")
            given[name] = str(key)
            clean[name] = float(value)
        total = math.fsum(clean.values())
        if abs(total - 1.0) > QUOTA_TOLERANCE:
            shown = "{" + ", ".join(f"{k}: {v!r}" for k, v in raw.items()) + "}"
            raise ValueError(
                f"policy.retrieve.quotas={shown}: must sum to 1 (they sum to {total:g})"
            )
        object.__setattr__(self, "quotas", {r: clean.get(r, 0.0) for r in RETRIEVERS})

    def slots(self, n: int) -> dict[str, int]:
        return quota_slots(self.quotas, n)

    def build_index(
        self, interactions: Interactions, model: Model, item_content: np.ndarray | None
    ) -> RetrievalIndex:
        content = unit = None
        if self.quotas["content"] > 0:
            if item_content is None:
                raise ValueError(
                    "policy.retrieve.quotas.content: needs item content features (item_content)"
                )
            content = np.asarray(item_content, dtype=np.float64)
            norm = np.linalg.norm(content, axis=1, keepdims=True)
            unit = np.divide(content, norm, out=np.zeros_like(content), where=norm > 0)
        covisit = sp.csr_matrix((interactions.n_items, interactions.n_items))
        if self.quotas["covisit"] > 0:
            counts = covisitation(recent_clicks(interactions, self.covisit_user_clicks))
            covisit = top_neighbours(counts, self.covisit_neighbours)
        popularity = PopularityModel(
            version=-1,
            seen=model.seen,
            popularity=interactions.item_popularity,
            tiebreak=np.zeros(interactions.n_items),
        )
        return RetrievalIndex(
            recent=recent_clicks(interactions, self.seed_clicks),
            covisit=covisit,
            popularity=popularity,
            content=content,
            content_unit=unit,
        )

    def retrieve(
        self,
        model: Model,
        index: RetrievalIndex,
        user_ids: np.ndarray,
        n: int,
        filter_rows: sp.csr_matrix,
    ) -> Retrieval:
        n_items = model.seen.shape[1]
        slots = self.slots(n)
        head = slots["model"]
        # The model fills freed slots: its first ``head`` items, then at most ``n - head`` more
        # plus one per item the other retrievers took (<= n - head) — at least n allowed items.
        fetched = model.retrieve(user_ids, min(2 * n - head, n_items), filter_rows)
        m_items = fetched.items.astype(np.int64)
        m_valid = ~_blocked(m_items, filter_rows, n_items)
        m_source = np.broadcast_to(fetched.source[:, None], m_items.shape)
        m_rank = np.broadcast_to(np.arange(m_items.shape[1], dtype=np.int64), m_items.shape)
        parts = [(m_items[:, :head], m_valid[:, :head], m_source[:, :head], m_rank[:, :head])]
        for name in RETRIEVERS[1:]:
            k = slots[name]
            if k == 0:
                continue
            items, valid = self._retrieve_one(name, index, user_ids, k, filter_rows)
            code = np.full(items.shape, SOURCE_CODE[name], dtype=np.int8)
            rank = np.broadcast_to(np.arange(k, dtype=np.int64), items.shape)
            parts.append((items, valid, code, rank))
        parts.append((m_items[:, head:], m_valid[:, head:], m_source[:, head:], m_rank[:, head:]))
        items, valid, source, rank = (
            np.concatenate([p[j] for p in parts], axis=1) for j in range(4)
        )
        keep = valid & ~_repeats_earlier(items, valid)
        take = np.argsort(~keep, axis=1, kind="stable")[:, :n]  # first n kept, in merge order
        if not np.take_along_axis(keep, take, axis=1).all():
            raise RuntimeError("mixed retrieval produced fewer candidates than n_candidates")
        items = np.take_along_axis(items, take, axis=1)
        source = np.take_along_axis(source, take, axis=1).astype(np.int8)
        rank = np.take_along_axis(rank, take, axis=1)
        # Scores: the model retriever's where it retrieved the item, else model.score.
        match = (items[:, :, None] == m_items[:, None, :]) & m_valid[:, None, :]
        found = match.any(axis=2)
        scores = np.take_along_axis(fetched.scores.astype(np.float32), match.argmax(axis=2), axis=1)
        if not found.all():
            scores = np.where(found, scores, model.score(user_ids, items).astype(np.float32))
        order = np.lexsort((np.broadcast_to(np.arange(n), items.shape), -scores), axis=1)
        return Retrieval(
            items=np.take_along_axis(items, order, axis=1),
            scores=np.take_along_axis(scores, order, axis=1),
            source=fetched.source,
            candidate_source=np.take_along_axis(source, order, axis=1),
            rank=np.take_along_axis(rank, order, axis=1).astype(np.int16),
        )

    def _retrieve_one(
        self,
        name: str,
        index: RetrievalIndex,
        user_ids: np.ndarray,
        k: int,
        filter_rows: sp.csr_matrix,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Retriever ``name``'s top ``k`` per request: ``(items, valid)``, both (n, k)."""
        n_items = index.recent.shape[1]
        if name == "popularity":
            items = index.popularity.retrieve(user_ids, k, filter_rows).items
            return _pad(items, ~_blocked(items, filter_rows, n_items), k)
        seeds = index.recent[user_ids]
        if name == "covisit":
            return sparse_topk((seeds @ index.covisit).tocsr(), k, filter_rows)
        # content: cosine to the mean content of the seeds (ranking by the unit item vectors'
        # inner product with the mean is the same as by cosine)
        n_seeds = np.diff(seeds.indptr)
        query = np.asarray(seeds @ index.content) / np.maximum(n_seeds, 1)[:, None]
        items, _ = topk_by_vector(index.content_unit, query, k, filter_rows)
        valid = ~_blocked(items, filter_rows, n_items) & (n_seeds > 0)[:, None]
        return _pad(items, valid, k)


def _pad(items: np.ndarray, valid: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Widen to ``k`` columns (a catalog smaller than ``k``), invalid past the end."""
    short = k - items.shape[1]
    if short <= 0:
        return items.astype(np.int64), valid
    n = items.shape[0]
    items = np.concatenate([items.astype(np.int64), np.full((n, short), -1, np.int64)], axis=1)
    return items, np.concatenate([valid, np.zeros((n, short), bool)], axis=1)


def _repeats_earlier(items: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """``items[r, j]`` equals a valid ``items[r, i]`` with ``i < j``. One stable sort per row."""
    if items.shape[1] == 0:
        return np.zeros(items.shape, dtype=bool)
    marked = np.where(valid, items, -1 - np.arange(items.shape[1]))  # invalid: never equal
    order = np.argsort(marked, axis=1, kind="stable")  # equal items keep column order
    ranked = np.take_along_axis(marked, order, axis=1)
    repeat = np.zeros(items.shape, dtype=bool)
    repeat[:, 1:] = ranked[:, 1:] == ranked[:, :-1]
    out = np.zeros(items.shape, dtype=bool)
    np.put_along_axis(out, order, repeat, axis=1)
    return out


__all__ = [
    "ALIASES",
    "RETRIEVERS",
    "MixedRetrieval",
    "ModelRetrieval",
    "RetrievalIndex",
    "Retriever",
    "covisitation",
    "quota_slots",
    "recent_clicks",
    "sparse_topk",
    "top_neighbours",
]
