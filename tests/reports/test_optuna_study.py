"""An Optuna sweep read from its folder (reports.optuna_study): the trial table, the chosen trial,
the sensitivity per key against independent computations, and the pages built from them."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml
from scipy.stats import spearmanr

from reports.comparison import write_comparison
from reports.optuna_study import (
    SearchParam,
    best_feasible,
    load_optuna_study,
    parse_spec,
    sensitivity,
)
from reports.sweep_folder import load_sweep
from reports.sweep_report import build_sweep_report
from sim.metrics import METRIC_COLUMNS

SPACE = {
    "policy.rerank.weights.revenue": "interval(0.0, 2.0)",
    "policy.rerank.weights.diversity": "interval(0.0, 1.0)",
    "seed": "0",
}
SWEEPER = "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper"


def _job(sweep: Path, num: int, revenue_w: float, diversity_w: float, outcome: dict | None) -> None:
    job = sweep / f"{num}_scalarized_seed0"
    (job / ".hydra").mkdir(parents=True)
    hydra = {
        "hydra": {
            "sweeper": {
                "_target_": SWEEPER,
                "direction": "maximize",
                "n_trials": 5,
                "sampler": {"_target_": "optuna.samplers.TPESampler", "seed": 0},
                "params": SPACE,
            },
            "job": {"num": num},
        }
    }
    (job / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump(hydra, sort_keys=False))
    overrides = [
        f"policy.rerank.weights.revenue={revenue_w!r}",
        f"policy.rerank.weights.diversity={diversity_w!r}",
        "seed=0",
        "+study=tune_weights",
    ]
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if outcome is None:  # a failed job
        (job / "status.json").write_text(json.dumps({"status": "failed", "error": "boom"}))
        return
    rng = np.random.default_rng(num)
    metrics = {c: rng.random(3) for c in METRIC_COLUMNS}
    metrics["window"] = np.arange(3)
    metrics["cumulative_utility"] = np.array([1.0, 2.0, outcome["objective"]])
    pl.DataFrame(metrics).write_parquet(job / "metrics.parquet")
    final = {c: float(metrics[c][-1]) for c in METRIC_COLUMNS}
    summary = {"status": "complete", "policy": "scalarized", "seed": 0, "final": final, "mean": {}}
    (job / "summary.json").write_text(json.dumps(summary))
    (job / "config.yaml").write_text("seed: 0\nstudy_name: tune_weights\n")
    full = {
        "objective_metric": "cumulative_utility",
        "constraint_metric": "revenue_per_request",
        "floor": 4.0,
        **outcome,
    }
    (job / "objective.json").write_text(json.dumps(full))


def _sweep(tmp_path: Path) -> Path:
    sweep = tmp_path / "sweep"
    ok = {"feasible": True}
    _job(sweep, 0, 0.5, 0.2, {"objective": 10.0, "constraint_value": 5.0, "returned": 10.0, **ok})
    # the highest objective, but below the floor: not chosen
    _job(
        sweep,
        1,
        1.9,
        0.9,
        {"objective": 30.0, "constraint_value": 3.0, "feasible": False, "returned": -0.25},
    )
    _job(sweep, 2, 1.2, 0.4, {"objective": 20.0, "constraint_value": 4.5, "returned": 20.0, **ok})
    _job(sweep, 3, 0.1, 0.7, None)
    _job(
        sweep,
        10,
        0.123456,
        0.654321,
        {"objective": 15.0, "constraint_value": 6.0, "returned": 15.0, **ok},
    )
    (sweep / "optimization_results.yaml").write_text(
        yaml.safe_dump(
            {
                "name": "optuna",
                "best_params": {
                    "policy.rerank.weights.revenue": 1.2,
                    "policy.rerank.weights.diversity": 0.4,
                },
                "best_value": 20.0,
            }
        )
    )
    return sweep


def test_the_trial_table_has_one_row_per_job_in_trial_order(tmp_path):
    study = load_optuna_study(load_sweep(_sweep(tmp_path)))
    assert study is not None
    assert study.keys == ["policy.rerank.weights.revenue", "policy.rerank.weights.diversity"]
    assert study.fixed == {"seed": "0"}
    assert study.sampler == "TPESampler" and study.n_trials == 5
    t = study.trials
    assert t["trial"].to_list() == [0, 1, 2, 3, 10]  # 10 after 3: by number, not by name
    assert t["status"].to_list() == ["finished", "finished", "finished", "failed", "finished"]
    assert t["policy.rerank.weights.revenue"].to_list() == [0.5, 1.9, 1.2, 0.1, 0.123456]
    assert t["feasible"].to_list() == [True, False, True, None, True]
    assert math.isnan(t["objective"][3]) and math.isnan(t["returned"][3])
    best = best_feasible(t)
    assert best is not None and best["trial"] == 2  # 30.0 is infeasible


def test_an_unchecked_trial_counts_as_feasible_and_ties_go_to_the_earlier_trial():
    t = pl.DataFrame(
        {
            "trial": [0, 1, 2],
            "status": ["finished"] * 3,
            "objective": [5.0, 7.0, 7.0],
            "feasible": [True, None, True],
        },
        schema_overrides={"feasible": pl.Boolean},
    )
    assert best_feasible(t)["trial"] == 1
    assert best_feasible(t.with_columns(pl.lit(False).alias("feasible"))) is None


def test_trials_are_arms_labelled_by_their_short_parameter_values(tmp_path):
    sweep = load_sweep(_sweep(tmp_path))
    arms = {j.name: j.arm for j in sweep.jobs}
    assert arms["10_scalarized_seed0"] == "scalarized [revenue=0.1235, diversity=0.6543]"
    assert arms["0_scalarized_seed0"] == "scalarized [revenue=0.5, diversity=0.2]"


def test_labels_stay_full_when_shortening_would_merge_two_trials(tmp_path):
    sweep_dir = tmp_path / "sweep"
    feasible = {"objective": 1.0, "constraint_value": 5.0, "feasible": True, "returned": 1.0}
    _job(sweep_dir, 0, 0.12341, 0.5, feasible)
    _job(sweep_dir, 1, 0.12344, 0.5, feasible)
    arms = [j.arm for j in load_sweep(sweep_dir).jobs]
    assert arms[0] != arms[1] and "0.12341" in arms[0]


def test_the_search_space_is_read_from_hydras_override_grammar():
    assert parse_spec("a", "interval(0.5, 2)") == SearchParam("a", "interval(0.5, 2)", 0.5, 2.0)
    assert parse_spec("a", "tag(log, interval(1, 5))").low == 1.0
    assert parse_spec("a", "choice(1, 2)") == SearchParam("a", "choice(1, 2)")
    assert parse_spec("seed", "0") is None


def _table(x: np.ndarray, y: np.ndarray, status: list[str] | None = None) -> pl.DataFrame:
    n = len(y)
    return pl.DataFrame(
        {
            "trial": np.arange(n),
            "status": status or ["finished"] * n,
            "a": x[:, 0],
            "b": x[:, 1],
            "c": x[:, 2],
            "objective": y,
        }
    )


SENS_SPACE = [
    SearchParam("a", "", 0.0, 2.0),
    SearchParam("b", "", 0.0, 1.0),
    SearchParam("c", "", 0.0, 1.0),
]


def test_an_exactly_linear_outcome_gives_its_slopes_times_the_ranges():
    rng = np.random.default_rng(3)
    x = rng.uniform([0, 0, 0], [2, 1, 1], size=(12, 3))
    y = 5.0 + 3.0 * x[:, 0] - 4.0 * x[:, 1]  # c does nothing
    s = sensitivity(_table(x, y), SENS_SPACE)
    assert s["key"].to_list() == ["a", "b", "c"]
    np.testing.assert_allclose(s["effect"].to_numpy(), [6.0, -4.0, 0.0], atol=1e-9)
    np.testing.assert_allclose(s["share"].to_numpy(), [0.6, 0.4, 0.0], atol=1e-9)


def test_sensitivity_matches_the_normal_equations_and_scipys_spearman_on_noisy_trials():
    rng = np.random.default_rng(7)
    x = rng.uniform([0, 0, 0], [2, 1, 1], size=(20, 3))
    y = np.sin(3 * x[:, 0]) + x[:, 1] ** 2 + rng.normal(0, 0.3, 20)
    status = ["finished"] * 18 + ["failed"] * 2  # failed trials are left out
    y_used = y.copy()
    y_used[18:] = np.nan
    s = sensitivity(_table(x, y_used, status), SENS_SPACE)
    # independent: unscaled normal equations, then slope × range
    design = np.column_stack([np.ones(18), x[:18]])
    beta = np.linalg.solve(design.T @ design, design.T @ y[:18])
    np.testing.assert_allclose(
        s["effect"].to_numpy(), beta[1:] * np.array([2.0, 1.0, 1.0]), rtol=1e-9
    )
    expected_rho = [spearmanr(x[:18, j], y[:18]).statistic for j in range(3)]
    np.testing.assert_allclose(s["spearman"].to_numpy(), expected_rho, rtol=1e-12)
    assert s["n"].to_list() == [18, 18, 18]


def test_too_few_trials_for_the_fit_give_nan_effects_not_a_crash():
    x = np.array([[0.0, 0.0, 0.0], [1.0, 0.5, 0.5], [2.0, 1.0, 0.2]])
    s = sensitivity(_table(x, np.array([1.0, 2.0, 3.0])), SENS_SPACE)
    assert s["effect"].is_nan().all() and s["share"].is_nan().all()
    assert s["spearman"][0] == pytest.approx(1.0)


def test_the_pages_show_the_trials_and_the_chosen_one(tmp_path):
    sweep_dir = _sweep(tmp_path)
    write_comparison(sweep_dir)
    md = (sweep_dir / "comparison.md").read_text()
    assert "## Trials (Optuna)" in md and "| 2 ← |" in md
    assert "Chosen (best trial meeting the floor): trial 2" in md
    # the chosen trial is the baseline every other trial is compared with
    first = next(line for line in md.splitlines() if line.startswith("| scalarized"))
    assert first.startswith("| scalarized [revenue=1.2, diversity=0.4] |")
    assert first.endswith("| baseline |")
    trials = pl.read_csv(sweep_dir / "trials.csv")
    assert trials["trial"].to_list() == [0, 1, 2, 3, 10]
    page = build_sweep_report(sweep_dir).read_text()
    assert '<h2 id="trials">' in page and "Chosen: trial <b>2</b>" in page
    assert page.count('class="best"') == 1 and page.count('class="infeasible"') == 1
    assert "the same trial" in page  # optimization_results.yaml agrees
    assert "hydra/sweeper=basic" in page and "policy.rerank.weights.revenue=1.2" in page
    # too few finished trials (4) for a fit on 2 keys + intercept? 4 > 3: effects are numbers
    assert "effect low→high" in page
