"""Conversion labels end to end: at each cut-off the delayed training matrix holds exactly the
conversions logged by then (never one that happened later), the oracle every eventual one, and
model NDCG on conversions is written only with conversions on."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp
from conftest import run_recloop, tiny_config
from scipy import special

from agents.conversions import CONVERSION_SCHEMA
from experiments.cli import precheck
from experiments.config import ConfigError, parse_config
from experiments.run import build_simulation
from policies.label_delay import IPW_CAP
from sim.model_quality import conversion_gain

CONVERSIONS = {
    "sim.days": 5,
    "world.conversion.base": 0.3,
    "world.conversion_delay.mean_hours": 30.0,
}


def run_capturing(tmp_path, **overrides):
    """Run a tiny simulation; return it and each fit's (cut-off hour, training matrix)."""
    rc = parse_config(tiny_config(**CONVERSIONS, **overrides))
    simulation = build_simulation(rc, tmp_path / "logs")
    policy = simulation.state.policy
    fitted, fit = [], policy.fit

    def capture(interactions, version):
        fitted.append((simulation.env.now, interactions.clicks.copy()))
        return fit(interactions, version)

    policy.fit = capture
    simulation.run()
    return simulation, fitted


def matrix(frame: pl.DataFrame, shape) -> np.ndarray:
    users = frame["user_id"].to_numpy().astype(np.int64)
    items = frame["item_id"].to_numpy().astype(np.int64)
    return sp.coo_matrix((np.ones(users.size), (users, items)), shape=shape).toarray()


def logged_conversions(tmp_path) -> pl.DataFrame:
    return pl.read_parquet(tmp_path / "logs" / "conversions" / "*" / "part.parquet")


@pytest.mark.slow
@pytest.mark.parametrize("window", [None, 2])
def test_delayed_labels_are_the_conversions_logged_by_the_cutoff(tmp_path, window):
    _, fitted = run_capturing(
        tmp_path, **{"policy.label": "conversions", "policy.training_window_rounds": window}
    )
    conv = logged_conversions(tmp_path)
    assert len(fitted) == 4 and conv.height > 50
    n_later = 0
    for cutoff, got in fitted:
        known = conv.filter(pl.col("t") < cutoff)
        if window is not None:  # the window keeps the clicks of its last rounds only
            known = known.filter(pl.col("click_t") >= cutoff - 24.0 * window)
        np.testing.assert_array_equal(got.toarray(), matrix(known, got.shape))
        n_later += conv.filter((pl.col("click_t") < cutoff) & (pl.col("t") >= cutoff)).height
    assert n_later > 0  # some clicks had a conversion still to come: the delay was real


@pytest.mark.slow
def test_the_oracle_sees_every_eventual_conversion_at_click_time(tmp_path):
    simulation, fitted = run_capturing(tmp_path, **{"policy.label": "conversions_oracle"})
    pending = simulation.world.conversions  # what never happened before the horizon
    every = pl.concat(
        [
            logged_conversions(tmp_path).select("user_id", "item_id", "click_t"),
            pl.DataFrame(
                {"user_id": pending.user_id, "item_id": pending.item_id, "click_t": pending.click_t}
            ),
        ]
    )
    for cutoff, got in fitted:
        eventual = every.filter(pl.col("click_t") < cutoff)
        np.testing.assert_array_equal(got.toarray(), matrix(eventual, got.shape))


@pytest.mark.slow
def test_corrections_reweight_the_delayed_labels(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "i").mkdir()
    (tmp_path / "f").mkdir()
    _, delayed = run_capturing(tmp_path / "d", **{"policy.label": "conversions"})
    _, ipw = run_capturing(
        tmp_path / "i",
        **{"policy.label": "conversions", "policy.label_correction": "ipw"},
    )
    _, dfm = run_capturing(
        tmp_path / "f",
        **{"policy.label": "conversions", "policy.label_correction": "dfm"},
    )
    # the first fit trains on the same log in every arm (the models diverge from there on)
    (_, d), (_, i), (_, f) = delayed[0], ipw[0], dfm[0]
    d, i, f = d.toarray(), i.toarray(), f.toarray()
    assert np.array_equal(d > 0, i > 0)  # ipw reweights the conversions only
    assert np.all(i[d > 0] >= d[d > 0] - 1e-6) and np.all(i <= IPW_CAP * d + 1e-5)
    assert np.all(f >= d - 1e-6) and (f > d).sum() > (d > 0).sum()  # + unconverted clicks


def test_conversion_gain_is_relevance_times_the_conversion_probability():
    rc = parse_config(tiny_config(**CONVERSIONS))
    from agents.streams import Streams
    from agents.world import build_world

    world = build_world(rc.world, Streams(rc.seed), days=5)
    users = np.array([0, 3, 7])
    price = world.catalog.metadata.price
    gain = conversion_gain(
        world.relevance_matrix, rc.world.conversions.probability, price, world.median_price
    )(users)
    rel = world.relevance_matrix(users)
    logit = special.logit(0.3) + special.logit(rel) - 0.5 * np.log(price / world.median_price)
    np.testing.assert_allclose(gain, rel / (1 + np.exp(-logit)), rtol=1e-6)


@pytest.mark.slow
def test_model_ndcg_on_conversions_only_with_conversions_on(run_tiny):
    off = pl.read_parquet(run_tiny("off") / "logs" / "deployments.parquet")
    assert "model_ndcg_conversion" not in off.columns
    on = pl.read_parquet(
        run_tiny("on", **{k.replace(".", "__"): v for k, v in CONVERSIONS.items()})
        / "logs"
        / "deployments.parquet"
    )
    assert on.columns[:-1] == off.columns and on.columns[-1] == "model_ndcg_conversion"
    values = on["model_ndcg_conversion"].to_numpy()
    assert np.all((values > 0) & (values <= 1))


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["policy.label=conversions"],
            "policy.label='conversions': trains on conversions, but world.conversion.base=0",
        ),
        (["policy.label=conversions_oracle"], "world.conversion.base=0 switches them off"),
        (["policy.label=purchases"], "policy.label='purchases': unknown"),
        (["policy.label_correction=ipw"], "policy.label_correction='ipw': corrects delayed"),
        (
            ["policy.label=conversions", "policy.label_correction=ips"],
            "policy.label_correction='ips': unknown",
        ),
        (
            ["policy=position_ipw", "policy.label=conversions", "world.conversion.base=0.1"],
            "policy.label='conversions': policy.debias.mode",
        ),
        (["world.conversion_delay.mean_hours=0"], "world.conversion_delay.mean_hours=0"),
        (
            ["policy=thompson", "policy.label=conversions", "world.conversion.base=0.1"],
            "policy.label='conversions': selector 'thompson' builds its posterior",
        ),
    ],
)
def test_bad_label_config_names_the_keys(args, expected):
    with pytest.raises(ConfigError) as info:
        precheck(args)
    assert expected in str(info.value) and "\n" not in str(info.value)


def test_label_defaults_to_clicks():
    rc = parse_config(tiny_config())
    assert (rc.policy.label, rc.policy.label_correction) == ("clicks", "none")
    needs = rc.policy.training_needs
    assert (needs.label, needs.label_correction) == ("clicks", "none")


@pytest.mark.slow
def test_conversions_without_conversions_exit_2(tmp_path):
    out = tmp_path / "out"
    proc = run_recloop("policy.label=conversions", f"hydra.run.dir={out}", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("recloop: error: policy.label="), proc.stderr
    assert "world.conversion.base" in lines[0]
    assert not out.exists()


def test_a_cutoff_before_any_conversion_trains_on_nothing(tmp_path):
    from sim.training_data import TrainingLog

    impressions = pl.DataFrame(
        {
            "request_id": [0, 0, 1],
            "t": [1.0, 1.0, 2.0],
            "user_id": [0, 0, 1],
            "item_id": [2, 3, 2],
            "clicked": [True, False, True],
            "model_version": [-1, -1, -1],
            "position": [0, 1, 0],
            "score": [np.nan] * 3,
            "intervention": ["none"] * 3,
        }
    )
    impressions.write_parquet(tmp_path / "imp.parquet")
    pl.DataFrame(schema=CONVERSION_SCHEMA).write_parquet(tmp_path / "conv.parquet")
    log = TrainingLog(2, 4, label="conversions", label_correction="dfm")
    log.add_partition(tmp_path / "imp.parquet")
    log.add_conversions(tmp_path / "conv.parquet", 24.0)
    converted, delay, elapsed = log.label_view()
    np.testing.assert_array_equal(converted, [False, False])
    np.testing.assert_array_equal(elapsed, [23.0, 22.0])
    assert np.isnan(delay).all() and log.interactions().clicks.nnz == 0


@pytest.mark.slow
def test_a_model_trained_on_conversions_still_filters_every_click(tmp_path):
    rc = parse_config(tiny_config(**CONVERSIONS, **{"policy.label": "conversions"}))
    simulation = build_simulation(rc, tmp_path / "logs")
    simulation.run()
    model = simulation.state.policy.model
    labels = simulation.state.training.interactions()
    clicks = pl.read_parquet(tmp_path / "logs" / "impressions" / "*" / "part.parquet").filter(
        pl.col("clicked") & (pl.col("t") < 96.0)  # the last model's cut-off
    )
    np.testing.assert_array_equal(model.seen.toarray() > 0, matrix(clicks, model.seen.shape) > 0)
    assert labels.clicks.nnz < model.seen.nnz  # the labels are the converted clicks only


@pytest.mark.slow
def test_labelled_runs_do_not_depend_on_batching_or_a_pause(tmp_path):
    keys = {"policy.label": "conversions", "policy.label_correction": "dfm"}
    frames = []
    for name, extra, until in [
        ("plain", {}, None),
        ("batched", {"sim.max_batch_requests": 97}, None),
        ("paused", {}, 48.0),
    ]:
        rc = parse_config(tiny_config(**CONVERSIONS, **keys, **extra))
        simulation = build_simulation(rc, tmp_path / name / "logs")
        if until is not None:
            simulation.run(until=until)
        simulation.run()
        frames.append(pl.read_parquet(tmp_path / name / "logs" / "deployments.parquet"))
    assert frames[0]["model_ndcg_conversion"].is_not_null().all()
    for other in frames[1:]:
        assert other.equals(frames[0])
