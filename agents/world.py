"""The world: catalog + users + click model, the ground-truth relevance they imply, and its dynamics.

The world owns what happens to it: :meth:`World.respond` draws users' clicks on served slates
(and remembers the clicks its dynamics need), :meth:`World.advance` applies what changes between
two events (preference drift, the popularity users conform to). ``sim`` only decides when.

Conformity: users are drawn to what others click. The attraction that drives clicks is
``sigmoid(affinity + conformity · z_i)``, where ``z_i`` is the item's recent-popularity signal
(:class:`ItemPopularity`); the true relevance ``sigmoid(affinity)`` that metrics score stays the
intrinsic one, so popularity causes clicks without making items better.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from agents.arrivals import ArrivalIntensity, diurnal_profile, flash_crowds
from agents.catalog import (
    Catalog,
    arriving_items,
    concat_catalogs,
    generate_catalog,
    topic_centers,
)
from agents.click_model import CLICK_MODELS, ClickModel, make_click_model
from agents.conversions import ConversionConfig, PendingConversions, draw_conversions
from agents.engagement import Engagement, EngagementConfig
from agents.response import Response, ResponseRandomness
from agents.second_domain import SecondDomain, TransferConfig, build_second_domain
from agents.streams import Streams
from agents.users import UserPopulation, arriving_users, generate_users
from agents.validation import is_number, is_positive_int


@dataclass(frozen=True)
class WorldConfig:
    """Parameters of the synthetic world (hydra group ``world``; keys documented there)."""

    n_users: int = 2000
    n_items: int = 1000
    dim: int = 16
    n_topics: int = 10
    topic_spread: float = 0.6
    affinity_scale: float = 4.0
    affinity_offset: float = -3.0
    appeal_scale: float = 0.5
    appeal_tail_df: float = 3.0
    content_dim: int = 24
    content_noise: float = 0.5
    items_per_creator: int = 10
    sessions_per_day: float = 1.0
    activity_sigma: float = 0.8
    position_bias_eta: float = 1.0
    drift_rate: float = 0.0
    click_model: str = "pbm"
    dcm_continue: float = 0.5
    trust_bias: float = 0.0
    conformity: float = 0.0
    conformity_halflife_days: float = 7.0
    diurnal: Any = "flat"  # agents.arrivals: flat | a named shape | 24 values
    flash_crowds: Any = ()  # agents.arrivals: [{start_hour, duration_hours, multiplier}, ...]
    item_age_days: float = (
        60.0  # mean age of the initial catalog at hour 0 (ItemMetadata.publish_t)
    )
    # A living world (0 / None: the catalog and the users are fixed at build time).
    item_arrival_rate: float = 0.0  # new items per simulated day (Poisson)
    new_creator_share: float = 0.1  # share of arriving items from a creator new to the catalog
    item_lifetime_days: float | None = None  # mean (exponential) lifetime; None: items stay
    user_arrival_rate: float = 0.0  # new users per simulated day (Poisson)
    # Users who get bored, leave and come back (agents.engagement; all off by default).
    churn: Any = None  # {base_rate, sensitivity}
    return_rate: float = 0.0  # churned users return at this rate per day
    satisfaction: Any = None  # {memory, reference, session_sensitivity}
    satiation: float = 0.0  # logit drop per unit of recent consumption of the item's topic
    satiation_recovery_days: float = 3.0
    # Clicks that convert later (agents.conversions; off by default).
    conversion: Any = None  # {base, relevance_weight, price_weight}
    conversion_delay: Any = None  # {distribution, mean_hours, shape}

    def __post_init__(self) -> None:
        diurnal_profile(self.diurnal)  # one-line errors naming world.diurnal / flash_crowds
        flash_crowds(self.flash_crowds)
        _ = self.engagement, self.conversions  # one-line errors naming world.churn etc.
        for key in ("n_users", "n_items", "dim", "n_topics", "content_dim", "items_per_creator"):
            value = getattr(self, key)
            if not is_positive_int(value):
                raise ValueError(f"world.{key}={value!r}: must be a positive integer")
        for key in ("topic_spread", "appeal_scale", "content_noise", "activity_sigma"):
            value = getattr(self, key)
            if not is_number(value) or value < 0:
                raise ValueError(f"world.{key}={value!r}: must be a number >= 0")
        for key in ("sessions_per_day", "appeal_tail_df", "item_age_days"):
            value = getattr(self, key)
            if not is_number(value) or value <= 0:
                raise ValueError(f"world.{key}={value!r}: must be a number > 0")
        for key in ("item_arrival_rate", "user_arrival_rate"):
            value = getattr(self, key)
            if not is_number(value) or value < 0:
                raise ValueError(
                    f"world.{key}={value!r}: must be a number of arrivals per day >= 0"
                )
        if not is_number(self.new_creator_share) or not 0 <= self.new_creator_share <= 1:
            raise ValueError(
                f"world.new_creator_share={self.new_creator_share!r}: must be in [0, 1]"
            )
        life = self.item_lifetime_days
        if life is not None and (not is_number(life) or life <= 0):
            raise ValueError(
                f"world.item_lifetime_days={life!r}: must be null (items stay) or a number of"
                " days > 0"
            )
        for key in ("affinity_scale", "affinity_offset"):
            if not is_number(getattr(self, key)):
                raise ValueError(f"world.{key}={getattr(self, key)!r}: must be a finite number")
        if not is_number(self.position_bias_eta) or self.position_bias_eta < 0:
            raise ValueError(f"world.position_bias_eta={self.position_bias_eta!r}: must be >= 0")
        if not is_number(self.drift_rate) or not 0 <= self.drift_rate <= 1:
            raise ValueError(f"world.drift_rate={self.drift_rate!r}: must be in [0, 1]")
        if self.click_model not in CLICK_MODELS:
            raise ValueError(
                f"world.click_model={self.click_model!r}: must be one of {', '.join(CLICK_MODELS)}"
            )
        for key in ("dcm_continue", "trust_bias"):
            value = getattr(self, key)
            if not is_number(value) or not 0 <= value <= 1:
                raise ValueError(f"world.{key}={value!r}: must be in [0, 1]")
        if self.trust_bias > 0 and self.click_model != "pbm":
            raise ValueError(
                f"world.trust_bias={self.trust_bias!r}: must be 0 unless world.click_model=pbm"
                f" (got {self.click_model})"
            )
        if not is_number(self.conformity):
            raise ValueError(f"world.conformity={self.conformity!r}: must be a finite number")
        if not is_number(self.conformity_halflife_days) or self.conformity_halflife_days <= 0:
            raise ValueError(
                f"world.conformity_halflife_days={self.conformity_halflife_days!r}: must be a"
                " number of days > 0"
            )

    @property
    def n_creators(self) -> int:
        """Creators the catalog's items are drawn from (``n_items // items_per_creator``, at
        least one)."""
        return max(1, self.n_items // self.items_per_creator)

    @property
    def is_living(self) -> bool:
        """Whether items or users arrive, or items leave, during a run."""
        return (
            self.item_arrival_rate > 0
            or self.user_arrival_rate > 0
            or self.item_lifetime_days is not None
        )

    @cached_property
    def engagement(self) -> EngagementConfig:
        """Satisfaction, churn and return, satiation (:mod:`agents.engagement`)."""
        return EngagementConfig.parse(
            self.churn,
            self.return_rate,
            self.satisfaction,
            self.satiation,
            self.satiation_recovery_days,
        )

    @cached_property
    def conversions(self) -> ConversionConfig:
        """Delayed conversions of clicks (:mod:`agents.conversions`)."""
        return ConversionConfig.parse(self.conversion, self.conversion_delay)

    @property
    def arrivals(self) -> ArrivalIntensity:
        """The arrival intensity of ``world.diurnal`` and ``world.flash_crowds``."""
        return ArrivalIntensity(diurnal_profile(self.diurnal), flash_crowds(self.flash_crowds))


@dataclass
class ItemPopularity:
    """Each item's recent clicks as users perceive them: the signal conformity responds to.

    ``decayed_clicks[i] = Σ_clicks 2^(−(t_updated − t_click) / halflife_hours)``, and the
    signal is ``z = standardize(log1p(decayed_clicks))`` over the catalog (mean 0, sd 1; all 0
    while every item looks alike). log1p tames the heavy tail of click counts so one blockbuster
    does not flatten everyone else's z. Updated only at event boundaries (:meth:`record`), so it
    does not depend on how requests are chunked into batches.
    """

    halflife_hours: float
    decayed_clicks: np.ndarray  # (n_items,) float64, as of t_updated
    signal: np.ndarray  # (n_items,) float64, z
    t_updated: float = 0.0

    @classmethod
    def empty(cls, n_items: int, halflife_hours: float) -> ItemPopularity:
        return cls(halflife_hours, np.zeros(n_items), np.zeros(n_items))

    def record(self, item_ids: np.ndarray, times: np.ndarray, now: float) -> None:
        """Decay to ``now``, add the clicks at ``times`` (hours, <= now) and refresh ``signal``."""
        if now < self.t_updated:
            raise ValueError(f"popularity updated at {self.t_updated}, cannot go back to {now}")
        if times.size and times.max() > now:
            raise ValueError(f"a click at {times.max()} is after the update time {now}")
        h = self.halflife_hours
        fresh = np.bincount(
            item_ids, weights=0.5 ** ((now - times) / h), minlength=self.decayed_clicks.size
        )
        self.decayed_clicks = self.decayed_clicks * 0.5 ** ((now - self.t_updated) / h) + fresh
        self.t_updated = now
        level = np.log1p(self.decayed_clicks)
        sd = level.std()
        # Below 1e-12 the spread is rounding noise: treat the catalog as uniformly popular.
        self.signal = (level - level.mean()) / sd if sd > 1e-12 else np.zeros_like(level)


@dataclass
class World:
    """Ground truth. ``sim`` draws responses from it; metrics score against it; policies never see it.

    Mutable during a run: ``users.preferences`` (drift), ``popularity`` (conformity) and the
    clicks not yet applied to them (:meth:`respond` → :meth:`advance`).
    """

    config: WorldConfig
    catalog: Catalog
    users: UserPopulation
    click_model: ClickModel
    popularity: ItemPopularity
    # (users, items, times) of the clicks since the last advance(), kept only when a dynamic
    # (drift or conformity) will use them.
    unapplied_clicks: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = field(
        default_factory=list, repr=False
    )
    # The other domain of cross-domain transfer (config section ``transfer``); None when
    # ``transfer.enabled`` is false: then nothing of it exists.
    second_domain: SecondDomain | None = field(default=None, repr=False)
    # Satisfaction, churn, satiation (agents.engagement); None when all are off.
    engagement: Engagement | None = field(default=None, repr=False)
    # Conversions drawn at click time that have not happened yet (agents.conversions) and the
    # stream they draw from (world.conversions); None when conversions are off.
    conversions: PendingConversions | None = field(default=None, repr=False)
    conversion_rng: np.random.Generator | None = field(default=None, repr=False)
    median_price: float = 1.0  # the initial catalog's median price (conversion model)

    def catalog_changes(self, horizon: float) -> np.ndarray:
        """Sorted distinct hours in ``(0, horizon)`` at which an item arrives or leaves: the
        events at which what may be served changes."""
        meta = self.catalog.metadata
        times = np.concatenate([meta.arrival_t, meta.depart_t])
        return np.unique(times[(times > 0) & (times < horizon)])

    def unavailable(self, t: float) -> np.ndarray:
        """Sorted ids of the items not in the catalog at hour ``t`` (not arrived, or departed)."""
        return np.flatnonzero(~self.catalog.metadata.available(t)).astype(np.int64)

    @property
    def has_dynamics(self) -> bool:
        """Whether clicks change the world (preference drift or conformity)."""
        return (
            self.users.drift_rate > 0
            or self.config.conformity != 0
            or (self.engagement is not None and self.engagement.config.satiation > 0)
        )

    def affinity(self, user_ids: np.ndarray, item_ids: np.ndarray) -> np.ndarray:
        """True affinity logit for aligned arrays of users and items (any matching shapes)."""
        prefs = self.users.preferences[user_ids]
        factors = self.catalog.factors[item_ids]
        dot = np.einsum("...d,...d->...", prefs, factors)
        c = self.config
        affinity = c.affinity_scale * dot + self.catalog.appeal[item_ids] + c.affinity_offset
        if self.engagement is not None and self.engagement.config.satiation > 0:
            affinity = affinity + self.engagement.logit_shift(
                user_ids, self.catalog.topic[item_ids]
            )
        return affinity

    def relevance(self, user_ids: np.ndarray, item_ids: np.ndarray) -> np.ndarray:
        """True relevance = attraction probability = sigmoid(affinity), in (0, 1)."""
        return _sigmoid(self.affinity(user_ids, item_ids))

    def relevance_matrix(self, user_ids: np.ndarray) -> np.ndarray:
        """(len(user_ids), n_items) true relevance of every item for each user."""
        c = self.config
        logits = c.affinity_scale * (self.users.preferences[user_ids] @ self.catalog.factors.T)
        logits += self.catalog.appeal + c.affinity_offset
        if self.engagement is not None and self.engagement.config.satiation > 0:
            logits += self.engagement.logit_shift(
                np.asarray(user_ids)[:, None], self.catalog.topic[None, :]
            )
        return _sigmoid(logits)

    def relevance_and_attraction(
        self, user_ids: np.ndarray, item_ids: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """True relevance and the attraction that drives clicks (conformity shifts its logit).

        Without conformity both are the same array.
        """
        affinity = self.affinity(user_ids, item_ids)
        relevance = _sigmoid(affinity)
        if self.config.conformity == 0:
            return relevance, relevance
        shift = self.config.conformity * self.popularity.signal[item_ids]
        return relevance, _sigmoid(affinity + shift)

    def record_clicks(self, item_ids: np.ndarray, times: np.ndarray, now: float) -> None:
        """Feed clicks into the popularity users conform to (a no-op without conformity)."""
        if self.config.conformity != 0:
            self.popularity.record(item_ids, times, now)

    def respond(
        self,
        user_ids: np.ndarray,
        times: np.ndarray,
        slates: np.ndarray,
        rand: ResponseRandomness,
        consumed: bool = True,
        request_ids: np.ndarray | None = None,
    ) -> Response:
        """Users' clicks on their slates (``user_ids``, ``times``: (n,); ``slates``: (n, K)).

        Draws one uniform per slot from ``rand.clicks`` (and one more from ``rand.extra`` for
        click models that need it), in request order, so how requests are split into batches
        does not change the draws. The clicks wait in :attr:`unapplied_clicks` until
        :meth:`advance`: the world changes at event boundaries only, never within a batch.
        ``consumed=False``: answers that are not consumption (an onboarding screen,
        :mod:`sim.onboarding`) change neither preferences nor popularity, satisfaction or
        satiation, and do not convert. With conversions on, each click draws its conversion
        (:mod:`agents.conversions`) and the converting ones wait, with their ``request_ids``,
        in :attr:`conversions`.
        """
        relevance, attraction = self.relevance_and_attraction(user_ids[:, None], slates)
        uniforms = rand.clicks.random(slates.shape)
        extra = rand.extra.random(slates.shape) if self.click_model.needs_extra_uniforms else None
        clicked = self.click_model.sample(attraction, uniforms, extra)
        if self.has_dynamics and consumed:
            rows, slots = np.nonzero(clicked)
            self.unapplied_clicks.append((user_ids[rows], slates[rows, slots], times[rows]))
        if self.engagement is not None and consumed:
            self.engagement.record(user_ids, (relevance * clicked).sum(axis=1))
        if self.conversions is not None and consumed:
            self._convert(user_ids, times, slates, clicked, relevance, request_ids)
        return Response(relevance, clicked)

    def _convert(
        self,
        user_ids: np.ndarray,
        times: np.ndarray,
        slates: np.ndarray,
        clicked: np.ndarray,
        relevance: np.ndarray,
        request_ids: np.ndarray | None,
    ) -> None:
        """Draw each click's conversion (click order) and keep the converting ones pending."""
        if request_ids is None:
            raise ValueError("with conversions on, respond() needs the request ids")
        assert self.conversion_rng is not None and self.conversions is not None
        rows, slots = np.nonzero(clicked)
        items = slates[rows, slots]
        price = self.catalog.metadata.price[items]
        converts, delay = draw_conversions(
            self.config.conversions,
            self.conversion_rng,
            relevance[rows, slots],
            price,
            self.median_price,
        )
        self.conversions.add(
            request_ids[rows][converts],
            user_ids[rows][converts],
            items[converts],
            times[rows][converts],
            delay[converts],
            price[converts],
        )

    def advance(self, now: float) -> None:
        """Apply the clicks since the last call: preferences drift toward the clicked items and
        the popularity users conform to takes them in, as of ``now`` (simulated hours).

        Called at every event boundary (not per batch), so batching stays invisible. Without
        conformity and new clicks it does nothing; with conformity it refreshes popularity even
        without clicks, because popularity decays with time.
        """
        clicks = self.unapplied_clicks
        engagement = self.engagement
        if engagement is not None:
            engagement.apply()  # satisfaction: the requests served since the last boundary
        satiates = engagement is not None and engagement.config.satiation > 0
        if self.config.conformity == 0 and not clicks and not satiates:
            return
        users = np.concatenate([u for u, _, _ in clicks]) if clicks else np.empty(0, np.int32)
        items = np.concatenate([i for _, i, _ in clicks]) if clicks else np.empty(0, np.int64)
        times = np.concatenate([t for _, _, t in clicks]) if clicks else np.empty(0)
        clicks.clear()
        if self.users.drift_rate > 0:
            self.users.drift_toward(users, self.catalog.factors[items])
        self.record_clicks(items, times, now)
        if satiates:
            engagement.consume(users, self.catalog.topic[items], times, now)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # overflow-free logistic


def build_world(
    config: WorldConfig,
    streams: Streams,
    days: float | None = None,
    transfer: TransferConfig | None = None,
) -> World:
    """Draw the world from the ``world.*`` streams of ``streams`` (independent of the policy).

    A living world (:attr:`WorldConfig.is_living`) is drawn whole for a run of ``days``: every
    item and user that will arrive is pre-allocated (ids after the initial ones, in arrival
    order) and gated by its arrival time, from streams of its own, so the initial world is the
    same draw with arrivals on or off. With ``transfer.enabled`` the second domain is drawn
    last, from its own ``world.transfer.*`` streams, for every user (arrivals included);
    otherwise it is not built at all.
    """
    centers = topic_centers(config.n_topics, config.dim, streams.generator("world.topics"))
    catalog = generate_catalog(
        config.n_items,
        centers,
        topic_spread=config.topic_spread,
        appeal_scale=config.appeal_scale,
        appeal_tail_df=config.appeal_tail_df,
        content_dim=config.content_dim,
        content_noise=config.content_noise,
        n_creators=config.n_creators,
        rng=streams.generator("world.items"),
    )
    # Publish times of the initial catalog: exponential ages (mean world.item_age_days) before
    # hour 0, from a stream of their own (so no other draw of the world moves).
    age_hours = streams.generator("world.item_publish").exponential(
        config.item_age_days * 24.0, config.n_items
    )
    catalog = dataclasses.replace(
        catalog, metadata=dataclasses.replace(catalog.metadata, publish_t=-age_hours)
    )
    users = generate_users(
        config.n_users,
        centers,
        topic_spread=config.topic_spread,
        sessions_per_day=config.sessions_per_day,
        activity_sigma=config.activity_sigma,
        drift_rate=config.drift_rate,
        rng=streams.generator("world.users"),
    )
    arrivals = config.arrivals
    users.arrivals = None if arrivals.is_flat else arrivals
    if config.is_living:
        if days is None:
            raise ValueError("a living world (world.*_arrival_rate, item_lifetime_days) needs days")
        catalog, users = _living(config, streams, centers, catalog, users, days * 24.0)
    second = None
    if transfer is not None and transfer.enabled:
        assert users.topic_weights is not None
        second = build_second_domain(
            transfer,
            streams,
            centers,
            users.preferences,
            users.topic_weights,
            topic_spread=config.topic_spread,
            appeal_scale=config.appeal_scale,
            appeal_tail_df=config.appeal_tail_df,
            affinity_scale=config.affinity_scale,
            affinity_offset=config.affinity_offset,
        )
    return World(
        config=config,
        catalog=catalog,
        users=users,
        click_model=make_click_model(
            config.click_model,
            eta=config.position_bias_eta,
            continue_after_click=config.dcm_continue,
            trust_bias=config.trust_bias,
        ),
        popularity=ItemPopularity.empty(catalog.n_items, config.conformity_halflife_days * 24.0),
        second_domain=second,
        **_engagement_and_conversions(config, streams, users.n_users, catalog),
    )


def _engagement_and_conversions(
    config: WorldConfig, streams: Streams, n_users: int, catalog: Catalog
) -> dict[str, Any]:
    """The world's engagement state and conversion buffer, only for what is switched on (their
    streams ``world.churn`` and ``world.conversions`` are made only then)."""
    parts: dict[str, Any] = {}
    if config.engagement.enabled:
        parts["engagement"] = Engagement.initial(
            config.engagement, n_users, config.n_topics, streams.generator("world.churn")
        )
    if config.conversions.enabled:
        parts["conversions"] = PendingConversions()
        parts["conversion_rng"] = streams.generator("world.conversions")
        parts["median_price"] = float(np.median(catalog.metadata.price[: config.n_items]))
    return parts


def poisson_times(rate_per_day: float, horizon: float, rng: np.random.Generator) -> np.ndarray:
    """Sorted arrival hours of a Poisson process of ``rate_per_day`` on ``(0, horizon)``."""
    n = rng.poisson(rate_per_day * horizon / 24.0)
    times = np.sort(horizon * (1.0 - rng.random(n)))  # in (0, horizon]: nobody arrives at hour 0
    return times[times < horizon]


def catalog_timeline(
    config: WorldConfig, streams: Streams, horizon: float
) -> tuple[np.ndarray, np.ndarray]:
    """``(arrival_t, depart_t)`` of every item a living world will hold over ``horizon`` hours —
    the initial catalog's then the arrivals', in arrival order — drawn exactly as
    :func:`build_world` draws them, without drawing the items themselves (cheap: the config
    check uses it to see the catalog never shrinks below what a slate needs)."""
    times = poisson_times(
        config.item_arrival_rate, horizon, streams.generator("world.item_arrivals")
    )
    arrival = np.concatenate([np.zeros(config.n_items), times[times < horizon]])
    depart = np.full(arrival.size, np.inf)
    if config.item_lifetime_days is not None:
        life = streams.generator("world.item_lifetimes").exponential(
            config.item_lifetime_days * 24.0, arrival.size
        )
        depart = arrival + life
    return arrival, depart


def smallest_catalog(
    arrival_t: np.ndarray, depart_t: np.ndarray, horizon: float
) -> tuple[int, float]:
    """The fewest items in the catalog at any hour in ``[0, horizon)``, and the first hour it
    holds that few."""
    events = np.unique(np.concatenate([[0.0], arrival_t, depart_t]))
    events = events[events < horizon]
    arrived = np.searchsorted(np.sort(arrival_t), events, side="right")
    departed = np.searchsorted(np.sort(depart_t), events, side="right")
    size = arrived - departed
    at = int(np.argmin(size))
    return int(size[at]), float(events[at])


def _living(
    config: WorldConfig,
    streams: Streams,
    centers: np.ndarray,
    catalog: Catalog,
    users: UserPopulation,
    horizon: float,
) -> tuple[Catalog, UserPopulation]:
    """The pre-allocated arrivals and departures of a living world (streams ``world.item_arrivals``,
    ``world.item_lifetimes``, ``world.user_arrivals``)."""
    c = config
    rng = streams.generator("world.item_arrivals")
    times = poisson_times(c.item_arrival_rate, horizon, rng)
    if times.size:
        new = arriving_items(
            catalog,
            centers,
            times,
            topic_spread=c.topic_spread,
            appeal_scale=c.appeal_scale,
            appeal_tail_df=c.appeal_tail_df,
            content_noise=c.content_noise,
            n_creators=c.n_creators,
            new_creator_share=c.new_creator_share,
            rng=rng,
        )
        catalog = concat_catalogs(catalog, new)
    if c.item_lifetime_days is not None:
        meta = catalog.metadata
        _, depart = catalog_timeline(c, streams, horizon)
        catalog = dataclasses.replace(catalog, metadata=dataclasses.replace(meta, depart_t=depart))
    rng = streams.generator("world.user_arrivals")
    times = poisson_times(c.user_arrival_rate, horizon, rng)
    if times.size:
        users = arriving_users(
            users,
            centers,
            times,
            topic_spread=c.topic_spread,
            sessions_per_day=c.sessions_per_day,
            activity_sigma=c.activity_sigma,
            rng=rng,
        )
    return catalog, users
