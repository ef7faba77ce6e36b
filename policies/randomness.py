"""The random numbers a serving policy draws, one generator per kind.

Each selector draws each kind at most once per batch, in request order and with a size
proportional to the batch (Monte-Carlo draws are made chunk after chunk, also in request order).
A generator's stream does not depend on how its draws are split into calls, so serving a batch
whole or in chunks gives the same slates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

# The run's streams of the policy's own draws (agents.streams.Streams names the children).
STREAM_NAMES = {
    "uniform": "policy.uniform",
    "normal": "policy.normal",
    "monte_carlo": "policy.monte_carlo",
    "intervention": "policy.intervention",
}


class NamedStreams(Protocol):
    """Named, independent generators of one run seed (``agents.streams.Streams``, which a
    policy does not import: its other streams are the world's)."""

    def generator(self, name: str) -> np.random.Generator: ...


@dataclass
class Randomness:
    uniform: np.random.Generator  # slate draws: explore coins, uniform picks, Gumbel keys
    normal: np.random.Generator  # posterior samples (Thompson)
    monte_carlo: np.random.Generator  # extra draws that only estimate propensities
    # Randomized re-ordering (policies.intervention); its own stream, so turning it on shifts
    # no other draw. None only where no policy intervenes.
    intervention: np.random.Generator | None = None

    @classmethod
    def from_streams(cls, streams: NamedStreams) -> Randomness:
        """A run's serving randomness: the ``policy.*`` streams of its seed (:data:`STREAM_NAMES`)."""
        return cls(**{kind: streams.generator(name) for kind, name in STREAM_NAMES.items()})

    @classmethod
    def from_seed(cls, seed: int) -> Randomness:
        """Independent generators from one int (for tests and notebooks)."""
        children = np.random.SeedSequence(seed).spawn(4)  # the first three as before
        return cls(*(np.random.Generator(np.random.PCG64(c)) for c in children))
