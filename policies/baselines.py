"""Baseline scorers: popularity, uniform random (no model) and the oracle reference."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from policies.interactions import Interactions
from policies.models import NoModel, OracleModel, PopularityModel


@dataclass
class PopularityScorer:
    """Most-clicked items first; equal counts in a seeded random order (not by item id)."""

    random_state: int = 0

    def fit(
        self, interactions: Interactions, version: int, source_name: str = "popularity"
    ) -> PopularityModel:
        rng = np.random.default_rng(self.random_state)
        return PopularityModel(
            version=version,
            seen=interactions.clicks,
            popularity=interactions.item_popularity,
            tiebreak=rng.random(interactions.n_items) * 0.5,
            source_name=source_name,
        )


@dataclass
class RandomScorer:
    """No model: the uniform random policy only needs the seen-item filter."""

    def fit(self, interactions: Interactions, version: int) -> NoModel:
        return NoModel(version=version, seen=interactions.clicks)


@dataclass
class OracleScorer:
    """Ranks by *true* relevance, through a callback from ``sim``: the ideal reference.

    ``uses_ground_truth`` marks it so tests and reports can tell it apart from real policies.
    """

    relevance: Callable[[np.ndarray], np.ndarray]
    uses_ground_truth: bool = True

    def fit(self, interactions: Interactions, version: int) -> OracleModel:
        return OracleModel(version=version, seen=interactions.clicks, relevance=self.relevance)
