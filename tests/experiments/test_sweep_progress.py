"""A sweep says what it will cost before it starts, prints one line per finished job with an
ETA, and stops cleanly on Ctrl-C: one line, exit 130, the interrupted job marked, the finished
jobs compared."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from experiments.sweep_progress import PLAN_FILE, plan_lines, progress_line

TINY_ARGS = [
    "world.n_users=200",
    "world.n_items=120",
    "policy.slate_size=5",
    "metrics.homogenization_pairs=200",
]
CODE = "import sys; from experiments.cli import main; sys.argv[0] = 'recloop'; main()"


def _job(sweep: Path, name: str, status: str | None) -> None:
    d = sweep / name
    d.mkdir(parents=True)
    if status == "finished":
        (d / "summary.json").write_text("{}")
    elif status is not None:
        (d / "status.json").write_text(json.dumps({"status": status}))


def test_progress_line_counts_ended_jobs_and_scales_the_eta(tmp_path, monkeypatch):
    for name, status in [("0_a", "finished"), ("1_b", "failed"), ("2_c", None), ("3_d", None)]:
        _job(tmp_path, name, status)
    (tmp_path / ".hidden").mkdir()  # not a job
    now = 1_000_000.0
    monkeypatch.setattr(time, "time", lambda: now)
    # 2 jobs ended after 60 s; they were estimated at 10 + 20 s: the sweep runs 2× slower than
    # the model, so the 30 + 40 s still to come take 140 s
    plan = {"n_jobs": 4, "job_seconds": [10.0, 20.0, 30.0, 40.0], "started": now - 60.0}
    line = progress_line(tmp_path, "1_b", 12.0, plan)
    assert line.startswith("[2/4] 1_b failed in 12 s · 2 ended (1 failed) · elapsed 1 min 00 s")
    assert "ETA 2 min 20 s" in line
    # without a plan (e.g. the plan file is gone): the count only
    assert (
        progress_line(tmp_path, "0_a", 5.0, None) == "[2] 0_a finished in 5 s · 2 ended (1 failed)"
    )
    # the last job: no ETA
    for name in ("2_c", "3_d"):
        (tmp_path / name / "summary.json").write_text("{}")
    assert "ETA" not in progress_line(tmp_path, "3_d", 1.0, plan)


def test_a_job_complete_before_a_resumed_sweep_started_is_reported_kept(tmp_path):
    _job(tmp_path, "0_a", "finished")
    _job(tmp_path, "1_b", "finished")
    os.utime(tmp_path / "0_a" / "summary.json", (1_000.0, 1_000.0))  # long before the launch
    plan = {"n_jobs": 2, "started": time.time() - 1.0}
    assert progress_line(tmp_path, "0_a", 0.1, plan).startswith("[2/2] 0_a kept (complete) · ")
    assert progress_line(tmp_path, "1_b", 3.0, plan).startswith("[2/2] 1_b finished in 3 s · ")


def test_plan_lines_name_the_size_the_estimate_and_how_to_shrink_it():
    from omegaconf import OmegaConf

    from experiments.cli import _compose, _job_overrides

    jobs, multirun = _job_overrides(["+study=exploration"])
    assert multirun
    cfgs = [OmegaConf.to_container(_compose(o), resolve=True) for o in jobs]
    lines, est = plan_lines(cfgs, "recloop exploration")
    assert lines[0] == (
        "recloop exploration: 30 jobs (10 policies × 3 seeds), 90 simulated days each, "
        "2,000 users × 1,000 items"
    )
    assert "estimate:" in lines[1] and len(est.jobs) == 30
    tips = lines[-1]
    assert tips.startswith("  smaller: add sim.days=30") and "seed=0" in tips
    assert "policy=greedy,epsilon_greedy,thompson" in tips


def _recloop(args: list[str], cwd: Path, **kw) -> subprocess.Popen[str]:
    env = {**os.environ, "HYDRA_FULL_ERROR": "0", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-c", CODE, *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        **kw,
    )


@pytest.mark.slow
def test_a_sweep_prints_its_plan_and_one_line_per_job(tmp_path):
    sweep = tmp_path / "sweep"
    proc = _recloop(
        [
            "-m",
            "policy=greedy,random",
            "seed=0,1",
            "sim.days=2",
            *TINY_ARGS,
            f"hydra.sweep.dir={sweep}",
        ],
        tmp_path,
    )
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("recloop sweep: 4 jobs (2 policies × 2 seeds), 2 simulated days")
    assert lines[1].startswith("  estimate: ")
    progress = [line for line in lines if re.match(r"\[\s*\d+/\d+\] ", line)]
    assert [p.split()[0:2] for p in progress] == [
        ["[1/4]", "0_greedy_seed0"],
        ["[2/4]", "1_greedy_seed1"],
        ["[3/4]", "2_random_seed0"],
        ["[4/4]", "3_random_seed1"],
    ]
    assert all("finished in" in p for p in progress)
    assert all("ETA" in p for p in progress[:3]) and "ETA" not in progress[3]
    assert json.loads((sweep / PLAN_FILE).read_text())["n_jobs"] == 4
    # paths are printed absolute, whole (no wrapping)
    paths = [line for line in lines if line.startswith(("comparison: ", "sweep report: "))]
    assert [p.split(": ")[1] for p in paths] == [
        str(sweep / "comparison.md"),
        str(sweep / "report.html"),
    ]


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_and_reports_what_finished(tmp_path):
    sweep = tmp_path / "sweep"
    # job 0 is one day; job 1 would run for a long time
    proc = _recloop(["-m", "sim.days=1,3000", *TINY_ARGS, f"hydra.sweep.dir={sweep}"], tmp_path)
    deadline = time.time() + 240
    while not (sweep / "1_greedy_seed0" / ".hydra").is_dir():
        assert time.time() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    time.sleep(2.0)  # well into job 1's simulation
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    err_lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err
    assert len(err_lines) == 1, err
    assert err_lines[0].startswith("recloop: interrupted at day ")
    assert err_lines[0].endswith(f"/3000; resume with: recloop --resume {sweep}")
    status = json.loads((sweep / "1_greedy_seed0" / "status.json").read_text())
    assert status["status"] == "interrupted" and 0 < status["day"] < 3000
    assert (sweep / "0_greedy_seed0" / "summary.json").is_file()
    assert (sweep / "report.html").is_file() and (sweep / "comparison.md").is_file()
    assert "sweep report of the finished jobs" in out
    page = (sweep / "report.html").read_text(encoding="utf-8")
    assert "interrupted (Ctrl-C) at simulated day" in page  # the job is listed, not hidden


def test_plan_flag_prints_the_estimate_and_runs_nothing(tmp_path):
    proc = _recloop(["+study=quickstart", "--plan", f"hydra.sweep.dir={tmp_path / 's'}"], tmp_path)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert out.startswith("recloop quickstart: 3 jobs (3 policies), 30 simulated days each")
    assert "estimate:" in out
    assert not (tmp_path / "s").exists() and not (tmp_path / "outputs").exists()


def test_a_study_of_arms_is_counted_as_arms_not_as_a_grid():
    """The serving study varies several keys together (one +serving_arm per job): the plan
    counts its arms, where multiplying the distinct values per key would claim 72 jobs."""
    from omegaconf import OmegaConf

    from experiments.cli import _compose, _job_overrides

    jobs, _ = _job_overrides(["+study=serving"])
    cfgs = [OmegaConf.to_container(_compose(o), resolve=True) for o in jobs]
    lines, est = plan_lines(cfgs, "recloop serving")
    arms = {tuple(o for o in job if not o.startswith("seed=")) for job in jobs}
    assert len(jobs) == len(est.jobs) == len(arms) * 3
    assert lines[0].startswith(f"recloop serving: {len(jobs)} jobs ({len(arms)} arms (varying ")
    assert lines[0].split("(")[2].startswith("varying serving.")
    assert "× 3 seeds)" in lines[0]


def test_a_study_of_arm_group_choices_is_made_smaller_by_its_arms():
    """``+mo_arm`` arms run several policies: the plan's smaller sweep names arms of the group
    (a ``policy=`` override would not select arms), costed on exactly those jobs."""
    from omegaconf import OmegaConf

    from experiments.cli import precheck
    from experiments.cost_model import fmt_duration
    from experiments.sweep_progress import estimate_sweep

    plan = precheck(["+study=multi_objective", "sim.days=60"])
    assert plan is not None and plan.arms is not None
    assert plan.arms[0] == "+mo_arm=greedy" and len(set(plan.arms)) == 15
    cfgs = [OmegaConf.to_container(c, resolve=True) for c in plan.jobs]
    lines, _ = plan_lines(cfgs, "recloop multi_objective", plan.arms)
    few = list(dict.fromkeys(plan.arms))[:3]
    subset = [c for c, a in zip(cfgs, plan.arms, strict=True) if a in few]
    expected = fmt_duration(estimate_sweep(subset).seconds)
    tip = "+mo_arm=" + ",".join(a.partition("=")[2] for a in few) + f" (≈ {expected})"
    assert tip in lines[-1] and "policy=" not in lines[-1]
    plain = precheck(["-m", "policy=greedy,softmax", "seed=0,1"])
    assert plain is not None and plain.arms is None  # a policy sweep has no arm group
