"""Shared fixtures: tiny worlds that run in about a second."""

from __future__ import annotations

import copy
import functools
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from experiments.run import run

# hydra/launcher=joblib needs the joblib extra (`.ci/run` installs every launcher; a bare
# `pip install -e ".[test]"` does not): the tests that launch with it skip without it.
try:
    HAVE_JOBLIB_LAUNCHER = (
        importlib.util.find_spec("hydra_plugins.hydra_joblib_launcher") is not None
    )
except ModuleNotFoundError:  # no hydra_plugins namespace at all: no launcher plugin
    HAVE_JOBLIB_LAUNCHER = False
needs_joblib = pytest.mark.skipif(
    not HAVE_JOBLIB_LAUNCHER, reason='the joblib extra is not installed: pip install -e ".[joblib]"'
)

# A sweep's default launcher is joblib, one job per core (experiments.cli.parallel_default). The
# suite already runs on every core (pytest-xdist), so its sweeps keep hydra's basic launcher, one
# job after another; tests/experiments/test_parallel_default.py checks the default itself.
os.environ.setdefault("RECLOOP_SWEEP_LAUNCHER", "basic")

# The tiny world as hydra overrides of the default config (composed, never re-implemented).
TINY_OVERRIDES = (
    "seed=0",
    "world.n_users=300",
    "world.n_items=150",
    "policy.slate_size=5",
    "policy.n_candidates=12",
    "sim.days=4",
    "metrics.homogenization_pairs=300",
    "report.enabled=false",
    "progress=false",
)
# Tiny model sizes, set only where the composed scorer has the key (ALS; not popularity, random…).
TINY_SCORER = {"factors": 8, "iterations": 5}
GROUP_KEYS = {
    f"policy.{g}" for g in ("scorer", "selector", "rerank", "debias", "intervention", "retrieve")
}


@functools.lru_cache(maxsize=256)
def _composed(overrides: tuple[str, ...]) -> dict[str, Any]:
    from hydra import compose, initialize_config_module
    from omegaconf import OmegaConf

    with initialize_config_module(config_module="configs", version_base="1.3"):
        cfg = compose(config_name="config", overrides=list(overrides))
    data = OmegaConf.to_container(cfg, resolve=True)
    data.pop("hydra", None)
    return data


def compose_config(*overrides: str) -> dict[str, Any]:
    """The full config hydra composes from ``configs/`` with these overrides (a fresh copy)."""
    return copy.deepcopy(_composed(tuple(overrides)))


def tiny_config(*overrides: str, **dotted: Any) -> dict[str, Any]:
    """The tiny config composed by hydra, plus ``overrides`` (hydra syntax, e.g.
    ``"policy=softmax"``, ``"policy.selector.temperature=0.1"``). ``dotted`` keys are set on the
    composed dict (``{"sim.days": 6}``); a component group given a name (``{"policy.selector":
    "softmax"}``) is swapped through hydra (``policy/selector=softmax``)."""
    groups = [
        f"{k.replace('.', '/')}={v}"
        for k, v in dotted.items()
        if k in GROUP_KEYS and isinstance(v, str)
    ]
    preset = [o for o in overrides if o.startswith("policy=")]
    rest = [o for o in overrides if not o.startswith("policy=")]
    head = (*preset, *TINY_OVERRIDES, *groups)
    scorer = _composed((*head, *rest))["policy"]["scorer"]
    sizes = [f"policy.scorer.{k}={v}" for k, v in TINY_SCORER.items() if k in scorer]
    cfg = compose_config(*head, *sizes, *rest)
    from policies.policy import MOVED_KEYS

    for key, value in dotted.items():
        if key in GROUP_KEYS and isinstance(value, str):
            continue
        section, _, leaf = key.partition(".")
        if section == "policy" and leaf in MOVED_KEYS:  # a flat policy key: where it lives now
            key = MOVED_KEYS[leaf].split(" ")[0]
            _, group, leaf = key.split(".")
            if leaf not in cfg["policy"][group]:
                continue  # as in the flat config: a key the chosen component lacks is unused
        node = cfg
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return cfg


TINY: dict[str, Any] = tiny_config()


@pytest.fixture
def run_tiny(tmp_path: Path):
    """``run_tiny(name, **dotted_overrides) -> run dir`` runs a tiny simulation under tmp_path."""

    def _run(name: str = "run", **overrides: Any) -> Path:
        out = tmp_path / name
        run(tiny_config(**{k.replace("__", "."): v for k, v in overrides.items()}), out)
        return out

    return _run


def policy_config(preset: str = "greedy", *, lenient: bool = False, **keys: Any):
    """A validated :class:`PolicyConfig` composed by hydra from ``policy=<preset>``.

    ``keys`` use the flat names of the policy's settings: a component group given a name swaps
    it (``selector="softmax"`` → ``policy/selector=softmax``); any other key is set where it
    lives in the nested config (``epsilon`` → ``policy.selector.epsilon``, see
    ``policies.policy.MOVED_KEYS``). With ``lenient``, keys the composed components lack are
    skipped (tiny sizes applied to every preset)."""
    from experiments.config import build_policy_config
    from policies.policy import COMPONENT_GROUPS, MOVED_KEYS

    groups = [f"policy/{g}={keys.pop(g)}" for g in list(keys) if g in COMPONENT_GROUPS]
    cfg = compose_config(f"policy={preset}", *groups)["policy"]
    for key, value in keys.items():
        path = MOVED_KEYS.get(key, f"policy.{key}").split(" ")[0].split(".")[1:]
        node = cfg
        for part in path[:-1]:
            node = node[part]
        if lenient and path[-1] not in node:
            continue
        node[path[-1]] = value
    return build_policy_config(cfg)


def run_recloop(
    *args: str, cwd: Path, timeout: float = 300, drop_env: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """``recloop ARGS`` in a subprocess (this interpreter), run from ``cwd``; ``drop_env``:
    environment variables the command must not see."""
    code = "import sys; from experiments.cli import main; sys.argv[0] = 'recloop'; main()"
    env = {k: v for k, v in os.environ.items() if k not in drop_env}
    env["HYDRA_FULL_ERROR"] = "0"
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


CHECKOUT = Path(__file__).resolve().parents[1]  # this checkout, whatever venv runs the tests


def checkout_env(**extra: str) -> dict[str, str]:
    """The environment for a subprocess that must import this checkout's code (not an installed
    copy), with hydra's short errors."""
    env = dict(os.environ, HYDRA_FULL_ERROR="0", **extra)
    env["PYTHONPATH"] = os.pathsep.join([str(CHECKOUT), env.get("PYTHONPATH", "")])
    return env


def recloop_checkout(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``python -m experiments.cli ARGS`` on this checkout's code, from the checkout's folder."""
    return subprocess.run(
        [sys.executable, "-m", "experiments.cli", *args],
        cwd=CHECKOUT,
        env=checkout_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_outputs(run_dir: Path) -> dict[str, bytes]:
    """What must not change when a run is resumed: every log partition, metrics.parquet, and
    summary.json without its timings (by relative path)."""
    paths = [*sorted((run_dir / "logs").rglob("*")), run_dir / "metrics.parquet"]
    files = {str(p.relative_to(run_dir)): p.read_bytes() for p in paths if p.is_file()}
    summary = json.loads((run_dir / "summary.json").read_text())
    summary.pop("timing_seconds")
    files["summary.json"] = json.dumps(summary, sort_keys=True).encode()
    return files
