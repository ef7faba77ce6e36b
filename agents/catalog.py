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
    # (n_items,) float64 simulated hours: when the item leaves the catalog (``inf``: never;
    # ``world.item_lifetime_days``). ``None`` at construction means never.
    depart_t: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.publish_t is None:
            object.__setattr__(self, "publish_t", np.asarray(self.arrival_t, dtype=np.float64))
        if self.depart_t is None:
            object.__setattr__(self, "depart_t", np.full(self.arrival_t.shape[0], np.inf))

    def available(self, t: float) -> np.ndarray:
        """(n_items,) bool: the items in the catalog at hour ``t`` (arrived, not yet departed)."""
        return (self.arrival_t <= t) & (t < self.depart_t)

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
    # How the catalog was drawn, so items arriving later come from the same world: the topic
    # mixture's weights and the latent -> content map (None for a hand-made catalog).
    topic_weights: np.ndarray | None = None
    projection: np.ndarray | None = None

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
    return Catalog(
        factors=factors,
        appeal=appeal,
        topic=topic,
        metadata=metadata,
        topic_weights=weights,
        projection=projection,
    )


def arriving_items(
    catalog: Catalog,
    centers: np.ndarray,
    arrival_t: np.ndarray,
    *,
    topic_spread: float,
    appeal_scale: float,
    appeal_tail_df: float,
    content_noise: float,
    n_creators: int,
    new_creator_share: float,
    rng: np.random.Generator,
) -> Catalog:
    """Items that join ``catalog`` at hours ``arrival_t`` (sorted), drawn from the same world:
    the same topic mixture and latent → content map, the same appeal and price laws.

    Each comes from an existing creator (uniformly among the ``n_creators`` existing ones) with
    probability ``1 − new_creator_share``, else from a new creator (ids ``n_creators, …``, one
    per such item). Published when they arrive (``publish_t = arrival_t``).
    """
    n, (n_topics, dim) = arrival_t.shape[0], centers.shape
    assert catalog.topic_weights is not None and catalog.projection is not None
    topic = rng.choice(n_topics, size=n, p=catalog.topic_weights).astype(np.int32)
    factors = centers[topic] + topic_spread * rng.standard_normal((n, dim)) / np.sqrt(dim)
    appeal = appeal_scale * rng.standard_t(appeal_tail_df, size=n)
    content_dim = catalog.projection.shape[1]
    content = factors @ catalog.projection + content_noise * rng.standard_normal((n, content_dim))
    new_creator = rng.random(n) < new_creator_share
    creator_id = rng.integers(0, n_creators, size=n)
    creator_id[new_creator] = n_creators + np.arange(int(new_creator.sum()))
    price = rng.lognormal(mean=2.0, sigma=0.8, size=n).astype(np.float32)
    metadata = ItemMetadata(
        content=content.astype(np.float32),
        creator_id=creator_id.astype(np.int32),
        price=price,
        arrival_t=np.asarray(arrival_t, dtype=np.float64),
    )
    return Catalog(factors=factors, appeal=appeal, topic=topic, metadata=metadata)


def concat_catalogs(first: Catalog, second: Catalog) -> Catalog:
    """``first``'s items then ``second``'s (ids of ``second`` shifted by ``first.n_items``)."""
    a, b = first.metadata, second.metadata
    metadata = ItemMetadata(
        content=np.concatenate([a.content, b.content]),
        creator_id=np.concatenate([a.creator_id, b.creator_id]),
        price=np.concatenate([a.price, b.price]),
        arrival_t=np.concatenate([a.arrival_t, b.arrival_t]),
        publish_t=np.concatenate([a.publish_t, b.publish_t]),
        depart_t=np.concatenate([a.depart_t, b.depart_t]),
    )
    return Catalog(
        factors=np.concatenate([first.factors, second.factors]),
        appeal=np.concatenate([first.appeal, second.appeal]),
        topic=np.concatenate([first.topic, second.topic]),
        metadata=metadata,
        topic_weights=first.topic_weights,
        projection=first.projection,
    )
