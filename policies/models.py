"""Fitted models: what a deployment serves from. Each one retrieves a ranked candidate list."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Protocol, runtime_checkable

import numpy as np
import scipy.sparse as sp
from implicit.cpu.topk import topk

from policies.content_map import ItemContentMap
from policies.exclusion import PAD, padded_rows

POSTERIOR_CHUNK = 512  # requests per posterior block: bounds the (n, E, f) gather

# Codes of the ``source`` column (which retriever/fallback produced a slot).
SOURCES: tuple[str, ...] = (
    "bootstrap",
    "als",
    "popularity",
    "popularity_fallback",
    "oracle",
    "random",
    "explore",
    "linear",
    # implicit's other models (policies.implicit_models); appended so earlier codes keep their value
    "bpr",
    "lmf",
    "item_knn",
    # issue 15: the retrievers of policy/retrieve=mixed, and the popularity list served when the
    # model servers cannot meet the latency budget (sim.serving_system; not the cold-user fallback)
    "covisit",
    "content",
    "degraded_fallback",
)
SOURCE_CODE = {name: code for code, name in enumerate(SOURCES)}


@dataclass(frozen=True)
class Retrieval:
    """Ranked candidates of a batch of requests.

    A model's own retrieval has one ``source`` per request; a merged retrieval
    (:mod:`policies.retrieval`) also says, per candidate, which retriever produced it
    (``candidate_source``) and the candidate's rank in that retriever's list (``rank``).
    """

    items: np.ndarray  # (n, C) int64, ranked best first
    scores: np.ndarray  # (n, C) float32
    source: np.ndarray  # (n,) int8 code into SOURCES, per request (the model retriever's)
    candidate_source: np.ndarray | None = None  # (n, C) int8; None: ``source`` for every one
    rank: np.ndarray | None = None  # (n, C) int16 rank in its retriever; None: the column

    @property
    def sources(self) -> np.ndarray:
        """(n, C) int8: the retriever of each candidate."""
        if self.candidate_source is not None:
            return self.candidate_source
        return np.broadcast_to(self.source[:, None], self.items.shape)

    @property
    def retriever_rank(self) -> np.ndarray:
        """(n, C) int16: each candidate's rank in the retriever that produced it."""
        if self.rank is not None:
            return self.rank
        return np.broadcast_to(np.arange(self.items.shape[1], dtype=np.int16), self.items.shape)


class Model(Protocol):
    version: int
    seen: sp.csr_matrix  # (n_users, n_items) clicks known to this model: the serving filter

    def retrieve(self, user_ids: np.ndarray, n: int, filter_rows: sp.csr_matrix) -> Retrieval: ...

    def score(self, user_ids: np.ndarray, item_ids: np.ndarray) -> np.ndarray:
        """Model scores, ``user_ids`` (n,) and ``item_ids`` (n, K) -> (n, K) float32."""
        ...


@runtime_checkable
class PosteriorModel(Protocol):
    """A model whose candidate scores have a Gaussian posterior: ``mean + Gᵀz``, ``z ~ N(0, I)``
    per request (what UCB and Thompson sampling draw from)."""

    def score_distribution(
        self, user_ids: np.ndarray, candidates: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """``mean`` (n, C) and ``G`` (n, f, C) of the candidates' scores."""
        ...


# Extra ranks fetched from the fused top-K: its float32 scores differ by an ulp with the batch
# layout, so it only proposes candidates and an exact per-row rescoring decides their order.
RESCORE_MARGIN = 8


# Requests filtering more than ``dense_limit`` items (about ``DENSE_FRACTION`` of the catalog,
# rounded down to a step of ``DENSE_STEPS``) take a dense masked GEMM; the others go to the fused
# top-K sorted by how many
# items they filter, in calls of ``PROPOSAL_CHUNK`` requests, each with ``k = n + its largest
# filtered count + margin`` — so one user's long history does not inflate ``k`` for the batch,
# and every call is of the size the kernel is fastest at on one thread (32–4,096 requests cost
# the same per request at S; fewer pay a fixed cost per call). Measured on S (5,000 items, 64
# factors): the fused top-K costs about 12 + 0.3·k µs per request, the dense path about 100 µs.
# (The steps are what is left of the fixed tiers the fused top-K once grouped requests by: the
# cut between the two paths is still the largest step within the fraction, so no request changed
# path when the tiers went.)
DENSE_STEPS = (24, 64, 160, 400, 1000, 2500, 6000)
DENSE_FRACTION = 1 / 30
PROPOSAL_CHUNK = 256


def dense_limit(n_items: int) -> int:
    """The most items a request may filter and still go to the fused top-K; beyond: dense."""
    limit = max(DENSE_STEPS[0], int(n_items * DENSE_FRACTION))
    return max(t for t in DENSE_STEPS if t <= limit)


def topk_by_vector(
    item_vectors: np.ndarray,
    query: np.ndarray,
    n: int,
    filter_rows: sp.csr_matrix,
    margin: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``n`` items per query by inner product, skipping each row's filtered items.

    Candidates are *proposed* fast and then *decided* exactly: every proposal is rescored in
    float64 per row, filtered items are dropped with one vectorized membership test, and the rest
    sorted (ties by item id), so a request's result does not depend on which other requests share
    its batch (the fast kernels' float32 scores differ by an ulp with the batch layout).

    Proposals: implicit's fused matmul + top-K asks for ``n + filtered + margin`` items
    (implicit's own filter slices the sparse filter one row at a time in Python, so it is not
    used), with requests sorted by their number of filtered items and sent in chunks of
    ``PROPOSAL_CHUNK`` so that ``k`` follows the chunk, not the batch's heaviest user; requests
    filtering a large share of the catalog go through a dense GEMM with the filtered items masked
    instead. A handful of calls, not a loop over requests. Only the ``n + margin`` best-proposed unfiltered items are
    rescored, in cache-sized row blocks.

    Ties: the proposals hold the whole tie at the cut as long as no more than ``margin`` items tie
    (``RESCORE_MARGIN`` unless a larger ``margin`` is given). A model whose items can share one
    vector (logistic MF and BPR give every never-clicked item the same one) passes the size of its
    largest group of identical item vectors, so the tie is decided by item id, whatever the batch.
    """
    margin = max(margin, RESCORE_MARGIN)
    n_items = item_vectors.shape[0]
    counts = np.diff(filter_rows.indptr)
    dense = counts > dense_limit(n_items)
    if not dense.any() and query.shape[0] <= PROPOSAL_CHUNK:
        return _top_by_vector(item_vectors, query, n, filter_rows, dense=False, margin=margin)
    ids = np.empty((query.shape[0], min(n, n_items)), dtype=np.int64)
    scores = np.empty(ids.shape, dtype=np.float32)
    heavy = np.flatnonzero(dense)
    if heavy.size:
        ids[heavy], scores[heavy] = _top_by_vector(
            item_vectors, query[heavy], n, filter_rows[heavy], dense=True, margin=margin
        )
    light = np.flatnonzero(~dense)
    light = light[np.argsort(counts[light], kind="stable")]  # by filtered count: k per chunk
    for lo in range(0, light.size, PROPOSAL_CHUNK):  # a few chunks, not a loop over requests
        rows = light[lo : lo + PROPOSAL_CHUNK]
        ids[rows], scores[rows] = _top_by_vector(
            item_vectors, query[rows], n, filter_rows[rows], dense=False, margin=margin
        )
    return ids, scores


def _top_by_vector(
    item_vectors: np.ndarray,
    query: np.ndarray,
    n: int,
    filter_rows: sp.csr_matrix,
    dense: bool,
    margin: int = RESCORE_MARGIN,
) -> tuple[np.ndarray, np.ndarray]:
    n_items = item_vectors.shape[0]
    counts = np.diff(filter_rows.indptr)
    vectors32 = np.ascontiguousarray(item_vectors, dtype=np.float32)
    query32 = np.ascontiguousarray(query, dtype=np.float32)
    if dense:
        approx = query32 @ vectors32.T
        rows = np.repeat(np.arange(filter_rows.shape[0], dtype=np.int64), counts)
        approx[rows, filter_rows.indices] = -np.inf
        k = min(n + margin, n_items)
        ids = np.argpartition(-approx, k - 1, axis=1)[:, :k]
        del approx
    else:
        k = min(n + int(counts.max(initial=0)) + margin, n_items)
        # proposals, best first; one thread: on 2 cores implicit's default (every core) is up to
        # 4x slower for the 100–300-request calls serving makes (OpenMP over BLAS threads)
        ids, _ = topk(vectors32, query32, k, num_threads=1)
    out_ids = np.empty((ids.shape[0], min(n, n_items)), dtype=np.int64)
    out_scores = np.empty(out_ids.shape, dtype=np.float32)
    for lo in range(0, ids.shape[0], RESCORE_CHUNK):  # cache-sized blocks, not per request
        hi = min(lo + RESCORE_CHUNK, ids.shape[0])
        out_ids[lo:hi], out_scores[lo:hi] = _rescore(
            item_vectors, query[lo:hi], ids[lo:hi].astype(np.int64), n, filter_rows[lo:hi], margin
        )
    return out_ids, out_scores


def _blocked(ids: np.ndarray, filter_rows: sp.csr_matrix, n_items: int) -> np.ndarray:
    """``ids[r, j]`` is in row ``r`` of the filter; one global searchsorted on keys
    ``row * n_items + item`` (no loop over rows)."""
    if not filter_rows.nnz:
        return np.zeros(ids.shape, dtype=bool)
    counts = np.diff(filter_rows.indptr)
    rows = np.repeat(np.arange(filter_rows.shape[0], dtype=np.int64), counts)
    keys_blocked = np.sort(rows * n_items + filter_rows.indices)
    keys = np.arange(ids.shape[0], dtype=np.int64)[:, None] * n_items + ids
    pos = np.minimum(np.searchsorted(keys_blocked, keys), keys_blocked.size - 1)
    return keys_blocked[pos] == keys


def ranking_order(score: np.ndarray) -> np.ndarray:
    """Item ids best first by ``score``, ties by item id: one global ranking."""
    return np.lexsort((np.arange(score.size), -np.asarray(score)))


def first_unfiltered(order: np.ndarray, n: int, filter_rows: sp.csr_matrix) -> np.ndarray:
    """Per row of ``filter_rows``: the first ``n`` items of the global ranking ``order`` (all the
    catalog's items) that the row does not filter; when fewer remain, filtered ones follow in
    ranking order. The first ``n + filtered`` ranks always hold the answer, so no per-user
    scoring is needed."""
    n_items = order.size
    counts = np.diff(filter_rows.indptr)
    k = min(n + int(counts.max(initial=0)), n_items)
    proposals = np.broadcast_to(order[:k], (filter_rows.shape[0], k))
    blocked = _blocked(proposals, filter_rows, n_items)
    first = np.argsort(blocked, axis=1, kind="stable")[:, : min(n, n_items)]
    return np.take_along_axis(proposals, first, axis=1).astype(np.int64)


RESCORE_CHUNK = 512  # rows per exact-rescoring block: keeps the (rows, k, f) gather in cache


def _rescore(
    item_vectors: np.ndarray,
    query: np.ndarray,
    ids: np.ndarray,
    n: int,
    filter_rows: sp.csr_matrix,
    margin: int = RESCORE_MARGIN,
) -> tuple[np.ndarray, np.ndarray]:
    """Drop filtered proposals, keep the ``n + margin`` best-proposed survivors per row, rescore
    them exactly in float64 and return the top ``n`` (ties by item id)."""
    n_items = item_vectors.shape[0]
    blocked = _blocked(ids, filter_rows, n_items)
    if filter_rows.nnz:
        keep = min(n + margin, ids.shape[1])
        if keep < ids.shape[1]:  # survivors first, in proposal order
            first = np.argsort(blocked, axis=1, kind="stable")[:, :keep]
            ids = np.take_along_axis(ids, first, axis=1)
            blocked = np.take_along_axis(blocked, first, axis=1)
    exact = np.einsum("nf,nkf->nk", query.astype(np.float64), item_vectors[ids], dtype=np.float64)
    exact[blocked] = -np.inf
    order = np.lexsort((ids, -exact), axis=1)[:, :n]  # best first, ties by item id
    return np.take_along_axis(ids, order, axis=1), np.take_along_axis(exact, order, axis=1).astype(
        np.float32
    )


@dataclass(frozen=True)
class PopularityModel:
    """Ranks by click count in the training log; ties broken by a seeded random order."""

    version: int
    seen: sp.csr_matrix
    popularity: np.ndarray  # (n_items,) float64 click counts
    tiebreak: np.ndarray  # (n_items,) float64 in [0, 1)
    source_name: str = "popularity"

    @property
    def ranking_score(self) -> np.ndarray:
        # Counts are integers, so a tiebreak < 1 only reorders equal counts.
        return self.popularity + self.tiebreak

    @cached_property
    def order(self) -> np.ndarray:
        """The one global ranking (best first, ties by item id): the same for every user."""
        return ranking_order(self.ranking_score)

    def retrieve(self, user_ids: np.ndarray, n: int, filter_rows: sp.csr_matrix) -> Retrieval:
        # Every user gets the global ranking minus their filtered items.
        ids = first_unfiltered(self.order, n, filter_rows)
        scores = self.popularity[ids].astype(np.float32)
        code = SOURCE_CODE[self.source_name]
        return Retrieval(ids, scores, np.full(user_ids.shape[0], code, dtype=np.int8))

    def score(self, user_ids: np.ndarray, item_ids: np.ndarray) -> np.ndarray:
        return self.popularity[item_ids].astype(np.float32)


@dataclass(frozen=True)
class ALSModel:
    """Latent factors from implicit ALS. Users with no clicks in the training log have no
    signal (their factors are zero): they are served by the popularity ranking instead."""

    version: int
    seen: sp.csr_matrix
    user_factors: np.ndarray  # (n_users, f) float32, recomputed against the final item factors
    item_factors: np.ndarray  # (n_items, f) float32
    fallback: PopularityModel
    cold: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, dtype=bool))
    regularization: float = 0.0
    alpha: float = 1.0
    # Content bootstrapping for items (policy.scorer.content_map): ``item_factors`` are then the
    # blend of learned and content-predicted factors; None: ``item_factors`` are ALS's own.
    content_map: ItemContentMap | None = field(repr=False, default=None)

    @property
    def item_content_factors(self) -> np.ndarray | None:
        """(n_items, f) the content map's predicted item factors; None without a content map."""
        return None if self.content_map is None else self.content_map.predicted

    @property
    def item_learned_weight(self) -> np.ndarray | None:
        """(n_items,) weight of each item's learned factor in the blend; None without a map."""
        return None if self.content_map is None else self.content_map.learned_weight

    def seed_users(self, user_ids: np.ndarray, vectors: np.ndarray) -> None:
        """Give users this model has no signal for (``cold``) a vector from elsewhere — a
        cold-start layer: onboarding answers folded in, another domain's activity mapped —
        so the model ranks for them instead of the popularity fallback. In place: the model
        is deployed, and a cold-start layer seeds it at its deployment or between events."""
        if user_ids.size == 0:
            return
        self.user_factors[user_ids] = vectors.astype(np.float32)
        self.cold[user_ids] = False

    def retrieve(self, user_ids: np.ndarray, n: int, filter_rows: sp.csr_matrix) -> Retrieval:
        ids, scores = topk_by_vector(self.item_factors, self.user_factors[user_ids], n, filter_rows)
        source = np.full(user_ids.shape[0], SOURCE_CODE["als"], dtype=np.int8)
        cold = self.cold[user_ids]
        if cold.any():
            fb = self.fallback.retrieve(user_ids[cold], n, filter_rows[np.flatnonzero(cold)])
            ids[cold], scores[cold] = fb.items, fb.scores
            source[cold] = SOURCE_CODE["popularity_fallback"]
        return Retrieval(ids, scores, source)

    def score(self, user_ids: np.ndarray, item_ids: np.ndarray) -> np.ndarray:
        u = self.user_factors[user_ids]
        v = self.item_factors[item_ids]
        return np.einsum("nf,nkf->nk", u, v).astype(np.float32)

    def score_distribution(
        self, user_ids: np.ndarray, candidates: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Posterior of the candidates' scores under ALS's weighted least squares.

        With implicit's confidence ``c = alpha·r``: ``A_u = YᵀY + λI + Σ_{i∈obs(u)} (c_ui − 1)
        y_i y_iᵀ`` (its normal equations), ``x̂_u = A_u⁻¹ b_u`` (the recomputed user factors).
        Scores ``Y_C x`` with ``x ~ N(x̂_u, A_u⁻¹)`` are ``mean + Gᵀz`` with ``G = L⁻¹ Y_Cᵀ``,
        ``A_u = L Lᵀ``. Vectorized over the batch (chunked to bound memory).
        """
        y = self.item_factors.astype(np.float64)
        base = y.T @ y + self.regularization * np.eye(y.shape[1])
        means, gs = [], []
        for lo in range(0, user_ids.shape[0], POSTERIOR_CHUNK):
            users = user_ids[lo : lo + POSTERIOR_CHUNK]
            rows = self.seen[users]
            rows.sort_indices()
            idx = padded_rows(rows)  # clicked items per row, sorted, PAD at the end
            valid = idx < PAD
            safe = np.where(valid, idx, 0)
            weights = np.zeros(idx.shape)
            weights[valid] = self.alpha * rows.data - 1.0  # row-major order = CSR order
            yo = y[safe]  # (n, E, f)
            a = base + np.swapaxes(yo * weights[:, :, None], 1, 2) @ yo  # batched BLAS
            chol = np.linalg.cholesky(a)
            yc = y[candidates[lo : lo + POSTERIOR_CHUNK]]  # (n, C, f)
            gs.append(np.linalg.solve(chol, np.swapaxes(yc, 1, 2)))
            means.append(np.einsum("nf,ncf->nc", self.user_factors[users].astype(np.float64), yc))
        if not gs:
            return np.empty(candidates.shape), np.empty((0, y.shape[1], candidates.shape[1]))
        return np.concatenate(means), np.concatenate(gs)


@dataclass(frozen=True)
class OracleModel:
    """Ranks by true relevance through a callback that ``sim`` provides. Reference only."""

    version: int
    seen: sp.csr_matrix
    relevance: Callable[[np.ndarray], np.ndarray]  # user_ids -> (n, n_items) true relevance

    def retrieve(self, user_ids: np.ndarray, n: int, filter_rows: sp.csr_matrix) -> Retrieval:
        rel = self.relevance(user_ids).astype(np.float32)
        if filter_rows.nnz:
            counts = np.diff(filter_rows.indptr)
            rel[np.repeat(np.arange(user_ids.shape[0]), counts), filter_rows.indices] = -np.inf
        part = np.argpartition(-rel, n - 1, axis=1)[:, :n]
        top = np.take_along_axis(rel, part, axis=1)
        order = np.argsort(-top, axis=1, kind="stable")
        ids = np.take_along_axis(part, order, axis=1).astype(np.int64)
        scores = np.take_along_axis(top, order, axis=1)
        return Retrieval(ids, scores, np.full(user_ids.shape[0], SOURCE_CODE["oracle"], np.int8))

    def score(self, user_ids: np.ndarray, item_ids: np.ndarray) -> np.ndarray:
        return np.take_along_axis(self.relevance(user_ids), item_ids, axis=1).astype(np.float32)


@dataclass(frozen=True)
class NoModel:
    """No retrieval at all (uniform random policy): only the seen-item filter."""

    version: int
    seen: sp.csr_matrix

    def retrieve(self, user_ids: np.ndarray, n: int, filter_rows: sp.csr_matrix) -> Retrieval:
        empty = np.empty((user_ids.shape[0], 0))
        code = np.full(user_ids.shape[0], SOURCE_CODE["random"], dtype=np.int8)
        return Retrieval(empty.astype(np.int64), empty.astype(np.float32), code)

    def score(self, user_ids: np.ndarray, item_ids: np.ndarray) -> np.ndarray:
        return np.full(np.shape(item_ids), np.nan, dtype=np.float32)


def largest_tie(item_vectors: np.ndarray) -> int:
    """Size of the largest group of items with identical vectors (what ``topk_by_vector``'s
    ``margin`` must cover for ties among them to go by item id)."""
    if item_vectors.shape[0] == 0:
        return 0
    _, counts = np.unique(item_vectors, axis=0, return_counts=True)
    return int(counts.max())
