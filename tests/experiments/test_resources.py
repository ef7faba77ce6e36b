"""Refuse what cannot fit: the peak memory/disk estimate, the refusal before anything is written,
the override key, and the estimate against measured peak RSS."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import HAVE_JOBLIB_LAUNCHER, TINY_OVERRIDES, run_recloop
from omegaconf import OmegaConf

import experiments.resources as resources
from experiments.cli import _check_resources, precheck
from experiments.config import ConfigError

HUGE = "world.n_users=1000000000"


def _cfgs(*overrides: str) -> list[dict]:
    plan = precheck(list(overrides))
    assert plan is not None
    return [OmegaConf.to_container(c, resolve=True) for c in plan.jobs]  # type: ignore[misc]


def test_huge_world_refused_in_one_line_before_anything_is_written(tmp_path: Path) -> None:
    run_dir = tmp_path / "out" / "run"
    done = run_recloop(HUGE, f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"recloop: error: {HUGE}: needs an estimated ")
    assert "GB of memory" in lines[0] and "is available (" in lines[0]
    assert "debug.skip_resource_check=true" in lines[0]
    assert list(tmp_path.iterdir()) == []  # no run folder, no .hydra, no outputs/


def test_the_check_itself_takes_well_under_a_second(capsys: pytest.CaptureFixture) -> None:
    plan = precheck([HUGE])
    assert plan is not None
    start = time.perf_counter()
    with pytest.raises(ConfigError, match=r"needs an estimated \d+\.\d GB of memory"):
        _check_resources(plan)
    assert time.perf_counter() - start < 0.25


def test_disk_refusal_names_the_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(resources, "free_disk", lambda _: 1000.0)
    with pytest.raises(
        ValueError, match=rf"of disk but 1\.0 kB is free under {re.escape(str(tmp_path))}"
    ):
        resources.check_resources(_cfgs(*TINY_OVERRIDES), tmp_path)


def test_big_runs_print_the_estimate_small_ones_do_not(tmp_path: Path) -> None:
    big = resources.estimate_resources(_cfgs("world.n_users=2000000", "sim.days=1")[0])
    assert big.memory > resources.BIG_BYTES
    if big.memory < resources.available_memory()[0]:
        line = resources.check_resources(_cfgs("world.n_users=2000000", "sim.days=1"), tmp_path)
        assert line is not None and line.startswith("estimated peak memory ")
    assert resources.check_resources(_cfgs(*TINY_OVERRIDES), tmp_path) is None


def test_free_disk_uses_the_nearest_existing_parent(tmp_path: Path) -> None:
    assert resources.free_disk(tmp_path / "a" / "b" / "c") > 0


def test_the_skip_key_is_validated() -> None:
    with pytest.raises(ConfigError, match=r"debug\.skip_resource_check=3: must be true or false"):
        precheck([*TINY_OVERRIDES, "debug.skip_resource_check=3"])


# A real subprocess whose machine has 1 MB: the tiny run is refused, and runs with the skip key.
LOW_MEMORY = (
    "import sys, experiments.resources as r; "
    "r.available_memory = lambda: (1e6, 'test limit'); "
    "from experiments.cli import main; sys.argv[0] = 'recloop'; main()"
)


def _low_memory_recloop(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", LOW_MEMORY, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "HYDRA_FULL_ERROR": "0"},
        timeout=300,
    )


@pytest.mark.slow
def test_skip_resource_check_lets_a_tiny_run_through(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    refused = _low_memory_recloop(*TINY_OVERRIDES, f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert refused.returncode == 2
    assert "but 1.0 MB is available (test limit)" in refused.stderr
    assert not run_dir.exists()
    ran = _low_memory_recloop(
        *TINY_OVERRIDES, "debug.skip_resource_check=true", f"hydra.run.dir={run_dir}", cwd=tmp_path
    )
    assert ran.returncode == 0, ran.stderr
    assert (run_dir / "summary.json").is_file()


def _peak_rss(args: list[str], cwd: Path) -> float:
    """Peak resident bytes of a real ``recloop`` subprocess: its own ``VmHWM`` (the high-water
    mark of its address space), read by the child as it exits. Not ``wait4``'s ``ru_maxrss``:
    Linux carries the parent's high-water mark over fork and exec, so a child of a big pytest
    worker would report the worker's size."""
    report = cwd / "vmhwm.txt"
    code = (
        "import atexit, sys\n"
        "def _hwm():\n"
        "    with open('/proc/self/status') as f:\n"
        "        line = next(x for x in f if x.startswith('VmHWM:'))\n"
        f"    open({str(report)!r}, 'w').write(line.split()[1])\n"
        "atexit.register(_hwm)\n"
        "from experiments.cli import main; sys.argv[0] = 'recloop'; main()\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    assert proc.returncode == 0
    return float(report.read_text()) * 1024.0  # kB


@pytest.mark.slow
@pytest.mark.parametrize(
    "overrides",
    [
        TINY_OVERRIDES,
        ("world.n_users=2000", "world.n_items=1000", "sim.days=2", "report.enabled=false"),
    ],
    ids=["300x150", "2000x1000"],
)
def test_estimate_is_within_the_stated_factor_of_measured_peak_rss(
    overrides: tuple[str, ...], tmp_path: Path
) -> None:
    args = [*overrides, "progress=false", f"hydra.run.dir={tmp_path / 'run'}"]
    measured = _peak_rss(args, tmp_path)
    estimate = resources.estimate_resources(_cfgs(*overrides)[0]).memory
    assert 1 / resources.STATED_FACTOR <= estimate / measured <= resources.STATED_FACTOR


def test_parallel_jobs_count_once_each_and_remote_ones_not_at_all(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    one = resources.estimate_resources(_cfgs(*TINY_OVERRIDES)[0]).memory
    monkeypatch.setattr(resources, "available_memory", lambda: (1.5 * one, "test limit"))
    sweep = ["-m", *TINY_OVERRIDES[1:], "seed=0,1"]
    _check_resources(precheck(sweep))  # type: ignore[arg-type]  # one job at a time fits
    if HAVE_JOBLIB_LAUNCHER:  # the joblib extra (CI installs it)
        joblib = [*sweep, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]
        with pytest.raises(ConfigError, match=r"of memory \(2 jobs at once\)"):
            _check_resources(precheck(joblib))  # type: ignore[arg-type]
    monkeypatch.setattr(resources, "available_memory", lambda: (1.0, "test limit"))
    with pytest.raises(ValueError, match="of memory"):
        resources.check_resources(_cfgs(*TINY_OVERRIDES), Path("."), at_once=1)
    assert resources.check_resources(_cfgs(*TINY_OVERRIDES), Path("."), at_once=0) is None
