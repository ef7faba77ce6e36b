"""Shared fixtures: tiny worlds that run in about a second."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from experiments.run import run

TINY: dict[str, Any] = {
    "seed": 0,
    "world": {"n_users": 300, "n_items": 150},
    "policy": {
        "name": "greedy",
        "scorer": "als",
        "selector": "greedy",
        "slate_size": 5,
        "n_candidates": 12,
        "factors": 8,
        "iterations": 5,
    },
    "sim": {
        "days": 4,
        "retrain_every_hours": 24,
        "train_hours": 1.0,
        "snapshot_every_hours": 24,
        "max_batch_requests": 8192,
    },
    "metrics": {"homogenization_pairs": 300},
    "report": {"enabled": False},
    "progress": False,
}


def tiny_config(**overrides: Any) -> dict[str, Any]:
    """A copy of the tiny config; ``overrides`` use dotted keys, e.g. ``{"policy.epsilon": 0.3}``."""
    cfg = copy.deepcopy(TINY)
    for dotted, value in overrides.items():
        node = cfg
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return cfg


@pytest.fixture
def run_tiny(tmp_path: Path):
    """``run_tiny(name, **dotted_overrides) -> run dir`` runs a tiny simulation under tmp_path."""

    def _run(name: str = "run", **overrides: Any) -> Path:
        out = tmp_path / name
        run(tiny_config(**{k.replace("__", "."): v for k, v in overrides.items()}), out)
        return out

    return _run
