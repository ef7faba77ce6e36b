"""The tables of users' engagement and of conversions (written only when they are on).

* ``logs/conversions/round=NNNN/part.parquet`` — the conversions that happened in round ``NNNN``
  (:data:`agents.conversions.CONVERSION_SCHEMA`: ``request_id`` and ``click_t`` of the click,
  ``t`` when it converted, ``value`` = the item's price), one partition per round, empty ones
  included, never rewritten;
* ``logs/engagement.parquet`` — one row per churn or return: ``user_id``, ``t`` (the day
  boundary, hours), ``event`` (``churn`` | ``return``);
* ``logs/engagement_days.parquet`` — one row per day boundary: the users active for the day,
  churned so far, churned and returned at it, the satisfaction distribution of the active users,
  and with satiation on, their mean total and top-topic satiation.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from agents.engagement import Engagement

CONVERSIONS = "conversions"
ENGAGEMENT_FILE = "engagement.parquet"
ENGAGEMENT_DAYS_FILE = "engagement_days.parquet"
EVENT_NAMES = {1: "churn", 2: "return"}
EVENTS_SCHEMA = {"user_id": pl.Int32, "t": pl.Float64, "event": pl.Enum(["churn", "return"])}


def engagement_frames(engagement: Engagement) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``(events, days)`` frames of an engagement state (see the module docstring)."""
    rows = engagement.events
    events = pl.DataFrame(
        {
            "user_id": np.concatenate([u for u, _, _ in rows]) if rows else np.empty(0, np.int32),
            "t": np.concatenate([np.full(u.size, t) for u, t, _ in rows]) if rows else np.empty(0),
            "event": np.concatenate([np.full(u.size, c) for u, _, c in rows])
            if rows
            else np.empty(0, np.int64),
        },
    ).with_columns(
        pl.col("user_id").cast(pl.Int32),
        pl.col("event").replace_strict(EVENT_NAMES, return_dtype=EVENTS_SCHEMA["event"]),
    )
    days = pl.DataFrame(engagement.days).with_columns(
        pl.col("t").cast(pl.Float64),
        pl.col("n_active", "n_churned", "churned_today", "returned_today").cast(pl.Int64),
    )
    return events, days
