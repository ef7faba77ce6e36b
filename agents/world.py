"""The world: catalog + users + click model, and the ground-truth relevance they imply."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agents.catalog import Catalog, generate_catalog, topic_centers
from agents.click_model import PositionBasedClickModel
from agents.streams import Streams
from agents.users import UserPopulation, generate_users
from agents.validation import is_number, is_positive_int


@dataclass(frozen=True)
class WorldConfig:
    """Parameters of the synthetic world (hydra group ``world``; keys documented there)."""

    n_users: int = 2000
    n_items: int = 1000
    dim: int = 16
    n_topics: int = 10
    topic_spread: float = 0.6
    affinity_scale: float = 4.0
    affinity_offset: float = -3.0
    appeal_scale: float = 0.5
    appeal_tail_df: float = 3.0
    content_dim: int = 24
    content_noise: float = 0.5
    items_per_creator: int = 10
    sessions_per_day: float = 1.0
    activity_sigma: float = 0.8
    position_bias_eta: float = 1.0
    drift_rate: float = 0.0

    def __post_init__(self) -> None:
        for key in ("n_users", "n_items", "dim", "n_topics", "content_dim", "items_per_creator"):
            value = getattr(self, key)
            if not is_positive_int(value):
                raise ValueError(f"world.{key}={value!r}: must be a positive integer")
        for key in ("topic_spread", "appeal_scale", "content_noise", "activity_sigma"):
            value = getattr(self, key)
            if not is_number(value) or value < 0:
                raise ValueError(f"world.{key}={value!r}: must be a number >= 0")
        for key in ("sessions_per_day", "appeal_tail_df"):
            value = getattr(self, key)
            if not is_number(value) or value <= 0:
                raise ValueError(f"world.{key}={value!r}: must be a number > 0")
        for key in ("affinity_scale", "affinity_offset"):
            if not is_number(getattr(self, key)):
                raise ValueError(f"world.{key}={getattr(self, key)!r}: must be a finite number")
        if not is_number(self.position_bias_eta) or self.position_bias_eta < 0:
            raise ValueError(f"world.position_bias_eta={self.position_bias_eta!r}: must be >= 0")
        if not is_number(self.drift_rate) or not 0 <= self.drift_rate <= 1:
            raise ValueError(f"world.drift_rate={self.drift_rate!r}: must be in [0, 1]")


@dataclass
class World:
    """Ground truth. ``sim`` draws responses from it; metrics score against it; policies never see it."""

    config: WorldConfig
    catalog: Catalog
    users: UserPopulation
    click_model: PositionBasedClickModel

    def affinity(self, user_ids: np.ndarray, item_ids: np.ndarray) -> np.ndarray:
        """True affinity logit for aligned arrays of users and items (any matching shapes)."""
        prefs = self.users.preferences[user_ids]
        factors = self.catalog.factors[item_ids]
        dot = np.einsum("...d,...d->...", prefs, factors)
        c = self.config
        return c.affinity_scale * dot + self.catalog.appeal[item_ids] + c.affinity_offset

    def relevance(self, user_ids: np.ndarray, item_ids: np.ndarray) -> np.ndarray:
        """True relevance = attraction probability = sigmoid(affinity), in (0, 1)."""
        return _sigmoid(self.affinity(user_ids, item_ids))

    def relevance_matrix(self, user_ids: np.ndarray) -> np.ndarray:
        """(len(user_ids), n_items) true relevance of every item for each user."""
        c = self.config
        logits = c.affinity_scale * (self.users.preferences[user_ids] @ self.catalog.factors.T)
        logits += self.catalog.appeal + c.affinity_offset
        return _sigmoid(logits)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # overflow-free logistic


def build_world(config: WorldConfig, streams: Streams) -> World:
    """Draw the world from the ``world.*`` streams of ``streams`` (independent of the policy)."""
    centers = topic_centers(config.n_topics, config.dim, streams.generator("world.topics"))
    catalog = generate_catalog(
        config.n_items,
        centers,
        topic_spread=config.topic_spread,
        appeal_scale=config.appeal_scale,
        appeal_tail_df=config.appeal_tail_df,
        content_dim=config.content_dim,
        content_noise=config.content_noise,
        n_creators=max(1, config.n_items // config.items_per_creator),
        rng=streams.generator("world.items"),
    )
    users = generate_users(
        config.n_users,
        centers,
        topic_spread=config.topic_spread,
        sessions_per_day=config.sessions_per_day,
        activity_sigma=config.activity_sigma,
        drift_rate=config.drift_rate,
        rng=streams.generator("world.users"),
    )
    return World(
        config=config,
        catalog=catalog,
        users=users,
        click_model=PositionBasedClickModel(config.position_bias_eta),
    )
