"""An Optuna sweep end to end: ``recloop`` on hydra's Optuna sweeper (trials are jobs), each job
returning its objective with the floor folded in, then the sweep report's Trials section and
``comparison.md``'s, checked against the jobs' own files.

Needs the ``optuna`` extra (``pip install -e ".[optuna]"``): skipped without it, so CI runs it
only where the extra is installed. Developed on ``policy=softmax`` ``policy.selector.temperature``
(any numeric override works the same; ``study=tune_weights`` searches the scalarized weights).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import polars as pl
import pytest
import yaml

from tests.conftest import run_recloop

pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")

N_TRIALS = 4
FLOOR = 0.1041  # on the mean CTR: splits the 4 trials of this world (0.1040–0.1044), checked below

SWEEPER = f"""\
defaults:
  - optuna
  - override sampler: tpe
direction: maximize
n_trials: {N_TRIALS}
n_jobs: 1
sampler:
  seed: 0
params:
  policy.selector.temperature: interval(0.01, 3.0)
  seed: 0
"""
STUDY = f"""\
# @package _global_
defaults:
  - override /policy: softmax
  - override /hydra/sweeper: otune_search
study_name: otune
study_objective: cumulative_utility
study_revenue_floor: {FLOOR}
study_floor_metric: ctr
world:
  n_users: 300
  n_items: 150
sim:
  days: 3
policy:
  slate_size: 5
  n_candidates: 12
  selector:
    mc_samples: 20
metrics:
  homogenization_pairs: 100
hydra:
  mode: MULTIRUN
"""


def _config_dir(root: Path) -> Path:
    cfg = root / "cfg"
    (cfg / "study").mkdir(parents=True)
    (cfg / "hydra" / "sweeper").mkdir(parents=True)
    (cfg / "study" / "otune.yaml").write_text(STUDY)
    (cfg / "hydra" / "sweeper" / "otune_search.yaml").write_text(SWEEPER)
    return cfg


@pytest.mark.slow
def test_an_optuna_sweep_returns_penalized_objectives_and_reports_its_trials(tmp_path):
    cfg = _config_dir(tmp_path)
    sweep = tmp_path / "sweep"
    args = [
        "--config-dir",
        str(cfg),
        "+study=otune",
        "report.enabled=false",
        f"hydra.sweep.dir={sweep}",
    ]
    plan = run_recloop("--plan", *args, cwd=tmp_path)
    assert plan.returncode == 0, plan.stderr
    assert f"recloop otune: {N_TRIALS} jobs" in plan.stdout
    assert f"Optuna sweeper: {N_TRIALS} trials (TPESampler, seed 0" in plan.stdout
    done = run_recloop(*args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]

    jobs = sorted(
        (p for p in sweep.iterdir() if p.is_dir()), key=lambda p: int(p.name.split("_")[0])
    )
    assert len(jobs) == N_TRIALS
    rows = []
    for job in jobs:
        metrics = pl.read_parquet(job / "metrics.parquet").sort("window")
        outcome = json.loads((job / "objective.json").read_text())
        ctr = float(metrics["ctr"].mean())
        utility = float(metrics["cumulative_utility"][-1])
        feasible = ctr >= FLOOR
        expected = utility if feasible else -(FLOOR - ctr) / FLOOR
        assert outcome["feasible"] is feasible
        assert math.isclose(outcome["objective"], utility, rel_tol=1e-12)
        assert math.isclose(outcome["constraint_value"], ctr, rel_tol=1e-12)
        assert math.isclose(outcome["returned"], expected, rel_tol=1e-12)
        overrides = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text())
        temperature = next(
            float(o.split("=")[1])
            for o in overrides
            if o.startswith("policy.selector.temperature=")
        )
        config = yaml.safe_load((job / "config.yaml").read_text())
        assert config["policy"]["selector"]["temperature"] == pytest.approx(temperature)
        assert config["seed"] == 0  # common random numbers: every trial on seed 0
        rows.append((int(job.name.split("_")[0]), temperature, utility, ctr, feasible, expected))
    assert {r[4] for r in rows} == {True, False}, f"the floor should split the trials: {rows}"

    # Optuna's own record: the best returned value (a feasible trial's utility)
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    best = max(rows, key=lambda r: r[5])
    assert results["best_value"] == pytest.approx(best[5])
    assert results["best_params"]["policy.selector.temperature"] == pytest.approx(best[1])
    chosen = max((r for r in rows if r[4]), key=lambda r: r[2])
    assert chosen == best  # feasible trials outrank every infeasible one

    trials = pl.read_csv(sweep / "trials.csv")
    assert trials["trial"].to_list() == [r[0] for r in rows]
    assert trials["feasible"].to_list() == [r[4] for r in rows]
    md = (sweep / "comparison.md").read_text()
    assert "## Trials (Optuna)" in md
    assert f"| {chosen[0]} ← |" in md
    page = (sweep / "report.html").read_text()
    assert 'id="trials"' in page and "trials-objective" in page and "trials-dependence" in page
    assert f"Chosen: trial <b>{chosen[0]}</b>" in page
    assert page.count('class="best"') == 1
    assert "hydra/sweeper=basic" in page and "seed=0,1,2" in page
    # arms are trials, labelled by their short parameter values
    assert f"softmax [temperature={chosen[1]:.4g}]" in md
