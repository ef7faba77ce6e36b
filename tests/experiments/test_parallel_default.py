"""A sweep uses the machine's cores by default: the joblib launcher, one job per core, with the
same bytes as one job after another; the plan's estimate knows how many run side by side."""

from __future__ import annotations

import subprocess
import sys

import pytest
from omegaconf import OmegaConf

from experiments import cli
from experiments.cost_calibration import SWEEP_OVERHEAD_S
from experiments.cost_model import (
    PARALLEL_SLOWDOWN,
    JobEstimate,
    SweepEstimate,
    sweep_wall_seconds,
)
from tests.conftest import CHECKOUT, checkout_env, needs_joblib, run_outputs

TINY = ["world.n_users=300", "world.n_items=150", "sim.days=2", "progress=false"]
LONG = ["sim.days=90", "progress=false"]  # the small world: minutes of jobs (never run here)


@pytest.fixture
def no_env(monkeypatch):
    monkeypatch.delenv(cli.SWEEP_LAUNCHER_ENV, raising=False)
    monkeypatch.setattr(cli.os, "cpu_count", lambda: 2)


@needs_joblib
def test_a_sweep_on_two_cores_defaults_to_joblib(no_env, tmp_path):
    argv = ["-m", "seed=0,1,2", *LONG, f"hydra.sweep.dir={tmp_path}/s"]
    assert cli.parallel_default(argv, cli.precheck(argv)) == "hydra/launcher=joblib"
    plan = cli.precheck([*argv, "hydra/launcher=joblib"])
    assert plan.hydra.launcher.n_jobs == -1 and cli.at_once(plan) == 2


@needs_joblib
def test_a_sweep_of_seconds_stays_basic_unless_joblib_is_asked_for(no_env, monkeypatch, tmp_path):
    """Below PARALLEL_MIN_SECONDS (the cost model's one-after-another estimate) joblib's worker
    start-up would cost more than it saves; RECLOOP_SWEEP_LAUNCHER=joblib overrides that."""
    from experiments.cost_model import estimate_sweep

    argv = ["-m", "seed=0,1", *TINY, f"hydra.sweep.dir={tmp_path}/s"]
    plan = cli.precheck(argv)
    cfgs = [cli.OmegaConf.to_container(c, resolve=True) for c in plan.jobs]
    assert estimate_sweep(cfgs).seconds < cli.PARALLEL_MIN_SECONDS
    assert cli.parallel_default(argv, plan) is None
    monkeypatch.setenv(cli.SWEEP_LAUNCHER_ENV, "joblib")
    assert cli.parallel_default(argv, plan) == "hydra/launcher=joblib"


@needs_joblib
@pytest.mark.parametrize(
    ("extra", "cores", "env"),
    [
        (["hydra/launcher=basic"], 2, None),  # the user chose
        ([], 1, None),  # one core: nothing to share
        ([], 2, "basic"),  # RECLOOP_SWEEP_LAUNCHER=basic
        ([], 2, " Basic "),
    ],
)
def test_the_basic_launcher_stays_when_asked_for_or_one_core(
    no_env, monkeypatch, tmp_path, extra, cores, env
):
    monkeypatch.setattr(cli.os, "cpu_count", lambda: cores)
    if env is not None:
        monkeypatch.setenv(cli.SWEEP_LAUNCHER_ENV, env)
    argv = ["-m", "seed=0,1,2", *LONG, *extra, f"hydra.sweep.dir={tmp_path}/s"]
    assert cli.parallel_default(argv, cli.precheck(argv)) is None


def test_a_single_run_is_not_a_sweep(no_env, tmp_path):
    argv = [*TINY, f"hydra.run.dir={tmp_path}/r"]
    assert cli.parallel_default(argv, cli.precheck(argv)) is None


def _estimate(seconds):
    jobs = tuple(JobEstimate(s, 0.0, 0.0, None) for s in seconds)
    return SweepEstimate(jobs, SWEEP_OVERHEAD_S + sum(seconds), 0.0, ())


@pytest.mark.parametrize(
    ("seconds", "at_once", "busiest"),
    [
        ([10, 10, 10, 10], 2, 20),  # two each
        ([30, 10, 10, 10], 2, 30),  # the long one alone; the others go to the free worker
        ([10, 30, 5], 2, 30),  # 10 → A, 30 → B, 5 → A (free at 10): A 15, B 30
        ([10, 20, 30], 3, 30),
    ],
)
def test_the_wall_estimate_is_the_list_scheduling_makespan(seconds, at_once, busiest):
    est = _estimate(seconds)
    assert sweep_wall_seconds(est, 1) == est.seconds
    want = SWEEP_OVERHEAD_S + busiest * PARALLEL_SLOWDOWN.get(
        at_once, max(PARALLEL_SLOWDOWN.values())
    )
    assert sweep_wall_seconds(est, at_once) == pytest.approx(want)


@needs_joblib
@pytest.mark.slow
def test_the_default_sweep_runs_on_joblib_and_writes_the_bytes_of_a_basic_one(tmp_path):
    """A real ``recloop -m`` on joblib (RECLOOP_SWEEP_LAUNCHER=joblib: the tiny sweep is below
    the estimate that turns it on by itself): the plan says two at a time, hydra records the
    joblib launcher, and every job's logs, metrics and summary equal those of the same sweep on
    the basic launcher."""
    if (cli.os.cpu_count() or 1) < 2:
        pytest.skip("one core: the default stays basic")
    env = checkout_env()
    env[cli.SWEEP_LAUNCHER_ENV] = "joblib"
    sweeps = {}
    for name, extra in (("default", []), ("basic", ["hydra/launcher=basic"])):
        sweep = tmp_path / name
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "experiments.cli",
                "-m",
                "policy=greedy,random",
                "seed=0",
                *TINY,
                "report.enabled=false",
                *extra,
                f"hydra.sweep.dir={sweep}",
            ],
            cwd=CHECKOUT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr
        choice = OmegaConf.load(sweep / "multirun.yaml").hydra.runtime.choices["hydra/launcher"]
        assert choice == ("joblib" if name == "default" else "basic")
        assert ("2 jobs at a time" in proc.stdout) == (name == "default"), proc.stdout
        sweeps[name] = {
            job.name: run_outputs(job) for job in sorted(sweep.iterdir()) if job.is_dir()
        }
    assert sweeps["default"].keys() == sweeps["basic"].keys() and len(sweeps["basic"]) == 2
    for job, files in sweeps["basic"].items():
        assert sweeps["default"][job] == files, job
