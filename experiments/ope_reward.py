"""The OPE study's reward: clicks, or conversions within a stated label horizon, as seen at an
evaluation time.

``ope.reward: click`` (the default) — a slot's reward is its click, known when it happens.

``ope.reward: conversion`` — a slot's reward is 1 when it was clicked and the click converted
within ``ope.label_horizon_hours`` (``h``) of the click (``t − click_t ≤ h`` in
``logs/conversions``, joined to the impression by ``request_id`` and ``item_id``); with
``ope.conversion_value: true`` it is the conversion's value (the item's price) instead, so the
policy value is revenue per request. A conversion later than ``h`` earns nothing: the reward is
defined by the horizon, which is what lets it be complete at a known time.

Labels arrive late. At evaluation time ``T`` the log holds only the conversions with ``t < T``
(the engine writes a round's conversions when it closes), so a click at ``c`` has its final label
once ``T ≥ c + h``. Every click of the evaluation window ``[t0, t_end)`` has it at
``T = t_end + h``. The study therefore runs every run (logging and truth) ``ceil(h / 24)`` days
past the window's end — the *label tail* — so the log holds every conversion that can count, and
scores the window's slates at ``T = t_end + Δ`` for each ``Δ`` in ``ope.elapsed_hours`` and at
``Δ = h`` (complete labels). Truth is the target's on-policy value over the same window with
complete labels. The window itself is unchanged (the last retrain period before ``sim.days``):
the tail only adds time after it, so what was served in the window does not move.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from agents.validation import is_number
from experiments.config import ConfigError
from sim.engagement_log import CONVERSIONS
from sim.event_log import scan_table

REWARDS = ("click", "conversion")
DEFAULT_ELAPSED_HOURS = (0.0, 6.0, 24.0, 72.0)


@dataclass(frozen=True)
class OpeReward:
    """``ope.reward``, ``ope.label_horizon_hours``, ``ope.conversion_value`` and
    ``ope.elapsed_hours``, validated (see the module docstring)."""

    kind: str = "click"
    label_horizon_hours: float = 72.0
    conversion_value: bool = False
    elapsed_hours: tuple[float, ...] = DEFAULT_ELAPSED_HOURS

    @classmethod
    def parse(cls, cfg: Mapping[str, Any]) -> OpeReward:
        """From a composed config (its ``ope`` and ``world`` nodes); one error line otherwise."""
        ope = cfg.get("ope") or {}
        kind = ope.get("reward", cls.kind)
        if kind not in REWARDS:
            raise ConfigError(f"ope.reward={kind!r}: must be one of {', '.join(REWARDS)}")
        h = ope.get("label_horizon_hours", cls.label_horizon_hours)
        if not is_number(h) or h <= 0:
            raise ConfigError(f"ope.label_horizon_hours={h!r}: must be a number of hours > 0")
        value = ope.get("conversion_value", cls.conversion_value)
        if not isinstance(value, bool):
            raise ConfigError(f"ope.conversion_value={value!r}: must be true or false")
        elapsed = ope.get("elapsed_hours", list(cls.elapsed_hours))
        if (
            not isinstance(elapsed, list | tuple)
            or not elapsed
            or not all(is_number(e) and e >= 0 for e in elapsed)
        ):
            raise ConfigError(
                f"ope.elapsed_hours={elapsed!r}: must be a non-empty list of hours >= 0 after "
                "the window's end"
            )
        if kind == "conversion":
            base = ((cfg.get("world") or {}).get("conversion") or {}).get("base", 0.0)
            if not (is_number(base) and base > 0):
                raise ConfigError(
                    f"ope.reward=conversion: needs world.conversion.base > 0, got "
                    f"world.conversion.base={base!r} (conversions are off)"
                )
        return cls(kind, float(h), value, tuple(float(e) for e in elapsed))

    @property
    def is_click(self) -> bool:
        return self.kind == "click"

    @property
    def tail_days(self) -> int:
        """Days the runs go on past the window so every window click's label is logged."""
        return 0 if self.is_click else math.ceil(self.label_horizon_hours / 24.0)

    @property
    def evaluation_hours(self) -> tuple[float, ...]:
        """The ``Δ`` (hours after the window's end) at which the window is scored: the stated
        ones and ``h`` (complete labels), ascending."""
        return tuple(sorted({*self.elapsed_hours, self.label_horizon_hours}))

    @property
    def unit(self) -> str:
        """What one unit of the policy value is, for axis titles."""
        if self.is_click:
            return "clicks"
        what = "conversion value" if self.conversion_value else "conversions"
        return f"{what} within {self.label_horizon_hours:g} h"


CLICKS = OpeReward()


def read_conversions(logs: Path, reward: OpeReward) -> pl.DataFrame:
    """The run's logged conversions that count (``t − click_t ≤ h``): request_id, item_id, t,
    value; empty for the click reward or a run without a conversion in its log."""
    schema = {"request_id": pl.Int64, "item_id": pl.Int32, "t": pl.Float64, "value": pl.Float64}
    if reward.is_click or not (logs / CONVERSIONS).is_dir():
        return pl.DataFrame(schema=schema)
    h = reward.label_horizon_hours
    found = (
        scan_table(logs, CONVERSIONS)
        .filter(pl.col("t") - pl.col("click_t") <= h)
        .select(list(schema))
        .collect()
    )
    if found.select("request_id", "item_id").is_duplicated().any():  # one draw per click
        raise RuntimeError(f"{logs}: a click converts twice in {CONVERSIONS}")
    return found


def slot_rewards(
    window: pl.DataFrame, conversions: pl.DataFrame, reward: OpeReward, seen_before: float
) -> np.ndarray:
    """(rows of ``window``,) reward of each shown slot as known at hour ``seen_before``.

    ``window``: impressions (``request_id``, ``item_id``, ``clicked``); ``conversions``: from
    :func:`read_conversions`. Click reward: the click. Conversion reward: a click whose
    conversion within ``h`` is logged before ``seen_before`` earns 1 (or its value); every
    other slot 0 — a conversion still to come looks like none, which is the early estimate's bias.
    """
    clicked = window["clicked"].to_numpy()
    if reward.is_click:
        return clicked.astype(np.float64)
    seen = conversions.filter(pl.col("t") < seen_before).select(
        "request_id", "item_id", pl.col("value").alias("_value"), pl.lit(True).alias("_seen")
    )
    joined = window.select("request_id", "item_id").join(
        seen, on=["request_id", "item_id"], how="left", maintain_order="left"
    )
    converted = joined["_seen"].fill_null(False).to_numpy() & clicked
    gain = joined["_value"].fill_null(0.0).to_numpy() if reward.conversion_value else 1.0
    return np.where(converted, gain, 0.0)


def label_shares(
    window: pl.DataFrame, conversions: pl.DataFrame, reward: OpeReward, seen_before: float
) -> tuple[float, float]:
    """``(open_share, seen_share)`` at hour ``seen_before``: the share of the window's clicks
    whose ``h``-hour label window is still open (what a platform knows then), and the share of
    the window's conversions within ``h`` already logged (known only in hindsight)."""
    clicks = window.filter(pl.col("clicked"))
    if reward.is_click or clicks.height == 0:
        return 0.0, 1.0
    open_share = float((clicks["t"] + reward.label_horizon_hours >= seen_before).mean())
    mine = conversions.join(clicks.select("request_id", "item_id"), on=["request_id", "item_id"])
    seen = float((mine["t"] < seen_before).mean()) if mine.height else 1.0
    return open_share, seen
