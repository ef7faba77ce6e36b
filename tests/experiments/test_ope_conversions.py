"""The OPE study with conversions as the reward: the slot rewards against an independent
computation on a tiny run, the study end to end (complete labels agree with the truth, the early
estimate is biased low by about what the delay distribution predicts, the tail leaves the window
alone) and the bad inputs."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from conftest import compose_config, run_recloop, tiny_config

from agents.conversions import ConversionConfig
from experiments.cli import precheck
from experiments.config import ConfigError
from experiments.ope import (
    DELAY_COLUMNS,
    OPE_COLUMNS,
    _window,
    check_ope,
    run_ope,
    window_start,
    window_values,
)
from experiments.ope_reward import OpeReward, read_conversions, slot_rewards
from experiments.run import run
from sim.event_log import scan_table

ROOT = Path(__file__).resolve().parents[2]
H = 48.0  # label horizon (hours) of the study below
STUDY = (
    "+study=ope",
    "world.n_users=300",
    "world.n_items=150",
    "sim.days=3",
    "policy.selector.epsilon=0.1",
    "ope.targets=[epsilon_greedy,greedy]",
    "ope.seeds=[4]",
    # long delays: a mean of 48 h against a one-day window
    "world.conversion.base=0.5",
    "world.conversion_delay.mean_hours=48",
    "ope.reward=conversion",
    f"ope.label_horizon_hours={H:g}",
    "ope.elapsed_hours=[0,6,24]",
)
WEIGHTING = ("IPS", "SNIPS", "slate_standard_IPS", "slate_independent_IPS")
MODEL_BASED = ("DM", "DR", "SNDR", "SwitchDR")


# --- the reward of each slot ---------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("conv") / "run"
    cfg = tiny_config(
        "world.conversion.base=0.5", "world.conversion_delay.mean_hours=30", "sim.days=4"
    )
    run(cfg, out)
    return out / "logs"


def _by_hand(imp: pl.DataFrame, conv: pl.DataFrame, h: float, seen_before: float, value: bool):
    """Each impression's reward in plain Python: a dict of the logged conversions."""
    converted = {
        (r, i): (t, c, v)
        for r, i, t, c, v in conv.select("request_id", "item_id", "t", "click_t", "value").rows()
    }
    out = []
    for r, i, clicked in imp.select("request_id", "item_id", "clicked").rows():
        hit = converted.get((r, i))
        ok = clicked and hit is not None and hit[0] - hit[1] <= h and hit[0] < seen_before
        out.append((hit[2] if value else 1.0) if ok else 0.0)
    return np.array(out)


@pytest.mark.parametrize("value", [False, True])
@pytest.mark.parametrize(("h", "seen_before"), [(24.0, 80.0), (24.0, math.inf), (6.0, 60.0)])
def test_slot_rewards_match_a_hand_computation(tiny_run, value, h, seen_before):
    imp = scan_table(tiny_run, "impressions").drop("round").collect().sort("request_id", "position")
    conv = scan_table(tiny_run, "conversions").drop("round").collect()
    # the join key is sound: every logged conversion is one clicked impression, at its click time
    joined = conv.join(imp, on=["request_id", "item_id"], suffix="_imp")
    assert joined.height == conv.height and joined["clicked"].all()
    np.testing.assert_array_equal(joined["click_t"], joined["t_imp"])
    assert conv.height > 50 and (conv["t"] - conv["click_t"] > 24).any()  # some come late
    reward = OpeReward("conversion", h, value)
    got = slot_rewards(imp, read_conversions(tiny_run, reward), reward, seen_before)
    expected = _by_hand(imp, conv, h, seen_before, value)
    np.testing.assert_array_equal(got, expected)
    assert expected.sum() > 0
    # per slate: the sum over its slots, grouped independently by request id
    per_request: dict[int, float] = {}
    for r, x in zip(imp["request_id"].to_list(), expected, strict=True):
        per_request[r] = per_request.get(r, 0.0) + x
    by_slate = (
        imp.with_columns(r=got).group_by("request_id").agg(pl.col("r").sum()).sort("request_id")
    )
    np.testing.assert_allclose(by_slate["r"], [per_request[r] for r in by_slate["request_id"]])


def test_the_click_reward_is_the_click(tiny_run):
    imp = scan_table(tiny_run, "impressions").drop("round").collect().sort("request_id", "position")
    r = slot_rewards(imp, read_conversions(tiny_run, OpeReward()), OpeReward(), 0.0)
    np.testing.assert_array_equal(r, imp["clicked"].to_numpy().astype(float))


def test_window_truth_is_conversions_per_request(tiny_run):
    """The truth of the window [t0, t_end): within-h conversions of its clicks per request."""
    t0, t_end, h = 49.0, 72.0, 24.0
    imp = scan_table(tiny_run, "impressions").drop("round").collect()
    conv = scan_table(tiny_run, "conversions").drop("round").collect()
    win = imp.filter((pl.col("t") >= t0) & (pl.col("t") < t_end))
    counted = conv.filter(
        (pl.col("t") - pl.col("click_t") <= h)
        & (pl.col("click_t") >= t0)
        & (pl.col("click_t") < t_end)
    )
    first = set(win.filter(pl.col("position") == 0).select("request_id", "item_id").rows())
    values = window_values(tiny_run, t0, OpeReward("conversion", h), t_end)
    assert values["slate"] == pytest.approx(counted.height / win["request_id"].n_unique())
    in_first = sum(k in first for k in counted.select("request_id", "item_id").rows())
    assert values["item"] == pytest.approx(in_first / len(first))


# --- the study ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    cfg = compose_config(*STUDY)
    out = tmp_path_factory.mktemp("ope_conv")
    table = run_ope(cfg, out)
    return cfg, out, table, pl.read_parquet(out / "ope_delay.parquet")


@pytest.mark.slow
def test_files_and_their_rows(study):
    _, out, table, delay = study
    assert table.columns == list(OPE_COLUMNS) and delay.columns == list(DELAY_COLUMNS)
    assert sorted(delay["elapsed_hours"].unique()) == [0.0, 6.0, 24.0, H]
    # ope.parquet is the complete-label slice of ope_delay.parquet
    complete = delay.filter(pl.col("labels_complete"))
    assert (complete["elapsed_hours"] == H).all()
    assert complete.select(OPE_COLUMNS).equals(table)
    # truth is one number per target and level, whatever the time of the estimate
    assert delay.group_by("target", "level").agg(pl.col("truth").n_unique())["truth"].max() == 1
    summary = pl.read_csv(out / "ope_delay_summary.csv")
    assert summary.height == delay.height  # one seed: one summary row per delay row
    page = (out / "ope.html").read_text(encoding="utf-8")
    assert 'id="ope-delay"' in page and 'id="fig-ope-delay-slate"' in page


@pytest.mark.slow
def test_the_label_tail_leaves_the_window_alone(study, tmp_path):
    """The runs go on ceil(48/24) = 2 days past the window; what was served before its end is
    what a run that stops there serves, and the log holds every conversion that counts."""
    cfg, out, _, _ = study
    t_end = 24.0 * cfg["sim"]["days"]
    logs = out / "seed4" / "logging" / "logs"
    imp = scan_table(logs, "impressions").drop("round").collect()
    assert imp["t"].max() > t_end + H - 24  # the tail was served
    plain = {k: v for k, v in cfg.items() if k not in ("ope", "runner")}
    plain |= {"seed": 4, "report": {"enabled": False}, "progress": False}
    run(plain, tmp_path / "plain")
    alone = scan_table(tmp_path / "plain" / "logs", "impressions").drop("round").collect()
    cols = ["request_id", "t", "user_id", "item_id", "position", "clicked", "propensity"]
    early = imp.filter(pl.col("t") < t_end).select(cols).sort("request_id", "position")
    assert early.equals(alone.select(cols).sort("request_id", "position"))
    conv = scan_table(logs, "conversions").drop("round").collect()
    assert conv["t"].max() >= t_end + 24  # conversions logged well after the window


@pytest.mark.slow
def test_complete_labels_agree_with_the_truth(study):
    _, _, table, _ = study
    same = table.filter(pl.col("target") == "epsilon_greedy")
    # weights all 1: every weighting estimator returns the realized value = the truth
    weighted = same.filter(~pl.col("estimator").is_in(MODEL_BASED))
    np.testing.assert_allclose(weighted["estimate"], weighted["truth"], rtol=1e-12)
    models = same.filter(pl.col("estimator").is_in(MODEL_BASED))
    assert models.height == 4
    assert ((models["estimate"] - models["truth"]).abs() / models["truth"] < 0.5).all(), models
    other = table.filter(pl.col("target") == "greedy")
    assert (other["truth"] > 0).all()
    rel = (other["estimate"] - other["truth"]).abs() / other["truth"]
    assert (rel < 0.5).all(), other


@pytest.mark.slow
def test_the_early_estimate_is_biased_low(study):
    cfg, out, _, delay = study
    # labels only arrive: with non-negative weights an estimate never falls as time passes
    for (_e, _t), part in delay.filter(pl.col("estimator").is_in(WEIGHTING)).group_by(
        "estimator", "target"
    ):
        est = part.sort("elapsed_hours")["estimate"].to_numpy()
        assert np.all(np.diff(est) >= -1e-12), part
    at0 = delay.filter(pl.col("elapsed_hours") == 0)
    assert (at0["estimate"] < 0.7 * at0["truth"]).all(), at0
    full = delay.filter(pl.col("labels_complete")).select(
        "estimator", "level", "target", "estimate"
    )
    paired = at0.join(full, on=["estimator", "level", "target"], suffix="_full")
    assert (paired["estimate"] < 0.7 * paired["estimate_full"]).all()
    # about as low as the delay distribution says: the share of counted conversions logged by
    # the window's end ≈ mean over the window's clicks of F(t_end − click) / F(h)
    t_end = 24.0 * cfg["sim"]["days"]
    t0 = window_start(cfg["sim"])
    logs = out / "seed4" / "logging" / "logs"
    clicks = _window(logs, t0, t_end).filter(pl.col("clicked"))["t"].to_numpy()
    delays = ConversionConfig.parse(cfg["world"]["conversion"], cfg["world"]["conversion_delay"])
    predicted = float(np.mean(delays.delay_cdf(t_end - clicks)) / delays.delay_cdf(np.array(H)))
    seen = float(at0["seen_share"][0])
    assert 0.15 < seen < 0.7 and abs(seen - predicted) < 0.15, (seen, predicted)
    assert (at0["open_share"] == 1.0).all()  # a window of one day, a horizon of two


# --- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            ["ope.reward=conversion"],
            "ope.reward=conversion: needs world.conversion.base > 0, got world.conversion.base=0.0",
        ),
        (
            ["world.conversion.base=0.2", "ope.reward=conversion", "ope.label_horizon_hours=0"],
            "ope.label_horizon_hours=0: must be a number of hours > 0",
        ),
        (["ope.label_horizon_hours=-3"], "ope.label_horizon_hours=-3"),
        (["ope.reward=purchases"], "ope.reward='purchases': must be one of click, conversion"),
        (["ope.elapsed_hours=[0,-6]"], "ope.elapsed_hours=[0, -6]"),
        (["ope.conversion_value=maybe"], "ope.conversion_value='maybe'"),
    ],
)
def test_bad_reward_settings_are_refused_in_one_line(overrides, expected):
    with pytest.raises(ConfigError) as info:
        check_ope(compose_config("+study=ope", *overrides))
    assert expected in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(ConfigError, match=expected.split(":")[0].replace("[", r"\[")):
        precheck(["+study=ope", *overrides])


def test_defaults_are_the_click_reward():
    reward = OpeReward.parse(compose_config("+study=ope"))
    assert reward.is_click and reward.tail_days == 0


@pytest.mark.slow
def test_conversion_reward_without_conversions_exits_2(tmp_path):
    out = tmp_path / "out"
    proc = run_recloop("+study=ope", "ope.reward=conversion", f"hydra.run.dir={out}", cwd=ROOT)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("recloop: error: ope.reward=conversion")
    assert "world.conversion.base" in lines[0]
    assert not out.exists()
