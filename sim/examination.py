"""Estimated vs true examination curve of a run: how well the log reveals position bias.

From the run's impressions (files only), every estimator the log supports:

* ``randomized`` — on requests whose order was shuffled (``intervention = shuffle``);
* ``swap`` — on swap-intervention requests plus the un-intervened ones as control;
* ``regression_em`` — on ordinary traffic (no intervention), with the logged model score as the
  relevance feature, from the newest ``EM_ROUNDS`` rounds (bounded work, the current ranker).

and, when the world's click model is position-based, the true ``θ_k / θ_0`` it used — a comparison
only a simulator can make. Written to ``examination.parquet`` (one row per method × slot).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from policies.position_bias import (
    theta_from_randomized,
    theta_from_swaps,
    theta_regression_em,
)
from sim.event_log import logged_rounds, scan_table

EM_ROUNDS = 3
EM_MAX_ROWS = 300_000  # the newest rows are enough; bounds the EM's cost on big runs
COLUMNS = ("method", "slot", "estimate", "std_error", "truth", "n_impressions")


def estimate_examination(
    log_root: Path, n_slots: int, true_theta: np.ndarray | None
) -> pl.DataFrame:
    """One row per (method, slot); empty when the log supports no estimator."""
    cols = ["request_id", "position", "clicked", "intervention", "original_position", "score"]
    impressions = scan_table(log_root, "impressions")
    frames = [
        impressions.filter(pl.col("round") == r).select(cols).collect()
        for r in logged_rounds(log_root, "impressions")
    ]
    truth = (
        np.full(n_slots, np.nan)
        if true_theta is None
        else np.asarray(true_theta, dtype=np.float64)[:n_slots] / true_theta[0]
    )
    rows: list[pl.DataFrame] = []

    def add(method: str, theta, se, counts) -> None:
        rows.append(
            pl.DataFrame(
                {
                    "method": [method] * n_slots,
                    "slot": np.arange(n_slots, dtype=np.int16),
                    "estimate": np.asarray(theta, dtype=np.float64),
                    "std_error": np.asarray(se, dtype=np.float64),
                    "truth": truth,
                    "n_impressions": np.asarray(counts, dtype=np.int64),
                }
            )
        )

    if not frames:
        return pl.DataFrame(schema={c: pl.Float64 for c in COLUMNS})
    # Interventions: their rows across the whole log (they are a small share of traffic).
    shuffled = pl.concat([f.filter(pl.col("intervention") == "shuffle") for f in frames])
    if shuffled.height and shuffled["position"].n_unique() == n_slots:
        est = theta_from_randomized(
            shuffled["position"].to_numpy(), shuffled["clicked"].to_numpy(), n_slots
        )
        add("randomized", est.theta, est.std_error, est.impressions)
    swaps = pl.concat([f.filter(pl.col("intervention").is_in(["swap", "none"])) for f in frames])
    if (swaps["intervention"] == "swap").any():
        # swapped_with: where the originally-first item ended up on swap requests, -1 otherwise
        first = swaps.filter(pl.col("original_position") == 0).select(
            "request_id",
            pl.when(pl.col("intervention") == "swap")
            .then(pl.col("position").cast(pl.Int64))
            .otherwise(-1)
            .alias("swapped_with"),
        )
        swaps = swaps.join(first, on="request_id", how="inner")
        est = theta_from_swaps(
            swaps["position"].to_numpy(),
            swaps["clicked"].to_numpy(),
            swaps["original_position"].to_numpy(),
            swaps["swapped_with"].to_numpy(),
            n_slots,
        )
        add("swap", est.theta, est.std_error, est.impressions)
    recent = pl.concat(frames[-EM_ROUNDS:]).filter(
        (pl.col("intervention") == "none") & pl.col("score").is_not_nan()
    )
    recent = recent.tail(EM_MAX_ROWS)
    if recent.height and recent["position"].n_unique() == n_slots and recent["clicked"].any():
        fit = theta_regression_em(
            recent["position"].to_numpy(),
            recent["clicked"].to_numpy(),
            recent["score"].to_numpy().astype(np.float64),
            n_slots,
        )
        counts = np.bincount(recent["position"].to_numpy(), minlength=n_slots)
        add("regression_em", fit.theta, np.full(n_slots, np.nan), counts)
    if not rows:
        return pl.DataFrame(schema={c: pl.Float64 for c in COLUMNS})
    return pl.concat(rows)
