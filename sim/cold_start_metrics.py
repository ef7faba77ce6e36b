"""Cold-start metrics: how the items and users that arrive during a run are served.

Per snapshot window (columns of ``metrics.parquet``, :data:`NEWCOMER_COLUMNS`; every one NaN in
every window of a world without arrivals, so a fixed world's table only gains NaN columns):

* ``new_item_exposure_share`` — impressions of *new* items ÷ all impressions, where an
  impression's item is new when it arrived during the run (``arrival_t > 0``) less than
  ``metrics.new_item_days`` days before the impression; NaN when no item arrives in the run;
* ``new_item_ctr`` — clicks / impressions over those impressions (the cold-item CTR); NaN in a
  window without one;
* ``new_user_utility`` — mean true relevance of the items shown to requests that are among the
  first ``metrics.new_user_sessions`` requests of a user who arrived during the run
  (``UserPopulation.arrival_t > 0``; one request is one session); NaN when no user arrives or
  none of those requests falls in the window;
* ``established_utility`` — the same over every other request: what the cold-start layers cost
  everyone else; NaN only in a world without arrivals (with item arrivals alone it is the
  window's ``utility``);
* ``new_items_arrived`` — items whose ``arrival_t`` falls in the window (NaN when none arrives
  in the whole run).

Per run (:func:`measure_cold_start`; ``summary.json``'s ``cold_start`` block,
``cold_start_items.parquet`` and ``cold_start_survival.parquet``):

* time from arrival to first impression and to first click of every item that arrives during
  the run, as Kaplan–Meier curves: an item not shown (clicked) by the end of the run or by its
  departure is *censored* at that time, not dropped — dropping it would keep only the fast
  ones. The medians and the shares reached within 24 h and 7 days are read off the curves;
* onboarding (``logs/onboarding``, written by the onboarding layer): completion rate (users who
  answered every screen ÷ users shown one) and mean screens answered per onboarded user;
* the hand-off jump (``logs/item_ranks.parquet``, one row per new item per fitted model): an
  item's hand-off model is the first ``model_version`` at which the item has a training click
  (``n_clicks ≥ 1``) while the item's previous row (its previous model) had none — the model
  in which learned factors first exist for it. ``jump_rank`` is its ``rank_pct`` there minus at
  the previous model; ``jump_ctr`` its CTR in impressions served by the hand-off model minus by
  the previous one (NaN unless both served it at least :data:`MIN_HANDOFF_IMPRESSIONS` times);
* the content map's last fit (``logs/content_map.parquet``): R² against the true factors, its
  ceiling, the content noise and the cross-validated R².

Every input written by a cold-start layer may be absent: its keys are then null.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from agents.catalog import ItemMetadata
from sim.event_log import scan_table

HOURS_PER_DAY = 24.0
NEWCOMER_COLUMNS = (
    "new_item_exposure_share",
    "new_item_ctr",
    "new_user_utility",
    "established_utility",
    "new_items_arrived",
)
MIN_HANDOFF_IMPRESSIONS = 20  # impressions per model below which an item's CTR is left NaN
REACH_HOURS = {"24h": 24.0, "7d": 7 * 24.0}  # "share reached within" horizons of the summary
EVENTS = ("first_impression", "first_click")
ONBOARDING_FILE = "onboarding.parquet"
ITEM_RANKS_FILE = "item_ranks.parquet"
CONTENT_MAP_FILE = "content_map.parquet"
CONTENT_MAP_KEYS = ("r2_subspace", "r2_true", "r2_ceiling", "r2_signal", "content_noise", "cv_r2")
ITEMS_FILE = "cold_start_items.parquet"  # per new item (run folder)
SURVIVAL_FILE = "cold_start_survival.parquet"  # the Kaplan–Meier steps (run folder)
ITEMS_SCHEMA: dict[str, pl.DataType] = {
    "item_id": pl.Int32(),
    "arrival_t": pl.Float64(),
    "end_t": pl.Float64(),  # min(depart_t, end of run): where an unreached item is censored
    "first_impression_h": pl.Float64(),  # hours from arrival; null when never shown
    "first_click_h": pl.Float64(),  # hours from arrival; null when never clicked
    "impressions": pl.Int64(),
    "clicks": pl.Int64(),
    "handoff_version": pl.Int32(),  # null without a hand-off
    "jump_rank": pl.Float64(),
    "jump_ctr": pl.Float64(),
}
SURVIVAL_SCHEMA: dict[str, pl.DataType] = {
    "event": pl.String(),  # first_impression | first_click
    "hours": pl.Float64(),  # a distinct event time
    "at_risk": pl.Int64(),  # items neither reached nor censored before it
    "events": pl.Int64(),  # items reached at it
    "survival": pl.Float64(),  # S(hours): share not yet reached, just after it
}


# ---------------------------------------------------------------- Kaplan–Meier


@dataclass(frozen=True)
class Survival:
    """A Kaplan–Meier curve: ``survival[j]`` = S(t) for ``time[j] ≤ t < time[j+1]``; 1 before
    ``time[0]``. ``follow_up`` is the longest duration observed (event or censoring): the curve
    says nothing beyond it."""

    time: np.ndarray  # distinct event times, ascending
    at_risk: np.ndarray
    events: np.ndarray
    survival: np.ndarray
    follow_up: float

    def at(self, t: float) -> float:
        """S(t); NaN past the follow-up unless the curve already reached 0."""
        j = int(np.searchsorted(self.time, t, side="right"))
        s = 1.0 if j == 0 else float(self.survival[j - 1])
        return s if t <= self.follow_up or s == 0.0 else math.nan

    def restricted_mean(self, tau: float) -> float:
        """The restricted mean time to the event within ``tau``: ``∫₀^τ S(t) dt`` (an item never
        reached counts ``tau``). Defined whenever the curve is followed up to ``tau`` (or reached
        0 before), unlike the median, which needs half of the items reached — so it compares
        arms where most items are never clicked. NaN otherwise."""
        if not (tau <= self.follow_up or (self.survival.size and self.survival[-1] == 0.0)):
            return math.nan
        inside = self.time < tau
        knots = np.concatenate([[0.0], self.time[inside], [tau]])
        levels = np.concatenate([[1.0], self.survival[inside]])
        return float(np.sum(np.diff(knots) * levels))

    @property
    def median(self) -> float:
        """The smallest event time with S ≤ 0.5; NaN when the curve stays above one half.
        (With a rounding tolerance: a product such as 0.8 · 0.75 · 5/6 is one half exactly but
        comes out a hair above it in floating point.)"""
        below = np.flatnonzero(self.survival <= 0.5 + 1e-12)
        return float(self.time[below[0]]) if below.size else math.nan


def kaplan_meier(duration: np.ndarray, observed: np.ndarray) -> Survival:
    """The product-limit estimate ``S(t) = Π_{t_j ≤ t} (1 − d_j / n_j)`` over the distinct event
    times ``t_j`` (``d_j`` events at ``t_j``, ``n_j`` durations ≥ ``t_j``: an item censored at
    ``t_j`` is still at risk there)."""
    duration = np.asarray(duration, dtype=np.float64)
    observed = np.asarray(observed, dtype=bool)
    ordered = np.sort(duration)
    time, events = np.unique(duration[observed], return_counts=True)
    at_risk = ordered.size - np.searchsorted(ordered, time, side="left")
    survival = np.cumprod(1.0 - events / np.maximum(at_risk, 1))
    follow_up = float(ordered[-1]) if ordered.size else math.nan
    return Survival(time, at_risk.astype(np.int64), events.astype(np.int64), survival, follow_up)


# ---------------------------------------------------------------- per window


class NewcomerWindows:
    """The :data:`NEWCOMER_COLUMNS` sums, folded in one round at a time (rounds in order).

    Counts each user's requests across rounds, so "the first k requests" needs no second pass.
    """

    def __init__(
        self,
        n_windows: int,
        snapshot_every_hours: float,
        item_arrival_t: np.ndarray,
        user_arrival_t: np.ndarray | None,
        new_item_days: float = 7.0,
        new_user_sessions: int = 5,
    ) -> None:
        self.n_windows = n_windows
        self.snapshot_every_hours = snapshot_every_hours
        self.item_arrival_t = np.asarray(item_arrival_t, dtype=np.float64)
        users = np.zeros(0) if user_arrival_t is None else np.asarray(user_arrival_t, float)
        self.user_arrival_t = users
        self.new_item_hours = new_item_days * HOURS_PER_DAY
        self.new_user_sessions = new_user_sessions
        self.item_arrivals = bool(np.any(self.item_arrival_t > 0))
        self.user_arrivals = bool(np.any(users > 0))
        self.requests_seen = np.zeros(users.size, dtype=np.int64)
        zeros = lambda: np.zeros(n_windows)  # noqa: E731
        self.impressions, self.new_impressions, self.new_clicks = zeros(), zeros(), zeros()
        self.new_user_rel, self.new_user_n = zeros(), zeros()
        self.established_rel, self.established_n = zeros(), zeros()

    @property
    def living(self) -> bool:
        return self.item_arrivals or self.user_arrivals

    def add(
        self,
        w: np.ndarray,
        t: np.ndarray,
        item: np.ndarray,
        user: np.ndarray,
        clicked: np.ndarray,
        relevance: np.ndarray,
        starts: np.ndarray,
    ) -> None:
        """One round's rows, sorted by request then position (``starts``: each request's first
        row; request ids grow with time, so this order is each user's order of requests)."""
        if not self.living or w.size == 0:
            return
        n_windows = self.n_windows
        self.impressions += np.bincount(w, minlength=n_windows)
        arrival = self.item_arrival_t[item]
        age = t - arrival
        new = (arrival > 0) & (age >= 0) & (age < self.new_item_hours)
        self.new_impressions += np.bincount(w[new], minlength=n_windows)
        self.new_clicks += np.bincount(w[new & clicked], minlength=n_windows)
        newcomer = np.zeros(w.size, dtype=bool)
        if self.user_arrivals:
            new_request = self._new_user_requests(user[starts].astype(np.int64))
            is_start = np.zeros(w.size, dtype=bool)
            is_start[starts] = True
            newcomer = new_request[np.cumsum(is_start) - 1]  # each row's request
        self.new_user_rel += np.bincount(w[newcomer], relevance[newcomer], minlength=n_windows)
        self.new_user_n += np.bincount(w[newcomer], minlength=n_windows)
        rest = ~newcomer
        self.established_rel += np.bincount(w[rest], relevance[rest], minlength=n_windows)
        self.established_n += np.bincount(w[rest], minlength=n_windows)

    def _new_user_requests(self, req_user: np.ndarray) -> np.ndarray:
        """Which of a round's requests (in time order; ``req_user``: their users) are among
        the first ``new_user_sessions`` of a user who arrived during the run."""
        # rank of each request among its user's requests so far: earlier rounds + this one
        order = np.argsort(req_user, kind="stable")
        sorted_user = req_user[order]
        first = np.flatnonzero(np.r_[True, sorted_user[1:] != sorted_user[:-1]])
        runs = np.diff(np.r_[first, sorted_user.size])
        rank = np.empty(req_user.size, dtype=np.int64)
        rank[order] = np.arange(sorted_user.size) - np.repeat(first, runs)
        rank += self.requests_seen[req_user]
        self.requests_seen += np.bincount(req_user, minlength=self.requests_seen.size)
        return (self.user_arrival_t[req_user] > 0) & (rank < self.new_user_sessions)

    def columns(self) -> pl.DataFrame:
        """One row per window, :data:`NEWCOMER_COLUMNS`."""
        nan = np.full(self.n_windows, np.nan)
        arrived = nan
        if self.item_arrivals:
            a = self.item_arrival_t[self.item_arrival_t > 0]
            last = self.n_windows * self.snapshot_every_hours  # the windows' clipping, as in add
            w = np.clip(np.floor(a[a < last] / self.snapshot_every_hours), 0, self.n_windows - 1)
            arrived = np.bincount(w.astype(np.int64), minlength=self.n_windows).astype(float)
        return pl.DataFrame(
            {
                "new_item_exposure_share": _ratio(self.new_impressions, self.impressions)
                if self.item_arrivals
                else nan,
                "new_item_ctr": _ratio(self.new_clicks, self.new_impressions)
                if self.item_arrivals
                else nan,
                "new_user_utility": _ratio(self.new_user_rel, self.new_user_n)
                if self.user_arrivals
                else nan,
                "established_utility": _ratio(self.established_rel, self.established_n)
                if self.living
                else nan,
                "new_items_arrived": arrived,
            }
        )


# ---------------------------------------------------------------- per run


@dataclass(frozen=True)
class ColdStart:
    """What :func:`measure_cold_start` computes: the summary block and its two tables."""

    summary: dict[str, Any]
    items: pl.DataFrame  # ITEMS_SCHEMA, one row per item arriving during the run
    survival: pl.DataFrame  # SURVIVAL_SCHEMA, the Kaplan–Meier steps of both events


def measure_cold_start(
    log_root: Path,
    items: ItemMetadata,
    user_arrival_t: np.ndarray | None,
    horizon: float,
    new_item_days: float = 7.0,
    new_user_sessions: int = 5,
) -> ColdStart | None:
    """The run-level cold-start numbers (module docstring); None in a world without arrivals.
    ``horizon``: the run's last simulated hour. ``new_item_days`` / ``new_user_sessions`` (the
    per-window columns' settings) are recorded in the summary, for the reports to name them."""
    arrival = np.asarray(items.arrival_t, dtype=np.float64)
    users = np.zeros(0) if user_arrival_t is None else np.asarray(user_arrival_t, float)
    new_ids = np.flatnonzero((arrival > 0) & (arrival < horizon))
    if new_ids.size == 0 and not np.any(users > 0):
        return None
    per_model = _per_item_model(log_root, new_ids)
    table = _new_item_table(per_model, new_ids, arrival, np.asarray(items.depart_t), horizon)
    summary: dict[str, Any] = {
        "new_item_days": new_item_days,
        "new_user_sessions": new_user_sessions,
        "new_items": int(new_ids.size),
        "new_users": int(np.sum((users > 0) & (users < horizon))),
    }
    curves = []
    for event in EVENTS:
        reached = table[f"{event}_h"].to_numpy().astype(np.float64)
        observed = np.isfinite(reached)
        censor = (table["end_t"] - table["arrival_t"]).to_numpy()
        curve = kaplan_meier(np.where(observed, reached, censor), observed)
        summary[f"{event}_median_h"] = _num(curve.median)
        summary[f"{event}_rmst_7d_h"] = _num(curve.restricted_mean(REACH_HOURS["7d"]))
        for name, hours in REACH_HOURS.items():
            summary[f"{event}_within_{name}"] = _num(1.0 - curve.at(hours))
        summary[f"{event}_censored"] = int((~observed).sum())
        curves.append(
            pl.DataFrame(
                {
                    "event": [event] * curve.time.size,
                    "hours": curve.time,
                    "at_risk": curve.at_risk,
                    "events": curve.events,
                    "survival": curve.survival,
                },
                schema=SURVIVAL_SCHEMA,
            )
        )
    summary |= onboarding_summary(log_root)
    table, handoff = _with_handoffs(log_root, table, per_model)
    summary |= handoff
    summary |= content_map_summary(log_root)
    return ColdStart(summary, table, pl.concat(curves))


def _new_item_table(
    per_model: pl.DataFrame,
    new_ids: np.ndarray,
    arrival: np.ndarray,
    depart: np.ndarray,
    horizon: float,
) -> pl.DataFrame:
    """One row per new item: arrival, censoring time and first impression/click (hours after
    arrival), from its impressions per serving model (:func:`_per_item_model`)."""
    first = per_model.group_by("item_id").agg(
        pl.col("first_t").min(),
        pl.col("first_click_t").min(),
        pl.col("impressions").sum(),
        pl.col("clicks").sum(),
    )
    base = pl.DataFrame(
        {
            "item_id": new_ids.astype(np.int32),
            "arrival_t": arrival[new_ids],
            "end_t": np.minimum(depart[new_ids], horizon),
        }
    )
    return (
        base.join(first, on="item_id", how="left")
        .select(
            "item_id",
            "arrival_t",
            "end_t",
            (pl.col("first_t") - pl.col("arrival_t")).alias("first_impression_h"),
            (pl.col("first_click_t") - pl.col("arrival_t")).alias("first_click_h"),
            pl.col("impressions").fill_null(0),
            pl.col("clicks").fill_null(0),
        )
        .sort("item_id")
    )


def _per_item_model(log_root: Path, new_ids: np.ndarray) -> pl.DataFrame:
    """Impressions, clicks, first shown and first clicked hour of each new item per serving
    ``model_version`` (empty without a log)."""
    schema = {
        "item_id": pl.Int32,
        "model_version": pl.Int32,
        "impressions": pl.Int64,
        "clicks": pl.Int64,
        "first_t": pl.Float64,
        "first_click_t": pl.Float64,
    }
    if not (log_root / "impressions").is_dir() or new_ids.size == 0:
        return pl.DataFrame(schema=schema)
    return (
        scan_table(log_root, "impressions")
        .select("t", "item_id", "clicked", "model_version")
        .filter(pl.col("item_id").is_in(new_ids.astype(np.int32).tolist()))
        .group_by("item_id", "model_version")
        .agg(
            pl.len().alias("impressions"),
            pl.col("clicked").sum().alias("clicks"),
            pl.col("t").min().alias("first_t"),
            pl.col("t").filter(pl.col("clicked")).min().alias("first_click_t"),
        )
        .collect()
        .cast(schema)
        .sort("item_id", "model_version")
    )


def handoffs(ranks: pl.DataFrame) -> pl.DataFrame:
    """Per item of ``ranks`` (``item_ranks.parquet``) with a hand-off: ``item_id``,
    ``handoff_version``, ``previous_version`` and ``jump_rank`` — the first row with
    ``n_clicks ≥ 1`` whose previous row of the same item (its previous model) has
    ``n_clicks == 0``."""
    return (
        ranks.select("item_id", "model_version", "n_clicks", "rank_pct")
        .sort("item_id", "model_version")
        .with_columns(
            pl.col("model_version").shift(1).over("item_id").alias("previous_version"),
            pl.col("n_clicks").shift(1).over("item_id").alias("previous_clicks"),
            pl.col("rank_pct").shift(1).over("item_id").alias("previous_rank"),
        )
        .filter((pl.col("n_clicks") >= 1) & (pl.col("previous_clicks") == 0))
        .group_by("item_id")
        .agg(pl.all().sort_by("model_version").first())
        .select(
            pl.col("item_id").cast(pl.Int32),
            pl.col("model_version").cast(pl.Int32).alias("handoff_version"),
            pl.col("previous_version").cast(pl.Int32),
            (pl.col("rank_pct") - pl.col("previous_rank")).alias("jump_rank"),
        )
        .sort("item_id")
    )


def _with_handoffs(
    log_root: Path, table: pl.DataFrame, per_model: pl.DataFrame
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """``table`` with each item's hand-off version and jumps (``per_model``: the items'
    impressions and clicks per serving model), and the summary's hand-off keys (null without
    ``item_ranks.parquet``)."""
    path = log_root / ITEM_RANKS_FILE
    need = {"item_id", "model_version", "n_clicks", "rank_pct"}
    ranks = pl.read_parquet(path) if path.exists() else None
    if ranks is None or not need <= set(ranks.columns):
        table = table.with_columns(
            pl.lit(None, pl.Int32).alias("handoff_version"),
            pl.lit(None, pl.Float64).alias("jump_rank"),
            pl.lit(None, pl.Float64).alias("jump_ctr"),
        )
        keys = ("handoff_count", "handoff_median_abs_jump_rank", "handoff_median_jump_rank")
        out = dict.fromkeys(keys) | {"handoff_ctr_count": None, "handoff_median_jump_ctr": None}
        return table.select(list(ITEMS_SCHEMA)).cast(ITEMS_SCHEMA), out
    found = handoffs(ranks)
    served = per_model.select(
        "item_id",
        "model_version",
        pl.when(pl.col("impressions") >= MIN_HANDOFF_IMPRESSIONS)
        .then(pl.col("clicks") / pl.col("impressions"))
        .alias("ctr"),
    )
    after = served.rename({"model_version": "handoff_version", "ctr": "ctr_after"})
    before = served.rename({"model_version": "previous_version", "ctr": "ctr_before"})
    found = (
        found.join(after, on=["item_id", "handoff_version"], how="left")
        .join(before, on=["item_id", "previous_version"], how="left")
        .with_columns((pl.col("ctr_after") - pl.col("ctr_before")).alias("jump_ctr"))
    )
    table = table.join(
        found.select("item_id", "handoff_version", "jump_rank", "jump_ctr"),
        on="item_id",
        how="left",
    )
    jump = found["jump_rank"].drop_nulls().to_numpy()
    jump_ctr = found["jump_ctr"].drop_nulls().to_numpy()
    out = {
        "handoff_count": int(jump.size),
        "handoff_median_abs_jump_rank": _median(np.abs(jump)),
        "handoff_median_jump_rank": _median(jump),
        "handoff_ctr_count": int(jump_ctr.size),
        "handoff_median_jump_ctr": _median(jump_ctr),
    }
    return table.select(list(ITEMS_SCHEMA)).cast(ITEMS_SCHEMA).sort("item_id"), out


def read_onboarding(log_root: Path) -> pl.DataFrame | None:
    """``logs/onboarding.parquet`` or the round partitions ``logs/onboarding/round=*``; None
    when the run has neither."""
    single = log_root / ONBOARDING_FILE
    if single.exists():
        return pl.read_parquet(single)
    if any((log_root / "onboarding").glob("round=*/*.parquet")):
        return scan_table(log_root, "onboarding").collect()
    return None


def onboarding_summary(log_root: Path) -> dict[str, Any]:
    """``onboarding_users`` (users shown a screen), ``onboarding_completion_rate`` (users who
    completed ÷ onboarding_users) and ``onboarding_mean_screens`` (distinct screens shown per
    onboarded user); null without an onboarding log."""
    log = read_onboarding(log_root)
    keys = ("onboarding_users", "onboarding_completion_rate", "onboarding_mean_screens")
    if log is None or log.height == 0:
        return dict.fromkeys(keys)
    per_user = log.group_by("user_id").agg(
        pl.col("completed").any().alias("completed"), pl.col("screen").n_unique().alias("screens")
    )
    return {
        "onboarding_users": per_user.height,
        "onboarding_completion_rate": float(per_user["completed"].mean()),
        "onboarding_mean_screens": float(per_user["screens"].mean()),
    }


def content_map_summary(log_root: Path) -> dict[str, Any]:
    """The content map's last fit (largest ``model_version``): ``content_map_<key>`` for
    :data:`CONTENT_MAP_KEYS` and its ``content_map_model_version``; null without the file."""
    path = log_root / CONTENT_MAP_FILE
    out: dict[str, Any] = {f"content_map_{k}": None for k in ("model_version", *CONTENT_MAP_KEYS)}
    if not path.exists():
        return out
    fits = pl.read_parquet(path)
    if fits.height == 0 or "model_version" not in fits.columns:
        return out
    last = fits.sort("model_version").row(-1, named=True)
    out["content_map_model_version"] = int(last["model_version"])
    for key in CONTENT_MAP_KEYS:
        if key in last and last[key] is not None:
            out[f"content_map_{key}"] = _num(float(last[key]))
    return out


def _median(values: np.ndarray) -> float | None:
    return _num(float(np.median(values))) if values.size else None


def _num(value: float) -> float | None:
    """JSON-safe: NaN/inf become None."""
    return value if math.isfinite(value) else None


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.full(np.shape(num), np.nan)
    np.divide(num, den, out=out, where=np.asarray(den) > 0)
    return out
