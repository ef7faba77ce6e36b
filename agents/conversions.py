"""Clicks that convert later: the conversion model, its delays and the buffer of pending ones.

Off by default (``world.conversion.base = 0``): nothing here exists and no draw moves.

A click on item ``i`` by user ``u`` converts (a purchase, a completed watch) with probability

    logit p = logit(base) + relevance_weight · logit rel_ui − price_weight · log(price_i / median price)

so ``base`` is the conversion rate of a click on an item of true relevance 0.5 for the user at
the initial catalog's median price; more relevant items convert more, dearer ones less. It converts after a
delay drawn from ``world.conversion_delay`` (``distribution``: ``exponential`` or ``lognormal``
with log-sd ``shape``; ``mean_hours``). Its value (revenue) is the item's price.

Each click takes two draws from stream ``world.conversions`` in click order (request order, then
slot), whether it converts or not: a uniform for the outcome and one for the delay (inverse CDF),
so batching never moves them and two policies that see the same click share its fate.

Outcomes are drawn at click time (the truth exists then) and wait in :class:`PendingConversions`
— a few numpy arrays, not a process per click — until the engine writes those that happened
before a round's cut-off to ``logs/conversions/round=NNNN`` (the round in which they happen).
The learner sees a conversion only once it is in a written round.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from agents.validation import is_number, world_mapping


def _special():
    """``scipy.special``, imported on first use: a third of a second of every start-up."""
    from scipy import special

    return special


DISTRIBUTIONS = ("exponential", "lognormal")
CONVERSION_SCHEMA = {
    "request_id": pl.Int64,
    "user_id": pl.Int32,
    "item_id": pl.Int32,
    "click_t": pl.Float64,
    "t": pl.Float64,
    "value": pl.Float64,
}


@dataclass(frozen=True)
class ConversionConfig:
    """``world.conversion`` and ``world.conversion_delay``, validated."""

    base: float = 0.0
    relevance_weight: float = 1.0
    price_weight: float = 0.5
    distribution: str = "exponential"
    mean_hours: float = 48.0
    shape: float = 1.0  # lognormal only: sd of log delay

    @classmethod
    def parse(cls, conversion: Any, delay: Any) -> ConversionConfig:
        c = world_mapping(conversion, "conversion", ("base", "relevance_weight", "price_weight"))
        d = world_mapping(delay, "conversion_delay", ("distribution", "mean_hours", "shape"))
        base = c.get("base", cls.base)
        if not is_number(base) or not 0 <= base < 1:
            raise ValueError(
                f"world.conversion.base={base!r}: must be a probability in [0, 1) (0 = off)"
            )
        for key in ("relevance_weight", "price_weight"):
            if key in c and not is_number(c[key]):
                raise ValueError(f"world.conversion.{key}={c[key]!r}: must be a finite number")
        dist = d.get("distribution", cls.distribution)
        if dist not in DISTRIBUTIONS:
            raise ValueError(
                f"world.conversion_delay.distribution={dist!r}: must be one of "
                f"{', '.join(DISTRIBUTIONS)}"
            )
        mean = d.get("mean_hours", cls.mean_hours)
        if not is_number(mean) or mean <= 0:
            raise ValueError(
                f"world.conversion_delay.mean_hours={mean!r}: must be a number of hours > 0"
            )
        shape = d.get("shape", cls.shape)
        if not is_number(shape) or shape <= 0:
            raise ValueError(f"world.conversion_delay.shape={shape!r}: must be a number > 0")
        return cls(
            base=float(base),
            relevance_weight=float(c.get("relevance_weight", cls.relevance_weight)),
            price_weight=float(c.get("price_weight", cls.price_weight)),
            distribution=dist,
            mean_hours=float(mean),
            shape=float(shape),
        )

    @property
    def enabled(self) -> bool:
        return self.base > 0

    def probability(
        self, relevance: np.ndarray, price: np.ndarray, median_price: float
    ) -> np.ndarray:
        """P(convert | click) for aligned arrays of true relevance and item price."""
        logit = (
            _special().logit(self.base)
            + self.relevance_weight * _special().logit(relevance)
            - self.price_weight * np.log(np.asarray(price, dtype=np.float64) / median_price)
        )
        return _special().expit(logit)

    def delay_quantile(self, u: np.ndarray) -> np.ndarray:
        """Delays (hours) at probabilities ``u`` in [0, 1): the inverse CDF."""
        if self.distribution == "exponential":
            return -self.mean_hours * np.log1p(-u)
        # lognormal with mean m and log-sd σ: μ = log m − σ²/2
        mu = np.log(self.mean_hours) - self.shape**2 / 2.0
        return np.exp(mu + self.shape * _special().ndtri(np.maximum(u, 1e-300)))

    def delay_cdf(self, hours: np.ndarray) -> np.ndarray:
        """P(delay ≤ hours): the share of eventual conversions that happened by then."""
        hours = np.maximum(np.asarray(hours, dtype=np.float64), 0.0)
        if self.distribution == "exponential":
            return -np.expm1(-hours / self.mean_hours)
        mu = np.log(self.mean_hours) - self.shape**2 / 2.0
        from scipy import stats  # lazily: half a second of every start-up

        return stats.lognorm.cdf(hours, s=self.shape, scale=np.exp(mu))


@dataclass
class PendingConversions:
    """Conversions drawn at click time that have not happened yet (time-ordered on pop)."""

    request_id: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    user_id: np.ndarray = field(default_factory=lambda: np.empty(0, np.int32))
    item_id: np.ndarray = field(default_factory=lambda: np.empty(0, np.int32))
    click_t: np.ndarray = field(default_factory=lambda: np.empty(0))
    t: np.ndarray = field(default_factory=lambda: np.empty(0))
    value: np.ndarray = field(default_factory=lambda: np.empty(0))

    def add(
        self,
        request_id: np.ndarray,
        user_id: np.ndarray,
        item_id: np.ndarray,
        click_t: np.ndarray,
        delay: np.ndarray,
        value: np.ndarray,
    ) -> None:
        self.request_id = np.concatenate([self.request_id, request_id.astype(np.int64)])
        self.user_id = np.concatenate([self.user_id, user_id.astype(np.int32)])
        self.item_id = np.concatenate([self.item_id, item_id.astype(np.int32)])
        self.click_t = np.concatenate([self.click_t, click_t])
        self.t = np.concatenate([self.t, click_t + delay])
        self.value = np.concatenate([self.value, value.astype(np.float64)])

    def _take(self, mask: np.ndarray) -> pl.DataFrame:
        keep = ~mask
        order = np.lexsort((self.request_id[mask], self.t[mask]))  # by time, then request
        frame = pl.DataFrame(
            {
                "request_id": self.request_id[mask][order],
                "user_id": self.user_id[mask][order],
                "item_id": self.item_id[mask][order],
                "click_t": self.click_t[mask][order],
                "t": self.t[mask][order],
                "value": self.value[mask][order],
            },
            schema=CONVERSION_SCHEMA,
        )
        for name in ("request_id", "user_id", "item_id", "click_t", "t", "value"):
            setattr(self, name, getattr(self, name)[keep])
        return frame

    def pop_before(self, t: float) -> pl.DataFrame:
        """Remove and return the conversions that happen before hour ``t``, by time."""
        return self._take(self.t < t)

    def clicked_before(self, t: float) -> pl.DataFrame:
        """The pending conversions of clicks before ``t`` (not removed): what an oracle that
        saw every conversion at click time would know beyond the written rounds."""
        mask = self.click_t < t
        order = np.lexsort((self.request_id[mask], self.t[mask]))
        return pl.DataFrame(
            {name: getattr(self, name)[mask][order] for name in CONVERSION_SCHEMA},
            schema=CONVERSION_SCHEMA,
        )

    @property
    def size(self) -> int:
        return int(self.t.size)


def draw_conversions(
    config: ConversionConfig,
    rng: np.random.Generator,
    relevance: np.ndarray,
    price: np.ndarray,
    median_price: float,
) -> tuple[np.ndarray, np.ndarray]:
    """``(converts, delay_hours)`` for clicks with aligned ``relevance`` and ``price``: two
    uniforms per click from ``rng``, in click order (see the module docstring)."""
    u = rng.random((relevance.size, 2))
    p = config.probability(relevance, price, median_price)
    return u[:, 0] < p, config.delay_quantile(u[:, 1])
