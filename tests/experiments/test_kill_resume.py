"""Issue 19's kill/resume check: a small run SIGKILLed at 20 points drawn by a seeded generator
(serving, Parquet writes, the fit, the checkpoint write, the metrics pass, the report) and
resumed with ``recloop --resume`` writes, each time, the logs, ``metrics.parquet`` and
``summary.json`` (but timings) of the run never killed, and loses or repeats no request.

The kills come from ``_kill_at.py`` (this folder), which wraps the phases' functions in the
killed process only: the code under test has no hook.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from conftest import TINY_OVERRIDES, checkout_env, run_outputs, tiny_config
from omegaconf import OmegaConf

from experiments.cli import _resume, group_options
from experiments.config import parse_config
from experiments.run import build_simulation, run
from sim.checkpoint import save_checkpoint

REPO = Path(__file__).resolve().parents[2]
KILL_AT = Path(__file__).with_name("_kill_at.py")
# 3 days, a cut-off a day: checkpoints at hours 24 and 48, the report on.
ARGS = [
    *(a for a in TINY_OVERRIDES if not a.startswith(("sim.days", "report."))),
    "sim.days=3",
    "report.enabled=true",
    "policy.scorer.factors=8",
    "policy.scorer.iterations=5",
]
PHASES = ("serve", "write", "midwrite", "fit", "checkpoint", "metrics", "report")
N_POINTS = 20


def _kill_at(phase: str, n: int, run_dir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(KILL_AT), phase, str(n), *ARGS, f"hydra.run.dir={run_dir}"],
        cwd=REPO,
        env=checkout_env(**env),
        capture_output=True,
        text=True,
        timeout=300,
    )


def kill_points(counts: dict[str, int], seed: int = 19) -> list[tuple[str, int]]:
    """``N_POINTS`` (phase, call number) pairs: every phase twice, the rest drawn at random,
    each call number uniform over the phase's calls in the uninterrupted run."""
    rng = np.random.default_rng(seed)
    extra = rng.choice(len(PHASES), N_POINTS - 2 * len(PHASES))
    phases = [*PHASES, *PHASES, *(PHASES[i] for i in extra)]
    calls = {**counts, "midwrite": counts["write"]}
    return [(p, int(rng.integers(1, calls[p] + 1))) for p in phases]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[Path, dict[str, int]]:
    """The uninterrupted run (through the wrapper, killing nothing) and its calls per phase."""
    folder = tmp_path_factory.mktemp("kill20")
    counts = folder / "counts.json"
    done = _kill_at("count", 0, folder / "whole", KILL_AT_COUNTS=str(counts))
    assert done.returncode == 0, done.stderr
    return folder / "whole", json.loads(counts.read_text())


def _check_point(whole: Path, killed: Path, phase: str, n: int) -> list[str]:
    """Kill at (phase, n), resume; what differs from the uninterrupted run (nothing: [])."""
    got = _kill_at(phase, n, killed)
    if got.returncode != -signal.SIGKILL:
        return [f"not killed (exit {got.returncode}): {got.stderr[-300:]}"]
    problems = []
    temps = sorted(p.name for p in killed.rglob(".*.tmp"))
    if phase in ("write", "midwrite") and not [t for t in temps if t.endswith(".parquet.tmp")]:
        problems.append("killed, but no Parquet temp file was left to clean up")
    if phase == "checkpoint" and ".state.pkl.tmp" not in temps:
        problems.append("killed, but no half-written checkpoint was left")
    if (killed / "summary.json").exists() and phase != "report":
        problems.append("summary.json written before the kill")
    code = _resume(["--resume", str(killed)])  # what `recloop --resume` runs, in-process
    if code != 0:
        return [*problems, f"resume exit {code}"]
    want, have = run_outputs(whole), run_outputs(killed)
    if sorted(have) != sorted(want):
        problems.append(f"files differ: {sorted(set(have) ^ set(want))}")
    problems += [f"{name} differs" for name in want if name in have and have[name] != want[name]]
    left = sorted(str(p.relative_to(killed)) for p in killed.rglob(".*.tmp"))
    if left or (killed / "checkpoint").exists() or not (killed / "report.html").is_file():
        problems.append(f"left behind: temp files {left}, checkpoint, or no report.html")
    impressions = pl.read_parquet(killed / "logs" / "impressions" / "**" / "*.parquet")
    requests = pl.read_parquet(whole / "logs" / "impressions" / "**" / "*.parquet")
    if impressions.select("request_id", "position").is_duplicated().any():
        problems.append("a request_id repeated")
    if not impressions["request_id"].unique().sort().equals(requests["request_id"].unique().sort()):
        problems.append("a request_id lost or new")
    return problems


@pytest.mark.slow
def test_a_run_killed_at_20_random_points_resumes_to_the_uninterrupted_run(
    reference, tmp_path, monkeypatch, capsys
):
    """The runs are killed in subprocesses; each resume calls the ``--resume`` handler that
    ``recloop`` dispatches to (``experiments.cli._resume``) in this process, which saves an
    interpreter start per point (test_resume.py resumes through a subprocess)."""
    whole, counts = reference
    monkeypatch.setenv("RECLOOP_RESUME", "0")  # the resume sets it; restored after the test
    assert set(counts) == {p for p in PHASES if p != "midwrite"}
    assert counts["checkpoint"] == 2 and counts["report"] > 1  # the points fall where meant
    failures = {}
    for i, (phase, n) in enumerate(kill_points(counts)):
        problems = _check_point(whole, tmp_path / f"{i:02d}-{phase}-{n}", phase, n)
        if problems:
            failures[f"{phase} #{n}"] = problems
    assert capsys.readouterr().out.count("recloop: resuming ") == N_POINTS
    assert failures == {}, f"{len(failures)}/{N_POINTS} kill points failed"


def test_the_kill_points_cover_every_phase_and_stay_within_its_calls():
    counts = {"serve": 5, "write": 11, "fit": 3, "checkpoint": 2, "metrics": 22, "report": 12}
    points = kill_points(counts)
    assert len(points) == N_POINTS and kill_points(counts) == points  # seeded
    assert {p for p, _ in points} == set(PHASES)
    assert all(1 <= n <= counts["write" if p == "midwrite" else p] for p, n in points)


@pytest.mark.slow
@pytest.mark.parametrize("preset", group_options("policy"))
def test_every_policy_preset_resumes_to_its_uninterrupted_run(preset, tmp_path, monkeypatch):
    """Every shipped ``policy=`` preset, as shipped (tiny world and model sizes): the run is
    paused at its first checkpoint (round 1), the checkpoint written and the process's copy
    dropped, a half-written round 1 left behind; ``--resume`` then gives the uninterrupted
    run's files. A capability that adds state its checkpoint misses fails here. (In-process:
    a SIGKILLed subprocess per preset would cost an interpreter start each; the 20-point test
    above kills for real.)"""
    cfg = tiny_config(f"policy={preset}", **{"sim.days": 3})
    run(cfg, tmp_path / "whole")
    killed = tmp_path / "killed"
    killed.mkdir()
    (killed / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(cfg), resolve=True))
    simulation = build_simulation(parse_config(cfg), killed / "logs")
    simulation.run(until=0.0)  # the cut-off at hour 24: round 0 written, the model fitted
    save_checkpoint(simulation.state, killed)
    del simulation
    half = killed / "logs" / "impressions" / "round=0001"
    half.mkdir()
    (half / "part.parquet").write_bytes(b"PAR1 cut short")
    monkeypatch.setenv("RECLOOP_RESUME", "0")
    assert _resume(["--resume", str(killed)]) == 0
    want, have = run_outputs(tmp_path / "whole"), run_outputs(killed)
    assert sorted(have) == sorted(want)
    assert [name for name in want if have[name] != want[name]] == []
