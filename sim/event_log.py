"""The event log: Parquet tables partitioned by retrain round, written atomically.

Tables under ``<run>/logs/``:

* ``impressions`` — one row per slot shown: the DESIGN.md contract plus
  ``prefix_propensity`` (P(slots 0..position exactly as shown | context)),
  ``slate_propensity`` (P(the whole slate | context), the same on every row of a request) and
  ``propensity_method`` (``exact``; ``exact_sequential_mc_marginal``: slate/prefix exact, marginal
  ``propensity`` Monte-Carlo past slot 0; ``monte_carlo``: all three estimated),
  ``intervention`` (``none``/``shuffle``/``swap``: whether this request's order was randomized,
  :mod:`policies.intervention`) and ``original_position`` (the slot the ranking gave the item
  before any intervention; equal to ``position`` otherwise), ``rerank_score`` (the learned
  reranker's predicted click probability of the item at its reference slot; NaN without one,
  :mod:`policies.learned_rerank`), and how the serving system
  (:mod:`sim.serving_system`) handled the request: ``latency_ms``, ``degraded``
  (``none``/``budget``/``overload``), ``cache_hit`` and ``slate_age_h``; ``model_version`` and
  ``propensity_method`` are per request (a cache hit keeps those of the draw that filled it);
* ``candidates`` — every retrieved item, shown or not ("the road not taken"), with its rank,
  score, ``shown`` and ``show_probability`` (P(anywhere in the slate | context)), its ``source``
  (the retriever that produced it) and ``retriever_rank`` (its rank in that retriever's own list:
  ``rank`` for a single retriever, see :mod:`policies.retrieval`); a degraded request logs its
  fallback list, a cache hit nothing (no retrieval happened);
* ``targets`` (off-policy evaluation runs only) — for each shown slot and each shadow target
  policy, the target's marginal and prefix probability of the logged slate on the logged context
  (:mod:`policies.replay`);
* ``truth`` — true relevance of each shown slot. Written by the simulator for metrics only:
  policies train from ``impressions``/``candidates`` and never read it.

A round is buffered as numpy arrays and written once (temp name, then rename), so a reader never
sees a half-written partition.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from policies.intervention import INTERVENTIONS
from policies.models import SOURCES
from policies.policy import SlateBatch
from policies.propensity import METHODS
from sim.atomic_write import atomic_path, write_error
from sim.serving_system import DEGRADED, RequestOutcome

SOURCE_DTYPE = pl.Enum(list(SOURCES))
METHOD_DTYPE = pl.Enum(list(METHODS))
INTERVENTION_DTYPE = pl.Enum(list(INTERVENTIONS))
DEGRADED_DTYPE = pl.Enum(list(DEGRADED))

IMPRESSIONS_SCHEMA: dict[str, pl.DataType] = {
    "request_id": pl.Int64(),
    "t": pl.Float64(),
    "user_id": pl.Int32(),
    "item_id": pl.Int32(),
    "position": pl.Int16(),
    "model_version": pl.Int32(),
    "policy": pl.Categorical(),
    "score": pl.Float32(),
    "propensity": pl.Float64(),
    "clicked": pl.Boolean(),
    "source": SOURCE_DTYPE,
    "prefix_propensity": pl.Float64(),
    "slate_propensity": pl.Float64(),
    "propensity_method": METHOD_DTYPE,
    "intervention": INTERVENTION_DTYPE,
    "original_position": pl.Int16(),
    "latency_ms": pl.Float32(),
    "degraded": DEGRADED_DTYPE,
    "cache_hit": pl.Boolean(),
    "slate_age_h": pl.Float32(),
    "rerank_score": pl.Float32(),
}
CANDIDATES_SCHEMA: dict[str, pl.DataType] = {
    "request_id": pl.Int64(),
    "item_id": pl.Int32(),
    "score": pl.Float32(),
    "rank": pl.Int16(),
    "shown": pl.Boolean(),
    "show_probability": pl.Float64(),
    "source": SOURCE_DTYPE,
    "retriever_rank": pl.Int16(),
}
TRUTH_SCHEMA: dict[str, pl.DataType] = {
    "request_id": pl.Int64(),
    "position": pl.Int16(),
    "relevance": pl.Float64(),
}
TARGETS_SCHEMA: dict[str, pl.DataType] = {
    "request_id": pl.Int64(),
    "position": pl.Int16(),
    "target": pl.Categorical(),
    "target_marginal": pl.Float64(),
    "target_prefix": pl.Float64(),
}
TABLES = ("impressions", "candidates", "truth")


def partition_path(root: Path, table: str, round_idx: int) -> Path:
    return root / table / f"round={round_idx:04d}" / "part.parquet"


def write_parquet_atomic(df: pl.DataFrame, path: Path) -> None:
    """Write to a temp name in the same folder, then rename (atomic on POSIX); on failure no
    temp file is left and the ``OSError`` names ``path`` (:mod:`sim.atomic_write`)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise write_error(exc, path.parent) from exc
    buffer = io.BytesIO()  # encoded in memory: a failed write is then an OSError with its errno
    df.write_parquet(buffer, statistics=True)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getbuffer())


@dataclass
class EventLog:
    """Buffers served batches for the current round; :meth:`write_round` flushes them."""

    root: Path
    _buffers: dict[str, list[pl.DataFrame]] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self._buffers = {t: [] for t in TABLES}

    @classmethod
    def continuing(cls, root: Path, buffers: dict[str, list[pl.DataFrame]]) -> EventLog:
        """A log under ``root`` that buffers into (and writes from) ``buffers``, e.g. a paused
        run's unwritten round (:attr:`sim.state.SimulationState.log_buffers`)."""
        log = cls(root)
        log._buffers = buffers
        return log

    def append(
        self,
        request_ids: np.ndarray,
        times: np.ndarray,
        user_ids: np.ndarray,
        batch: SlateBatch,
        clicked: np.ndarray,
        relevance: np.ndarray,
        outcome: RequestOutcome | None = None,
    ) -> None:
        """Add one served batch (``n`` requests × ``K`` slots) to the round buffer, with how
        the serving system handled each request (``outcome``; ``None``: all model-served,
        latency unknown = NaN)."""
        n, k = batch.items.shape
        if outcome is None:
            outcome = RequestOutcome.model_served(np.full(n, np.nan))
        method = batch.propensity_method
        method_codes = (
            np.full(n * k, METHODS.index(method), dtype=np.uint32)
            if isinstance(method, str)
            else np.repeat(np.asarray(method).astype(np.uint32), k)
        )
        rid = np.repeat(request_ids.astype(np.int64), k)
        position = np.tile(np.arange(k, dtype=np.int16), n)
        impressions = pl.DataFrame(
            {
                "request_id": rid,
                "t": np.repeat(times, k),
                "user_id": np.repeat(user_ids.astype(np.int32), k),
                "item_id": batch.items.ravel().astype(np.int32),
                "position": position,
                "model_version": np.repeat(
                    np.broadcast_to(np.asarray(batch.model_version, dtype=np.int32), (n,)), k
                ),
                "score": batch.score.ravel(),
                "propensity": batch.propensity.ravel().astype(np.float64),
                "clicked": clicked.ravel(),
                "source": batch.source.ravel().astype(np.uint32),
                "prefix_propensity": batch.prefix_propensity.ravel().astype(np.float64),
                "slate_propensity": np.repeat(batch.slate_propensity.astype(np.float64), k),
                "intervention": np.zeros(n * k, dtype=np.uint32)
                if batch.intervention is None
                else np.repeat(batch.intervention.astype(np.uint32), k),
                "original_position": position
                if batch.original_position is None
                else batch.original_position.ravel().astype(np.int16),
                "propensity_method": method_codes,
                "latency_ms": np.repeat(outcome.latency_ms.astype(np.float32), k),
                "degraded": np.repeat(outcome.degraded.astype(np.uint32), k),
                "cache_hit": np.repeat(outcome.cache_hit, k),
                "slate_age_h": np.repeat(outcome.slate_age_h.astype(np.float32), k),
                "rerank_score": np.full(n * k, np.nan, dtype=np.float32)
                if batch.rerank_score is None
                else batch.rerank_score.ravel().astype(np.float32),
            }
        ).with_columns(
            pl.lit(batch.policy_name, dtype=pl.Categorical()).alias("policy"),
            pl.col("propensity_method").replace_strict(
                list(range(len(METHODS))), list(METHODS), return_dtype=METHOD_DTYPE
            ),
            pl.col("degraded").replace_strict(
                list(range(len(DEGRADED))), list(DEGRADED), return_dtype=DEGRADED_DTYPE
            ),
            pl.col("source").replace_strict(
                list(range(len(SOURCES))), list(SOURCES), return_dtype=SOURCE_DTYPE
            ),
            pl.col("intervention").replace_strict(
                list(range(len(INTERVENTIONS))),
                list(INTERVENTIONS),
                return_dtype=INTERVENTION_DTYPE,
            ),
        )
        self._buffers["impressions"].append(impressions.select(list(IMPRESSIONS_SCHEMA)))
        self._buffers["truth"].append(
            pl.DataFrame(
                {"request_id": rid, "position": position, "relevance": relevance.ravel()},
                schema=TRUTH_SCHEMA,
            )
        )
        if batch.shadow:
            frames = self._buffers.setdefault("targets", [])
            for name, (marginal, prefix) in batch.shadow.items():
                frames.append(
                    pl.DataFrame(
                        {
                            "request_id": rid,
                            "position": position,
                            "target": [name] * rid.size,
                            "target_marginal": marginal.ravel().astype(np.float64),
                            "target_prefix": prefix.ravel().astype(np.float64),
                        },
                        schema=TARGETS_SCHEMA,
                    )
                )
        c = batch.candidates.shape[1]
        columns = {
            "request_id": np.repeat(request_ids.astype(np.int64), c),
            "item_id": batch.candidates.ravel().astype(np.int32),
            "score": batch.candidate_scores.ravel().astype(np.float32),
            "rank": np.tile(np.arange(c, dtype=np.int16), n),
            "shown": batch.candidate_shown.ravel(),
            "show_probability": batch.candidate_show_probability.ravel(),
            "source": batch.candidate_source.ravel().astype(np.uint32),
            "retriever_rank": np.tile(np.arange(c, dtype=np.int16), n)
            if batch.candidate_retriever_rank is None
            else batch.candidate_retriever_rank.ravel().astype(np.int16),
        }
        if batch.candidate_logged is not None:
            keep = batch.candidate_logged.ravel()
            columns = {name: values[keep] for name, values in columns.items()}
        self._buffers["candidates"].append(
            pl.DataFrame(columns).with_columns(
                pl.col("source").replace_strict(
                    list(range(len(SOURCES))), list(SOURCES), return_dtype=SOURCE_DTYPE
                )
            )
        )

    def write_round(self, round_idx: int) -> dict[str, Path]:
        """Write the buffered round as one partition per table (also when empty) and clear."""
        schemas = {
            "impressions": IMPRESSIONS_SCHEMA,
            "candidates": CANDIDATES_SCHEMA,
            "truth": TRUTH_SCHEMA,
            "targets": TARGETS_SCHEMA,
        }
        paths = {}
        for table, frames in self._buffers.items():
            df = pl.concat(frames) if frames else pl.DataFrame(schema=schemas[table])
            path = partition_path(self.root, table, round_idx)
            write_parquet_atomic(df.cast(schemas[table]), path)
            paths[table] = path
            frames.clear()
        return paths


def scan_table(root: Path, table: str) -> pl.LazyFrame:
    """Lazy scan of all round partitions of one table (with the ``round`` partition column).

    Every read of the partitioned log goes through here; filter on ``round`` to read single
    partitions (the filter is pushed into the scan, so other rounds' files are not opened).
    """
    return pl.scan_parquet(root / table / "**" / "*.parquet", hive_partitioning=True)


def logged_rounds(root: Path, table: str) -> list[int]:
    """The rounds with a written partition of ``table``, ascending (empty when none)."""
    folder = root / table
    if not folder.is_dir():
        return []
    found = (p.parent.name.removeprefix("round=") for p in folder.glob("round=*/part.parquet"))
    return sorted(int(r) for r in found)
