"""Cross-domain transfer: another domain's click history initializes cold users here.

A cold-start layer (a :attr:`~policies.policy.ServingPolicy.user_seeders` entry). The platform
is given each user's click history in a second domain (a CSR users × items_B of counts — never
the other domain's latent preferences or factors). At build, each user's history becomes a
*B profile*: a low-rank embedding, the projection of their L2-normalized click row on the top
``profile_dim`` right singular vectors of the normalized click matrix (truncated SVD, by the
eigendecomposition of the small items_B × items_B Gram matrix: deterministic, no random start).
At each deployment a ridge map (with an unpenalized intercept) is learned from the B profiles of
warm users (not cold in the deployed ALS model, with B activity) to their ALS user factors, and
every cold user with B activity is seeded with their mapped vector
(:meth:`~policies.models.ALSModel.seed_users`), so a user who joins later is ranked by the model
from their first session instead of the popularity fallback. Optionally (``min_r2``) only when
the map carries signal: its cross-validated R² on the warm users must exceed ``min_r2`` (else a
mapped vector is about the mean warm user plus noise, which can rank worse than popularity).
Off by default: in a closed loop the warm users' ALS factors are noisy (few clicks, fit to
what the loop showed them), so the R² stays near 0 even when the map helps new users.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from policies.models import ALSModel
from policies.pipeline import Deployment


def click_profiles(clicks: sp.csr_matrix, dim: int) -> np.ndarray:
    """(n_users, min(dim, n_items_B)) B profiles: each row of ``clicks`` scaled to unit L2 norm
    (taste, not activity), projected on the top right singular vectors of the scaled matrix.
    A user without clicks gets the zero profile."""
    x = sp.csr_matrix(clicks, dtype=np.float64)
    norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=1)).ravel())
    x = sp.diags(np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)) @ x
    gram = (x.T @ x).toarray()
    _, vectors = np.linalg.eigh(gram)  # ascending eigenvalues
    k = min(dim, gram.shape[0])
    top = vectors[:, ::-1][:, :k]
    return np.asarray(x @ top)


def ridge_map(
    profiles: np.ndarray, targets: np.ndarray, regularization: float
) -> tuple[np.ndarray, np.ndarray]:
    """``(W, b)`` minimizing ``‖P W + 1 bᵀ − Y‖² + λ‖W‖²`` (the intercept is not penalized):
    ``W = (P̃ᵀP̃ + λI)⁻¹ P̃ᵀỸ`` on column-centered ``P̃, Ỹ``, ``b = ȳ − Wᵀp̄``."""
    p_mean, y_mean = profiles.mean(axis=0), targets.mean(axis=0)
    p, y = profiles - p_mean, targets - y_mean
    gram = p.T @ p + regularization * np.eye(p.shape[1])
    weights = np.linalg.solve(gram, p.T @ y)
    return weights, y_mean - p_mean @ weights


@dataclass
class TransferSeeder:
    """Seeds cold users of each deployed ALS model with their mapped B profile.

    ``profiles`` and ``active`` are all it keeps of the other domain (platform data: derived
    from the click history it was given). ``map_``, ``r2_`` and ``seeded_`` describe the last
    deployment (for inspection and tests).
    """

    profiles: np.ndarray  # (n_users, k) float64 B profiles (zero rows: no B activity)
    active: np.ndarray  # (n_users,) bool: the user has clicks in the other domain
    regularization: float = 1.0
    min_r2: float | None = None  # seed only when the map's cross-validated R² exceeds this
    r2_: float = field(default=float("nan"), init=False, repr=False)
    map_: tuple[np.ndarray, np.ndarray] | None = field(default=None, init=False, repr=False)
    seeded_: np.ndarray = field(
        default_factory=lambda: np.zeros(0, dtype=np.int64), init=False, repr=False
    )

    @classmethod
    def from_clicks(
        cls,
        clicks: sp.csr_matrix,
        profile_dim: int,
        regularization: float,
        min_r2: float | None = None,
    ) -> TransferSeeder:
        """The seeder for the click history ``clicks`` (users × items_B counts)."""
        active = np.diff(sp.csr_matrix(clicks).indptr) > 0
        profiles = click_profiles(clicks, profile_dim)
        return cls(profiles, active, float(regularization), min_r2)

    def on_deploy(self, deployment: Deployment) -> None:
        """Learn the map on the deployed model's warm users with B activity and seed its cold
        users with B activity (when there are at least two such warm users and, with
        ``min_r2``, the map's cross-validated R² exceeds it; ``r2_`` is computed either way)."""
        model = deployment.model
        if not isinstance(model, ALSModel):
            raise TypeError(
                f"cross-domain transfer seeds ALS user factors; the deployed model is a"
                f" {type(model).__name__}"
            )
        warm = ~model.cold & self.active
        cold = np.flatnonzero(model.cold & self.active)
        self.map_, self.r2_, self.seeded_ = None, float("nan"), cold[:0]
        if warm.sum() < 2 or cold.size == 0:
            return
        profiles, targets = self.profiles[warm], model.user_factors[warm].astype(np.float64)
        self.r2_ = cross_validated_r2(profiles, targets, self.regularization)
        if self.min_r2 is not None and not self.r2_ > self.min_r2:
            return
        weights, bias = ridge_map(profiles, targets, self.regularization)
        self.map_, self.seeded_ = (weights, bias), cold
        model.seed_users(cold, self.profiles[cold] @ weights + bias)


def cross_validated_r2(
    profiles: np.ndarray, targets: np.ndarray, regularization: float, folds: int = 5
) -> float:
    """Held-out R² of :func:`ridge_map` over ``folds`` interleaved folds (row ``i`` in fold
    ``i % folds``; no random draw): ``1 − Σ‖y − ŷ‖² / Σ‖y − ȳ_train‖²``, pooled over folds and
    factor dimensions. ≤ 0: the profiles predict nothing beyond the mean warm user."""
    fold = np.arange(profiles.shape[0]) % folds
    residual = total = 0.0
    for k in range(folds):
        test, train = fold == k, fold != k
        if not test.any() or train.sum() < 2:
            continue
        weights, bias = ridge_map(profiles[train], targets[train], regularization)
        residual += float(((targets[test] - profiles[test] @ weights - bias) ** 2).sum())
        total += float(((targets[test] - targets[train].mean(axis=0)) ** 2).sum())
    return 1.0 - residual / total if total > 0 else 0.0
