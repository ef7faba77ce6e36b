"""Named, independent random streams derived from one seed.

One ``seed`` → ``numpy.random.SeedSequence`` → one child per *name*. The child is keyed by a
stable hash of the name (not by spawn order), so adding a new component never shifts the draws of
an existing one.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Streams:
    """Factory of named ``numpy.random.Generator`` streams for one run seed."""

    seed: int

    def __post_init__(self) -> None:
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)):
            raise TypeError(f"seed must be an int, got {self.seed!r}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")

    def sequence(self, name: str) -> np.random.SeedSequence:
        return np.random.SeedSequence(int(self.seed), spawn_key=(zlib.crc32(name.encode()),))

    def generator(self, name: str) -> np.random.Generator:
        """A fresh generator for ``name``; the same name always gives the same stream."""
        return np.random.Generator(np.random.PCG64(self.sequence(name)))

    def int_seed(self, name: str) -> int:
        """A plain int seed for libraries that want one (``implicit`` crashes on RandomState)."""
        return int(self.sequence(name).generate_state(1, dtype=np.uint32)[0])
