"""Reading a finished run's files: the only inputs a report has.

A run directory holds ``summary.json``, ``metrics.parquet``, ``item_exposure.parquet`` (per-item
impressions and clicks per window, shown items only), ``config.yaml`` and ``logs/``
(``snapshots.parquet``: the windows; ``deployments.parquet``: one row per deployed model). Reports
never open the partitioned event log: what they need from it, the run writes beside it. A run
started by hydra also has ``.hydra/overrides.yaml`` (its command-line overrides).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import yaml

ITEM_EXPOSURE = "item_exposure.parquet"


class ReportError(Exception):
    """The directory is not a finished run (a required file is missing)."""


def require(path: Path) -> Path:
    """``path`` if it is a file, else :class:`ReportError` saying the run is not finished."""
    if not path.is_file():
        raise ReportError(f"not a finished run: {path} missing")
    return path


def window_bounds(run_dir: Path, metrics: pl.DataFrame) -> pl.DataFrame:
    """``window, t_start, t_end`` sorted by window, from ``logs/snapshots.parquet`` when present
    (the simulator's own schedule), else from ``metrics.parquet``."""
    snapshots = run_dir / "logs" / "snapshots.parquet"
    source = pl.read_parquet(snapshots) if snapshots.is_file() else metrics
    return source.select("window", "t_start", "t_end").sort("window")


def deployment_days(run_dir: Path) -> np.ndarray:
    """Simulated day at which each model version was deployed (``logs/deployments.parquet``),
    ascending; empty when the run deployed none or the file is missing."""
    path = run_dir / "logs" / "deployments.parquet"
    if not path.is_file():
        return np.empty(0)
    deployed = pl.read_parquet(path, columns=["t_deployed"])["t_deployed"].sort()
    return deployed.to_numpy() / 24.0


def has_item_exposure(run_dir: Path) -> bool:
    return (run_dir / ITEM_EXPOSURE).is_file()


def item_exposure(run_dir: Path, window: int, n_items: int) -> np.ndarray:
    """Impressions per catalog item in ``window`` (items never shown get 0), int64 of length
    ``n_items``, from ``item_exposure.parquet``.

    Raises
    ------
    ReportError
        When the file is missing or names an item outside the catalog.
    """
    path = require(run_dir / ITEM_EXPOSURE)
    rows = (
        pl.scan_parquet(path)
        .filter(pl.col("window") == window)
        .select("item_id", "impressions")
        .collect()
    )
    ids = rows["item_id"].to_numpy().astype(np.int64)
    if ids.size and (ids.min() < 0 or ids.max() >= n_items):
        raise ReportError(f"{path}: item_id outside the catalog of {n_items} items")
    counts = np.zeros(n_items, dtype=np.int64)
    counts[ids] = rows["impressions"].to_numpy()
    return counts


def read_overrides(run_dir: Path) -> list[str] | None:
    """The run's command-line overrides from hydra's ``.hydra/overrides.yaml`` (``[]`` for an
    empty file); None when the file is missing or unreadable (a run not started by hydra)."""
    path = Path(run_dir) / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return None
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    if data is None:
        return []
    return [str(o) for o in data] if isinstance(data, list) else None


# How each kind of input file is read in full (the check behind "which file is broken?").
_READERS: dict[str, Callable[[Path], Any]] = {
    ".parquet": pl.read_parquet,
    ".json": lambda p: json.loads(p.read_text(encoding="utf-8")),
    ".yaml": lambda p: yaml.safe_load(p.read_text(encoding="utf-8")),
    ".csv": pl.read_csv,
}


def find_unreadable(folder: Path) -> tuple[Path, BaseException] | None:
    """The first file under ``folder`` (Parquet, JSON, YAML, CSV; temp files skipped) that
    cannot be read in full, and why; None when every one reads. Run after a report failed, to
    name the truncated or corrupt file instead of showing a reader's traceback."""
    paths = sorted(  # shallowest first: a run's own files before its logs'
        (
            p
            for p in Path(folder).rglob("*")
            if p.suffix in _READERS and not p.name.startswith(".") and p.is_file()
        ),
        key=lambda p: (len(p.parts), p),
    )
    for path in paths:
        try:
            _READERS[path.suffix](path)
        except Exception as exc:
            return path, exc
    return None


class UnreadableFile(Exception):
    """An input file that cannot be read (truncated or corrupt): ``path`` and the reader's error."""

    def __init__(self, path: Path, error: BaseException) -> None:
        super().__init__(f"{path}: {error}")
        self.path, self.error = path, error


def check_log_partitions(run_dir: Path) -> None:
    """Raise :class:`UnreadableFile` for the first event-log partition
    (``logs/TABLE/round=NNNN/part.parquet``) whose Parquet footer cannot be read: a truncated
    partition (a full disk, a copy cut short) makes the run's data incomplete even though the
    page, built from the files written beside the log, would not notice. Reads footers only."""
    for path in sorted((Path(run_dir) / "logs").glob("*/round=*/*.parquet")):
        if path.name.startswith("."):
            continue
        try:
            pl.read_parquet_schema(path)
        except Exception as exc:
            raise UnreadableFile(path, exc) from exc
