"""Turn a composed hydra config into validated dataclasses — or one clear error line."""

from __future__ import annotations

import dataclasses
import importlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from agents.second_domain import TransferConfig
from agents.streams import Streams
from agents.validation import is_number, is_positive_int
from agents.world import WorldConfig, catalog_timeline, smallest_catalog
from policies.components import Component, registered
from policies.onboarding import OnboardingConfig
from policies.policy import COMPONENT_GROUPS, MOVED_KEYS, POLICY_KEYS, PolicyConfig
from sim.engine import SimConfig
from sim.serving_system import ServingConfig


class ConfigError(ValueError):
    """A bad config value. The message is one line that names the key and the value."""


@dataclass(frozen=True)
class MetricsConfig:
    """The ``metrics`` node."""

    homogenization_pairs: int = 2000
    ndcg_users: int = 200
    ndcg_k: int = 10
    examination: bool = False
    new_item_days: float = 7.0
    new_user_sessions: int = 5

    def __post_init__(self) -> None:
        if not is_positive_int(self.homogenization_pairs):
            raise ValueError(
                f"metrics.homogenization_pairs={self.homogenization_pairs!r}: must be an integer >= 1"
            )
        n = self.ndcg_users
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"metrics.ndcg_users={self.ndcg_users!r}: must be an integer >= 0")
        if not is_positive_int(self.ndcg_k):
            raise ValueError(f"metrics.ndcg_k={self.ndcg_k!r}: must be an integer >= 1")
        if not isinstance(self.examination, bool):
            raise ValueError(f"metrics.examination={self.examination!r}: must be true or false")
        days = self.new_item_days
        if not is_number(days) or days <= 0:
            raise ValueError(f"metrics.new_item_days={days!r}: must be a number of days > 0")
        if not is_positive_int(self.new_user_sessions):
            raise ValueError(
                f"metrics.new_user_sessions={self.new_user_sessions!r}: must be an integer >= 1"
            )


@dataclass(frozen=True)
class ReportConfig:
    """The ``report`` node."""

    enabled: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.enabled, bool):
            raise ValueError(f"report.enabled={self.enabled!r}: must be true or false")


@dataclass(frozen=True)
class DebugConfig:
    """The ``debug`` node (fault injection for tests of failure handling)."""

    fail_at_hour: float | None = None
    skip_resource_check: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.skip_resource_check, bool):
            raise ValueError(
                f"debug.skip_resource_check={self.skip_resource_check!r}: must be true or false"
            )
        value = self.fail_at_hour
        if value is not None and (not is_number(value) or value < 0):
            raise ValueError(
                f"debug.fail_at_hour={value!r}: must be null or a number of hours >= 0"
            )


@dataclass(frozen=True)
class RunConfig:
    seed: int
    world: WorldConfig
    policy: PolicyConfig
    sim: SimConfig
    metrics: MetricsConfig
    report_config: ReportConfig
    debug: DebugConfig
    progress: bool = True
    serving: ServingConfig = dataclasses.field(default_factory=ServingConfig)
    onboarding: OnboardingConfig = dataclasses.field(default_factory=OnboardingConfig)
    transfer: TransferConfig = dataclasses.field(default_factory=TransferConfig)

    # The names the rest of the code reads.
    @property
    def homogenization_pairs(self) -> int:
        return self.metrics.homogenization_pairs

    @property
    def ndcg_users(self) -> int:
        return self.metrics.ndcg_users

    @property
    def ndcg_k(self) -> int:
        return self.metrics.ndcg_k

    @property
    def examination(self) -> bool:
        return self.metrics.examination

    @property
    def report(self) -> bool:
        return self.report_config.enabled

    @property
    def fail_at_hour(self) -> float | None:
        return None if self.debug.fail_at_hour is None else float(self.debug.fail_at_hour)


def _section(cfg: dict[str, Any], name: str, cls: type, required: bool = True) -> Any:
    raw = cfg.get(name)
    if raw is None and not required:
        raw = {}
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


def check_finite(data: Any, key: str = "") -> None:
    """Refuse ``inf``, ``-inf`` and ``nan`` anywhere in the config (hydra reads ``inf`` and
    ``nan`` as floats): one line naming the key. Checked once for every key, before the
    sections' own checks, which would otherwise call ``sim.days=inf`` "not an integer"."""
    if isinstance(data, Mapping):
        for name, value in data.items():
            check_finite(value, f"{key}.{name}" if key else str(name))
    elif isinstance(data, (list, tuple)):
        for i, value in enumerate(data):
            check_finite(value, f"{key}[{i}]")
    elif isinstance(data, float) and not math.isfinite(data):
        raise ConfigError(f"{key}={data}: must be a finite number")


def _int(value: Any, key: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{key}={value!r}: must be an integer >= {minimum}")
    return value


def _bool(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{key}={value!r}: must be true or false")
    return value


def build_policy_config(raw: Mapping[str, Any]) -> PolicyConfig:
    """Build a composed ``policy`` node (a plain mapping) into a validated config; every error
    names its config path (``policy.selector.epsilon=…``)."""
    for key in raw:
        if key in MOVED_KEYS:
            raise ValueError(
                f"policy.{key}={raw[key]!r}: moved to {MOVED_KEYS[key]} (nested config groups)"
            )
        if key not in POLICY_KEYS and key not in COMPONENT_GROUPS:
            keys = ", ".join((*POLICY_KEYS, *COMPONENT_GROUPS))
            raise ValueError(f"policy.{key}={raw[key]!r}: unknown key; known keys: {keys}")
    k = raw.get("slate_size", 10)
    if not is_positive_int(k):
        raise ValueError(f"policy.slate_size={k!r}: must be a positive integer")
    for group in ("scorer", "selector"):
        if raw.get(group) is None:
            raise ValueError(f"policy.{group}: missing (choose one with policy/{group}=...)")
    parts: dict[str, Any] = {}
    for group, base in COMPONENT_GROUPS.items():
        if raw.get(group) is None:
            continue
        fixed = {"slate_size": k} if group in ("selector", "intervention") else {}
        parts[group] = instantiate(raw[group], base, f"policy.{group}", **fixed)
    if parts.get("intervention") is not None and parts["intervention"].kind == "none":
        parts["intervention"] = None
    plain = {key: raw[key] for key in POLICY_KEYS if key in raw}
    return PolicyConfig(**plain, **parts)


def _import(target: str, key: str) -> type:
    module, _, attr = target.rpartition(".")
    if not module:
        raise ValueError(f"{key}._target_={target!r}: must be a dotted path module.Class")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise ValueError(
            f"{key}._target_={target!r}: cannot be imported ({exc}; is its folder on PYTHONPATH?)"
        ) from None


def instantiate(
    node: Mapping[str, Any] | str, base: type[Component], key: str, **fixed: Any
) -> Any:
    """Build the component a config node describes.

    ``node`` is a mapping with ``_target_`` (a dotted class path) and the class's fields, or a
    registered short name. ``base`` is the group's base class the target must derive from; ``key``
    the config path (``policy.selector``) errors are reported under; ``fixed`` the fields the
    policy supplies itself (e.g. ``slate_size``) — a config node may not set those.
    """
    if isinstance(node, str):
        known = registered(base.group)
        if node not in known:
            raise ValueError(f"{key}={node!r}: unknown; choose one of {', '.join(sorted(known))}")
        cls, params = known[node], {}
    elif isinstance(node, Mapping):
        params = {str(k): v for k, v in node.items()}
        target = params.pop("_target_", None)
        if not isinstance(target, str):
            raise ValueError(f"{key}: needs a _target_ naming its class (got {target!r})")
        cls = _import(target, key)
    else:
        raise ValueError(f"{key}={node!r}: must be a config node with a _target_")
    if not (isinstance(cls, type) and issubclass(cls, base) and dataclasses.is_dataclass(cls)):
        raise ValueError(f"{key}: {cls!r} is not a {base.__name__} dataclass")
    fields = {f.name for f in dataclasses.fields(cls) if f.init}
    for name in params:
        if name in fixed:
            raise ValueError(f"{key}.{name}: set by the policy, not here (use policy.{name})")
        if name not in fields:
            allowed = ", ".join(sorted(fields - set(fixed))) or "none"
            raise ValueError(f"{key}.{name}: unknown key for {cls.__name__}; keys: {allowed}")
    try:
        return cls(**params, **{k: v for k, v in fixed.items() if k in fields})
    except TypeError as exc:
        raise ValueError(f"{key}: {exc}") from None


def parse_policy(raw: Any) -> PolicyConfig:
    """The ``policy`` node as a validated :class:`PolicyConfig` (one-line errors)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"policy={raw!r}: missing or not a mapping")
    try:
        return build_policy_config(raw)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


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
    check_finite({k: v for k, v in data.items() if k != "hydra"})
    world = _section(data, "world", WorldConfig)
    policy = parse_policy(data.get("policy"))
    sim = _section(data, "sim", SimConfig)
    try:
        policy.check_catalog(world.n_items)
        policy.rerank.check_world(world.n_items, world.n_creators)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    debias = policy.debias
    if debias.position_based and debias.propensity == "oracle" and world.click_model != "pbm":
        raise ConfigError(
            f"policy.debias.propensity='oracle': the true θ_k exists for world.click_model=pbm "
            f"only (got world.click_model={world.click_model!r}); use em or randomized"
        )
    if debias.position_based and debias.propensity == "oracle" and world.trust_bias > 0:
        raise ConfigError(
            f"policy.debias.propensity='oracle': with world.trust_bias={world.trust_bias} the "
            "click propensity is not θ_k alone; use em or randomized, or world.trust_bias=0"
        )
    if policy.label != "clicks" and not world.conversions.enabled:
        raise ConfigError(
            f"policy.label={policy.label!r}: trains on conversions, but world.conversion.base="
            f"{world.conversions.base:g} switches them off (set world.conversion.base > 0)"
        )
    seed = _int(data.get("seed"), "seed", 0)
    smallest = smallest_catalog_of(world, seed, sim.days)
    if smallest is not None:
        check_catalog_size(world, policy, seed, smallest)
    transfer = _section(data, "transfer", TransferConfig, required=False)
    if transfer.enabled and policy.scorer.name != "als":
        raise ConfigError(
            f"transfer.enabled=True: cross-domain transfer seeds ALS user factors; needs"
            f" policy/scorer=als (got {policy.scorer.name})"
        )
    metrics = _section(data, "metrics", MetricsConfig, required=False)
    if metrics.ndcg_k > world.n_items:
        raise ConfigError(
            f"metrics.ndcg_k={metrics.ndcg_k}: larger than the catalog (world.n_items={world.n_items})"
        )
    onboarding = _section(data, "onboarding", OnboardingConfig, required=False)
    check_onboarding(onboarding, world, policy, seed, smallest)
    return RunConfig(
        seed=seed,
        world=world,
        policy=policy,
        sim=sim,
        metrics=metrics,
        report_config=_section(data, "report", ReportConfig, required=False),
        debug=_section(data, "debug", DebugConfig, required=False),
        progress=_bool(data.get("progress", True), "progress"),
        serving=_section(data, "serving", ServingConfig, required=False),
        onboarding=onboarding,
        transfer=transfer,
    )


def check_onboarding(
    onboarding: OnboardingConfig,
    world: WorldConfig,
    policy: PolicyConfig,
    seed: int,
    smallest: tuple[int, float] | None,
) -> None:
    """Onboarding folds answers into ALS item factors, and its screens must fit the catalog
    (at every hour, when items leave: ``smallest``, :func:`smallest_catalog_of`)."""
    if not onboarding.enabled:
        return
    scorer = policy.scorer.label
    if scorer != "als":
        raise ConfigError(
            f"onboarding.enabled=true: folds the answers into ALS item factors; policy.scorer="
            f"{scorer!r} has none (use policy/scorer=als or onboarding.enabled=false)"
        )
    try:
        onboarding.check_catalog(world.n_items)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if smallest is not None:
        size, at = smallest
        if size < onboarding.n_shown:
            raise ConfigError(
                f"onboarding.screens={onboarding.screens}: screens × items_per_screen = "
                f"{onboarding.n_shown}, but the catalog shrinks to {size} items by hour {at:.0f}"
                f" (seed {seed})"
            )


def smallest_catalog_of(world: WorldConfig, seed: int, days: int) -> tuple[int, float] | None:
    """``(size, hour)``: the fewest items the catalog will hold during the run, drawn from the
    seed's own arrivals and lifetimes as the run will draw them; None when items never leave
    (the catalog then only grows from ``world.n_items``)."""
    if world.item_lifetime_days is None:
        return None
    horizon = days * 24.0
    return smallest_catalog(*catalog_timeline(world, Streams(seed), horizon), horizon)


def check_catalog_size(
    world: WorldConfig, policy: PolicyConfig, seed: int, smallest: tuple[int, float]
) -> None:
    """A catalog whose items leave (``world.item_lifetime_days``) must keep enough items for
    a request's candidates at every hour of the run (``smallest``: :func:`smallest_catalog_of`)."""
    size, at = smallest
    need = max(policy.n_candidates, 2 * policy.slate_size)
    if size < need:
        raise ConfigError(
            f"world.item_lifetime_days={world.item_lifetime_days}: the catalog shrinks to {size}"
            f" items by hour {at:.0f} (seed {seed}), fewer than a request needs"
            f" ({need} = max(policy.n_candidates, 2 × policy.slate_size)); raise the lifetime or"
            " world.item_arrival_rate"
        )


def compose_policy(name: str) -> dict[str, Any]:
    """The ``policy`` node of preset ``name`` as hydra composes it (``policy=<name>``): inside
    the running app with its search path, elsewhere from the packaged configs."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException

    def _compose() -> dict[str, Any]:
        try:
            cfg = compose(config_name="config", overrides=[f"policy={name}"])
        except HydraException as exc:
            raise ConfigError(f"policy preset {name!r}: {str(exc).splitlines()[0]}") from None
        return OmegaConf.to_container(cfg.policy, resolve=True)

    if GlobalHydra.instance().is_initialized():
        return _compose()
    with initialize_config_module(config_module="configs", version_base="1.3"):
        return _compose()
