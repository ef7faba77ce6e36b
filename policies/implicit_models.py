"""implicit's other models as scorers: BPR, logistic MF and item-item kNN (cosine, BM25).

Each config node (``configs/policy/scorer/{bpr,lmf,item_knn,item_knn_bm25}.yaml``) is a frozen
dataclass that validates its keys; ``build`` returns the runtime scorer, whose ``fit`` trains the
implicit model on the window's clicks and returns a servable model. Users without clicks are
served by the popularity ranking (source ``popularity_fallback``), as with ALS. None of these
models has a posterior, so UCB and Thompson sampling cannot use them.

Determinism (implicit 0.7.3, measured on 2,000 users × 1,000 items): BPR's SGD updates shared
factors from every thread without locks (Hogwild), so two fits with one seed differ at 2 threads
and match bit for bit at 1. LMF matches at a fixed thread count, but it seeds one generator per
thread, so its factors depend on the count (and ``num_threads=0`` means "the machine's cores").
Both are fitted with one thread. The kNN similarity is computed row by row, each row by one
thread, from the same data: identical at any thread count, so it uses every core.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property, partial
from typing import ClassVar

import numpy as np
import scipy.sparse as sp
from implicit.cpu.bpr import BayesianPersonalizedRanking
from implicit.cpu.lmf import LogisticMatrixFactorization
from implicit.nearest_neighbours import BM25Recommender, CosineRecommender, ItemItemRecommender
from implicit.recommender_base import RecommenderBase
from implicit.utils import ParameterWarning
from threadpoolctl import threadpool_limits

from policies.baselines import PopularityScorer
from policies.components import BuildContext, ScorerSpec
from policies.interactions import Interactions
from policies.models import SOURCE_CODE, PopularityModel, Retrieval, largest_tie, topk_by_vector

SIMILARITIES = ("cosine", "bm25")
# Requests per dense scoring block of the kNN model: bounds the (requests, n_items) float64 array
# to ~16 MB whatever the catalog size.
DENSE_BLOCK_ELEMENTS = 2**21


# --- fitted models --------------------------------------------------------------------------


@dataclass(frozen=True)
class FactorModel:
    """Latent factors of BPR or LMF, served as implicit serves them: ``score = u · v`` over the
    full factor rows, bias columns included (BPR appends an item bias and a constant 1 on the user
    side; LMF a user and an item bias). Users without clicks get the popularity ranking."""

    version: int
    seen: sp.csr_matrix
    user_factors: np.ndarray  # (n_users, f') float32, f' = factors + bias columns
    item_factors: np.ndarray  # (n_items, f') float32
    fallback: PopularityModel
    cold: np.ndarray = field(repr=False)  # (n_users,) bool: no clicks in the training window
    source_name: str = "bpr"

    def retrieve(self, user_ids: np.ndarray, n: int, filter_rows: sp.csr_matrix) -> Retrieval:
        ids, scores = topk_by_vector(
            self.item_factors, self.user_factors[user_ids], n, filter_rows, margin=self.tie_margin
        )
        source = np.full(user_ids.shape[0], SOURCE_CODE[self.source_name], dtype=np.int8)
        return _with_fallback(
            self.fallback, self.cold, user_ids, n, filter_rows, ids, scores, source
        )

    @cached_property
    def tie_margin(self) -> int:
        """Never-clicked items share one vector: the whole tie must reach the exact rescoring."""
        return largest_tie(self.item_factors)

    def score(self, user_ids: np.ndarray, item_ids: np.ndarray) -> np.ndarray:
        u = self.user_factors[user_ids].astype(np.float64)
        v = self.item_factors[item_ids].astype(np.float64)
        return np.einsum("nf,nkf->nk", u, v).astype(np.float32)


@dataclass(frozen=True)
class NeighbourModel:
    """Item-item kNN: the score of item ``j`` for user ``u`` is ``Σ_i r_ui · S[i, j]`` over the
    user's clicked items ``i`` (``r`` = click counts, ``S`` = implicit's similarity, row ``i``
    holding item ``i``'s ``K`` nearest neighbours) — what implicit's ``recommend`` computes.

    Retrieval is exact and does not depend on the batch: each request's scores are one row of a
    sparse product, ranked in float64; equal scores (many items score 0) go to the more clicked
    item, then the lower item id.
    """

    version: int
    seen: sp.csr_matrix  # the click counts r: both the serving filter and the user profiles
    similarity: sp.csr_matrix  # (n_items, n_items) float64
    tie_rank: np.ndarray  # (n_items,) int64: 0 = most clicked (ties by item id)
    fallback: PopularityModel
    cold: np.ndarray = field(repr=False)  # (n_users,) bool: no clicks in the training window

    def _scores(self, user_ids: np.ndarray) -> np.ndarray:
        return (self.seen[user_ids] @ self.similarity).toarray()

    def retrieve(self, user_ids: np.ndarray, n: int, filter_rows: sp.csr_matrix) -> Retrieval:
        n_items = self.similarity.shape[0]
        ids = np.empty((user_ids.shape[0], min(n, n_items)), dtype=np.int64)
        scores = np.empty(ids.shape, dtype=np.float32)
        block = _block_rows(n_items)
        for lo in range(0, user_ids.shape[0], block):  # memory-sized blocks, not per request
            hi = min(lo + block, user_ids.shape[0])
            dense = self._scores(user_ids[lo:hi])
            rows = filter_rows[lo:hi]
            dense[np.repeat(np.arange(hi - lo), np.diff(rows.indptr)), rows.indices] = -np.inf
            top, top_scores = top_n_ranked(dense, n, self.tie_rank)
            ids[lo:hi], scores[lo:hi] = top, top_scores
        source = np.full(user_ids.shape[0], SOURCE_CODE["item_knn"], dtype=np.int8)
        return _with_fallback(
            self.fallback, self.cold, user_ids, n, filter_rows, ids, scores, source
        )

    def score(self, user_ids: np.ndarray, item_ids: np.ndarray) -> np.ndarray:
        out = np.empty(np.shape(item_ids), dtype=np.float32)
        block = _block_rows(self.similarity.shape[0])
        for lo in range(0, user_ids.shape[0], block):
            hi = min(lo + block, user_ids.shape[0])
            out[lo:hi] = np.take_along_axis(self._scores(user_ids[lo:hi]), item_ids[lo:hi], axis=1)
        return out


def _block_rows(n_items: int) -> int:
    return max(1, DENSE_BLOCK_ELEMENTS // max(n_items, 1))


def top_n_ranked(scores: np.ndarray, n: int, tie_rank: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Top ``n`` columns of each row, best first; equal scores by ``tie_rank`` (lower first).

    Exact and vectorized: the ``n``-th largest score ``t`` of each row is found by a partition;
    the columns above ``t`` are all in, and the places left go to the tied columns with the lowest
    ``tie_rank`` (a second partition on a key that is -1 above ``t``, the rank at ``t``).
    """
    n_cols = scores.shape[1]
    n = min(n, n_cols)
    kth = -np.partition(-scores, n - 1, axis=1)[:, n - 1 : n]
    key = np.where(scores > kth, -1, np.where(scores == kth, tie_rank[None, :], n_cols))
    pick = np.argpartition(key, n - 1, axis=1)[:, :n]
    picked = np.take_along_axis(scores, pick, axis=1)
    order = np.lexsort((tie_rank[pick], -picked), axis=1)
    ids = np.take_along_axis(pick, order, axis=1).astype(np.int64)
    return ids, np.take_along_axis(picked, order, axis=1).astype(np.float32)


def _with_fallback(
    fallback: PopularityModel,
    cold: np.ndarray,
    user_ids: np.ndarray,
    n: int,
    filter_rows: sp.csr_matrix,
    ids: np.ndarray,
    scores: np.ndarray,
    source: np.ndarray,
) -> Retrieval:
    """Replace the rows of users without clicks by the popularity ranking (as ALS does)."""
    rows = cold[user_ids]
    if rows.any():
        fb = fallback.retrieve(user_ids[rows], n, filter_rows[np.flatnonzero(rows)])
        ids[rows], scores[rows] = fb.items, fb.scores
        source[rows] = SOURCE_CODE["popularity_fallback"]
    return Retrieval(ids, scores, source)


# --- runtime scorers ------------------------------------------------------------------------


@dataclass
class FactorScorer:
    """Fits one of implicit's SGD factor models (BPR, LMF) on the click counts, single-threaded
    (see the module docstring), a fresh seeded model every retrain."""

    make: Callable[[], RecommenderBase]  # a new, unfitted implicit model
    source_name: str
    fallback: PopularityScorer

    def fit(self, interactions: Interactions, version: int) -> FactorModel:
        clicks = interactions.clicks
        cold = interactions.user_activity == 0
        popularity = self.fallback.fit(interactions, version, source_name="popularity_fallback")
        if clicks.nnz == 0:  # implicit's samplers draw from the clicks: nothing to draw from
            users = np.zeros((interactions.n_users, 1), dtype=np.float32)
            items = np.zeros((interactions.n_items, 1), dtype=np.float32)
            seen = interactions.seen_matrix
            return FactorModel(version, seen, users, items, popularity, cold, self.source_name)
        model = self.make()
        with threadpool_limits(1, "blas"):
            model.fit(clicks, show_progress=False)
        return FactorModel(
            version=version,
            seen=interactions.seen_matrix,  # the clicks, also when trained on conversions
            user_factors=np.array(model.user_factors, dtype=np.float32, copy=True),
            item_factors=np.array(model.item_factors, dtype=np.float32, copy=True),
            fallback=popularity,
            cold=cold,
            source_name=self.source_name,
        )


@dataclass
class NeighbourScorer:
    """Fits implicit's item-item kNN (cosine or BM25 similarity) on the click counts."""

    make: Callable[[], ItemItemRecommender]  # a new, unfitted CosineRecommender/BM25Recommender
    fallback: PopularityScorer

    def fit(self, interactions: Interactions, version: int) -> NeighbourModel:
        clicks = interactions.clicks
        n_items = interactions.n_items
        if clicks.nnz == 0:  # nothing to compare (BM25's length norm would divide by zero)
            similarity = sp.csr_matrix((n_items, n_items), dtype=np.float64)
        else:
            model = self.make()
            with warnings.catch_warnings(), threadpool_limits(1, "blas"):
                # implicit re-weights the clicks into a COO matrix itself and then warns that it
                # was not handed a CSR one: its own conversion, not ours.
                warnings.filterwarnings("ignore", "Method expects CSR input", ParameterWarning)
                model.fit(clicks, show_progress=False)
            similarity = sp.csr_matrix(model.similarity, dtype=np.float64)
        similarity.sort_indices()
        popularity = interactions.item_popularity
        tie_rank = np.empty(n_items, dtype=np.int64)
        tie_rank[np.lexsort((np.arange(popularity.size), -popularity))] = np.arange(popularity.size)
        return NeighbourModel(
            version=version,
            seen=clicks,
            similarity=similarity,
            tie_rank=tie_rank,
            fallback=self.fallback.fit(interactions, version, source_name="popularity_fallback"),
            cold=interactions.user_activity == 0,
        )


# --- config nodes ---------------------------------------------------------------------------


@dataclass(frozen=True)
class BPR(ScorerSpec):
    """Bayesian personalized ranking (implicit): SGD on the pairwise loss -log σ(s_ui − s_uj) of
    a clicked item i over a sampled item j (sampled in proportion to its clicks)."""

    name: ClassVar[str] = "bpr"
    has_posterior: ClassVar[bool] = False

    factors: int = 32
    learning_rate: float = 0.01
    regularization: float = 0.01
    iterations: int = 100
    verify_negative_samples: bool = True

    def __post_init__(self) -> None:
        self._positive_int("factors", "iterations")
        self._number("learning_rate", low=0, low_open=True)
        self._number("regularization", low=0)
        self._bool("verify_negative_samples")

    def build(self, ctx: BuildContext) -> FactorScorer:
        # a partial, not a closure: the scorer pickles with a run's checkpoint (sim.checkpoint)
        make = partial(
            BayesianPersonalizedRanking,
            factors=self.factors,
            learning_rate=float(self.learning_rate),
            regularization=float(self.regularization),
            iterations=self.iterations,
            verify_negative_samples=self.verify_negative_samples,
            num_threads=1,  # Hogwild SGD: more threads, irreproducible factors
            random_state=int(ctx.seed),
        )

        return FactorScorer(make, "bpr", PopularityScorer(random_state=ctx.seed + 1))


@dataclass(frozen=True)
class LogisticMF(ScorerSpec):
    """Logistic matrix factorization (implicit): P(click) = σ(x_u · y_i + b_u + b_i), fitted by
    AdaGrad with clicks weighted by their count and sampled items as negatives.

    implicit 0.7.3 draws the negatives in proportion to their clicks, does not check them against
    the user's clicks, and caps them at ``factors + 2`` per user and sweep whatever ``neg_prop``
    says (its loop bound reads the factor count where the item count is meant).
    """

    name: ClassVar[str] = "lmf"
    has_posterior: ClassVar[bool] = False

    factors: int = 32
    learning_rate: float = 1.0
    regularization: float = 0.6
    iterations: int = 30
    neg_prop: int = 30

    def __post_init__(self) -> None:
        self._positive_int("factors", "iterations", "neg_prop")
        self._number("learning_rate", low=0, low_open=True)
        self._number("regularization", low=0)

    def build(self, ctx: BuildContext) -> FactorScorer:
        make = partial(  # picklable, like BPR's
            LogisticMatrixFactorization,
            factors=self.factors,
            learning_rate=float(self.learning_rate),
            regularization=float(self.regularization),
            iterations=self.iterations,
            neg_prop=self.neg_prop,
            num_threads=1,  # one generator per thread: the count would change the factors
            random_state=int(ctx.seed),
        )

        return FactorScorer(make, "lmf", PopularityScorer(random_state=ctx.seed + 1))


@dataclass(frozen=True)
class ItemKNN(ScorerSpec):
    """Item-item nearest neighbours (implicit): each item keeps its ``K`` most similar items by
    cosine or BM25-weighted co-clicks; a user's score for an item sums its similarity to the
    items they clicked. No factors, no seed."""

    name: ClassVar[str] = "item_knn"
    has_posterior: ClassVar[bool] = False

    similarity: str = "cosine"
    # implicit's names: K neighbours per item; BM25's term saturation K1 and length norm B
    K: int = 50
    K1: float = 1.2
    B: float = 0.75

    def __post_init__(self) -> None:
        if self.similarity not in SIMILARITIES:
            self._fail("similarity", f"unknown; choose one of {', '.join(SIMILARITIES)}")
        self._positive_int("K")
        self._number("K1", low=0)
        self._number("B", low=0, high=1)

    def build(self, ctx: BuildContext) -> NeighbourScorer:
        # Each similarity row is computed by one thread: identical at any thread count.
        # A partial, not a closure: picklable, like BPR's.
        if self.similarity == "bm25":
            make = partial(
                BM25Recommender, K=self.K, K1=float(self.K1), B=float(self.B), num_threads=0
            )
        else:
            make = partial(CosineRecommender, K=self.K, num_threads=0)

        return NeighbourScorer(make, PopularityScorer(random_state=ctx.seed + 1))
