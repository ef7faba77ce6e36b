"""Turn a composed hydra config into validated dataclasses — or one clear error line."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from importlib import resources
from typing import Any

from omegaconf import DictConfig, OmegaConf

from agents.world import WorldConfig
from policies.policy import PolicyConfig
from sim.engine import SimConfig


class ConfigError(ValueError):
    """A bad config value. The message is one line that names the key and the value."""


@dataclass(frozen=True)
class RunConfig:
    seed: int
    world: WorldConfig
    policy: PolicyConfig
    sim: SimConfig
    homogenization_pairs: int
    report: bool
    progress: bool
    fail_at_hour: float | None = None
    ndcg_users: int = 200
    ndcg_k: int = 10
    examination: bool = False


METRICS_KEYS = ("homogenization_pairs", "ndcg_users", "ndcg_k", "examination")


def _section(cfg: dict[str, Any], name: str, cls: type) -> Any:
    raw = cfg.get(name)
    if not isinstance(raw, dict):
        raise ConfigError(f"{name}={raw!r}: missing or not a mapping")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(
            f"{name}.{unknown[0]}={raw[unknown[0]]!r}: unknown key; known keys: {', '.join(sorted(known))}"
        )
    try:
        return cls(**raw)
    except ValueError as exc:  # the dataclasses' own messages already start with "key=value"
        raise ConfigError(str(exc)) from None


def _int(value: Any, key: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{key}={value!r}: must be an integer >= {minimum}")
    return value


def _bool(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{key}={value!r}: must be true or false")
    return value


def parse_config(cfg: DictConfig | dict[str, Any]) -> RunConfig:
    """Validate everything before anything is simulated or written.

    Raises
    ------
    ConfigError
        with a one-line message naming the offending key and value.
    """
    if isinstance(cfg, DictConfig):
        try:
            data = OmegaConf.to_container(cfg, resolve=True)
        except Exception as exc:  # interpolation errors etc.
            raise ConfigError(str(exc).splitlines()[0]) from None
    else:
        data = dict(cfg)
    assert isinstance(data, dict)
    world = _section(data, "world", WorldConfig)
    policy = _section(data, "policy", PolicyConfig)
    sim = _section(data, "sim", SimConfig)
    try:
        policy.check_catalog(world.n_items)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if (
        policy.debias in ("position_ipw", "position_unbiased")
        and policy.ipw_propensity == "oracle"
        and world.click_model != "pbm"
    ):
        raise ConfigError(
            f"policy.ipw_propensity='oracle': the true θ_k exists for world.click_model=pbm only "
            f"(got world.click_model={world.click_model!r}); use em or randomized"
        )
    if (
        policy.debias in ("position_ipw", "position_unbiased")
        and policy.ipw_propensity == "oracle"
        and world.trust_bias > 0
    ):
        raise ConfigError(
            f"policy.ipw_propensity='oracle': with world.trust_bias={world.trust_bias} the click "
            "propensity is not θ_k alone; use em or randomized, or world.trust_bias=0"
        )
    metrics = data.get("metrics") or {}
    unknown = sorted(set(metrics) - set(METRICS_KEYS))
    if unknown:
        raise ConfigError(
            f"metrics.{unknown[0]}={metrics[unknown[0]]!r}: unknown key; known keys: "
            f"{', '.join(METRICS_KEYS)}"
        )
    ndcg_k = _int(metrics.get("ndcg_k", 10), "metrics.ndcg_k", 1)
    if ndcg_k > world.n_items:
        raise ConfigError(
            f"metrics.ndcg_k={ndcg_k}: larger than the catalog (world.n_items={world.n_items})"
        )
    report = data.get("report") or {}
    return RunConfig(
        seed=_int(data.get("seed"), "seed", 0),
        world=world,
        policy=policy,
        sim=sim,
        homogenization_pairs=_int(
            metrics.get("homogenization_pairs", 2000), "metrics.homogenization_pairs", 1
        ),
        report=_bool(report.get("enabled", True), "report.enabled"),
        progress=_bool(data.get("progress", True), "progress"),
        fail_at_hour=_optional_hour((data.get("debug") or {}).get("fail_at_hour")),
        ndcg_users=_int(metrics.get("ndcg_users", 200), "metrics.ndcg_users", 0),
        ndcg_k=ndcg_k,
        examination=_bool(metrics.get("examination", False), "metrics.examination"),
    )


def _optional_hour(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ConfigError(f"debug.fail_at_hour={value!r}: must be null or a number of hours >= 0")
    return float(value)


def load_policy(name: str) -> dict[str, Any]:
    """``configs/policy/_base.yaml`` merged with ``<name>.yaml`` (hydra's defaults order)."""
    folder = resources.files("configs") / "policy"
    path = folder / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"ope policy {name!r}: no configs/policy/{name}.yaml")
    base = OmegaConf.load(str(folder / "_base.yaml"))
    own = OmegaConf.load(str(path))
    own.pop("defaults", None)
    return OmegaConf.to_container(OmegaConf.merge(base, own), resolve=True)
