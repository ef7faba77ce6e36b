"""Sweeps on a real Ray cluster (``hydra/launcher=ray_cluster``): a head started here with
``ray start --head``, a sweep launched from another directory with a relative sweep dir, outputs
byte-identical to the basic launcher's; an unreachable address fails in seconds, writing nothing.

Needs the ``ray`` extra; skipped without it, except in CI with ``RECLOOP_CI_RAY=1`` (then it fails).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import run_recloop

from experiments.config import ConfigError
from experiments.ray_cluster import check_reachable, host_port, launcher_address, resolve_auto

try:
    import ray  # noqa: F401

    HAVE_RAY = True
except ImportError:
    HAVE_RAY = False

if not HAVE_RAY and os.environ.get("CI") == "true" and os.environ.get("RECLOOP_CI_RAY") == "1":
    pytest.fail("RECLOOP_CI_RAY=1 but ray is not importable: install the ray extra", pytrace=False)
needs_ray = pytest.mark.skipif(not HAVE_RAY, reason="the ray extra is not installed")

SWEEP = [
    "world.n_users=200",
    "world.n_items=120",
    "sim.days=2",
    "policy.slate_size=5",
    "metrics.homogenization_pairs=200",
    "policy=greedy,random",
    "seed=0,1",
]
JOBS = ["0_greedy_seed0", "1_greedy_seed1", "2_random_seed0", "3_random_seed1"]


def recloop(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return run_recloop(*args, cwd=cwd, timeout=timeout, drop_env=("RAY_ADDRESS",))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ray_head(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A Ray head of 2 CPUs on a free port, started in its own directory; its address.

    Started with ``--block`` in a session of its own and stopped by signalling that process
    group, so only the processes this test started end (``ray stop`` would stop every Ray
    cluster of this user on the machine)."""
    ray_exe = Path(sys.executable).parent / "ray"
    head_dir = tmp_path_factory.mktemp("head")
    # Ray's unix sockets live under the temp dir: keep its path short (108-byte limit).
    temp_dir = tempfile.mkdtemp(prefix="rl-ray-", dir="/tmp")
    port = free_port()
    proc = subprocess.Popen(
        [
            str(ray_exe),
            "start",
            "--head",
            "--block",
            f"--port={port}",
            "--num-cpus=2",
            f"--temp-dir={temp_dir}",
            "--disable-usage-stats",
            "--include-dashboard=false",
        ],
        cwd=head_dir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                check_reachable(address, timeout=1)
                break
            except ConfigError:
                assert proc.poll() is None, "ray start --head exited"
                assert time.monotonic() < deadline, "the Ray head did not come up in 60 s"
                time.sleep(0.5)
        yield address, head_dir
    finally:
        for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                continue
        try:  # the head's children (gcs_server, raylet, workers) share its process group
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        subprocess.run(["rm", "-rf", temp_dir], check=False)


def files_under(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def assert_same_outputs(job: Path, basic: Path) -> None:
    assert files_under(job / "logs") == files_under(basic / "logs"), job.name
    assert (job / "metrics.parquet").read_bytes() == (basic / "metrics.parquet").read_bytes()
    summaries = [json.loads((d / "summary.json").read_text()) for d in (job, basic)]
    for s in summaries:
        s.pop("timing_seconds")
    assert summaries[0] == summaries[1], job.name


@needs_ray
@pytest.mark.slow
def test_sweep_on_a_ray_cluster_matches_the_basic_launcher(tmp_path, ray_head):
    address, head_dir = ray_head
    driver_dir = tmp_path / "driver"  # not where ray start ran (head_dir: the workers' cwd)
    driver_dir.mkdir()
    ray = recloop(
        "-m",
        "hydra/launcher=ray_cluster",
        f"hydra.launcher.ray.init.address={address}",
        "hydra.launcher.ray.remote.num_cpus=1",
        *SWEEP,
        "hydra.sweep.dir=sweeps/ray",
        cwd=driver_dir,
    )
    assert ray.returncode == 0, ray.stderr
    sweep = driver_dir / "sweeps" / "ray"
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == JOBS
    assert not any(head_dir.iterdir()), "a job wrote into the workers' cwd"
    comparison = (sweep / "comparison.md").read_text()
    rows = [line for line in comparison.splitlines() if line.startswith(("| greedy", "| random"))]
    assert [r.split("|")[2].strip() for r in rows] == ["2", "2"]  # 4 finished jobs in 2 arms
    assert (sweep / "report.html").is_file()
    assert f"sweep report: {sweep / 'report.html'}" in ray.stdout

    basic = recloop("-m", *SWEEP, f"hydra.sweep.dir={tmp_path / 'basic'}", cwd=tmp_path)
    assert basic.returncode == 0, basic.stderr
    for name in JOBS:
        assert_same_outputs(sweep / name, tmp_path / "basic" / name)


@needs_ray
@pytest.mark.slow
def test_check_cluster_reports_every_node(tmp_path, ray_head):
    address, _ = ray_head
    proc = recloop(f"--check-cluster={address}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split()[:3] == ["node", "host", "recloop"]
    assert lines[1].startswith("driver")
    assert len(lines) == 4  # header, driver, the one node, the verdict
    assert "≠" not in proc.stdout
    assert lines[-1] == f"1 node at {address}: same environment as the driver"


@needs_ray
def test_a_wrong_address_fails_fast_with_one_line_and_writes_nothing(tmp_path):
    port = free_port()  # nothing listens there
    start = time.monotonic()
    proc = recloop(
        "-m",
        "hydra/launcher=ray_cluster",
        f"hydra.launcher.ray.init.address=127.0.0.1:{port}",
        *SWEEP,
        "hydra.sweep.dir=sweeps/ray",
        cwd=tmp_path,
        timeout=60,
    )
    assert time.monotonic() - start < 30
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith(f"recloop: error: no Ray cluster answers at 127.0.0.1:{port}")
    assert "ray start --head" in proc.stderr and "RAY_ADDRESS" in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_address_resolution(monkeypatch, tmp_path):
    ray_target = "hydra_plugins.hydra_ray_launcher.ray_launcher.RayLauncher"
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert launcher_address({"_target_": "x.BasicLauncher"}) is None
    assert launcher_address({"_target_": ray_target, "ray": {"init": {"address": None}}}) is None
    assert launcher_address({"_target_": ray_target, "ray": {"init": {"address": "local"}}}) is None
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.5:6379")
    assert launcher_address({"_target_": ray_target, "ray": {"init": {}}}) == "10.0.0.5:6379"
    assert resolve_auto("auto") == "10.0.0.5:6379"
    monkeypatch.delenv("RAY_ADDRESS")
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))
    with pytest.raises(ConfigError, match="RAY_ADDRESS is not set"):
        resolve_auto("auto")
    (tmp_path / "ray").mkdir()
    (tmp_path / "ray" / "ray_current_cluster").write_text("192.0.2.7:6380\n")
    assert resolve_auto("auto") == "192.0.2.7:6380"
    assert host_port("head:6380") == ("head", 6380)
    assert host_port("head") == ("head", 6379)
    assert host_port("ray://head") == ("head", 10001)
    assert host_port("[::1]:7000") == ("::1", 7000)


def test_the_preset_composes_without_object_store_memory(monkeypatch):
    from experiments.cli import _compose

    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.5:6379")
    launcher = _compose(["hydra/launcher=ray_cluster"], with_hydra=True).hydra.launcher
    assert launcher.ray.init.address == "10.0.0.5:6379"
    assert launcher.ray.init.object_store_memory is None  # hydra issue #2893
    assert launcher.ray.remote.num_cpus == 2


@needs_ray
def test_a_port_that_is_not_ray_fails_fast_with_one_line(tmp_path):
    with socket.socket() as server:  # accepts TCP connections, speaks no Ray
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        port = server.getsockname()[1]
        start = time.monotonic()
        proc = recloop(
            "-m",
            "hydra/launcher=ray_cluster",
            f"hydra.launcher.ray.init.address=127.0.0.1:{port}",
            *SWEEP,
            cwd=tmp_path,
            timeout=60,
        )
    assert time.monotonic() - start < 30
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert f"something answers at 127.0.0.1:{port} but not as a Ray cluster" in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_node_that_differs_is_named_and_marked():
    from experiments.ray_cluster import differences, environment, version_table

    driver = environment()
    assert set(driver) == {
        "recloop",
        "Python",
        "hydra-core",
        "ray",
        "cloudpickle",
        "numpy",
        "implicit",
    }
    other = {**driver, "cloudpickle": "3.1.2", "recloop": "missing"}
    rows = [("driver", "here", driver), ("10.0.0.7", "node7", other)]
    assert differences(rows[1:], driver) == [
        f"10.0.0.7 recloop missing ≠ {driver['recloop']}",
        f"10.0.0.7 cloudpickle 3.1.2 ≠ {driver['cloudpickle']}",
    ]
    assert differences(rows[:1], driver) == []
    lines = version_table(rows, driver).splitlines()
    assert "≠" not in lines[1] and lines[2].count("≠") == 2
