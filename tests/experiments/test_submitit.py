"""Sweeps through hydra's submitit launcher (``pip install -e ".[submitit]"``).

``hydra/launcher=submitit_local`` runs each job as its own subprocess the way ``submitit_slurm``
runs it as a SLURM array task (same pickled job, same hydra entry point), so the local launcher
is the test for both; the ``hydra/launcher=slurm`` preset (``submitit_slurm`` with recloop's
defaults) is checked by composing it and rendering the sbatch script it would submit (no SLURM
here).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
from pathlib import Path

import pytest
from test_cli import recloop


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # no hydra plugin at all: the hydra_plugins namespace is absent
        return False


HAVE_SUBMITIT = _installed("hydra_plugins.hydra_submitit_launcher")
# CI that installs the extra sets RECLOOP_CI_SUBMITIT=1: there a missing plugin is a failure.
REQUIRED = os.environ.get("CI") == "true" and os.environ.get("RECLOOP_CI_SUBMITIT") == "1"


@pytest.fixture(autouse=True)
def _submitit_plugin():
    if HAVE_SUBMITIT:
        return
    if REQUIRED:
        pytest.fail('hydra-submitit-launcher is not installed (pip install -e ".[submitit]")')
    pytest.skip('needs the submitit extra: pip install -e ".[submitit]"')


SWEEP = [
    "world.n_users=200",
    "world.n_items=120",
    "sim.days=2",
    "policy.slate_size=5",
    "policy=greedy,random",
    "seed=0,1",
]
JOBS = ["0_greedy_seed0", "1_greedy_seed1", "2_random_seed0", "3_random_seed1"]


def _job_files(job: Path) -> dict[str, bytes]:
    """What must not depend on the launcher: the event log, the metrics, the summary without its
    timings (relative path → bytes)."""
    files = {
        str(p.relative_to(job)): p.read_bytes()
        for p in sorted((job / "logs").rglob("*"))
        if p.is_file()
    }
    for name in ("metrics.parquet", "item_exposure.parquet"):
        files[name] = (job / name).read_bytes()
    summary = json.loads((job / "summary.json").read_text())
    summary.pop("timing_seconds")
    files["summary.json"] = json.dumps(summary, sort_keys=True).encode()
    return files


@pytest.mark.slow
def test_submitit_local_sweep_equals_the_basic_launcher(tmp_path):
    submitit_dir = tmp_path / "submitit"
    basic_dir = tmp_path / "basic"
    elsewhere = tmp_path / "elsewhere"  # launched from a folder that is not the sweep's parent
    elsewhere.mkdir()

    proc = recloop(
        "-m",
        "hydra/launcher=submitit_local",
        *SWEEP,
        f"hydra.sweep.dir={submitit_dir}",
        cwd=elsewhere,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Submitit 'local' sweep output dir" in proc.stdout + proc.stderr
    jobs = sorted(
        p.name for p in submitit_dir.iterdir() if p.is_dir() and not p.name.startswith(".")
    )
    assert jobs == JOBS
    for name in ("comparison.md", "comparison.csv", "report.html", "multirun.yaml"):
        assert (submitit_dir / name).is_file(), name
    table = (submitit_dir / "comparison.md").read_text()
    assert "| greedy | 2 |" in table and "| random | 2 |" in table  # every job was read back
    # submitit's own files (pickled jobs, each job's stdout/stderr) stay in a hidden folder
    assert (submitit_dir / ".submitit").is_dir()
    assert not list(elsewhere.iterdir())  # nothing lands where the command was typed
    # recloop's one line per job is printed by the job's process: under submitit it is in the
    # job's own log, not on the terminal
    logs = "".join(p.read_text() for p in (submitit_dir / ".submitit").rglob("*_log.out"))
    for job in JOBS:
        assert f"{job} finished in" in logs

    proc = recloop("-m", *SWEEP, f"hydra.sweep.dir={basic_dir}", cwd=elsewhere)
    assert proc.returncode == 0, proc.stderr
    for job in JOBS:
        assert _job_files(submitit_dir / job) == _job_files(basic_dir / job), job


class _Rendered(Exception):
    """Raised instead of calling sbatch: carries the script submitit would have submitted."""


def test_slurm_preset_renders_the_sbatch_script(tmp_path, monkeypatch):
    """No SLURM here: compose ``hydra/launcher=slurm`` with a worked example's overrides, let the
    plugin's launcher build its submitit executor as on a cluster, and stop at the sbatch call."""
    from hydra import compose, initialize_config_module
    from hydra.utils import instantiate
    from submitit.slurm.slurm import SlurmExecutor

    def render(executor: SlurmExecutor, command: str) -> None:
        raise _Rendered(executor._make_submission_file_text(command, "uid"))

    monkeypatch.setattr(SlurmExecutor, "affinity", classmethod(lambda cls: 1))  # "srun exists"
    monkeypatch.setattr(SlurmExecutor, "_submit_command", render)
    sweep = tmp_path / "sweep"
    overrides = [
        "hydra/launcher=slurm",
        "hydra.launcher.partition=cpu",
        "hydra.launcher.timeout_min=120",
        "hydra.launcher.cpus_per_task=4",
        "hydra.launcher.mem_gb=16",
        "hydra.launcher.array_parallelism=8",
        "hydra.launcher.setup=[module load python/3.11]",
        f"hydra.sweep.dir={sweep}",
        "hydra.job.name=recloop",
    ]
    with initialize_config_module(config_module="configs", version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides, return_hydra_config=True)
    launcher = instantiate(cfg.hydra.launcher)
    launcher.config = cfg
    jobs = [[f"policy={p}", f"seed={s}"] for p in ("greedy", "random") for s in (0, 1)]
    with pytest.raises(_Rendered) as rendered:
        launcher.launch(jobs, initial_job_idx=0)
    script = str(rendered.value)
    folder = sweep / ".submitit"
    for line in (
        "#SBATCH --partition=cpu",
        "#SBATCH --time=120",
        "#SBATCH --cpus-per-task=4",
        "#SBATCH --mem=16GB",
        "#SBATCH --array=0-3%4",  # 4 jobs, at most min(4, array_parallelism) at once
        "#SBATCH --job-name=recloop",
        f"#SBATCH --output={folder}/%A_%a/%A_%a_0_log.out",
        "module load python/3.11",
    ):
        assert line in script.splitlines(), (line, script)
    # the job runs this environment's python by absolute path, on the sweep's own submitit folder
    assert f"-u -m submitit.core._submit {folder}/%j" in script
    assert sys.executable in script


def test_slurm_without_sbatch_stops_with_one_line(tmp_path):
    """No SLURM here: the preset stops before hydra starts (submitit would raise after seconds
    and leave a sweep folder behind)."""
    if shutil.which("sbatch") is not None:
        pytest.skip("this machine has sbatch")
    from conftest import run_recloop

    sweep = tmp_path / "sweep"
    proc = run_recloop(
        "-m",
        "hydra/launcher=slurm",
        "policy=greedy,random",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines == [
        "recloop: error: hydra/launcher=slurm: no sbatch on this machine; submit from a SLURM "
        "login node (hydra/launcher=submitit_local runs the same machinery here)"
    ]
    assert not sweep.exists()
