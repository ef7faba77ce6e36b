"""What a job of an Optuna study returns (experiments.objective) and how the precheck treats an
Optuna sweep (experiments.cli): hand-computed values, and the one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import polars as pl
import pytest

from experiments.cli import _parse, optuna_corner_jobs
from experiments.objective import check_objective, job_objective, trial_outcome
from sim.metrics import METRIC_COLUMNS
from tests.conftest import run_recloop


def _metrics(**columns: list[float]) -> pl.DataFrame:
    n = len(next(iter(columns.values())))
    # windows deliberately out of order: the objective is the last window's, not the last row's
    return pl.DataFrame(
        {"window": list(range(n))[::-1], **{k: v[::-1] for k, v in columns.items()}}
    )


def test_a_feasible_trial_returns_its_last_window_objective():
    m = _metrics(cumulative_utility=[1.0, 3.0, 7.5], revenue_per_request=[4.0, 5.0, 6.0])
    out = trial_outcome(m, "cumulative_utility", 5.0)
    assert out.objective == 7.5 and out.constraint_value == 5.0  # mean of 4, 5, 6
    assert out.feasible is True and out.returned == 7.5


def test_an_infeasible_trial_returns_minus_its_relative_shortfall():
    m = _metrics(cumulative_utility=[2.0, 9.0], revenue_per_request=[3.0, float("nan")])
    out = trial_outcome(m, "cumulative_utility", 4.0)
    assert out.constraint_value == 3.0  # the NaN window is left out of the mean
    assert out.feasible is False
    assert out.returned == pytest.approx(-(4.0 - 3.0) / 4.0)
    assert out.objective == 9.0  # still recorded, unpenalized
    # below every feasible trial of a non-negative objective, and closer to the floor is better
    closer = trial_outcome(
        _metrics(cumulative_utility=[0.0, 0.0], revenue_per_request=[3.5, 3.5]),
        "cumulative_utility",
        4.0,
    )
    assert out.returned < closer.returned < 0.0


def test_a_run_without_the_revenue_column_is_not_checked_and_says_so():
    out = trial_outcome(_metrics(cumulative_utility=[1.0, 2.0]), "cumulative_utility", 4.0)
    assert out.feasible is None and out.returned == 2.0
    assert "revenue_per_request" in out.note and "not applied" in out.note
    free = trial_outcome(_metrics(cumulative_utility=[1.0, 2.0]), "cumulative_utility", None)
    assert free.feasible is True and free.note is None


def test_the_floor_can_apply_to_another_metric():
    m = _metrics(cumulative_utility=[1.0, 2.0], ctr=[0.1, 0.3])
    out = trial_outcome(m, "cumulative_utility", 0.25, on="ctr")
    assert out.constraint_metric == "ctr" and out.constraint_value == pytest.approx(0.2)
    assert out.returned == pytest.approx(-0.05 / 0.25)


def test_an_ordinary_run_returns_nothing_and_writes_nothing(tmp_path):
    _metrics(cumulative_utility=[1.0]).write_parquet(tmp_path / "metrics.parquet")
    assert job_objective({"study_objective": None}, tmp_path) is None
    assert not (tmp_path / "objective.json").exists()
    value = job_objective({"study_objective": "cumulative_utility"}, tmp_path)
    assert value == 1.0
    data = json.loads((tmp_path / "objective.json").read_text())
    assert data["feasible"] is True and data["floor"] is None and data["returned"] == 1.0


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        ({"study_objective": "revenue"}, "study_objective=revenue: not a metric"),
        ({"study_objective": "ctr", "study_revenue_floor": 0}, "study_revenue_floor=0.0: must be"),
        ({"study_revenue_floor": 1.0}, "study_revenue_floor=1.0: needs study_objective"),
        (
            {"study_objective": "ctr", "study_revenue_floor": 1.0, "study_floor_metric": "x"},
            "study_floor_metric=x: not a metric",
        ),
    ],
)
def test_bad_objective_settings_name_the_key(cfg, message):
    with pytest.raises(ValueError, match=message):
        check_objective(cfg, METRIC_COLUMNS)


def test_the_precheck_tries_every_end_of_an_optuna_search_space():
    overrides = _parse(
        [
            "policy.selector.temperature=interval(0.01, 2.5)",
            "policy.n_candidates=choice(10, 20, 30)",
            "seed=0",
        ]
    )
    jobs = optuna_corner_jobs(overrides)
    assert jobs == [
        ["policy.selector.temperature=0.01", "policy.n_candidates=10", "seed=0"],
        ["policy.selector.temperature=2.5", "policy.n_candidates=20", "seed=0"],
        ["policy.selector.temperature=2.5", "policy.n_candidates=30", "seed=0"],
    ]


STUDY = """\
# @package _global_
defaults:
  - override /policy: softmax
  - override /hydra/sweeper: search
study_objective: cumulative_utility
hydra:
  mode: MULTIRUN
"""
SEARCH = """\
defaults:
  - optuna
direction: maximize
n_trials: 2
params:
  policy.selector.temperature: interval(-1.0, 0.5)
"""


def test_without_the_optuna_extra_an_optuna_study_stops_with_one_line(tmp_path):
    (tmp_path / "study").mkdir()
    (tmp_path / "hydra" / "sweeper").mkdir(parents=True)
    (tmp_path / "study" / "o.yaml").write_text(STUDY)
    (tmp_path / "hydra" / "sweeper" / "search.yaml").write_text(SEARCH)
    code = (
        "import sys; sys.modules['hydra_plugins.hydra_optuna_sweeper'] = None; "
        "from experiments.cli import main; main()"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, "--config-dir", str(tmp_path), "+study=o"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "recloop: error: hydra/sweeper=optuna: hydra-optuna-sweeper is not installed "
        '(pip install -e ".[optuna]")'
    )


def test_a_bad_bound_of_an_optuna_search_stops_before_any_trial(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    (tmp_path / "study").mkdir()
    (tmp_path / "hydra" / "sweeper").mkdir(parents=True)
    (tmp_path / "study" / "o.yaml").write_text(STUDY)
    (tmp_path / "hydra" / "sweeper" / "search.yaml").write_text(SEARCH)
    sweep = tmp_path / "sweep"
    base = ["--config-dir", str(tmp_path), "+study=o", f"hydra.sweep.dir={sweep}"]
    done = run_recloop(*base, cwd=tmp_path)
    assert done.returncode == 2
    assert (
        done.stderr.strip()
        == "recloop: error: policy.selector.temperature=-1.0: must be a number > 0"
    )
    assert not sweep.exists()
    good = "policy.selector.temperature=interval(0.01, 0.5)"  # the command line wins
    done = run_recloop(*base, good, "hydra.sweeper.direction=minimize", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().startswith("recloop: error: hydra.sweeper.direction=minimize:")
    done = run_recloop(*base, good, "study_objective=null", cwd=tmp_path)
    assert done.returncode == 2 and "study_objective=null: an Optuna sweep needs" in done.stderr
    # the plan of a good search: n_trials jobs, costed by the cost model without crashing
    done = run_recloop("--plan", *base, good, "hydra.sweeper.n_trials=7", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "recloop sweep: 7 jobs" in done.stdout
    assert "Optuna sweeper: 7 trials" in done.stdout and "estimate:" in done.stdout
    assert not sweep.exists()
