"""Config-facing components: frozen dataclasses that validate their own parameters.

Every swappable piece of a policy (scorer, retrieve, selector, debiasing, intervention, reranker)
is a frozen dataclass whose fields are exactly the keys of its config node
(``configs/policy/<group>/*.yaml``) and whose ``__post_init__`` names a bad key and value (the Open
Bandit Pipeline pattern). A config
node names its class with hydra's ``_target_``, so a user's own component in their own module
plugs in the same way as a built-in one; ``experiments.config`` builds it (policies never import
by name) and turns an unknown key or a wrong type into one line naming ``policy.<group>.<key>``.

Built-in components register under a short ``name`` (the config file's name) so that the log,
OPE and error messages can speak of ``softmax`` rather than a class path.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import numpy as np

from agents.catalog import ItemMetadata
from agents.validation import is_number, is_positive_int
from policies.interactions import Interactions
from policies.models import Model


class Component:
    """Base of every config-facing component (mixed into a frozen dataclass)."""

    group: ClassVar[str] = ""  # config group under ``policy``: scorer, selector, debias, ...
    name: ClassVar[str] = ""  # registered short name; "" = not registered (a user's class)
    _registry: ClassVar[dict[str, dict[str, type[Component]]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        name = cls.__dict__.get("name", "")
        if name and cls.group:
            group = Component._registry.setdefault(cls.group, {})
            if name in group and group[name] is not cls:
                raise TypeError(f"{cls.group} {name!r} is registered twice")
            group[name] = cls

    @property
    def label(self) -> str:
        """The name the log and the reports use for this component."""
        return self.name or type(self).__name__

    # --- validation helpers (used by subclasses' __post_init__) ----------------------------
    def _fail(self, key: str, message: str) -> None:
        raise ValueError(f"policy.{self.group}.{key}={getattr(self, key)!r}: {message}")

    def _positive_int(self, *keys: str) -> None:
        for key in keys:
            if not is_positive_int(getattr(self, key)):
                self._fail(key, "must be a positive integer")

    def _number(
        self, key: str, low: float | None = None, high: float | None = None, low_open: bool = False
    ) -> None:
        value = getattr(self, key)
        ok = is_number(value)
        if ok and low is not None:
            ok = value > low if low_open else value >= low
        if ok and high is not None:
            ok = value <= high
        if not ok:
            lo = "" if low is None else ("(" if low_open else "[") + f"{low:g}"
            if low is not None and high is not None:
                self._fail(key, f"must be in {lo}, {high:g}]")
            if low is not None:
                self._fail(key, f"must be a number {'>' if low_open else '>='} {low:g}")
            self._fail(key, "must be a number")

    def _bool(self, *keys: str) -> None:
        for key in keys:
            if not isinstance(getattr(self, key), bool):
                self._fail(key, "must be true or false")


def registered(group: str) -> dict[str, type[Component]]:
    """Built-in components of a group, by name."""
    return dict(Component._registry.get(group, {}))


@dataclass(frozen=True)
class BuildContext:
    """What a scorer may be built with: sizes, its seed, and the few simulator hooks that only
    reference policies use (never handed to a real policy's model)."""

    n_users: int
    n_items: int
    slate_size: int
    seed: int
    needs_posterior: bool = False  # the selector draws from the scorer's posterior
    relevance: Callable[[np.ndarray], np.ndarray] | None = None  # oracle only: true relevance
    item_content: np.ndarray | None = None  # ItemMetadata.content (what a platform knows)
    item_arrival_t: np.ndarray | None = None  # ItemMetadata.arrival_t (learned reranker)
    examination: np.ndarray | None = None  # true θ_k: debias propensity=oracle only
    debias: Any = None  # policies.debiasing.Debias: how the training data is reweighted
    # What the platform knows about its items (content, creator, price, publish time): the
    # objectives and constraints of multi-objective ranking read it.
    items: ItemMetadata | None = None


class Scorer(Protocol):
    """Runtime scorer: turns the training view of the log into a servable model."""

    def fit(self, interactions: Interactions, version: int) -> Model: ...


class ScorerSpec(Component):
    """A scorer's config node. ``build`` makes the runtime scorer."""

    group: ClassVar[str] = "scorer"
    has_posterior: ClassVar[bool] = False  # its models implement PosteriorModel
    retrieves: ClassVar[bool] = True  # False: no ranking (the uniform random policy)
    uses_ground_truth: ClassVar[bool] = False  # the oracle reference

    def build(self, ctx: BuildContext) -> Scorer:
        raise NotImplementedError
