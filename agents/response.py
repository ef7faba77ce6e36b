"""What users do with a served slate, and the random numbers their responses take.

Responses use their own streams (common random numbers): two policies run with the same seed face
the same coin flips wherever they show the same thing. ``sim.responses`` gives one uniform per
slot; ``sim.responses.continue`` is drawn only by click models that need a second uniform per slot
(:attr:`agents.click_model.ClickModel.needs_extra_uniforms`), so the others keep their draws.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agents.streams import Streams


@dataclass
class ResponseRandomness:
    """The generators user responses draw from (part of a run's mutable state)."""

    clicks: np.random.Generator  # one uniform per slot shown (stream ``sim.responses``)
    extra: np.random.Generator  # a second one, for click models that need it

    @classmethod
    def from_streams(cls, streams: Streams) -> ResponseRandomness:
        return cls(
            clicks=streams.generator("sim.responses"),
            extra=streams.generator("sim.responses.continue"),
        )


@dataclass(frozen=True)
class Response:
    """Users' response to a batch of slates (arrays row-aligned with the slates, ``(n, K)``)."""

    relevance: np.ndarray  # float64 true relevance of each shown item (metrics only)
    clicked: np.ndarray  # bool
