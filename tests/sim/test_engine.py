"""The closed loop end to end on tiny worlds: determinism, batching, timing, log contract."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from conftest import tiny_config

from experiments.cli import group_options
from experiments.run import run
from sim.event_log import CANDIDATES_SCHEMA, IMPRESSIONS_SCHEMA, scan_table

DESIGN_DTYPES = {  # the event-log contract of DESIGN.md, written out independently
    "request_id": pl.Int64,
    "t": pl.Float64,
    "user_id": pl.Int32,
    "item_id": pl.Int32,
    "position": pl.Int16,
    "model_version": pl.Int32,
    "score": pl.Float32,
    "propensity": pl.Float64,
    "clicked": pl.Boolean,
}


def impressions(run_dir: Path) -> pl.DataFrame:
    return scan_table(run_dir / "logs", "impressions").collect().sort("request_id", "position")


def candidates(run_dir: Path) -> pl.DataFrame:
    return scan_table(run_dir / "logs", "candidates").collect().sort("request_id", "rank")


def test_same_seed_gives_identical_outputs(run_tiny):
    a = run_tiny("a", policy__selector="epsilon_greedy", policy__name="epsilon_greedy")
    b = run_tiny("b", policy__selector="epsilon_greedy", policy__name="epsilon_greedy")
    assert (a / "metrics.parquet").read_bytes() == (b / "metrics.parquet").read_bytes()
    assert impressions(a).equals(impressions(b))
    assert candidates(a).equals(candidates(b))


def test_different_seed_gives_different_log(run_tiny):
    a, b = run_tiny("a"), run_tiny("b", seed=1)
    assert (
        not impressions(a)
        .select("user_id", "item_id")
        .equals(impressions(b).select("user_id", "item_id"))
    )


def test_batch_size_does_not_change_results(run_tiny):
    kw = {"policy__selector": "epsilon_greedy", "policy__epsilon": 0.3, "policy__name": "eps"}
    whole = run_tiny("whole", **kw)
    chunked = run_tiny("chunked", sim__max_batch_requests=7, **kw)
    assert impressions(whole).equals(impressions(chunked))
    assert candidates(whole).equals(candidates(chunked))


def _run_files(run_dir: Path) -> dict[str, bytes]:
    """Every file a run writes, by relative path: all but ``config.yaml`` (it records
    ``max_batch_requests``), and ``summary.json`` without its wall-clock timings."""
    files = {
        str(p.relative_to(run_dir)): p.read_bytes()
        for p in sorted(run_dir.rglob("*"))
        if p.is_file() and p.name not in ("config.yaml", "summary.json")
    }
    summary = json.loads((run_dir / "summary.json").read_text())
    summary.pop("timing_seconds")
    files["summary.json"] = json.dumps(summary, sort_keys=True).encode()
    return files


@pytest.mark.slow
@pytest.mark.parametrize("preset", group_options("policy"))
def test_batch_size_does_not_change_any_policy_presets_outputs(preset, tmp_path):
    """Every shipped policy config, end to end: serving a round in chunks of 37 requests instead
    of one batch leaves every log partition, metric and the summary byte for byte the same. Three
    days on the tiny world (~285 requests a day, so ~8 chunks per round) cover the bootstrap,
    a first fit and a refit."""
    outputs = {}
    for max_batch in (8192, 37):
        out = tmp_path / str(max_batch)
        cfg = tiny_config(
            f"policy={preset}", **{"sim.days": 3, "sim.max_batch_requests": max_batch}
        )
        run(cfg, out)
        outputs[max_batch] = _run_files(out)
    whole, chunked = outputs[8192], outputs[37]
    assert sorted(whole) == sorted(chunked)
    assert any(name.startswith("logs/impressions/round=0002/") for name in whole)
    differ = [name for name in whole if whole[name] != chunked[name]]
    assert not differ, f"policy={preset}: chunked serving changed {differ}"


def truth(run_dir: Path) -> pl.DataFrame:
    return scan_table(run_dir / "logs", "truth").collect().sort("request_id", "position")


@pytest.mark.parametrize(
    "behaviour",
    [
        {"world__click_model": "cascade"},
        {"world__click_model": "dcm", "world__dcm_continue": 0.3},
        {"world__trust_bias": 0.3},
        {"world__conformity": 2.0, "world__conformity_halflife_days": 0.5},
        {
            "world__click_model": "dcm",
            "world__conformity": -1.0,
            "world__drift_rate": 0.05,
        },
    ],
    ids=["cascade", "dcm", "trust_bias", "conformity", "dcm_anticonformity_drift"],
)
def test_batch_size_does_not_change_results_under_user_behaviour(run_tiny, behaviour):
    """Click models and conformity keep the chunking invisible: the continue draws come in request
    order and popularity changes only at event boundaries."""
    whole = run_tiny("whole", **behaviour)
    chunked = run_tiny("chunked", sim__max_batch_requests=7, **behaviour)
    assert impressions(whole).equals(impressions(chunked))
    assert truth(whole).equals(truth(chunked))


def test_click_models_change_clicks_but_not_what_is_shown_first(run_tiny):
    pbm, dcm = impressions(run_tiny("pbm")), impressions(run_tiny("dcm", world__click_model="dcm"))
    day0 = pl.col("t") < 24.0  # served by the bootstrap: the same draws whatever users click
    assert pbm.filter(day0).drop("clicked").equals(dcm.filter(day0).drop("clicked"))
    assert not pbm.filter(day0)["clicked"].equals(dcm.filter(day0)["clicked"])


def test_conformity_acts_only_after_the_first_event_and_keeps_the_truth(run_tiny):
    off, on = run_tiny("off"), run_tiny("on", world__conformity=2.0)
    imp_off, imp_on = impressions(off), impressions(on)
    day0 = pl.col("t") < 24.0  # before the first boundary every item's popularity signal is 0
    assert imp_off.filter(day0).equals(imp_on.filter(day0))
    # Until the first deployment both are served by the same bootstrap draws: same items, same
    # true relevance, but clicks that now follow popularity.
    boot = pl.col("model_version") == -1
    assert imp_off.filter(boot).drop("clicked").equals(imp_on.filter(boot).drop("clicked"))
    assert not imp_off.filter(boot)["clicked"].equals(imp_on.filter(boot)["clicked"])
    ids = imp_off.filter(boot).select("request_id").unique()
    assert truth(off).join(ids, on="request_id").equals(truth(on).join(ids, on="request_id"))


def test_log_schema_matches_the_contract(run_tiny):
    out = run_tiny()
    imp = impressions(out)
    for column, dtype in DESIGN_DTYPES.items():
        assert imp.schema[column] == dtype, column
    assert imp.schema["policy"] in (pl.Categorical, pl.Categorical())
    assert isinstance(imp.schema["source"], pl.Enum)
    assert set(IMPRESSIONS_SCHEMA) <= set(imp.columns)
    assert set(CANDIDATES_SCHEMA) <= set(candidates(out).columns)
    rounds = sorted(p.name for p in (out / "logs" / "impressions").iterdir())
    assert rounds == [f"round={r:04d}" for r in range(4)]  # 3 retrains in 4 days + the last round
    assert not list(out.rglob("*.tmp")), "temp files left behind"


def test_every_request_gets_a_full_slate_of_distinct_items(run_tiny):
    imp = impressions(run_tiny())
    per_request = imp.group_by("request_id").agg(
        pl.len().alias("n"),
        pl.col("item_id").n_unique().alias("distinct"),
        pl.col("position").sort().alias("positions"),
    )
    assert (per_request["n"] == 5).all() and (per_request["distinct"] == 5).all()
    assert per_request["positions"].to_list()[0] == [0, 1, 2, 3, 4]
    assert imp["propensity"].is_between(0.0, 1.0, closed="right").all()


def test_models_serve_only_after_deployment(run_tiny):
    out = run_tiny(sim__train_hours=5.0)
    imp = impressions(out)
    dep = pl.read_parquet(out / "logs" / "deployments.parquet").sort("model_version")
    assert dep["model_version"].to_list() == [0, 1, 2]
    assert dep["t_deployed"].to_list() == [29.0, 53.0, 77.0]  # retrain at 24h·k, 5 h of training
    bounds = [0.0, *dep["t_deployed"].to_list(), float("inf")]
    versions = [-1, *dep["model_version"].to_list()]
    t = imp["t"].to_numpy()
    served = imp["model_version"].to_numpy()
    for v, lo, hi in zip(versions, bounds[:-1], bounds[1:], strict=True):
        in_span = (t >= lo) & (t < hi)
        assert (served[in_span] == v).all(), f"version {v} should serve [{lo}, {hi})"
    assert (imp.filter(pl.col("model_version") == -1)["source"] == "bootstrap").all()


def test_training_data_is_the_log_before_the_cutoff(run_tiny):
    out = run_tiny()
    imp = impressions(out)
    dep = pl.read_parquet(out / "logs" / "deployments.parquet").sort("model_version")
    for row in dep.iter_rows(named=True):
        before = imp.filter((pl.col("t") < row["t_train_start"]) & pl.col("clicked"))
        assert row["n_train_clicks"] == before.height
        assert row["n_train_users"] == before["user_id"].n_unique()


def test_clicked_items_are_not_recommended_again(run_tiny):
    out = run_tiny(policy__selector="epsilon_greedy", policy__name="eps")
    imp = impressions(out)
    dep = pl.read_parquet(out / "logs" / "deployments.parquet")
    for row in dep.iter_rows(named=True):
        known = (
            imp.filter((pl.col("t") < row["t_train_start"]) & pl.col("clicked"))
            .select("user_id", "item_id")
            .unique()
        )
        served = imp.filter(pl.col("model_version") == row["model_version"])
        again = served.join(known, on=["user_id", "item_id"], how="inner")
        assert again.height == 0, f"model {row['model_version']} re-recommended clicked items"


def test_candidates_keep_every_retrieved_item_and_mark_the_shown(run_tiny):
    out = run_tiny()
    imp, cand = impressions(out), candidates(out)
    served = imp.filter(pl.col("model_version") >= 0)
    n_requests = served["request_id"].n_unique()
    assert cand.height == n_requests * 12  # every retrieved item of every model-served request
    shown = served.select("request_id", "item_id").with_columns(pl.lit(True).alias("in_log"))
    joined = cand.join(shown, on=["request_id", "item_id"], how="left")
    assert (joined["shown"] == joined["in_log"].fill_null(False)).all()
    # Greedy: the top-K ranks are shown with probability 1, the rest never.
    assert (cand.filter(pl.col("rank") < 5)["show_probability"] == 1.0).all()
    assert (cand.filter(pl.col("rank") >= 5)["show_probability"] == 0.0).all()
    assert (cand["shown"] == (cand["rank"] < 5)).all()


def test_greedy_propensity_is_one_and_epsilon_greedy_is_exact(run_tiny):
    greedy = impressions(run_tiny("g")).filter(pl.col("model_version") >= 0)
    assert (greedy["propensity"] == 1.0).all()
    eps = impressions(
        run_tiny("e", policy__selector="epsilon_greedy", policy__epsilon=0.2, policy__name="eps")
    ).filter(pl.col("model_version") >= 0)
    exploit = eps.filter(pl.col("source") != "explore")
    assert np.allclose(exploit["propensity"].to_numpy(), 0.8)
    explore = eps.filter(pl.col("source") == "explore")
    assert explore.height > 0
    # ε / |pool|: the pool is the catalog minus the user's filtered clicks minus the greedy top-K
    pool = 0.2 / explore["propensity"].to_numpy()
    assert np.allclose(pool, np.round(pool)) and (pool <= 150 - 5).all()
    frac = explore.height / eps.height
    se = np.sqrt(0.2 * 0.8 / eps.height)
    assert abs(frac - 0.2) < 4 * se


def test_policies_face_the_same_users_common_random_numbers(run_tiny):
    greedy = impressions(run_tiny("g")).filter(pl.col("position") == 0)
    rand = impressions(
        run_tiny("r", policy__scorer="random", policy__selector="uniform", policy__name="random")
    ).filter(pl.col("position") == 0)
    assert greedy.select("request_id", "t", "user_id").equals(
        rand.select("request_id", "t", "user_id")
    )
    # Before the first deployment both are served by the same bootstrap draws.
    boot_g = greedy.filter(pl.col("model_version") == -1)
    boot_r = rand.filter(pl.col("model_version") == -1)
    assert boot_g.select("item_id", "clicked").equals(boot_r.select("item_id", "clicked"))


def test_summary_and_metrics_are_written(run_tiny):
    out = run_tiny()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "complete"
    metrics = pl.read_parquet(out / "metrics.parquet")
    assert metrics.height == summary["n_windows"] == 4
    assert metrics["n_requests"].sum() == summary["n_requests"]
    assert summary["final"]["coverage_exposure"] == pytest.approx(metrics["coverage_exposure"][-1])


def test_run_refuses_a_directory_that_holds_a_run(run_tiny):
    from conftest import tiny_config

    from experiments.run import RunDirectoryError, run

    out = run_tiny()
    before = (out / "metrics.parquet").read_bytes()
    with pytest.raises(RunDirectoryError, match="already holds a run"):
        run(tiny_config(), out)
    assert (out / "metrics.parquet").read_bytes() == before


def test_sliding_window_trains_on_the_last_rounds_only(run_tiny):
    out = run_tiny(policy__training_window_rounds=1)
    imp = impressions(out)
    dep = pl.read_parquet(out / "logs" / "deployments.parquet").sort("model_version")
    for row in dep.iter_rows(named=True):
        last_round = imp.filter(
            (pl.col("t") >= row["t_train_start"] - 24.0)
            & (pl.col("t") < row["t_train_start"])
            & pl.col("clicked")
        )
        assert row["n_train_clicks"] == last_round.height


def test_warm_start_continues_from_the_previous_factors(run_tiny):
    fresh = impressions(run_tiny("fresh"))
    warm = impressions(run_tiny("warm", policy__warm_start=True))
    first_model = pl.col("model_version") <= 0  # bootstrap and the first fit are identical
    assert fresh.filter(first_model).equals(warm.filter(first_model))
    later = pl.col("model_version") >= 1
    assert not fresh.filter(later).select("item_id").equals(warm.filter(later).select("item_id"))
