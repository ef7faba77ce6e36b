"""How good is the learned model, judged by the truth only the simulator has.

At every retrain the freshly fitted model ranks the catalog for a fixed sample of users (drawn once
from the ``metrics.ndcg_users`` stream, so every run with the same seed probes the same users);
its top-K is scored by NDCG@K with the users' *true* relevance as graded gain:

    DCG@K = Σ_{k<K} rel(u, item_k) / log2(k + 2),   NDCG@K = DCG@K / ideal DCG@K,

the ideal ranking being the K truly most relevant items. Both rankings skip the user's already
clicked items (what the model filters when it serves), so the score is about what the model
would recommend next, not about recalling the training clicks. A model that ranks nothing (the
uniform random policy's ``NoModel``) has no NDCG: NaN, not 0.

:func:`conversion_gain` is the graded gain of the same probe judged on conversions (with them on:
``model_ndcg_conversion``): the true chance that showing the item ends in a conversion,
``rel(u, i) · P(convert | click on i by u)`` — expected conversions, not revenue (no price factor:
the price already lowers the conversion probability, and a price-weighted gain would rank by
catalog prices more than by the user).

:class:`RetrievalRecallProbe` scores the retrieval stage on the same users: how much of the model's
exhaustive top-K the (possibly mixed) candidate list holds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from policies.exclusion import batch_filter
from policies.models import Model
from policies.pipeline import Deployment
from policies.policy import ServingPolicy
from policies.retrieval import ModelRetrieval

PROBE_CHUNK = 256  # users per block: bounds the (users, n_items) truth matrix


def dcg(gains: np.ndarray) -> np.ndarray:
    """Row-wise DCG of ``gains`` (n, K) listed best slot first."""
    return gains @ (1.0 / np.log2(np.arange(gains.shape[1]) + 2.0))


@dataclass(frozen=True)
class NDCGProbe:
    """True-relevance NDCG@``k`` of a model's ranking for fixed ``user_ids``."""

    user_ids: np.ndarray
    k: int
    relevance_matrix: Callable[[np.ndarray], np.ndarray]  # users -> (n, n_items) truth
    # The items not in the catalog now (sorted ids; a living world), left out of both the
    # model's ranking and the ideal one; None: every item is in the catalog.
    unavailable: Callable[[], np.ndarray | None] | None = None

    def __call__(self, model: Model) -> float:
        if self.user_ids.size == 0:
            return float("nan")
        scores = []
        unavailable = None if self.unavailable is None else self.unavailable()
        for lo in range(0, self.user_ids.size, PROBE_CHUNK):
            users = self.user_ids[lo : lo + PROBE_CHUNK]
            filt = batch_filter(model.seen, users, min_allowed=self.k, unavailable=unavailable)
            ranked = model.retrieve(users, self.k, filt).items
            if ranked.shape[1] == 0:  # no ranking to score (NoModel): undefined, not 0
                return float("nan")
            rel = self.relevance_matrix(users)
            gains = np.take_along_axis(rel, ranked, axis=1)
            counts = np.diff(filt.indptr)
            rel[np.repeat(np.arange(users.size), counts), filt.indices] = -np.inf
            top = -np.partition(-rel, self.k - 1, axis=1)[:, : self.k]  # true top-K, unordered
            ideal = -np.sort(-top, axis=1)  # best first
            scores.append(dcg(gains) / dcg(ideal))
        return float(np.mean(np.concatenate(scores)))


def conversion_gain(
    relevance_matrix: Callable[[np.ndarray], np.ndarray],
    probability: Callable[[np.ndarray, np.ndarray, float], np.ndarray],
    price: np.ndarray,
    median_price: float,
) -> Callable[[np.ndarray], np.ndarray]:
    """users -> (n, n_items) ``rel · P(convert | click)`` (``probability``: the world's
    ``ConversionConfig.probability``; ``price``: every item's price)."""

    def gain(users: np.ndarray) -> np.ndarray:
        rel = relevance_matrix(users)
        return rel * probability(rel, price[None, :], median_price)

    return gain


def sample_probe_users(n_users: int, n_probe: int, rng: np.random.Generator) -> np.ndarray:
    """``min(n_probe, n_users)`` distinct users, sorted."""
    return np.sort(rng.choice(n_users, size=min(n_probe, n_users), replace=False))


@dataclass(frozen=True)
class RetrievalRecallProbe:
    """Recall of the retrieval stage against the model's exhaustive ranking, on fixed users.

    For each probe user: the share of the deployed model's exact top-``slate_size`` (and
    top-``n_candidates``) — filtered the way serving filters (``Retrieve.filter``) — that the
    policy's retrieval stage returns; averaged over the users. The model's own retrieval
    (``policy/retrieve=model``) *is* the exhaustive ranking (the same exact top-N call:
    ``tests/policies/test_retrieval.py`` checks the stage against ``model.retrieve``), so both are
    1.0 there by construction and nothing is computed (on S it cost ~2% of the run's time).
    ``(nan, nan)`` without probe users or without a ranking (no candidates).
    """

    user_ids: np.ndarray

    def __call__(self, policy: ServingPolicy, deployment: Deployment) -> tuple[float, float]:
        n, k = policy.n_candidates, policy.config.slate_size
        if self.user_ids.size == 0 or n == 0:
            return float("nan"), float("nan")
        if isinstance(policy.config.retrieve, ModelRetrieval):
            return 1.0, 1.0  # the stage is the model's exhaustive retrieval itself
        hits_k, hits_n = [], []
        for lo in range(0, self.user_ids.size, PROBE_CHUNK):
            users = self.user_ids[lo : lo + PROBE_CHUNK]
            retrieved, filt = policy.retrieve(users, deployment)
            exact = deployment.model.retrieve(users, n, filt).items  # best first
            exact_k, got = exact[:, :k], retrieved.items
            hits_k.append((exact_k[:, :, None] == got[:, None, :]).any(axis=2).mean(axis=1))
            hits_n.append((exact[:, :, None] == got[:, None, :]).any(axis=2).mean(axis=1))
        return float(np.mean(np.concatenate(hits_k))), float(np.mean(np.concatenate(hits_n)))
