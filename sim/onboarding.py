"""The user's side of onboarding (:mod:`policies.onboarding`): answering the screens.

A new user's first request starts with ``q`` screens of ``k`` items. On each screen the user
clicks as on a slate — :meth:`agents.world.World.respond` on the true attraction, with the
world's click model (position bias within the screen) —, then leaves with probability
``drop_per_screen`` = d or goes on. Screen 0 is always answered; the answers of every screen
seen are kept; the user *completed* the elicitation when they went on after every one of the
``q`` screens (the last "go on" is finishing it), so ``P(completed) = (1 − d)^q`` and
``E[screens answered] = Σ_{s<q} (1 − d)^s``.

Randomness, from streams of its own (no existing stream draws more): clicks from
``sim.onboarding.responses`` (and ``sim.onboarding.responses.continue`` for click models that
need a second uniform), leaving from ``sim.onboarding.drop``. Every elicitation draws the same
amounts — ``q·k`` click uniforms for all ``q`` screens, used or not, and ``q`` leave uniforms —
in request order, so how requests are split into batches changes nothing. Answers are not
consumption: they move neither preferences (drift) nor popularity (conformity).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from agents.response import ResponseRandomness
from agents.streams import Streams
from agents.world import World

ONBOARDING_FILE = "onboarding.parquet"  # under the run's logs/
ONBOARDING_SCHEMA: dict[str, pl.DataType] = {
    "request_id": pl.Int64(),
    "t": pl.Float64(),
    "user_id": pl.Int32(),
    "screen": pl.Int16(),
    "position": pl.Int16(),
    "item_id": pl.Int32(),
    "clicked": pl.Boolean(),
    "completed": pl.Boolean(),
}


@dataclass
class OnboardingRandomness:
    """The generators new users' answers draw from (part of a run's mutable state)."""

    responses: ResponseRandomness  # clicks on the screens
    drop: np.random.Generator  # one uniform per screen: leave after it?

    @classmethod
    def from_streams(cls, streams: Streams) -> OnboardingRandomness:
        return cls(
            responses=ResponseRandomness(
                clicks=streams.generator("sim.onboarding.responses"),
                extra=streams.generator("sim.onboarding.responses.continue"),
            ),
            drop=streams.generator("sim.onboarding.drop"),
        )


@dataclass(frozen=True)
class Answers:
    """``m`` users' answers: ``clicked`` (m, q, k) on every screen (only the first
    ``n_answered`` (m,) were answered; later ones are False), ``completed`` (m,)."""

    clicked: np.ndarray
    n_answered: np.ndarray
    completed: np.ndarray


def elicit(
    world: World,
    user_ids: np.ndarray,
    times: np.ndarray,
    screens: np.ndarray,
    drop_per_screen: float,
    rand: OnboardingRandomness,
) -> Answers:
    """The answers of ``user_ids`` (requests in order, at ``times``) to ``screens`` (q, k)."""
    q, k = screens.shape
    m = user_ids.size
    shown = np.broadcast_to(screens, (m, q, k)).reshape(m * q, k)
    response = world.respond(
        np.repeat(user_ids, q), np.repeat(times, q), shown, rand.responses, consumed=False
    )
    clicked = response.clicked.reshape(m, q, k)
    goes_on = rand.drop.random((m, q)) >= drop_per_screen  # (m, q): after screen s
    # Screens 0..s are answered when the user went on after each of 0..s−1.
    reached = np.concatenate([np.ones((m, 1), dtype=bool), goes_on[:, :-1]], axis=1)
    answered = np.logical_and.accumulate(reached, axis=1)
    clicked = clicked & answered[:, :, None]
    return Answers(clicked, answered.sum(axis=1), goes_on.all(axis=1))


def onboarding_frame(columns: dict[str, np.ndarray]) -> pl.DataFrame:
    """The ``logs/onboarding.parquet`` table from :meth:`policies.onboarding.Onboarding.table`."""
    return pl.DataFrame(columns, schema=ONBOARDING_SCHEMA)
