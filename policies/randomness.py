"""The random numbers a serving policy draws, one generator per kind.

Each selector draws each kind at most once per batch, in request order and with a size
proportional to the batch (Monte-Carlo draws are made chunk after chunk, also in request order).
A generator's stream does not depend on how its draws are split into calls, so serving a batch
whole or in chunks gives the same slates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Randomness:
    uniform: np.random.Generator  # slate draws: explore coins, uniform picks, Gumbel keys
    normal: np.random.Generator  # posterior samples (Thompson)
    monte_carlo: np.random.Generator  # extra draws that only estimate propensities
    # Randomized re-ordering (policies.intervention); its own stream, so turning it on shifts
    # no other draw. None only where no policy intervenes.
    intervention: np.random.Generator | None = None

    @classmethod
    def from_seed(cls, seed: int) -> Randomness:
        """Independent generators from one int (for tests and notebooks)."""
        children = np.random.SeedSequence(seed).spawn(4)  # the first three as before
        return cls(*(np.random.Generator(np.random.PCG64(c)) for c in children))
