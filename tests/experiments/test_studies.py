"""Every policy config and every study config runs end to end on a tiny world."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from experiments.cli import group_options
from experiments.run import run
from reports.comparison import collect_summaries
from sim.event_log import scan_table

TINY = [
    "world.n_users=150",
    "world.n_items=120",  # 12 creators: the constrained preset caps a creator at 10%
    "sim.days=3",
    "policy.slate_size=4",
    "policy.n_candidates=12",
    "metrics.homogenization_pairs=100",
    "report.enabled=false",
    "progress=false",
]
# Set only where the composed policy's components have these keys.
TINY_COMPONENTS = {"scorer": ("factors", 6), "selector": ("mc_samples", 20)}


def _compose_tiny(overrides: list[str]):
    """Hydra's composition of ``overrides``, then the tiny component sizes where they apply."""
    with initialize_config_module(config_module="configs", version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
        extra = [
            f"policy.{group}.{key}={value}"
            for group, (key, value) in TINY_COMPONENTS.items()
            if key in cfg.policy[group]
        ]
        return compose(config_name="config", overrides=[*overrides, *extra]) if extra else cfg


def composed(*overrides: str):
    return _compose_tiny([*overrides, *TINY])


@pytest.mark.slow
@pytest.mark.parametrize("policy", group_options("policy"))
def test_every_policy_config_runs_and_logs_consistent_propensities(policy, tmp_path):
    out = tmp_path / policy
    run(composed(f"policy={policy}"), out)
    assert json.loads((out / "summary.json").read_text())["policy"] == policy
    imp = scan_table(out / "logs", "impressions").collect().sort("request_id", "position")
    k = 4
    prop = imp["propensity"].to_numpy().reshape(-1, k)
    prefix = imp["prefix_propensity"].to_numpy().reshape(-1, k)
    slate = imp["slate_propensity"].to_numpy().reshape(-1, k)
    assert ((prop > 0) & (prop <= 1)).all() and ((prefix > 0) & (prefix <= 1)).all()
    assert (np.diff(prefix, axis=1) <= 1e-12).all(), "a prefix probability grew along the slate"
    assert np.allclose(slate, prefix[:, -1:]), "slate propensity is the full prefix"
    assert np.allclose(prefix[:, 0], prop[:, 0]) or policy in ("thompson", "lints")
    cand = scan_table(out / "logs", "candidates").collect()
    assert cand["show_probability"].is_between(0, 1).all()


def _fake_sweep(root: Path, rows: list[tuple[str, int, float, float]]) -> None:
    for i, (policy, seed, coverage, utility) in enumerate(rows):
        job = root / f"{i}_{policy}_seed{seed}"
        job.mkdir(parents=True)
        final = {
            "coverage_exposure": coverage,
            "gini_exposure": 1 - coverage,
            "popularity_drift": 0.1,
            "cumulative_utility": utility,
        }
        mean = {"homogenization": 0.01, "ctr": 0.05}
        (job / "summary.json").write_text(
            json.dumps({"policy": policy, "seed": seed, "final": final, "mean": mean})
        )
        pl.DataFrame({"window": [0], "t_start": [0.0], "t_end": [24.0]}).write_parquet(
            job / "metrics.parquet"
        )
    (root / "broken_job").mkdir()  # a failed job leaves no summary: skipped


TINY_WORLD = [o for o in TINY if not o.startswith(("policy.slate_size", "policy.n_candidates"))]


@pytest.mark.slow
@pytest.mark.parametrize("study", group_options("study"))
def test_every_study_runs_on_a_tiny_world(study, tmp_path):
    """``recloop +study=NAME`` in miniature: every arm of the study, one seed, a comparison."""
    from experiments.cli import _job_overrides
    from reports.comparison import write_comparison

    if study == "ope":  # one job that runs its own logging and truth runs
        from experiments.ope import run_ope

        cfg = _compose_tiny([*TINY_WORLD, "+study=ope", "ope.seeds=[0]", "sim.days=2"])
        table = run_ope(cfg, tmp_path)
        assert set(table["target"]) == set(cfg.ope.targets)
        assert (tmp_path / "ope.html").is_file()
        return
    if study == "bias_replay":  # one job that replays finished runs
        from experiments.bias_replay import check_bias_replay, run_bias_replay

        run(_compose_tiny([*TINY_WORLD, "policy=greedy"]), tmp_path / "greedy")
        cfg = _compose_tiny(
            [*TINY_WORLD, "+study=bias_replay", f"bias_replay.runs=[{tmp_path}/greedy]"]
        )
        runs, _ = check_bias_replay(OmegaConf.to_container(cfg, resolve=True))
        table = run_bias_replay(runs, 50, tmp_path / "replay.csv")
        assert (tmp_path / "replay.csv").is_file() and table.height == 8
        return
    if study == "tune_weights":  # an Optuna study: the precheck's corner jobs run here
        pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason="needs the optuna extra")
        if "scalarized" not in group_options("policy"):
            pytest.skip("needs policy=scalarized (issue 16's scalarized reranker)")
    jobs, _ = _job_overrides([f"+study={study}", "seed=0"])
    assert len(jobs) >= 2
    # the exposure caps of multi_objective (2% of a day per creator) need at least 50 creators
    world = [*TINY_WORLD, "world.items_per_creator=2"] if study == "multi_objective" else TINY_WORLD
    for i, overrides in enumerate(jobs):
        cfg = _compose_tiny([*world, *overrides])
        run(cfg, tmp_path / f"{i}")
        (tmp_path / f"{i}" / ".hydra").mkdir()  # what hydra records for each job
        (tmp_path / f"{i}" / ".hydra" / "overrides.yaml").write_text(
            "".join(f"- {o}\n" for o in overrides)
        )
    path = write_comparison(tmp_path, study, order=None)
    assert path is not None
    lines = path.read_text().splitlines()
    rows = [r for r in lines if r.startswith("| ") and "seeds" not in r and "---" not in r]
    assert len(rows) == len(jobs)  # one seed: every job is its own arm


def test_jobs_that_differ_beyond_the_seed_are_compared_separately(tmp_path):
    _fake_sweep(tmp_path, [("softmax", 0, 0.5, 10.0), ("softmax", 0, 0.7, 20.0)])
    for job, temperature in zip(
        sorted(p for p in tmp_path.iterdir() if p.name[0].isdigit()), ("0.02", "0.1"), strict=True
    ):
        (job / ".hydra").mkdir()
        (job / ".hydra" / "overrides.yaml").write_text(
            f"- policy=softmax\n- policy.temperature={temperature}\n- seed=0\n- sim.days=9\n"
            "- hydra.verbose=false\n"
        )
    labels = collect_summaries(tmp_path)["arm"].to_list()
    # sim.days is shared by every job, so it does not label a variant
    assert labels == ["softmax [policy.temperature=0.02]", "softmax [policy.temperature=0.1]"]
