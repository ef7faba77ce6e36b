"""The worked example of a user's own component (examples/explore_slot) runs end to end through
the CLI from its own folder: its selector is found through ``--config-dir`` and ``PYTHONPATH``,
validated before anything is written, and logs exact propensities."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "explore_slot"
TINY = [
    "world.n_users=200",
    "world.n_items=120",
    "sim.days=3",
    "policy.slate_size=5",
    "policy.n_candidates=12",
    "metrics.homogenization_pairs=200",
    "report.enabled=false",
]


def recloop(*args: str, cwd: Path, pythonpath: bool = True) -> subprocess.CompletedProcess[str]:
    code = "import sys; from experiments.cli import main; sys.argv[0] = 'recloop'; main()"
    env = {**os.environ, "HYDRA_FULL_ERROR": "0"}
    env["PYTHONPATH"] = str(EXAMPLE) if pythonpath else ""
    return subprocess.run(
        [sys.executable, "-c", code, *args], cwd=cwd, env=env, capture_output=True, text=True
    )


@pytest.mark.slow
def test_the_example_selector_runs_from_its_own_folder(tmp_path):
    out = tmp_path / "run"
    proc = recloop(
        "--config-dir", str(EXAMPLE / "configs"), "policy=explore_slot", *TINY,
        f"hydra.run.dir={out}", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    imp = pl.read_parquet(out / "logs" / "impressions" / "**" / "*.parquet")
    served = imp.filter(pl.col("model_version") >= 0)
    assert served.height > 0 and set(served["policy"].cast(pl.String)) == {"explore_slot"}
    # slots 0-3 greedy (propensity 1); slot 4 uniform over the 12 - 4 = 8 tail candidates
    head = served.filter(pl.col("position") < 4)
    tail = served.filter(pl.col("position") == 4)
    assert (head["propensity"] == 1.0).all()
    assert ((tail["propensity"] - 1 / 8).abs() < 1e-15).all()
    assert set(tail["source"].cast(pl.String)) == {"explore"}
    assert ((tail["slate_propensity"] - 1 / 8).abs() < 1e-15).all()


@pytest.mark.parametrize(
    ("args", "pythonpath", "expected"),
    [
        (["policy=explore_slot", "policy.selector.slots=0"], True, "policy.selector.slots=0"),
        (["policy=explore_slot"], False, "is its folder on PYTHONPATH?"),
        (["policy/selector=nope"], True, "policy/selector=nope: unknown policy/selector"),
    ],
)
def test_the_example_is_validated_before_anything_is_written(tmp_path, args, pythonpath, expected):
    out = tmp_path / "run"
    proc = recloop(
        "--config-dir", str(EXAMPLE / "configs"), *args, *TINY, f"hydra.run.dir={out}",
        cwd=tmp_path, pythonpath=pythonpath,
    )  # fmt: skip
    assert proc.returncode == 2
    assert expected in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists()
