"""Round checkpoints and ``recloop --resume``: a run killed (SIGKILL) at any moment and resumed
writes, byte for byte, the files of the same run never killed (but timings), and loses or
repeats no request."""

from __future__ import annotations

import json
import pickle
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
from conftest import TINY_OVERRIDES, checkout_env, recloop_checkout, run_outputs, tiny_config
from omegaconf import OmegaConf

from experiments.cli import _resume
from experiments.config import parse_config
from experiments.resume import discard_after
from experiments.run import build_simulation, run, write_outputs
from sim.checkpoint import (
    FORMAT_VERSION,
    load_checkpoint,
    run_with_checkpoints,
    save_checkpoint,
)

REPO = Path(__file__).resolve().parents[2]
# 8 days, a cut-off a day: 8 log rounds to kill between.
ARGS = [
    *(a for a in TINY_OVERRIDES if not a.startswith("sim.days")),
    "sim.days=8",
    "policy.scorer.factors=8",
    "policy.scorer.iterations=5",
]


def _assert_same(expected: Path, got: Path) -> None:
    want, have = run_outputs(expected), run_outputs(got)
    assert sorted(have) == sorted(want)
    assert [name for name in want if have[name] != want[name]] == []


def test_a_checkpoint_loaded_and_continued_writes_the_uninterrupted_run(tmp_path):
    cfg = tiny_config(**{"policy.selector": "epsilon_greedy", "world.drift_rate": 0.05})
    rc = parse_config(cfg)
    run(cfg, tmp_path / "whole")
    assert not (tmp_path / "whole" / "checkpoint").exists()  # removed once complete

    killed = tmp_path / "killed"
    first = build_simulation(rc, killed / "logs")
    first.run(until=40.0)  # pauses at the cut-off at 48: rounds 0 and 1 written
    save_checkpoint(first.state, killed)
    checkpoint = load_checkpoint(killed)
    assert (checkpoint.format_version, checkpoint.log_round, checkpoint.hours) == (
        FORMAT_VERSION,
        2,
        48.0,
    )
    del first  # continue from the file alone
    second = build_simulation(rc, killed / "logs", state=checkpoint.state)
    run_with_checkpoints(second, killed)
    assert load_checkpoint(killed).log_round == 3  # the last cut-off before the horizon (96)
    write_outputs(rc, second, killed, time.perf_counter())
    _assert_same(tmp_path / "whole", killed)


def test_discard_after_removes_later_rounds_and_temp_files(tmp_path):
    for table in ("impressions", "truth"):
        for r in range(4):
            (tmp_path / table / f"round={r:04d}").mkdir(parents=True)
    (tmp_path / "impressions" / "round=0001" / ".part.parquet.tmp").write_bytes(b"x")
    discard_after(tmp_path, 2)
    left = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    assert left == [
        "impressions",
        "impressions/round=0000",
        "impressions/round=0001",
        "truth",
        "truth/round=0000",
        "truth/round=0001",
    ]


def test_resume_without_a_checkpoint_or_of_a_finished_run(tmp_path, capsys):
    """(In-process: the slow test below goes through ``main()`` in a subprocess.)"""
    assert _resume(["--resume", str(tmp_path / "nope")]) == 2
    assert "not a directory" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "config.yaml").write_text("seed: 0\n")  # no checkpoint: start over, but on what?
    assert _resume([f"--resume={empty}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "world=None: missing" in err
    (empty / "checkpoint").mkdir()
    (empty / "checkpoint" / "state.pkl").write_bytes(b"not a pickle")
    assert _resume([f"--resume={empty}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unreadable checkpoint" in err
    shutil.rmtree(empty / "checkpoint")  # complete and no checkpoint: finished
    (empty / "summary.json").write_text(json.dumps({"status": "complete"}))
    assert _resume(["--resume", str(empty)]) == 0
    assert "finished" in capsys.readouterr().out


def test_a_run_killed_before_its_first_checkpoint_starts_over(tmp_path, monkeypatch, capsys):
    """No checkpoint yet (killed in round 0): the resume discards what the round left and
    runs from the start."""
    cfg = tiny_config(**{"sim.days": 2})
    run(cfg, tmp_path / "whole")
    killed = tmp_path / "killed"
    (killed / "logs" / "impressions" / "round=0000").mkdir(parents=True)
    (killed / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(cfg)))
    (killed / "logs" / "impressions" / "round=0000" / ".part.parquet.tmp").write_bytes(b"PAR")
    monkeypatch.setenv("RECLOOP_RESUME", "0")
    assert _resume(["--resume", str(killed)]) == 0
    assert "from the start" in capsys.readouterr().out
    _assert_same(tmp_path / "whole", killed)
    assert not list(killed.rglob(".*.tmp"))


def test_a_run_killed_in_its_report_is_not_taken_for_finished(tmp_path, monkeypatch, capsys):
    """summary.json says complete before the report is written: while a checkpoint is left,
    the run is resumed (its last round simulated again, its outputs rewritten)."""
    cfg = tiny_config(**{"sim.days": 2, "report.enabled": True})
    run(cfg, tmp_path / "whole")

    def killed_here(run_dir, **kwargs):
        raise KeyboardInterrupt  # stands for the SIGKILL: nothing after it runs

    monkeypatch.setattr("reports.run_report.build_run_report", killed_here)
    killed = tmp_path / "killed"
    with pytest.raises(KeyboardInterrupt):
        run(cfg, killed)
    assert (killed / "checkpoint").is_dir() and not (killed / "report.html").exists()
    monkeypatch.undo()
    monkeypatch.setenv("RECLOOP_RESUME", "0")
    assert _resume(["--resume", str(killed)]) == 0
    assert "from round 1" in capsys.readouterr().out
    _assert_same(tmp_path / "whole", killed)
    assert (killed / "report.html").is_file() and not (killed / "checkpoint").exists()


def _kill_when(run_dir: Path, appears: str) -> None:
    """Start the run, SIGKILL it as soon as ``run_dir/appears`` exists."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "experiments.cli", *ARGS, f"hydra.run.dir={run_dir}"],
        cwd=REPO,
        env=checkout_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while not (run_dir / appears).exists() and proc.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (run_dir / "summary.json").exists()


@pytest.mark.slow
def test_a_killed_run_resumes_to_the_uninterrupted_run(tmp_path):
    whole = tmp_path / "whole"
    done = recloop_checkout(*ARGS, f"hydra.run.dir={whole}")
    assert done.returncode == 0, done.stderr
    requests = pl.read_parquet(whole / "logs" / "impressions" / "**" / "*.parquet")
    # right after the first checkpoint, and as a late round's partitions appear (most often
    # before that round's checkpoint: the resume then deletes them and writes them again)
    for n, appears in enumerate(("checkpoint/state.pkl", "logs/impressions/round=0005")):
        killed = tmp_path / f"killed{n}"
        _kill_when(killed, appears)
        checkpoint = load_checkpoint(killed)
        kept = checkpoint.log_round
        first = killed / "logs" / "impressions" / "round=0000" / "part.parquet"
        written = first.stat().st_mtime_ns
        resumed = recloop_checkout("--resume", str(killed))
        assert resumed.returncode == 0, resumed.stderr
        assert f"resuming {killed} from round {kept} " in resumed.stdout
        assert first.stat().st_mtime_ns == written  # continued: the early rounds are not redone
        assert not (killed / "checkpoint").exists()
        _assert_same(whole, killed)
        timings = json.loads((killed / "summary.json").read_text())["timing_seconds"]
        assert timings["resumed_at_day"] == round(checkpoint.hours / 24, 3)  # this part only
        got = pl.read_parquet(killed / "logs" / "impressions" / "**" / "*.parquet")
        assert got.select("request_id", "position").is_duplicated().sum() == 0
        assert got["request_id"].unique().sort().equals(requests["request_id"].unique().sort())
        again = recloop_checkout("--resume", str(killed))
        assert again.returncode == 0 and "finished" in again.stdout


def test_the_checkpoint_pickle_holds_its_round_and_version(tmp_path):
    rc = parse_config(tiny_config())
    simulation = build_simulation(rc, tmp_path / "logs")
    simulation.run(until=0.0)
    path = save_checkpoint(simulation.state, tmp_path)
    with open(path, "rb") as f:
        data = pickle.load(f)
    assert (data.format_version, data.log_round, data.hours) == (FORMAT_VERSION, 1, 24.0)
    assert list(path.parent.iterdir()) == [path]  # no temp file left


@pytest.mark.parametrize("scorer", ["bpr", "lmf", "item_knn_bm25"])
def test_states_with_implicit_model_factories_pickle(scorer, tmp_path):
    """Their model factories were closures once: a run of them could not checkpoint."""
    rc = parse_config(tiny_config(**{"policy.scorer": scorer, "sim.days": 2}))
    simulation = build_simulation(rc, tmp_path / "logs")
    simulation.run(until=0.0)
    copy = pickle.loads(pickle.dumps(simulation.state))
    assert copy.deployed is None and copy.in_training is not None  # fitted, not yet deployed


def test_a_state_that_does_not_pickle_costs_the_checkpoints_not_the_run(
    tmp_path, monkeypatch, caplog
):
    cfg = tiny_config(**{"sim.days": 3})
    run(cfg, tmp_path / "whole", checkpoint=False)

    def refuse(*args, **kwargs):
        raise pickle.PicklingError("a closure")

    monkeypatch.setattr("sim.checkpoint.pickle.dump", refuse)
    run(cfg, tmp_path / "unpicklable")
    assert "no checkpoints for this run" in caplog.text
    assert not (tmp_path / "unpicklable" / "checkpoint").exists()
    _assert_same(tmp_path / "whole", tmp_path / "unpicklable")
