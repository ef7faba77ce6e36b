"""Synthetic item catalog: latent taste factors, appeal, content features, creators, price."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ItemMetadata:
    """What a real platform knows about its items — the only item data a policy may read."""

    content: np.ndarray  # (n_items, content_dim) float32, noisy map of the latent factors
    creator_id: np.ndarray  # (n_items,) int32
    price: np.ndarray  # (n_items,) float32
    arrival_t: np.ndarray  # (n_items,) float64, simulated hours
    # (n_items,) float64 simulated hours: when the item was published (its age is ``t −
    # publish_t``); the initial catalog was published before the run starts (≤ 0, drawn by
    # ``agents.world.build_world``); ``None`` at construction means ``arrival_t``.
    publish_t: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.publish_t is None:
            object.__setattr__(self, "publish_t", np.asarray(self.arrival_t, dtype=np.float64))

    @property
    def n_items(self) -> int:
        return int(self.creator_id.shape[0])


@dataclass(frozen=True)
class Catalog:
    """Ground truth of the catalog (only ``sim`` and metrics may read the latent parts)."""

    factors: np.ndarray  # (n_items, dim) float64, true latent position in taste space
    appeal: np.ndarray  # (n_items,) float64, heavy-tailed quality/appeal term
    topic: np.ndarray  # (n_items,) int32, mixture component the item was drawn from
    metadata: ItemMetadata

    @property
    def n_items(self) -> int:
        return int(self.factors.shape[0])


def topic_centers(n_topics: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-norm topic directions shared by items and users."""
    centers = rng.standard_normal((n_topics, dim))
    return centers / np.linalg.norm(centers, axis=1, keepdims=True)


def generate_catalog(
    n_items: int,
    centers: np.ndarray,
    *,
    topic_spread: float,
    appeal_scale: float,
    appeal_tail_df: float,
    content_dim: int,
    content_noise: float,
    n_creators: int,
    rng: np.random.Generator,
) -> Catalog:
    """Draw a catalog from a mixture of topic clusters.

    Appeal is Student-t distributed (``appeal_tail_df`` degrees of freedom) so a few items are far
    more attractive than the rest, as in real catalogs. Content features are a random linear map
    of the latent factors plus noise, so content predicts taste only partly.
    """
    n_topics, dim = centers.shape
    weights = rng.dirichlet(np.full(n_topics, 2.0))
    topic = rng.choice(n_topics, size=n_items, p=weights).astype(np.int32)
    factors = centers[topic] + topic_spread * rng.standard_normal((n_items, dim)) / np.sqrt(dim)
    appeal = appeal_scale * rng.standard_t(appeal_tail_df, size=n_items)
    projection = rng.standard_normal((dim, content_dim)) / np.sqrt(dim)
    content = factors @ projection + content_noise * rng.standard_normal((n_items, content_dim))
    creator_id = rng.integers(0, n_creators, size=n_items).astype(np.int32)
    price = rng.lognormal(mean=2.0, sigma=0.8, size=n_items).astype(np.float32)
    metadata = ItemMetadata(
        content=content.astype(np.float32),
        creator_id=creator_id,
        price=price,
        arrival_t=np.zeros(n_items),
    )
    return Catalog(factors=factors, appeal=appeal, topic=topic, metadata=metadata)
