"""The OPE study end to end: truth runs share the logging run's past and its clicks wherever they
show the same item in the same slot; a target equal to the logging policy is estimated exactly;
the table has one row per estimator × target × seed."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from conftest import compose_config

from experiments.ope import (
    ITEM_ESTIMATORS,
    OPE_COLUMNS,
    SLATE_ESTIMATORS,
    check_ope,
    run_ope,
    window_start,
)

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


@pytest.mark.slow
def test_truth_runs_reuse_the_logging_runs_clicks_where_they_show_the_same_item_in_the_same_slot(
    study,
):
    """Common random numbers, checked directly: a target that differs from the logging policy
    serves different slates in the window, but wherever its truth run shows the same item in the
    same slot of the same request as the logging run, the click must be the same one.

    This holds for the position-based click model, where a slot's click depends only on its
    own uniform, its item's attraction and its slot's examination (under cascade or DCM it also
    depends on the clicks above it), and while the world is the same in both runs: here without
    drift or conformity, so the world never changes (with them, each run would apply its own
    window clicks at its next event boundary). Where a run shows the item in another slot,
    nothing is claimed: the examination probability differs by position, so the same coin may
    fall either way.
    """
    out, _ = study
    t0 = window_start(CFG["sim"])
    world = CFG["world"]
    assert world["click_model"] == "pbm" and world["drift_rate"] == 0 and world["conformity"] == 0
    cols = ["request_id", "position", "user_id", "item_id", "clicked"]
    logged = _impressions(out / "seed4" / "logging").filter(pl.col("t") >= t0).select(cols)
    logging, targets, _ = check_ope(CFG)
    differing = [name for name, t in targets.items() if t.selector != logging.selector]
    assert differing == ["greedy"]  # epsilon_greedy is the logging policy's own selector
    for name in differing:
        truth = _impressions(out / "seed4" / f"truth_{name}").filter(pl.col("t") >= t0)
        both = logged.join(
            truth.select(cols), on=["request_id", "position", "item_id"], suffix="_truth"
        )
        assert (both["user_id"] == both["user_id_truth"]).all()
        # enough shared slots, and clicks among them, for the check to mean something (today
        # 2,826 of the window's 3,160 slots, 180 clicks; with fresh coins ≈ 2·CTR·(1 − CTR) ≈ 11%
        # of shared slots would disagree, ≈ 300 of them)
        assert both.height >= 1000 and both["clicked"].sum() >= 30, both.height
        # the target does differ: some slots show another item than in the logging run
        assert both.height < logged.height
        differ = both.filter(pl.col("clicked") != pl.col("clicked_truth"))
        assert differ.height == 0, f"{differ.height} of {both.height} shared slots: {differ}"


def test_a_target_with_another_reranker_is_refused():
    """A target is its selector replayed on the logging policy's (reranked) candidates: a preset
    with another reranker would be estimated as if it had the logging policy's, so it is refused
    in one line naming both; the same reranker with other settings too."""
    from experiments.config import ConfigError

    other = compose_config("+study=ope", "ope.targets=[greedy,scalarized]")
    with pytest.raises(ConfigError, match=r"^ope.targets: 'scalarized' reranks with "):
        check_ope(other)
    logged = compose_config(
        "+study=ope",
        "policy=scalarized",
        "ope.targets=[scalarized]",
        "policy.rerank.weights.revenue=1.0",
    )
    with pytest.raises(ConfigError, match=r"revenue"):
        check_ope(logged)
    same = compose_config("+study=ope", "policy=scalarized", "ope.targets=[scalarized]")
    _, targets, _ = check_ope(same)
    assert list(targets) == ["scalarized"]


@pytest.mark.slow
def test_the_click_reward_adds_nothing(study):
    """The default reward (ope.reward=click) writes what the study wrote before conversions
    could be the reward: no delay files, the same ope.json keys, runs that stop at sim.days."""
    out, _ = study
    assert CFG["ope"]["reward"] == "click"
    assert not (out / "ope_delay.parquet").exists()
    assert not (out / "ope_delay_summary.csv").exists()
    meta = (out / "ope.json").read_text(encoding="utf-8")
    assert meta == '{\n  "logging": "epsilon_greedy_high",\n  "window_start_hour": 49.0\n}\n'
    assert _impressions(out / "seed4" / "logging")["t"].max() < 24 * CFG["sim"]["days"]
    assert 'id="ope-delay"' not in (out / "ope.html").read_text(encoding="utf-8")
