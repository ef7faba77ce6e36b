"""The ``recloop`` command line: bad input fails early and cleanly; good input runs end to end."""

from __future__ import annotations

import json
import os
import re
import resource
import signal
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from conftest import run_recloop

from experiments.cli import check_fresh_folder, check_writable, group_options, precheck
from experiments.config import ConfigError

TINY_ARGS = [
    "world.n_users=200",
    "world.n_items=120",
    "sim.days=3",
    "policy.slate_size=5",
    "metrics.homogenization_pairs=200",
]


def recloop(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_recloop(*args, cwd=cwd)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["policy=foo"], "policy=foo: unknown policy"),
        (["world.n_users=-5"], "world.n_users=-5"),
        (["world.n_items=0"], "world.n_items=0"),
        (["sim.days=0"], "sim.days=0"),
        (["world.n_users=abc"], "world.n_users='abc'"),
        (["policy.slate_size=2000"], "policy.slate_size=2000: larger than the catalog"),
        (["policy.epsilon=1.5"], "policy.epsilon=1.5: moved to policy.selector.epsilon"),
        (["policy=epsilon_greedy", "policy.selector.epsilon=1.5"], "policy.selector.epsilon=1.5"),
        (["policy/selector=nope"], "policy/selector=nope"),
        (
            ["policy=new_item_boost", "policy.selector.until_impressions=0"],
            "policy.selector.until_impressions=0: must be null or a positive integer",
        ),
        (
            ["policy=new_item_boost", "policy.selector.max_interval_width=2"],
            "policy.selector.max_interval_width=2",
        ),
        (["world.nusers=5"], "world.nusers=5: unknown key"),
        (["+world.extra=1"], "world.extra=1: unknown key"),
        (["world.n_users=[1"], "malformed override"),
        (["policy=greedy,random"], "needs -m/--multirun"),
        (["-m", "policy=greedy,foo"], "policy=foo"),
        (["-m", "seed=0,1", "sim.train_hours=48"], "sim.train_hours=48"),
        (["seed=-3"], "seed=-3"),
        (["policy=position_ipw", "world.trust_bias=0.1"], "policy.debias.propensity='oracle'"),
        (["policy=position_ipw", "world.click_model=cascade"], "world.click_model='cascade'"),
        (["+study=ope", "ope.targets=[nope]"], "policy preset 'nope'"),
        (["+study=ope", "ope.targets=[linucb]"], "a target reranks the logging policy's model"),
        (["+study=ope", "ope.targets=[item_boost]"], "cannot be replayed"),
        (["metrics.ndcg_k=5000"], "metrics.ndcg_k=5000"),
        # issue 17's bad inputs: arrival rates < 0, a lifetime <= 0, onboarding screens larger
        # than the catalog, transfer enabled with no second domain
        (
            ["world.item_arrival_rate=-2"],
            "world.item_arrival_rate=-2: must be a number of arrivals per day >= 0",
        ),
        (
            ["world.user_arrival_rate=-0.5"],
            "world.user_arrival_rate=-0.5: must be a number of arrivals per day >= 0",
        ),
        (["world.item_lifetime_days=0"], "world.item_lifetime_days=0: must be null"),
        (
            ["onboarding.enabled=true", "onboarding.screens=201", "onboarding.items_per_screen=5"],
            "onboarding.screens=201: screens × items_per_screen = 1005",
        ),
        (
            ["transfer.enabled=true", "transfer.domain=null"],
            "transfer.domain=None: transfer enabled with no second domain",
        ),
        (["metrics.new_item_days=0"], "metrics.new_item_days=0: must be a number of days > 0"),
        (["metrics.new_item_days=abc"], "metrics.new_item_days='abc'"),
        (["metrics.new_user_sessions=0"], "metrics.new_user_sessions=0: must be an integer >= 1"),
        (["metrics.new_user_sessions=2.5"], "metrics.new_user_sessions=2.5"),
        (["+study=bias_replay"], "bias_replay.runs=[]: list at least one finished run folder"),
        (["+study=bias_replay", "bias_replay.runs=[/nowhere]"], "'/nowhere' is not a finished run"),
        (["runner=sideways"], "runner='sideways': unknown"),
        # issue 18's bad inputs: negative rates, a mean delay <= 0, probabilities outside [0, 1]
        (["world.return_rate=-1"], "world.return_rate=-1: must be a number of returns per day"),
        (["world.churn.base_rate=-0.1"], "world.churn.base_rate=-0.1: must be a daily probab"),
        (["world.churn.base_rate=1.5"], "world.churn.base_rate=1.5: must be a daily probab"),
        (["world.churn.sensitivity=-2"], "world.churn.sensitivity=-2: must be a number >= 0"),
        (["+world.churn.rate=0.1"], "world.churn.rate=0.1: unknown key; keys: base_rate"),
        (["world.satiation=-0.5"], "world.satiation=-0.5: must be a number >= 0"),
        (["world.satiation_recovery_days=0"], "world.satiation_recovery_days=0: must be a num"),
        (["world.satisfaction.memory=1.5"], "world.satisfaction.memory=1.5: must be in (0, 1]"),
        (["world.satisfaction.reference=abc"], "world.satisfaction.reference='abc'"),
        (["world.conversion.base=1.2"], "world.conversion.base=1.2: must be a probability"),
        (["world.conversion.base=-0.2"], "world.conversion.base=-0.2: must be a probability"),
        (["world.conversion_delay.mean_hours=0"], "world.conversion_delay.mean_hours=0: must"),
        (["world.conversion_delay.mean_hours=-5"], "world.conversion_delay.mean_hours=-5:"),
        (["world.conversion_delay.distribution=gamma"], "distribution='gamma': must be one of"),
        (["world.conversion_delay.shape=0"], "world.conversion_delay.shape=0: must be a number"),
        # issue 19's small ones: the right place for an unknown key, a key-less override,
        # fewer candidates than the slate shows (the policy would silently retrieve more)
        (
            ["polcy=greedy"],
            "polcy=greedy: unknown key in the top level "
            "(see configs/config.yaml for the keys; did you mean policy?)",
        ),
        (["policy.selector.foo=1"], "unknown key in policy.selector (see configs/policy/selector/"),
        (["zzz=1"], "zzz=1: unknown key in the top level (see configs/config.yaml for the keys)"),
        (["world.foo=1"], "world.foo=1: unknown key in world (see configs/world/ for the keys)"),
        (["=5"], "=5: malformed override: no key before '='"),
        (["-m", "seed=0,1", "=5"], "=5: malformed override"),
        (
            ["policy.n_candidates=5"],
            "policy.n_candidates=5: smaller than policy.slate_size=10",
        ),
        (
            ["-m", "policy.slate_size=5,40"],
            "policy.n_candidates=30: smaller than policy.slate_size=40",
        ),
        # non-finite numbers, refused for every key by one check (not "must be an integer")
        (["world.n_users=inf"], "world.n_users=inf: must be a finite number"),
        (["sim.days=inf"], "sim.days=inf: must be a finite number"),
        (["sim.retrain_every_hours=inf"], "sim.retrain_every_hours=inf: must be a finite number"),
        (["world.n_items=-inf"], "world.n_items=-inf: must be a finite number"),
        (
            ["policy=epsilon_greedy", "policy.selector.epsilon=nan"],
            "policy.selector.epsilon=nan: must be a finite number",
        ),
        (["-m", "seed=0,1", "serving.cache_ms=nan"], "serving.cache_ms=nan: must be a finite"),
    ],
)
def test_precheck_names_the_key_and_value(args, expected):
    with pytest.raises(ConfigError) as info:
        precheck(args)
    message = str(info.value)
    assert expected in message
    assert "\n" not in message


def test_precheck_accepts_good_input_and_sweeps():
    precheck([])
    precheck(
        ["policy=epsilon_greedy", "policy.selector.epsilon=0.1", "world.n_users=5000", "seed=3"]
    )
    precheck(["-m", "policy=greedy,epsilon_greedy,random", "seed=0,1"])
    precheck(["--help"])  # hydra's own flags are hydra's business


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["policy=softmax", "policy.selector.temperature=0.2", "world.n_users=300"],
        ["hydra.run.dir=/tmp/x", "hydra.job.chdir=false", "seed=2"],
        ["policy=thompson", "hydra/launcher=joblib", "sim.days=2"],
    ],
)
def test_a_single_run_is_composed_once_and_equals_a_fresh_composition(args, monkeypatch):
    """The precheck reuses :func:`_expand`'s composition for a single run: it composes once,
    and the job config it hands on is what composing the job's own overrides gives (hydra's
    settings on the command line change only the ``hydra`` node)."""
    from omegaconf import OmegaConf

    from experiments import cli

    compose, calls = cli._compose, []
    monkeypatch.setattr(cli, "_compose", lambda *a, **kw: calls.append(a) or compose(*a, **kw))
    plan = precheck(args)
    assert len(calls) == 1
    fresh = compose([a for a in args if not a.lstrip("+~").startswith("hydra")])
    assert not plan.multirun and "hydra" not in plan.jobs[0]
    assert OmegaConf.to_yaml(plan.jobs[0]) == OmegaConf.to_yaml(fresh)


@pytest.mark.parametrize(
    "args",
    [[], ["-m", "seed=0,1"], ["+study=quickstart"], ["hydra.mode=MULTIRUN", "seed=3"]],
)
def test_the_plan_knows_the_mode_hydra_would_compose_again_to_read(args):
    """``recloop`` hands hydra the run mode from its plan (:func:`_known_mode`) instead of
    letting ``Hydra.get_mode`` compose the whole config once more: the two must agree."""
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    plan = precheck(args)
    overrides = [a for a in args if not a.startswith("-")]
    with initialize_config_module(config_module="configs", version_base="1.3"):
        hydra_mode = GlobalHydra.instance().hydra.get_mode("config", overrides)
    assert plan.hydra.mode == hydra_mode


def test_every_policy_config_is_listed():
    assert {"greedy", "epsilon_greedy", "popularity", "random", "oracle"} <= set(
        group_options("policy")
    )
    assert "_base" not in group_options("policy")


@pytest.mark.slow
@pytest.mark.parametrize(
    "args",
    [
        ["policy=foo"],
        ["world.n_users=-5"],
        ["world.n_users=[1"],
        ["world.conversion_delay.mean_hours=0"],
        ["world.churn.base_rate=2"],
        ["world.return_rate=-1"],
        ["=5"],
        ["polcy=greedy"],
        ["policy.n_candidates=5"],
        ["sim.days=inf"],
    ],
)
def test_bad_input_exits_2_with_one_line_and_no_run_dir(tmp_path, args):
    out = tmp_path / "out"
    proc = recloop(*args, f"hydra.run.dir={out}", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("recloop: error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists()


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize(
    ("sweep", "files", "expected"),
    [
        (False, [".hydra/config.yaml"], "already holds a run (.hydra/ exists)"),
        (False, ["status.json"], "already holds a run (status.json exists)"),
        (False, ["logs/impressions/round=0000/part.parquet"], "already holds a run (logs/"),
        (True, ["multirun.yaml"], "already holds a sweep (multirun.yaml exists)"),
        (True, ["0_greedy_seed0/summary.json"], "(job folder 0_greedy_seed0/ exists)"),
    ],
)
def test_a_used_folder_is_refused(tmp_path, monkeypatch, sweep, files, expected):
    folder = tmp_path / "used"
    for name in files:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text("x")
    args = ["-m", "seed=0,1", f"hydra.sweep.dir={folder}"] if sweep else [f"hydra.run.dir={folder}"]
    monkeypatch.delenv("RECLOOP_RESUME", raising=False)
    with pytest.raises(ConfigError) as info:
        check_fresh_folder(precheck(args))
    assert str(info.value).startswith(f"{folder} already holds a ")
    assert expected in str(info.value) and "\n" not in str(info.value)
    monkeypatch.setenv("RECLOOP_RESUME", "1")  # a resume re-enters its folder on purpose
    check_fresh_folder(precheck(args))


def test_an_empty_or_new_folder_is_accepted(tmp_path, monkeypatch):
    monkeypatch.delenv("RECLOOP_RESUME", raising=False)
    (tmp_path / "empty").mkdir()
    check_fresh_folder(precheck([f"hydra.run.dir={tmp_path / 'empty'}"]))
    check_fresh_folder(precheck([f"hydra.run.dir={tmp_path / 'new'}"]))
    check_fresh_folder(precheck(["-m", "seed=0,1", f"hydra.sweep.dir={tmp_path / 'empty'}"]))


@pytest.mark.slow
def test_a_used_folder_is_left_byte_identical(tmp_path):
    """A second command into a run's (or a sweep's) folder stops before hydra writes its
    .hydra record there: the folder is byte-identical afterwards."""
    run_dir = tmp_path / "run"
    first = recloop(*TINY_ARGS, "report.enabled=false", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    sweep_dir = tmp_path / "sweep"
    (sweep_dir / "0_greedy_seed0" / ".hydra").mkdir(parents=True)
    (sweep_dir / "multirun.yaml").write_text("hydra: {}\n")
    (sweep_dir / "0_greedy_seed0" / ".hydra" / "config.yaml").write_text("seed: 0\n")
    for folder, args in [
        (run_dir, ["seed=7", f"hydra.run.dir={run_dir}"]),
        (sweep_dir, ["-m", "seed=7,8", f"hydra.sweep.dir={sweep_dir}"]),
    ]:
        before = _snapshot(folder)
        proc = run_recloop(*TINY_ARGS, *args, cwd=tmp_path, drop_env=("RECLOOP_RESUME",))
        assert proc.returncode == 2, proc.stderr
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert len(lines) == 1, proc.stderr
        assert lines[0].startswith(f"recloop: error: {folder} already holds a "), proc.stderr
        assert _snapshot(folder) == before


@pytest.mark.slow
def test_help_lists_selectable_policies_only(tmp_path):
    proc = recloop("--help", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    line = next(line for line in proc.stdout.splitlines() if line.startswith("policy: "))
    assert "greedy" in line.split(", ") and "_base" not in line
    assert not [x for x in proc.stdout.splitlines() if "_base," in x or x.strip() == "_base"]


@pytest.mark.slow
def test_run_then_rebuild_report(tmp_path):
    out = tmp_path / "run"
    proc = recloop(*TINY_ARGS, f"hydra.run.dir={out}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    for name in ("metrics.parquet", "summary.json", "report.html", "config.yaml", ".hydra"):
        assert (out / name).exists(), name
    assert "exposure coverage" in proc.stdout  # the summary table
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["n_windows"] == 3
    assert pl.read_parquet(out / "metrics.parquet").height == 3

    (out / "report.html").unlink()
    rebuilt = subprocess.run(
        [sys.executable, "-m", "reports.cli", str(out)], capture_output=True, text=True, timeout=120
    )
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert (out / "report.html").stat().st_size > 1_000_000  # plotly.js is inlined


@pytest.mark.slow
def test_multirun_sweeps_policies(tmp_path):
    sweep = tmp_path / "sweep"
    proc = recloop(
        "-m", "policy=greedy,random", *TINY_ARGS, f"hydra.sweep.dir={sweep}", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    jobs = sorted(p.name for p in sweep.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert jobs == ["0_greedy_seed0", "1_random_seed0"]  # <job number>_<policy>_seed<seed>
    policies = [json.loads((sweep / j / "summary.json").read_text())["policy"] for j in jobs]
    assert policies == ["greedy", "random"]


def test_progress_bar_and_summary_table_render_on_a_terminal(tmp_path):
    """The bar is drawn only on a terminal, so force one: a crash here is every user's first run."""
    import io

    from rich.console import Console

    from experiments.console import day_progress, summary_table
    from experiments.run import run

    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=100)
    from conftest import tiny_config

    with day_progress(True, console, days=4) as progress:
        summary = run(tiny_config(), tmp_path / "run", progress=progress)
    console.print(summary_table(summary))
    text = buffer.getvalue()
    assert "day 4/4" in text
    assert "exposure coverage" in text and "greedy" in text


def test_study_configs_expand_their_own_sweep():
    from experiments.cli import _job_overrides

    jobs, multirun = _job_overrides(["+study=exploration"])
    assert multirun
    policies = {line.split("=")[1] for job in jobs for line in job if line.startswith("policy=")}
    assert {
        "greedy",
        "epsilon_greedy",
        "softmax",
        "ucb",
        "thompson",
        "linucb",
        "random",
    } <= policies
    assert len(jobs) == len(policies) * 3  # three seeds
    # the command line wins over the study's own params
    assert len(_job_overrides(["+study=exploration", "seed=0"])[0]) == len(policies)
    with pytest.raises(ConfigError, match=r"policy\.selector\.epsilon=3"):
        precheck(["+study=exploration", "policy.selector.epsilon=3"])


@pytest.mark.slow
def test_study_command_writes_the_comparison(tmp_path):
    sweep = tmp_path / "study"
    proc = recloop(
        "+study=exploration",
        "seed=0",
        "policy=greedy,epsilon_greedy,random",
        *TINY_ARGS,
        "report.enabled=false",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    table = (sweep / "comparison.md").read_text()
    for policy in ("greedy", "epsilon_greedy", "random"):
        assert f"| {policy} | 1 |" in table
    assert len(pl.read_csv(sweep / "comparison.csv")) == 3


@pytest.mark.slow
def test_a_failing_job_is_recorded_and_the_sweep_goes_on(tmp_path):
    sweep = tmp_path / "sweep"
    proc = recloop(
        "-m",
        "seed=0,1",
        "debug.fail_at_hour=30,null",
        *TINY_ARGS,
        "report.enabled=false",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert proc.returncode == 1, proc.stderr  # the sweep tells the truth: 2 jobs failed
    assert f"recloop: 2 failed of 4 jobs in {sweep}" in proc.stderr
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir())
    failed = [j for j in jobs if (j / "status.json").exists()]
    finished = [j for j in jobs if (j / "summary.json").exists()]
    assert len(failed) == 2 and len(finished) == 2  # seed × {fail at hour 30, no fault}
    status = json.loads((failed[0] / "status.json").read_text())
    assert status["status"] == "failed" and "injected fault at simulated hour 30" in status["error"]
    assert not (failed[0] / "summary.json").exists()  # a failed job never looks finished
    report = (sweep / "report.html").read_text()  # the end-of-sweep callback still ran
    assert report.count("injected fault at simulated hour 30") >= 2


@pytest.mark.slow
def test_a_sweep_with_a_refused_job_exits_1_after_the_others(tmp_path, monkeypatch):
    """A job refused only when it runs (its folder holds another run: RECLOOP_RESUME=1 lets the
    command past the precheck) is counted, the other job finishes, and the sweep exits 1."""
    sweep = tmp_path / "sweep"
    (sweep / "0_greedy_seed0").mkdir(parents=True)
    (sweep / "0_greedy_seed0" / "summary.json").write_text("{}")
    monkeypatch.setenv("RECLOOP_RESUME", "1")
    proc = recloop(
        "-m",
        "seed=0,1",
        *TINY_ARGS,
        "report.enabled=false",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert proc.returncode == 1, proc.stderr
    assert f"recloop: 1 refused of 2 jobs in {sweep}" in proc.stderr
    assert (sweep / "1_greedy_seed1" / "summary.json").exists()
    assert (sweep / "0_greedy_seed0" / "summary.json").read_text() == "{}"


def test_sweep_exit_counts_failures_recorded_by_other_processes(tmp_path, monkeypatch, capsys):
    """Jobs run by another launcher's processes leave only their status.json: still counted."""
    from experiments import cli

    sweep = tmp_path / "sweep"
    for job, status in [("0_greedy_seed0", "failed"), ("1_greedy_seed1", "failed")]:
        (sweep / job).mkdir(parents=True)
        (sweep / job / "status.json").write_text(json.dumps({"status": status}))
    (sweep / "2_greedy_seed2").mkdir()
    plan = precheck(["-m", "seed=0,1,2", f"hydra.sweep.dir={sweep}"])
    monkeypatch.setattr(cli, "_ACTIVE", {})
    monkeypatch.setattr(cli, "_OUTCOMES", {"failed": 0, "refused": 0})
    monkeypatch.setattr(sys, "argv", ["recloop", "-m", f"hydra.sweep.dir={sweep}"])
    assert cli.sweep_exit(plan) == 1
    err = capsys.readouterr().err
    assert (
        err
        == f"recloop: 2 failed of 3 jobs in {sweep} (see each job's status.json or the error above)\n"
    )
    for status in sweep.glob("*/status.json"):
        status.unlink()
    assert cli.sweep_exit(plan) == 0
    assert capsys.readouterr().err == ""


# ------------------------------------------------------------------ folders, disks, failures

ROOT = os.geteuid() == 0  # permission bits do not stop root: those cases need another user


def _unwritable(tmp_path: Path) -> Path:
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o555)
    return folder


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda t: (t / "f").write_text("x") and t / "f", "{out}: exists and is not a folder"),
        (lambda t: (t / "f").write_text("x") and t / "f" / "run", "{out}: {t}/f is not a folder"),
        (lambda t: Path("/sys/recloop-run"), "{out}: its parent /sys is not writable ("),
        pytest.param(
            lambda t: _unwritable(t),
            "{out}: the folder is not writable (Permission denied)",
            marks=pytest.mark.skipif(ROOT, reason="root writes anywhere"),
        ),
        pytest.param(
            lambda t: _unwritable(t) / "run",
            "{out}: its parent {t}/locked is not writable (Permission denied)",
            marks=pytest.mark.skipif(ROOT, reason="root writes anywhere"),
        ),
    ],
)
@pytest.mark.parametrize("sweep", [False, True])
def test_an_unwritable_output_folder_is_refused(tmp_path, make, expected, sweep):
    """Refused before hydra configures its log file there (which fails with a traceback)."""
    if not Path("/sys").is_dir():
        pytest.skip("no /sys")
    out = make(tmp_path)
    key = "sweep" if sweep else "run"
    args = ["-m", "seed=0,1", f"hydra.sweep.dir={out}"] if sweep else [f"hydra.run.dir={out}"]
    with pytest.raises(ConfigError) as info:
        check_writable(precheck(args))
    message = str(info.value)
    assert message.startswith(expected.format(out=f"hydra.{key}.dir={out}", t=tmp_path))
    assert message.endswith(f"choose another hydra.{key}.dir") and "\n" not in message
    assert not [p for p in tmp_path.rglob(".recloop-probe-*")]


@pytest.mark.slow
def test_an_unwritable_output_folder_exits_2_before_hydra(tmp_path):
    out = tmp_path / "f" / "run"
    (tmp_path / "f").write_text("x")
    proc = recloop(*TINY_ARGS, f"hydra.run.dir={out}", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"recloop: error: hydra.run.dir={out}: {tmp_path}/f is not a folder; "
        "choose another hydra.run.dir"
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]  # no outputs/, no .hydra


def _file_size_limit(limit: int):
    """``ulimit -f`` for a subprocess, with SIGXFSZ ignored: a write past ``limit`` bytes fails
    with EFBIG ("File too large") as a full disk fails with ENOSPC."""

    def limit_files() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return limit_files


@pytest.mark.slow
@pytest.mark.parametrize(
    ("limit", "failing"),
    [
        (8_000, r"logs/\w+/round=0000/part\.parquet"),  # the first event-log partition
        (2_000_000, r"report\.html"),  # plotly.js alone is 4.6 MB
    ],
)
def test_a_full_disk_is_one_line_naming_the_file(tmp_path, limit, failing):
    """A write that fails (here a file-size limit) stops the run with one line naming the file
    and exit 1; the traceback is in cli.log; no temp file and no summary.json are left."""
    out = tmp_path / "out"
    code = "import sys; from experiments.cli import main; sys.argv[0] = 'recloop'; main()"
    proc = subprocess.run(
        [sys.executable, "-c", code, *TINY_ARGS, "progress=false", f"hydra.run.dir={out}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HYDRA_FULL_ERROR": "0"},
        preexec_fn=_file_size_limit(limit),
    )
    assert proc.returncode == 1, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    pattern = (
        f"recloop: error: cannot write {re.escape(str(out))}/{failing}: File too large "
        f"\\(traceback in {re.escape(str(out / 'cli.log'))}\\)"
    )
    assert len(lines) == 1 and re.fullmatch(pattern, lines[0]), proc.stderr
    assert "Traceback" not in proc.stdout
    assert "Traceback (most recent call last)" in (out / "cli.log").read_text()
    assert not (out / "summary.json").exists()
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]


@pytest.mark.slow
def test_a_full_disk_while_hydra_writes_its_record_is_one_line(tmp_path):
    """hydra's own writes (.hydra/config.yaml, before the job starts) fail on a full disk with
    a traceback of hydra's; recloop makes that one line naming the folder, exit 1."""
    out = tmp_path / "out"
    code = "import sys; from experiments.cli import main; sys.argv[0] = 'recloop'; main()"
    proc = subprocess.run(
        [sys.executable, "-c", code, *TINY_ARGS, f"hydra.run.dir={out}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HYDRA_FULL_ERROR": "0"},
        preexec_fn=_file_size_limit(1_000),  # .hydra/config.yaml is larger
    )
    assert proc.returncode == 1, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(
        f"recloop: error: OSError: [Errno 27] File too large while hydra wrote to {out} "
        "(traceback in "
    ), proc.stderr
    assert not (out / "config.yaml").exists()


@pytest.mark.slow
def test_a_failing_run_is_one_line_with_the_traceback_in_cli_log(tmp_path):
    out = tmp_path / "out"
    proc = recloop(*TINY_ARGS, "debug.fail_at_hour=30", f"hydra.run.dir={out}", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "recloop: error: RuntimeError: injected fault at simulated hour 30 "
        f"(debug.fail_at_hour) (traceback in {out / 'cli.log'})"
    ]
    assert "Traceback (most recent call last)" in (out / "cli.log").read_text()
    assert not (out / "summary.json").exists()
    assert json.loads((out / "status.json").read_text())["status"] == "failed"


def test_a_sweep_whose_comparison_cannot_be_written_exits_1(tmp_path, monkeypatch, capsys):
    """The end-of-sweep callback failing to write (a full disk) is one line naming the file
    and exit 1, even when every job finished; the traceback goes to the sweep's cli.log."""
    import errno

    from experiments import cli, study
    from experiments.study import StudyComparison
    from reports.atomic_write import WriteError

    sweep = tmp_path / "sweep"
    sweep.mkdir()
    plan = precheck(["-m", "seed=0,1", f"hydra.sweep.dir={sweep}"])
    failure = WriteError(errno.ENOSPC, "No space left on device", str(sweep / "comparison.md"))

    def write_comparison(*args, **kwargs):
        raise failure

    monkeypatch.setattr(study, "write_comparison", write_comparison)
    monkeypatch.setattr(study, "OUTPUT_ERRORS", [])
    StudyComparison().on_multirun_end(_sweep_end_config(sweep))
    assert study.OUTPUT_ERRORS == [failure]
    monkeypatch.setattr(cli, "_ACTIVE", {"sweep_dir": sweep})
    monkeypatch.setattr(cli, "_OUTCOMES", {"failed": 0, "refused": 0})
    assert cli.sweep_exit(plan) == 1
    assert capsys.readouterr().err == (
        f"recloop: error: cannot write {sweep / 'comparison.md'}: No space left on device "
        f"(traceback in {sweep / 'cli.log'})\n"
    )
    assert "No space left on device" in (sweep / "cli.log").read_text()


def _sweep_end_config(sweep: Path):
    """The minimal config hydra hands ``on_multirun_end``: its sweep dir and sweeper params."""
    from omegaconf import OmegaConf

    return OmegaConf.create(
        {"hydra": {"sweep": {"dir": str(sweep)}, "sweeper": {"params": {}}}, "study_name": "s"}
    )
