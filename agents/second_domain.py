"""A second domain beside this one (cross-domain transfer, config section ``transfer``).

The same users also use another product — "articles" beside "videos" — with its own catalog
in the same latent taste space (the same topic centers). A user's taste there is correlated
with their taste here: ``p_B = μ + ρ (p_A − μ) + sqrt(1 − ρ²) (z − μ)``, ``z`` drawn like a
user's preference and ``μ`` the population mean, so ``p_B`` has the spread of ``p_A`` and
correlates with it by ``ρ = transfer.correlation`` coordinate-wise. Before the run, each user
has clicked ``Poisson(transfer.clicks_per_user)`` items there, in proportion to their true
attraction. The click history is what a platform may be given (with the user's consent:
``transfer.enabled`` is the privacy switch); the preferences and the catalog's factors are
truth. Everything is drawn from streams of its own (``world.transfer.*``), and nothing at all
when the switch is off.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from agents.streams import Streams
from agents.validation import is_number, is_positive_int

CLICK_CHUNK_USERS = 4096  # users whose attraction matrix is held at once while drawing clicks


@dataclass(frozen=True)
class TransferConfig:
    """The ``transfer`` node (``configs/transfer/default.yaml``; keys documented there)."""

    enabled: bool = False
    domain: str | None = "articles"
    correlation: float = 0.7
    n_items: int = 500
    clicks_per_user: float = 20.0
    regularization: float = 1.0
    profile_dim: int = 16
    min_r2: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.enabled, bool):
            raise ValueError(f"transfer.enabled={self.enabled!r}: must be true or false")
        if self.domain is not None and (not isinstance(self.domain, str) or not self.domain):
            raise ValueError(
                f"transfer.domain={self.domain!r}: must be null (no second domain) or a name"
            )
        if not is_number(self.correlation) or not -1 <= self.correlation <= 1:
            raise ValueError(f"transfer.correlation={self.correlation!r}: must be in [-1, 1]")
        if isinstance(self.n_items, bool) or not isinstance(self.n_items, (int, np.integer)):
            raise ValueError(f"transfer.n_items={self.n_items!r}: must be an integer >= 0")
        if self.n_items < 0:
            raise ValueError(f"transfer.n_items={self.n_items!r}: must be an integer >= 0")
        if not is_number(self.clicks_per_user) or self.clicks_per_user <= 0:
            raise ValueError(
                f"transfer.clicks_per_user={self.clicks_per_user!r}: must be a number > 0"
            )
        if not is_number(self.regularization) or self.regularization <= 0:
            raise ValueError(
                f"transfer.regularization={self.regularization!r}: must be a number > 0"
            )
        if not is_positive_int(self.profile_dim):
            raise ValueError(
                f"transfer.profile_dim={self.profile_dim!r}: must be a positive integer"
            )
        if self.min_r2 is not None and (not is_number(self.min_r2) or self.min_r2 >= 1):
            raise ValueError(
                f"transfer.min_r2={self.min_r2!r}: must be null (always seed) or a number < 1"
            )
        if self.enabled and self.domain is None:
            raise ValueError(
                "transfer.domain=None: transfer enabled with no second domain (name one, e.g."
                " transfer.domain=articles, or set transfer.enabled=false)"
            )
        if self.enabled and self.n_items == 0:
            raise ValueError(
                "transfer.n_items=0: transfer enabled with no second domain (its catalog is"
                " empty; set transfer.n_items > 0 or transfer.enabled=false)"
            )


@dataclass(frozen=True)
class SecondDomain:
    """The other domain: truth (``factors``, ``appeal``, ``preferences``) and what the platform
    may be given (``clicks``)."""

    name: str
    factors: np.ndarray  # (n_items_B, dim) float64, items' latent positions (same space)
    appeal: np.ndarray  # (n_items_B,) float64
    preferences: np.ndarray  # (n_users, dim) float64, p_B
    clicks: sp.csr_matrix  # (n_users, n_items_B) float64 click counts before the run

    @property
    def n_items(self) -> int:
        return int(self.factors.shape[0])


def correlated_preferences(
    preferences: np.ndarray,
    centers: np.ndarray,
    topic_weights: np.ndarray,
    topic_spread: float,
    correlation: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """``p_B = μ + ρ (p_A − μ) + sqrt(1 − ρ²) (z − μ)`` for each row ``p_A`` of
    ``preferences``: ``z`` is an independent draw of a user's preference (a topic from the
    users' mixture, its center plus spread), ``μ = Σ_k w_k c_k`` their mean, so ``p_B`` keeps
    the population's mean and covariance and correlates with ``p_A`` by ``ρ``."""
    n, (n_topics, dim) = preferences.shape[0], centers.shape
    topic = rng.choice(n_topics, size=n, p=topic_weights)
    z = centers[topic] + topic_spread * rng.standard_normal((n, dim)) / np.sqrt(dim)
    mu = topic_weights @ centers
    rho = float(correlation)
    return mu + rho * (preferences - mu) + np.sqrt(1.0 - rho * rho) * (z - mu)


def draw_clicks(
    preferences: np.ndarray,
    factors: np.ndarray,
    appeal: np.ndarray,
    *,
    affinity_scale: float,
    affinity_offset: float,
    clicks_per_user: float,
    rng: np.random.Generator,
) -> sp.csr_matrix:
    """Each user's click history in the domain: ``Poisson(clicks_per_user)`` clicks, each on an
    item drawn with probability proportional to the user's true attraction
    ``sigmoid(scale · p·v + appeal + offset)`` (with replacement: counts). Vectorized over
    users in chunks of :data:`CLICK_CHUNK_USERS` (one multinomial per row)."""
    n_users = preferences.shape[0]
    n_clicks = rng.poisson(clicks_per_user, n_users)
    counts = []
    for lo in range(0, n_users, CLICK_CHUNK_USERS):
        hi = min(lo + CLICK_CHUNK_USERS, n_users)
        logits = affinity_scale * (preferences[lo:hi] @ factors.T) + appeal + affinity_offset
        attraction = 0.5 * (1.0 + np.tanh(0.5 * logits))
        p = attraction / attraction.sum(axis=1, keepdims=True)
        counts.append(sp.csr_matrix(rng.multinomial(n_clicks[lo:hi], p).astype(np.float64)))
    if not counts:
        return sp.csr_matrix((0, factors.shape[0]))
    return sp.vstack(counts, format="csr")


def build_second_domain(
    config: TransferConfig,
    streams: Streams,
    centers: np.ndarray,
    preferences: np.ndarray,
    topic_weights: np.ndarray,
    *,
    topic_spread: float,
    appeal_scale: float,
    appeal_tail_df: float,
    affinity_scale: float,
    affinity_offset: float,
) -> SecondDomain:
    """Draw the second domain for the users with (initial) preferences ``preferences`` (every
    user, those who arrive later included), from streams ``world.transfer.catalog``,
    ``world.transfer.preferences`` and ``world.transfer.clicks``. Its catalog comes from the
    same topic centers with its own topic mixture, as :func:`agents.catalog.generate_catalog`
    draws one."""
    assert config.domain is not None
    n_topics, dim = centers.shape
    rng = streams.generator("world.transfer.catalog")
    weights = rng.dirichlet(np.full(n_topics, 2.0))
    topic = rng.choice(n_topics, size=config.n_items, p=weights)
    factors = centers[topic] + topic_spread * rng.standard_normal((config.n_items, dim)) / np.sqrt(
        dim
    )
    appeal = appeal_scale * rng.standard_t(appeal_tail_df, size=config.n_items)
    prefs_b = correlated_preferences(
        preferences,
        centers,
        topic_weights,
        topic_spread,
        config.correlation,
        streams.generator("world.transfer.preferences"),
    )
    clicks = draw_clicks(
        prefs_b,
        factors,
        appeal,
        affinity_scale=affinity_scale,
        affinity_offset=affinity_offset,
        clicks_per_user=config.clicks_per_user,
        rng=streams.generator("world.transfer.clicks"),
    )
    return SecondDomain(config.domain, factors, appeal, prefs_b, clicks)
