"""The OPE study end to end: truth runs share the logging run's past; a target equal to the
logging policy is estimated exactly; the table has one row per estimator × target × seed."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from conftest import compose_config

from experiments.ope import ITEM_ESTIMATORS, OPE_COLUMNS, SLATE_ESTIMATORS, run_ope, window_start

# The logging policy is the composed ``policy`` (epsilon-greedy, epsilon 0.1).
CFG = compose_config(
    "+study=ope",
    "world.n_users=300",
    "world.n_items=150",
    "sim.days=3",
    "policy.selector.epsilon=0.1",
    "ope.targets=[epsilon_greedy,greedy]",
    "ope.seeds=[4]",
)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    out = tmp_path_factory.mktemp("ope")
    return out, run_ope(CFG, out)


def _impressions(path):
    return pl.read_parquet(path / "logs" / "impressions" / "**" / "*.parquet").sort(
        "request_id", "position"
    )


@pytest.mark.slow
def test_truth_runs_share_the_logging_past_and_switch_at_the_window(study):
    out, _ = study
    t0 = window_start(CFG["sim"])
    assert t0 == 49.0  # last retrain at hour 48, deployed an hour later
    logged = _impressions(out / "seed4" / "logging")
    truth = _impressions(out / "seed4" / "truth_greedy")
    cols = ["request_id", "user_id", "item_id", "position", "clicked", "propensity"]
    before = pl.col("t") < t0
    assert logged.filter(before).select(cols).equals(truth.filter(before).select(cols))
    after = truth.filter(pl.col("t") >= t0)
    assert after.height > 0 and set(after["policy"].cast(pl.String)) == {"greedy"}
    np.testing.assert_array_equal(after["propensity"].to_numpy(), 1.0)  # greedy is deterministic
    # the same requests and users in the window, whatever the policy
    assert (
        after["request_id"]
        .unique()
        .sort()
        .equals(logged.filter(pl.col("t") >= t0)["request_id"].unique().sort())
    )


@pytest.mark.slow
def test_a_target_equal_to_the_logging_policy_is_estimated_exactly(study):
    _, table = study
    assert table.columns == list(OPE_COLUMNS)
    assert table.height == (len(ITEM_ESTIMATORS) + len(SLATE_ESTIMATORS)) * 2
    same = table.filter(pl.col("target") == "epsilon_greedy")
    model_based = pl.col("estimator").is_in(["DM", "DR", "SNDR", "SwitchDR"])
    # all importance weights are 1: every weighting estimator returns the realized value = truth
    weighted = same.filter(~model_based)
    np.testing.assert_allclose(
        weighted["estimate"].to_numpy(), weighted["truth"].to_numpy(), rtol=1e-12
    )
    assert (same["ess_share"] > 0.999).all()
    # the reward-model estimators are close but not exact (their model is an approximation)
    models = same.filter(model_based)
    assert models.height == 4
    rel = (models["estimate"] - models["truth"]).abs() / models["truth"]
    assert (rel < 0.5).all(), models
    other = table.filter(pl.col("target") == "greedy")
    assert other["estimate"].is_finite().all() and other["truth"].is_finite().all()


@pytest.mark.slow
def test_page_and_summary_are_written(study):
    out, _ = study
    page = (out / "ope.html").read_text(encoding="utf-8")
    assert 'id="fig-ope-item"' in page and 'id="fig-ope-slate"' in page
    summary = pl.read_csv(out / "ope_summary.csv")
    assert {"bias", "rmse", "relative_error", "ci_coverage", "kendall_tau"} <= set(summary.columns)
