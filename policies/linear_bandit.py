"""A linear contextual bandit over item content and the user's observed profile (LinUCB / LinTS).

Features of a (user, item) pair: ``φ = [x_i, p_u ⊙ x_i]`` where ``x_i`` are the item's standardized
content features (metadata a real platform has) and ``p_u`` the mean content of the user's clicked
items (unit norm; zero for a user without clicks). A ridge regression of clicks on ``φ``,
``A = λI + Σ φφᵀ``, ``b = Σ click·φ``, is updated at each deployment with the newest log round,
using the profiles of the model version that served each impression (features at decision time). Scores are linear in
``x_i`` (``x_iᵀ(θ₁ + θ₂ ⊙ p_u)``), so retrieval is one fused top-K; UCB and Thompson use the
posterior ``θ ~ N(A⁻¹b, A⁻¹)`` on the retrieved candidates.

Clicks are position-biased; this model does not correct for it (the debiasing issue does).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from policies.interactions import Interactions
from policies.models import SOURCE_CODE, Retrieval, topk_by_vector


def standardize(content: np.ndarray) -> np.ndarray:
    """Zero-mean, unit-variance columns (constant columns stay zero)."""
    x = content.astype(np.float64)
    sd = x.std(axis=0)
    return (x - x.mean(axis=0)) / np.where(sd > 0, sd, 1.0)


def user_profiles(clicks: sp.csr_matrix, x: np.ndarray) -> np.ndarray:
    """Unit-norm mean content of each user's clicked items (zeros without clicks)."""
    totals = clicks @ x
    norms = np.linalg.norm(totals, axis=1, keepdims=True)
    return np.divide(totals, norms, out=np.zeros_like(totals), where=norms > 0)


def features(x: np.ndarray, profiles: np.ndarray) -> np.ndarray:
    """``φ = [x, p ⊙ x]`` for aligned rows (any leading shape)."""
    return np.concatenate([x, profiles * x], axis=-1)


@dataclass(frozen=True)
class LinearModel:
    version: int
    seen: sp.csr_matrix
    content: np.ndarray  # (n_items, d) standardized
    profiles: np.ndarray  # (n_users, d)
    theta: np.ndarray  # (2d,)
    chol: np.ndarray  # (2d, 2d) lower Cholesky factor of A

    def _query(self, user_ids: np.ndarray) -> np.ndarray:
        d = self.content.shape[1]
        return self.theta[:d] + self.theta[d:] * self.profiles[user_ids]

    def retrieve(self, user_ids: np.ndarray, n: int, filter_rows: sp.csr_matrix) -> Retrieval:
        ids, scores = topk_by_vector(self.content, self._query(user_ids), n, filter_rows)
        code = np.full(user_ids.shape[0], SOURCE_CODE["linear"], dtype=np.int8)
        return Retrieval(ids, scores, code)

    def score(self, user_ids: np.ndarray, item_ids: np.ndarray) -> np.ndarray:
        return np.einsum("nf,nkf->nk", self._query(user_ids), self.content[item_ids]).astype(
            np.float32
        )

    def score_distribution(
        self, user_ids: np.ndarray, candidates: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Candidates' scores ``Φθ`` with ``θ ~ N(θ̂, A⁻¹)``: ``mean + Gᵀz``, ``G = L⁻¹Φᵀ``."""
        phi = features(self.content[candidates], self.profiles[user_ids][:, None, :])  # (n,C,2d)
        n, c, p = phi.shape
        g = scipy.linalg.solve_triangular(self.chol, phi.reshape(n * c, p).T, lower=True)
        return phi @ self.theta, g.T.reshape(n, c, p).transpose(0, 2, 1)


@dataclass
class LinearScorer:
    """Fits :class:`LinearModel` online: each fit adds the newest round to ``A`` and ``b``."""

    content: np.ndarray  # (n_items, d) raw content features (ItemMetadata.content)
    regularization: float = 1.0
    _x: np.ndarray = field(init=False, repr=False)
    _a: np.ndarray = field(init=False, repr=False)
    _b: np.ndarray = field(init=False, repr=False)
    _profiles: dict[int, np.ndarray] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self._x = standardize(self.content)
        p = 2 * self._x.shape[1]
        self._a = self.regularization * np.eye(p)
        self._b = np.zeros(p)

    def fit(self, interactions: Interactions, version: int) -> LinearModel:
        rnd = interactions.latest_round
        if rnd.user_ids.size:
            live = np.zeros((rnd.user_ids.size, self._x.shape[1]))  # no model: no profile
            for served_by, profiles in self._profiles.items():  # a loop over model versions
                rows = rnd.model_version == served_by
                live[rows] = profiles[rnd.user_ids[rows]]
            phi = features(self._x[rnd.item_ids], live)
            self._a += phi.T @ phi
            self._b += phi.T @ rnd.clicked.astype(np.float64)
        chol = np.linalg.cholesky(self._a)
        theta = scipy.linalg.cho_solve((chol, True), self._b)
        profiles = user_profiles(interactions.clicks, self._x)
        # A round is served by at most the two latest versions; keep their profiles only.
        self._profiles = {v: p for v, p in self._profiles.items() if v >= version - 1}
        self._profiles[version] = profiles
        return LinearModel(
            version=version,
            seen=interactions.clicks,
            content=self._x,
            profiles=profiles,
            theta=theta,
            chol=chol,
        )
