"""How good is the learned model, judged by the truth only the simulator has.

At every retrain the freshly fitted model ranks the catalog for a fixed sample of users (drawn once
from the ``metrics.ndcg_users`` stream, so every run with the same seed probes the same users);
its top-K is scored by NDCG@K with the users' *true* relevance as graded gain:

    DCG@K = Σ_{k<K} rel(u, item_k) / log2(k + 2),   NDCG@K = DCG@K / ideal DCG@K,

the ideal ranking being the K truly most relevant items. Both rankings skip the user's already
clicked items (what the model filters when it serves), so the score is about what the model
would recommend next, not about recalling the training clicks. A model that ranks nothing (the
uniform random policy's ``NoModel``) has no NDCG: NaN, not 0.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from policies.exclusion import batch_filter
from policies.models import Model

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

    def __call__(self, model: Model) -> float:
        if self.user_ids.size == 0:
            return float("nan")
        scores = []
        for lo in range(0, self.user_ids.size, PROBE_CHUNK):
            users = self.user_ids[lo : lo + PROBE_CHUNK]
            filt = batch_filter(model.seen, users, min_allowed=self.k)
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


def sample_probe_users(n_users: int, n_probe: int, rng: np.random.Generator) -> np.ndarray:
    """``min(n_probe, n_users)`` distinct users, sorted."""
    return np.sort(rng.choice(n_users, size=min(n_probe, n_users), replace=False))
