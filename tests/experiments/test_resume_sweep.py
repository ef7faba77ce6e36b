"""``recloop --resume SWEEP_DIR``: a sweep killed (SIGKILL to its whole process group) mid-way
and resumed writes, job by job and byte for byte, the files of the same sweep never killed (but
timings); its finished jobs are not touched; missing and failed jobs run again."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
from conftest import TINY_OVERRIDES, checkout_env, needs_joblib, recloop_checkout, run_outputs

from experiments.cli import _resume
from experiments.resume_sweep import job_state, prepare_job

REPO = Path(__file__).resolve().parents[2]
# 4 jobs of 6 days, a cut-off a day: 6 rounds each to kill between.
SWEEP = [
    "-m",
    "policy=greedy,epsilon_greedy",
    "seed=0,1",
    *(a for a in TINY_OVERRIDES if not a.startswith(("sim.days", "seed="))),
    "sim.days=6",
    "policy.scorer.factors=8",
    "policy.scorer.iterations=5",
]
JOBS = ["0_greedy_seed0", "1_greedy_seed1", "2_epsilon_greedy_seed0", "3_epsilon_greedy_seed1"]
JOBLIB = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]


def _assert_same_sweep(expected: Path, got: Path) -> None:
    for name in JOBS:
        want, have = run_outputs(expected / name), run_outputs(got / name)
        assert sorted(have) == sorted(want), name
        assert [f for f in want if have[f] != want[f]] == [], name
        ids = pl.read_parquet(got / name / "logs" / "impressions" / "**" / "*.parquet")
        assert ids.select("request_id", "position").is_duplicated().sum() == 0
        ref = pl.read_parquet(expected / name / "logs" / "impressions" / "**" / "*.parquet")
        assert ids["request_id"].unique().sort().equals(ref["request_id"].unique().sort())
        assert not (got / name / "checkpoint").exists()
        assert not (got / name / "status.json").exists()
    assert (got / "comparison.md").read_bytes() == (expected / "comparison.md").read_bytes()
    assert (got / "report.html").is_file()
    assert not (got / ".recloop-resume").exists()


def _snapshot(folder: Path) -> dict[str, tuple[int, bytes]]:
    """Every file under ``folder``: its mtime and bytes."""
    return {
        str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.read_bytes())
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _complete(job: Path) -> bool:
    return (job / "summary.json").is_file() and not (job / "checkpoint").exists()


@pytest.fixture(scope="module")
def whole(tmp_path_factory) -> Path:
    """The sweep never killed (basic launcher: same jobs, same files as joblib's)."""
    sweep = tmp_path_factory.mktemp("whole") / "sweep"
    done = recloop_checkout(*SWEEP, f"hydra.sweep.dir={sweep}")
    assert done.returncode == 0, done.stderr
    return sweep


def _kill_mid_way(sweep: Path, *launcher: str) -> dict[str, dict[str, tuple[int, bytes]]]:
    """Start the sweep in its own process group and SIGKILL the group once a job is complete
    and another has a checkpoint; the complete jobs' snapshots."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "experiments.cli", *SWEEP, *launcher, f"hydra.sweep.dir={sweep}"],
        cwd=REPO,
        env=checkout_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 240
    while proc.poll() is None:
        assert time.monotonic() < deadline
        jobs = [sweep / name for name in JOBS]
        if any(map(_complete, jobs)) and any(
            (j / "checkpoint" / "state.pkl").is_file() for j in jobs
        ):
            break
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the sweep ended before it could be killed"
    assert not (sweep / "comparison.md").exists()
    return {j.name: _snapshot(j) for j in sweep.iterdir() if j.is_dir() and _complete(j)}


def _kill_resume(sweep: Path, n_complete: int) -> None:
    """``recloop --resume SWEEP``, SIGKILLed (its process group) once more than
    ``n_complete`` jobs are complete."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "experiments.cli", "--resume", str(sweep)],
        cwd=REPO,
        env=checkout_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 240
    while proc.poll() is None and sum(_complete(sweep / n) for n in JOBS) <= n_complete:
        assert time.monotonic() < deadline
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the resume ended before it could be killed"


@pytest.mark.slow
@pytest.mark.parametrize(
    "launcher", [pytest.param(JOBLIB, marks=needs_joblib), []], ids=["joblib", "basic"]
)
def test_a_killed_sweep_resumes_to_the_uninterrupted_sweep(whole, tmp_path, launcher):
    """Basic launcher: the first resume is killed too, and resumed."""
    sweep = tmp_path / "sweep"
    kept = _kill_mid_way(sweep, *launcher)
    record = _snapshot(sweep)["multirun.yaml"]
    if not launcher:  # the resume killed too, once one more job is complete
        _kill_resume(sweep, len(kept))
    n_kept = sum(_complete(sweep / name) for name in JOBS)
    resumed = recloop_checkout("--resume", str(sweep))
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming the sweep in {sweep}: {n_kept} of 4 jobs complete" in resumed.stdout
    if launcher:
        assert "Joblib.Parallel(n_jobs=2" in resumed.stdout + resumed.stderr  # still parallel
    _assert_same_sweep(whole, sweep)
    for name, files in kept.items():  # untouched: bytes and mtimes, .hydra records included
        assert _snapshot(sweep / name) == files, name
    assert _snapshot(sweep)["multirun.yaml"] == record


@pytest.mark.slow
def test_missing_and_failed_jobs_run_again_and_a_complete_sweep_is_left_alone(whole, tmp_path):
    sweep = tmp_path / "sweep"
    shutil.copytree(whole, sweep)  # mtimes kept
    before = _snapshot(sweep)
    again = recloop_checkout("--resume", str(sweep))
    assert again.returncode == 0, again.stderr
    assert again.stdout == f"recloop: every job of {sweep} is complete; nothing to resume\n"
    assert _snapshot(sweep) == before

    shutil.rmtree(sweep / JOBS[2])  # never started
    failed = sweep / JOBS[1]  # failed before its first checkpoint: partial logs, status.json
    for name in ("summary.json", "metrics.parquet", "item_exposure.parquet", "config.yaml"):
        (failed / name).unlink()
    shutil.rmtree(failed / "logs" / "impressions" / "round=0000")
    (failed / "status.json").write_text(json.dumps({"status": "failed", "error": "OSError: x"}))
    (sweep / "comparison.md").unlink()
    resumed = recloop_checkout("--resume", str(sweep))
    assert resumed.returncode == 0, resumed.stderr
    assert "2 of 4 jobs complete (kept), 0 continue from their checkpoint, 2 run" in resumed.stdout
    _assert_same_sweep(whole, sweep)
    after = _snapshot(sweep)
    for name in (JOBS[0], JOBS[3]):
        mine = {k: v for k, v in after.items() if k.startswith(f"{name}/")}
        assert mine == {k: v for k, v in before.items() if k.startswith(f"{name}/")}


def test_an_optuna_sweep_is_refused_in_one_line(tmp_path, capsys):
    (tmp_path / "multirun.yaml").write_text(
        "hydra:\n  sweeper:\n    _target_: hydra_plugins.hydra_optuna_sweeper.optuna_sweeper."
        "OptunaSweeper\n  overrides:\n    task: [seed=0]\n    hydra: []\n"
    )
    assert _resume(["--resume", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "an Optuna sweep cannot resume" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["multirun.yaml"]


@pytest.mark.slow
@needs_joblib
def test_ctrl_c_of_a_joblib_sweep_says_how_to_resume_it(tmp_path):
    sweep = tmp_path / "sweep"
    args = [a for a in SWEEP if not a.startswith(("sim.days", "policy=", "seed="))]
    args += ["sim.days=1,3000", *JOBLIB, f"hydra.sweep.dir={sweep}"]  # job 1 would run long
    proc = subprocess.Popen(
        [sys.executable, "-m", "experiments.cli", *args],
        cwd=REPO,
        env=checkout_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 240
    while not (
        _complete(sweep / "0_greedy_seed0")
        and (sweep / "1_greedy_seed0" / "checkpoint" / "state.pkl").is_file()
    ):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole group
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert err == f"recloop: interrupted; resume with: recloop --resume {sweep}\n"
    status = json.loads((sweep / "1_greedy_seed0" / "status.json").read_text())
    assert status["status"] == "interrupted"
    assert (sweep / "1_greedy_seed0" / "checkpoint" / "state.pkl").is_file()
    assert "comparison of the finished jobs" in out


def test_a_job_with_an_unreadable_checkpoint_is_cleared_and_runs_from_the_start(tmp_path):
    job = tmp_path / "0_greedy_seed0"
    for name in (".hydra/config.yaml", "cli.log", "checkpoint/state.pkl", "logs/x/part.parquet"):
        (job / name).parent.mkdir(parents=True, exist_ok=True)
        (job / name).write_text("truncated")
    (job / "status.json").write_text(json.dumps({"status": "interrupted"}))
    assert job_state(job) == "continue"
    assert prepare_job(job, tmp_path) == "run"
    assert sorted(str(p.relative_to(job)) for p in job.rglob("*")) == [
        ".hydra",
        ".hydra/config.yaml",
        "cli.log",
    ]
