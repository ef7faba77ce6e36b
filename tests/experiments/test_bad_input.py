"""The bad-input table: what a user may mistype, misplace or do to a running command, and what
recloop answers — exactly one line naming the key, value, path or file at fault, the exit code
the README lists, and nothing written or overwritten.

Each row runs the real entry point (``experiments.cli.main`` or ``reports.cli.main``) in-process
from an empty working folder prepared by the row's ``setup``; the whole folder is compared byte
for byte before and after. Rows that need a real process (signals) run one.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import TINY_OVERRIDES, needs_joblib

from experiments import cli
from reports import cli as report_cli

EXIT_BAD_INPUT = 2  # README: "Exit codes"


@dataclass(frozen=True)
class Case:
    id: str
    kind: str  # config | override | folder | file | resource
    argv: list[str]
    expected: str  # a part of the one line, after "recloop: error: " (ROOT: the working folder)
    code: int = EXIT_BAD_INPUT
    setup: Callable[[Path], None] | None = None
    command: str = "recloop"  # or recloop-report
    env: dict[str, str] = field(default_factory=dict)


def _used_run(root: Path) -> None:
    (root / "used" / ".hydra").mkdir(parents=True)
    (root / "used" / ".hydra" / "config.yaml").write_text("seed: 0\n")
    (root / "used" / "logs" / "impressions" / "round=0000").mkdir(parents=True)
    (root / "used" / "logs" / "impressions" / "round=0000" / "part.parquet").write_bytes(b"PAR1")


def _failed_run(root: Path) -> None:
    (root / "used").mkdir()
    (root / "used" / "status.json").write_text('{"status": "failed"}\n')


def _used_sweep(root: Path) -> None:
    (root / "sweep" / "0_greedy_seed0").mkdir(parents=True)
    (root / "sweep" / "multirun.yaml").write_text("hydra: {}\n")
    (root / "sweep" / "0_greedy_seed0" / "summary.json").write_text('{"status": "complete"}\n')


def _config_only(root: Path) -> None:
    (root / "run").mkdir()
    (root / "run" / "config.yaml").write_text("seed: 0\n")


def _broken_config(root: Path) -> None:
    (root / "run").mkdir()
    (root / "run" / "config.yaml").write_text("world: {n_users: [1, 2\n")


def _list_config(root: Path) -> None:
    (root / "run").mkdir()
    (root / "run" / "config.yaml").write_text("- 1\n- 2\n")


def _file_in_the_way(root: Path) -> None:
    (root / "taken").write_text("a file, not a folder\n")


def _truncated_summary(root: Path) -> None:
    (root / "run").mkdir()
    (root / "run" / "summary.json").write_text('{"status": "comp')


def _truncated_metrics(root: Path) -> None:
    (root / "run").mkdir()
    (root / "run" / "summary.json").write_text('{"status": "complete"}\n')
    (root / "run" / "metrics.parquet").write_bytes(b"PAR1 and then nothing")


def _truncated_checkpoint(root: Path) -> None:
    _config_only(root)
    (root / "run" / "checkpoint").mkdir()
    (root / "run" / "checkpoint" / "state.pkl").write_bytes(b"\x80\x05\x95\x10\x00\x00")


def _foreign_checkpoint(root: Path) -> None:
    import pickle

    _config_only(root)
    (root / "run" / "checkpoint").mkdir()
    (root / "run" / "checkpoint" / "state.pkl").write_bytes(pickle.dumps({"not": "ours"}))


def _plain_folder(root: Path) -> None:
    (root / "folder").mkdir()
    (root / "folder" / "notes.txt").write_text("not a run\n")


def _unfinished_run(root: Path) -> None:
    (root / "run").mkdir()
    (root / "run" / "status.json").write_text('{"status": "interrupted"}\n')


OPE = ["+study=ope"]
CASES = [
    # --- config values: the key, the value and what it must be --------------------------------
    Case("negative-users", "config", ["world.n_users=-5"], "world.n_users=-5: must be a positive"),
    Case("zero-items", "config", ["world.n_items=0"], "world.n_items=0: must be a positive"),
    Case("text-users", "config", ["world.n_users=abc"], "world.n_users='abc': must be a positive"),
    Case("zero-days", "config", ["sim.days=0"], "sim.days=0: must be a positive integer"),
    Case("fractional-slate", "config", ["policy.slate_size=10.5"], "policy.slate_size=10.5"),
    Case("slate-over-catalog", "config", ["policy.slate_size=2000"], "larger than the catalog"),
    Case("negative-seed", "config", ["seed=-3"], "seed=-3: must be an integer >= 0"),
    Case("fractional-seed", "config", ["seed=1.5"], "seed=1.5: must be an integer >= 0"),
    Case(
        "epsilon-above-1",
        "config",
        ["policy=epsilon_greedy", "policy.selector.epsilon=1.5"],
        "policy.selector.epsilon=1.5: must be in [0, 1]",
    ),
    Case(
        "retrain-every-0",
        "config",
        ["sim.retrain_every_hours=0"],
        "sim.retrain_every_hours=0: must be a number of hours > 0",
    ),
    Case("zero-factors", "config", ["policy.scorer.factors=0"], "policy.scorer.factors=0: must"),
    Case(
        "negative-regularization",
        "config",
        ["policy.scorer.regularization=-1"],
        "policy.scorer.regularization=-1: must be a number > 0",
    ),
    Case("trust-bias-2", "config", ["world.trust_bias=2"], "world.trust_bias=2: must be in [0, 1]"),
    Case(
        "candidates-below-slate",
        "config",
        ["policy.n_candidates=5"],
        "policy.n_candidates=5: smaller than policy.slate_size=10",
    ),
    Case(
        "report-maybe",
        "config",
        ["report.enabled=maybe"],
        "report.enabled='maybe': must be true or false",
    ),
    Case(
        "churn-above-1",
        "config",
        ["world.churn.base_rate=1.5"],
        "world.churn.base_rate=1.5: must be a daily probab",
    ),
    Case(
        "delay-law",
        "config",
        ["world.conversion_delay.distribution=gamma"],
        "world.conversion_delay.distribution='gamma': must be one of",
    ),
    Case(
        "ndcg-k-over-catalog",
        "config",
        ["metrics.ndcg_k=5000"],
        "metrics.ndcg_k=5000: larger than the catalog",
    ),
    Case(
        "transfer-no-domain",
        "config",
        ["transfer.enabled=true", "transfer.domain=null"],
        "transfer.domain=None: transfer enabled with no second domain",
    ),
    Case("unknown-runner", "config", ["runner=sideways"], "runner='sideways': unknown"),
    Case(
        "ope-unknown-target",
        "config",
        [*OPE, "ope.targets=[nope]"],
        "policy preset 'nope'",
    ),
    Case("infinite-days", "config", ["sim.days=inf"], "sim.days=inf: must be a finite number"),
    Case("infinite-users", "config", ["world.n_users=inf"], "world.n_users=inf: must be a finite"),
    Case(
        "nan-epsilon",
        "config",
        ["policy=epsilon_greedy", "policy.selector.epsilon=nan"],
        "policy.selector.epsilon=nan: must be a finite number",
    ),
    Case(
        "minus-inf-retrain",
        "config",
        ["sim.retrain_every_hours=-inf"],
        "sim.retrain_every_hours=-inf: must be a finite number",
    ),
    # --- overrides: malformed, unknown, misplaced, repeated ------------------------------------
    Case("key-less", "override", ["=5"], "=5: malformed override: no key before '='"),
    Case("unclosed-list", "override", ["world.n_users=[1"], "world.n_users=[1: malformed override"),
    Case("unknown-policy", "override", ["policy=foo"], "policy=foo: unknown policy; choose one of"),
    Case("unknown-selector", "override", ["policy/selector=nope"], "policy/selector=nope: unknown"),
    Case(
        "misspelt-group",
        "override",
        ["polcy=greedy"],
        "polcy=greedy: unknown key in the top level "
        "(see configs/config.yaml for the keys; did you mean policy?)",
    ),
    Case(
        "unknown-world-key",
        "override",
        ["world.nusers=5"],
        "world.nusers=5: unknown key in world (see configs/world/ for the keys)",
    ),
    Case(
        "unknown-selector-key",
        "override",
        ["policy.selector.foo=1"],
        "policy.selector.foo=1: unknown key in policy.selector (see configs/policy/selector/",
    ),
    Case(
        "moved-key",
        "override",
        ["policy.epsilon=0.1"],
        "policy.epsilon=0.1: moved to policy.selector.epsilon",
    ),
    Case("sweep-without-m", "override", ["policy=greedy,random"], "needs -m/--multirun"),
    Case("bad-sweep-value", "override", ["-m", "policy=greedy,foo"], "policy=foo: unknown"),
    Case(
        "hydra-bool",
        "override",
        ["hydra.job.chdir=maybe"],
        "hydra.job.chdir=maybe: Value 'maybe' is not a valid bool",
    ),
    Case("unknown-study", "override", ["+study=nope"], "study=nope: unknown study; choose one of"),
    Case(
        "unknown-launcher",
        "override",
        ["-m", "seed=0,1", "hydra/launcher=jobib"],
        "hydra/launcher=jobib: unknown option; choose one of basic",
    ),
    Case(
        "joblib-n-jobs-0",
        "override",
        ["-m", "seed=0,1", "hydra/launcher=joblib", "hydra.launcher.n_jobs=0"],
        "hydra.launcher.n_jobs=0: must be a positive number of parallel jobs",
    ),
    Case(
        "joblib-n-jobs-text",
        "override",
        ["-m", "seed=0,1", "hydra/launcher=joblib", "hydra.launcher.n_jobs=abc"],
        "hydra.launcher.n_jobs=abc: Value 'abc' of type 'str' could not be converted to Integer",
    ),
    Case(
        "resume-nothing",
        "override",
        ["--resume"],
        "--resume takes one run or sweep directory and nothing else",
    ),
    Case(
        "resume-two",
        "override",
        ["--resume", "a", "b"],
        "--resume takes one run or sweep directory and nothing else",
    ),
    # --- folders: used, empty, missing ---------------------------------------------------------
    Case(
        "used-run-folder",
        "folder",
        ["seed=7", "hydra.run.dir=ROOT/used"],
        "ROOT/used already holds a run (.hydra/ exists)",
        setup=_used_run,
    ),
    Case(
        "failed-run-folder",
        "folder",
        ["hydra.run.dir=ROOT/used"],
        "ROOT/used already holds a run (status.json exists)",
        setup=_failed_run,
    ),
    Case(
        "used-sweep-folder",
        "folder",
        ["-m", "seed=7,8", "hydra.sweep.dir=ROOT/sweep"],
        "ROOT/sweep already holds a sweep (multirun.yaml exists)",
        setup=_used_sweep,
    ),
    Case(
        "empty-run-dir",
        "folder",
        ["hydra.run.dir="],
        "hydra.run.dir=: must name a folder (empty writes into ROOT)",
    ),
    Case(
        "empty-sweep-dir",
        "folder",
        ["-m", "seed=0,1", "hydra.sweep.dir="],
        "hydra.sweep.dir=: must name a folder",
    ),
    Case(
        "run-dir-is-a-file",
        "folder",
        ["hydra.run.dir=ROOT/taken"],
        "hydra.run.dir=ROOT/taken: exists and is not a folder; choose another hydra.run.dir",
        setup=_file_in_the_way,
    ),
    Case(
        "file-in-the-run-path",
        "folder",
        ["hydra.run.dir=ROOT/taken/run"],
        "hydra.run.dir=ROOT/taken/run: ROOT/taken is not a folder",
        setup=_file_in_the_way,
    ),
    Case(
        "sweep-dir-is-a-file",
        "folder",
        ["-m", "seed=0,1", "hydra.sweep.dir=ROOT/taken"],
        "hydra.sweep.dir=ROOT/taken: exists and is not a folder",
        setup=_file_in_the_way,
    ),
    Case("resume-missing", "folder", ["--resume", "ROOT/nowhere"], "ROOT/nowhere: not a directory"),
    Case(
        "resume-not-a-run",
        "folder",
        ["--resume", "ROOT/folder"],
        "ROOT/folder: no config.yaml (not a run directory)",
        setup=_plain_folder,
    ),
    Case(
        "resume-foreign-config",
        "file",
        ["--resume", "ROOT/run"],
        "--resume: ROOT/run/config.yaml: world=None: missing or not a mapping",
        setup=_config_only,
    ),
    Case(
        "bias-replay-unfinished",
        "folder",
        ["+study=bias_replay", "bias_replay.runs=[ROOT/run]"],
        "is not a finished run",
        setup=_unfinished_run,
    ),
    Case(
        "report-missing-folder",
        "folder",
        ["ROOT/nowhere"],
        "no such run directory: ROOT/nowhere",
        command="recloop-report",
    ),
    Case(
        "report-not-a-run",
        "folder",
        ["ROOT/folder"],
        "nor a sweep folder",
        setup=_plain_folder,
        command="recloop-report",
    ),
    # --- files: truncated or foreign -----------------------------------------------------------
    Case(
        "resume-broken-yaml",
        "file",
        ["--resume", "ROOT/run"],
        "--resume: ROOT/run/config.yaml: not a readable config (",
        setup=_broken_config,
    ),
    Case(
        "resume-list-yaml",
        "file",
        ["--resume", "ROOT/run"],
        "--resume: ROOT/run/config.yaml: not a mapping of config keys",
        setup=_list_config,
    ),
    Case(
        "truncated-checkpoint",
        "file",
        ["--resume", "ROOT/run"],
        "ROOT/run/checkpoint/state.pkl: unreadable checkpoint",
        setup=_truncated_checkpoint,
    ),
    Case(
        "foreign-checkpoint",
        "file",
        ["--resume", "ROOT/run"],
        "ROOT/run/checkpoint/state.pkl: not a recloop checkpoint",
        setup=_foreign_checkpoint,
    ),
    Case(
        "report-truncated-summary",
        "file",
        ["ROOT/run"],
        "ROOT/run/summary.json: cannot be read, truncated or corrupt",
        code=1,
        setup=_truncated_summary,
        command="recloop-report",
    ),
    Case(
        "report-truncated-metrics",
        "file",
        ["ROOT/run"],
        "ROOT/run/metrics.parquet: cannot be read, truncated or corrupt",
        code=1,
        setup=_truncated_metrics,
        command="recloop-report",
    ),
    # --- resources: refused before anything is allocated or written ---------------------------
    Case(
        "billion-users",
        "resource",
        ["world.n_users=1000000000"],
        "world.n_users=1000000000: needs an estimated",
    ),
    Case(
        "hundred-million-items",
        "resource",
        ["world.n_items=100000000"],
        "world.n_items=100000000: needs an estimated",
    ),
    Case("ten-million-days", "resource", ["sim.days=10000000"], "sim.days=10000000: needs an"),
]


def _snapshot(folder: Path) -> dict[str, bytes | None]:
    return {
        str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None)
        for p in sorted(folder.rglob("*"))
    }


def _invoke(case: Case, root: Path) -> int:
    argv = [a.replace("ROOT", str(root)) for a in case.argv]
    if case.command == "recloop-report":
        return report_cli.main(argv)
    saved_argv, saved_term = sys.argv, signal.getsignal(signal.SIGTERM)
    sys.argv = ["recloop", *argv]
    try:
        cli.main()
    except SystemExit as exc:
        return int(exc.code or 0)
    finally:
        sys.argv = saved_argv
        signal.signal(signal.SIGTERM, saved_term)
    return 0


def test_the_table_is_long_and_varied():
    assert len(CASES) >= 40
    assert len({c.id for c in CASES}) == len(CASES)
    assert {c.kind for c in CASES} >= {"config", "override", "folder", "file", "resource"}


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(c, marks=needs_joblib) if "hydra/launcher=joblib" in c.argv else c
        for c in CASES
    ],
    ids=[c.id for c in CASES],
)
def test_bad_input(case, tmp_path, monkeypatch, capsys):
    root = tmp_path / "cwd"
    root.mkdir()
    monkeypatch.chdir(root)
    monkeypatch.delenv("RECLOOP_RESUME", raising=False)
    for key, value in case.env.items():
        monkeypatch.setenv(key, value)
    if case.setup is not None:
        case.setup(root)
    before = _snapshot(root)
    code = _invoke(case, root)
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == case.code, err
    assert len(lines) == 1, err
    prog = "recloop-report" if case.command == "recloop-report" else "recloop"
    assert lines[0].startswith(f"{prog}: error: "), err
    assert case.expected.replace("ROOT", str(root)) in lines[0], err
    assert "Traceback" not in out + err
    assert _snapshot(root) == before  # nothing written, nothing overwritten
    assert os.environ.get("RECLOOP_RESUME") is None or case.argv[:1] == ["--resume"]


# --- signals: a real process, stopped mid-run -------------------------------------------------


def _start_run(tmp_path: Path) -> tuple[subprocess.Popen[str], Path]:
    run_dir = tmp_path / "run"
    code = "import sys; from experiments.cli import main; sys.argv[0] = 'recloop'; main()"
    args = [*(o for o in TINY_OVERRIDES if not o.startswith("sim.days=")), "sim.days=60"]
    args.append(f"hydra.run.dir={run_dir}")
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *args],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "HYDRA_FULL_ERROR": "0"},
    )
    deadline = time.monotonic() + 120
    while not (run_dir / "checkpoint" / "state.pkl").exists():  # past the first round
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    return proc, run_dir


@pytest.mark.slow
@pytest.mark.parametrize(
    ("signum", "code", "word"),
    [(signal.SIGINT, 130, "Ctrl-C"), (signal.SIGTERM, 143, "SIGTERM")],
    ids=["SIGINT", "SIGTERM"],
)
def test_a_signal_stops_a_run_with_one_line_and_leaves_it_resumable(tmp_path, signum, code, word):
    proc, run_dir = _start_run(tmp_path)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    lines = [line for line in err.splitlines() if line.strip()]
    assert proc.returncode == code, err
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("recloop: interrupted at day "), err
    assert lines[0].endswith(f"/60; resume with: recloop --resume {run_dir}"), err
    status = json.loads((run_dir / "status.json").read_text())
    assert status["status"] == "interrupted" and word in status["error"]
    assert not list(run_dir.rglob("*.tmp"))  # no temp file survives
    assert not (run_dir / "summary.json").exists()  # nothing passes for complete
    assert (run_dir / "checkpoint" / "state.pkl").is_file()
