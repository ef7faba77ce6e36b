"""Cross-domain transfer end to end: the privacy switch removes every use of the other domain,
and with it on, users who join later are served by the model from their first session."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from conftest import run_recloop, tiny_config

from agents.streams import Streams
from experiments.cli import precheck
from experiments.config import ConfigError, parse_config
from experiments.run import build_simulation, run
from policies.transfer import TransferSeeder

LIVING = {"world.user_arrival_rate": 40.0, "world.item_arrival_rate": 5.0}
# Every key of the section but the switch, set far from its default.
OTHER_KEYS = {
    "transfer.domain": None,
    "transfer.correlation": -0.9,
    "transfer.n_items": 0,
    "transfer.clicks_per_user": 3,
    "transfer.regularization": 40.0,
    "transfer.profile_dim": 2,
    "transfer.min_r2": -5.0,
}


def _files(run_dir: Path) -> dict[str, bytes]:
    paths = [*sorted((run_dir / "logs").rglob("*.parquet")), run_dir / "metrics.parquet"]
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in paths}


def _streams_used(monkeypatch) -> list[str]:
    names: list[str] = []
    original = Streams.generator

    def generator(self, name):
        names.append(name)
        return original(self, name)

    monkeypatch.setattr(Streams, "generator", generator)
    return names


@pytest.mark.slow
def test_privacy_switch_off_removes_every_use_of_the_other_domain(tmp_path, monkeypatch):
    names = _streams_used(monkeypatch)
    without = tiny_config(**LIVING)
    without.pop("transfer")  # a config from before the section existed
    run(without, tmp_path / "without")
    off = tiny_config(**LIVING, **OTHER_KEYS)
    run(off, tmp_path / "off")
    run(tiny_config(**LIVING), tmp_path / "default")
    assert not [n for n in names if n.startswith("world.transfer")]
    want = _files(tmp_path / "without")
    assert _files(tmp_path / "off") == want
    assert _files(tmp_path / "default") == want
    sim = build_simulation(parse_config(off), tmp_path / "unused")
    assert sim.world.second_domain is None
    assert sim.state.policy.user_seeders == []
    # the switch is what matters: on, the same world's logs differ
    run(tiny_config(**LIVING, **{"transfer.enabled": True}), tmp_path / "on")
    assert _files(tmp_path / "on") != want
    assert {n for n in names if n.startswith("world.transfer")} == {
        "world.transfer.catalog",
        "world.transfer.preferences",
        "world.transfer.clicks",
    }


def test_only_the_click_history_reaches_the_policy(tmp_path):
    rc = parse_config(tiny_config(**LIVING, **{"transfer.enabled": True}))
    sim = build_simulation(rc, tmp_path / "logs")
    second = sim.world.second_domain
    (seeder,) = sim.state.policy.user_seeders
    assert isinstance(seeder, TransferSeeder)
    assert seeder.profiles.shape == (sim.world.users.n_users, rc.transfer.profile_dim)
    assert (seeder.active == (second.clicks.getnnz(axis=1) > 0)).all()
    held = [v for v in vars(seeder).values() if hasattr(v, "shape")]
    for truth in (second.preferences, second.factors, second.appeal):
        assert not any(v is truth or v.base is truth for v in held)


def _new_user_sources(run_dir: Path, n_initial: int) -> pl.DataFrame:
    imp = pl.read_parquet(run_dir / "logs" / "impressions" / "**" / "*.parquet")
    return imp.filter((pl.col("user_id") >= n_initial) & (pl.col("model_version") >= 0))


@pytest.mark.slow
def test_users_who_join_later_are_served_by_the_model(tmp_path):
    keys = {**LIVING, "sim.days": 5}
    cfg = tiny_config(**keys, **{"transfer.enabled": True})
    run(cfg, tmp_path / "on")
    run(tiny_config(**keys), tmp_path / "off")
    n0 = cfg["world"]["n_users"]
    on, off = _new_user_sources(tmp_path / "on", n0), _new_user_sources(tmp_path / "off", n0)
    assert on.height > 0 and off.height > 0
    fallback = pl.col("source") == "popularity_fallback"
    assert off.filter(fallback).height > 0  # without transfer, new users start on popularity
    assert on.filter(fallback).height == 0  # with it, every one has a B history: the model
    # batching stays invisible with the seeder on
    run(
        tiny_config(**keys, **{"transfer.enabled": True, "sim.max_batch_requests": 7}),
        tmp_path / "b",
    )
    assert _files(tmp_path / "b") == _files(tmp_path / "on")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["transfer.enabled=true", "transfer.domain=null"],
            "transfer.domain=None: transfer enabled with no second domain",
        ),
        (
            ["transfer.enabled=true", "transfer.n_items=0"],
            "transfer.n_items=0: transfer enabled with no second domain",
        ),
        (["transfer.correlation=1.5"], "transfer.correlation=1.5: must be in [-1, 1]"),
        (["transfer.clicks_per_user=-2"], "transfer.clicks_per_user=-2"),
        (["transfer.n_items=-1"], "transfer.n_items=-1"),
        (["transfer.profile_dim=0"], "transfer.profile_dim=0"),
        (["transfer.min_r2=1"], "transfer.min_r2=1: must be null (always seed)"),
        (["transfer.enabled=true", "policy=popularity"], "needs policy/scorer=als"),
        (["transfer.enabled=true", "policy/scorer=bpr"], "needs policy/scorer=als (got bpr)"),
    ],
)
def test_precheck_names_the_transfer_key(args, expected):
    with pytest.raises(ConfigError) as info:
        precheck(args)
    assert expected in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.slow
def test_transfer_with_no_second_domain_exits_2_before_writing(tmp_path):
    out = tmp_path / "out"
    proc = run_recloop(
        "transfer.enabled=true", "transfer.domain=null", f"hydra.run.dir={out}", cwd=tmp_path
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines == [
        "recloop: error: transfer.domain=None: transfer enabled with no second domain (name one,"
        " e.g. transfer.domain=articles, or set transfer.enabled=false)"
    ]
    assert not out.exists()
