"""The synthetic world: catalog, users, click models, popularity and ground-truth relevance.

Depends on numpy only. Policies may import the *public* item metadata type
(:class:`agents.catalog.ItemMetadata`); everything else here is ground truth that only
``sim`` and the metrics may read.
"""

from agents.catalog import Catalog, ItemMetadata, generate_catalog
from agents.click_model import (
    CascadeClickModel,
    ClickModel,
    DependentClickModel,
    PositionBasedClickModel,
    make_click_model,
)
from agents.streams import Streams
from agents.users import UserPopulation, generate_users
from agents.world import ItemPopularity, World, WorldConfig, build_world

__all__ = [
    "CascadeClickModel",
    "Catalog",
    "ClickModel",
    "DependentClickModel",
    "ItemMetadata",
    "ItemPopularity",
    "PositionBasedClickModel",
    "Streams",
    "UserPopulation",
    "World",
    "WorldConfig",
    "build_world",
    "generate_catalog",
    "generate_users",
    "make_click_model",
]
