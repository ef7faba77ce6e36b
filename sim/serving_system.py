"""The serving system in simulated time: model servers with a FIFO queue, a latency budget and
a per-user slate cache (config group ``serving``).

Time: the simulation clock is in hours, service and latency are in milliseconds
(``MS_PER_HOUR``). Each request's service time is drawn, in request order, from the stream
``sim.service`` (one draw per request, whatever happens to it, so chunking shifts nothing):
``S = E[S] · U`` with ``U`` of mean 1 — ``constant`` (U = 1), ``exponential`` (cv = 1) or
``lognormal`` (coefficient of variation ``cv``). ``E[S] = mean_ms`` plus
``rerank_ms_per_candidate · n_candidates`` when the policy's rerank stage is not the identity.

The rules, applied by one compiled pass (:func:`route`) to the requests in arrival order, with
``c = model_servers`` servers whose next-free times carry over from one chunk (and one round)
to the next:

1. **cache hit** — the user has a cache entry (``cache_ttl_hours > 0``) filled less than
   ``cache_ttl_hours`` ago and, when ``cache_invalidate_on_deploy``, by the model version serving
   now: the cached slate is served (latency ``cache_ms``); no server is used;
2. otherwise the wait is known at arrival: ``wait = max(0, earliest server free time − t)``
   (FIFO: a request takes the server that frees first, lowest index on ties; unlimited servers:
   no wait). With a budget ``b``: ``wait > b`` → degraded ``overload``; else
   ``wait + E[S] > b`` → degraded ``budget``. A degraded request uses no server and is served by
   the popularity fallback (latency ``fallback_ms``);
3. else a model server serves it: latency ``wait + S``; that server is busy until
   ``t + latency``; with the cache on, the user's entry is (re)filled at ``t`` with the current
   version. Degraded requests and hits never fill the cache.

Assigning each arrival, in order, to the earliest-free server is the exact FIFO multi-server
queue (the Kiefer–Wolfowitz workload recursion), so with Poisson arrivals and exponential
service it is M/M/c and, without a budget, the waits follow Erlang-C. With a budget the degraded
requests balk (they leave without service), which lowers the load the queue sees: the M/M/c tail
``P(W > b) = C(c, a)·e^{−(cμ−λ)b}`` is then an upper bound of the overload share, not an
equality.

Load: the offered load is ``ρ = λ·E[S]/c`` with ``λ`` the request rate. The small world makes
about 2,000 requests a day (≈ 0.02 per second), so with realistic service times of tens of
milliseconds a handful of servers never saturates; a study that wants queueing sets ``mean_ms``
large (e.g. ``ρ = 0.8`` with one server at 83 requests an hour needs E[S] ≈ 35 s) and uses
``world.diurnal`` / ``world.flash_crowds`` to make the peaks saturate while nights do not.

Before the first deployment the bootstrap serves every request directly: the gate is off (no
queue, no budget, no cache; latency = the drawn service time, servers untouched).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agents.validation import is_number, is_positive_int
from policies.exclusion import with_unavailable
from policies.models import SOURCE_CODE, first_unfiltered
from policies.pipeline import SlateBatch
from policies.policy import ServingPolicy
from policies.propensity import EXACT, METHODS
from policies.randomness import Randomness

MS_PER_HOUR = 3_600_000.0
DISTRIBUTIONS = ("lognormal", "exponential", "constant")
# Request status codes of route(); DEGRADED names the impressions' ``degraded`` values.
MODEL, HIT, BUDGET, OVERLOAD = 0, 1, 2, 3
DEGRADED = ("none", "budget", "overload")


@dataclass(frozen=True)
class ServiceConfig:
    """``serving.service``: the distribution of a model server's service time."""

    distribution: str = "lognormal"
    mean_ms: float = 20.0
    cv: float = 0.5
    rerank_ms_per_candidate: float = 0.05

    def __post_init__(self) -> None:
        if self.distribution not in DISTRIBUTIONS:
            raise ValueError(
                f"serving.service.distribution={self.distribution!r}: must be one of "
                f"{', '.join(DISTRIBUTIONS)}"
            )
        if not is_number(self.mean_ms) or self.mean_ms <= 0:
            raise ValueError(f"serving.service.mean_ms={self.mean_ms!r}: must be a number > 0")
        if not is_number(self.cv) or self.cv < 0:
            raise ValueError(f"serving.service.cv={self.cv!r}: must be a number >= 0")
        r = self.rerank_ms_per_candidate
        if not is_number(r) or r < 0:
            raise ValueError(f"serving.service.rerank_ms_per_candidate={r!r}: must be >= 0")

    def unit_draws(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` service-time multipliers of mean 1, in request order (one stream call each)."""
        if self.distribution == "constant":
            return np.ones(n)
        if self.distribution == "exponential":
            return rng.standard_exponential(n)
        sigma2 = np.log1p(float(self.cv) ** 2)
        return np.exp(np.sqrt(sigma2) * rng.standard_normal(n) - sigma2 / 2.0)


@dataclass(frozen=True)
class ServingConfig:
    """The ``serving`` config group. Defaults: unlimited servers, no budget, no cache."""

    model_servers: int | None = None
    latency_budget_ms: float | None = None
    service: ServiceConfig = field(default_factory=ServiceConfig)
    fallback_ms: float = 2.0
    cache_ttl_hours: float = 0.0
    cache_ms: float = 1.0
    cache_invalidate_on_deploy: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.service, dict):
            known = {"distribution", "mean_ms", "cv", "rerank_ms_per_candidate"}
            unknown = sorted(set(self.service) - known)
            if unknown:
                raise ValueError(
                    f"serving.service.{unknown[0]}={self.service[unknown[0]]!r}: unknown key; "
                    f"known keys: {', '.join(sorted(known))}"
                )
            object.__setattr__(self, "service", ServiceConfig(**self.service))
        c = self.model_servers
        if c is not None and not is_positive_int(c):
            raise ValueError(
                f"serving.model_servers={c!r}: must be null (unlimited) or an integer >= 1"
            )
        b = self.latency_budget_ms
        if b is not None and (not is_number(b) or b <= 0):
            raise ValueError(f"serving.latency_budget_ms={b!r}: must be null (none) or > 0")
        for key in ("fallback_ms", "cache_ms"):
            value = getattr(self, key)
            if not is_number(value) or value < 0:
                raise ValueError(f"serving.{key}={value!r}: must be a number of ms >= 0")
        if not is_number(self.cache_ttl_hours) or self.cache_ttl_hours < 0:
            raise ValueError(
                f"serving.cache_ttl_hours={self.cache_ttl_hours!r}: must be a number of hours "
                ">= 0 (0 = no cache)"
            )
        if not isinstance(self.cache_invalidate_on_deploy, bool):
            raise ValueError(
                f"serving.cache_invalidate_on_deploy={self.cache_invalidate_on_deploy!r}: "
                "must be true or false"
            )

    @property
    def cache_on(self) -> bool:
        return self.cache_ttl_hours > 0

    @property
    def is_default(self) -> bool:
        """Unlimited servers, no budget, no cache: serving changes nothing but ``latency_ms``."""
        return self.model_servers is None and self.latency_budget_ms is None and not self.cache_on

    def expected_service_ms(self, n_candidates: int, reranks: bool) -> float:
        s = self.service
        return float(s.mean_ms) + (
            float(s.rerank_ms_per_candidate) * n_candidates if reranks else 0.0
        )


@dataclass
class CachedSlates:
    """The slate cache's payload: the last model-served slate of each user (rows by user id)."""

    items: np.ndarray  # (n_users, K) int64
    propensity: np.ndarray  # (n_users, K) float64
    prefix_propensity: np.ndarray  # (n_users, K) float64
    score: np.ndarray  # (n_users, K) float32
    rerank_score: np.ndarray  # (n_users, K) float32 (NaN: no learned reranker)
    source: np.ndarray  # (n_users, K) int8
    original_position: np.ndarray  # (n_users, K) int16
    intervention: np.ndarray  # (n_users,) int8
    method: np.ndarray  # (n_users,) int8 code into policies.propensity.METHODS
    model_version: np.ndarray  # (n_users,) int32

    @classmethod
    def empty(cls, n_users: int, k: int) -> CachedSlates:
        return cls(
            items=np.zeros((n_users, k), dtype=np.int64),
            propensity=np.zeros((n_users, k)),
            prefix_propensity=np.zeros((n_users, k)),
            score=np.zeros((n_users, k), dtype=np.float32),
            rerank_score=np.full((n_users, k), np.nan, dtype=np.float32),
            source=np.zeros((n_users, k), dtype=np.int8),
            original_position=np.zeros((n_users, k), dtype=np.int16),
            intervention=np.zeros(n_users, dtype=np.int8),
            method=np.zeros(n_users, dtype=np.int8),
            model_version=np.full(n_users, -1, dtype=np.int32),
        )


@dataclass
class ServingSystemState:
    """What the serving system carries across chunks and rounds (part of the simulation state).

    ``server_free`` holds the hour each server is next free (empty: unlimited servers);
    ``cache_t`` / ``cache_version`` each user's cache entry (fill hour, −inf: none; model
    version); ``slates`` the cached slates; ``fallback`` the popularity list of the deployed
    model (item ids, most clicked first, computed at its deployment).
    """

    server_free: np.ndarray
    cache_t: np.ndarray
    cache_version: np.ndarray
    slates: CachedSlates | None
    fallback: np.ndarray | None = None

    @classmethod
    def initial(cls, config: ServingConfig, n_users: int, slate_size: int) -> ServingSystemState:
        c = config.model_servers or 0
        return cls(
            server_free=np.zeros(c),
            cache_t=np.full(n_users, -np.inf),
            cache_version=np.full(n_users, -1, dtype=np.int64),
            slates=CachedSlates.empty(n_users, slate_size) if config.cache_on else None,
        )


@dataclass(frozen=True)
class Routing:
    """What :func:`route` decided for each request of a chunk."""

    status: np.ndarray  # (n,) int8: MODEL, HIT, BUDGET or OVERLOAD
    latency_ms: np.ndarray  # (n,) float64
    hit_row: (
        np.ndarray
    )  # (n,) int64: for a hit, the chunk row that filled the entry (−1: the cache arrays)
    fill_t: np.ndarray  # (n,) float64: for a hit, the hour the slate was computed


@dataclass(frozen=True)
class RequestOutcome:
    """Per request, what the impressions table logs about serving (sim.event_log)."""

    latency_ms: np.ndarray  # (n,) float64
    degraded: np.ndarray  # (n,) int8 code into DEGRADED
    cache_hit: np.ndarray  # (n,) bool
    slate_age_h: np.ndarray  # (n,) float64

    @classmethod
    def model_served(cls, latency_ms: np.ndarray) -> RequestOutcome:
        n = latency_ms.size
        return cls(latency_ms, np.zeros(n, dtype=np.int8), np.zeros(n, dtype=bool), np.zeros(n))

    @classmethod
    def of(cls, routing: Routing, t: np.ndarray) -> RequestOutcome:
        status = routing.status
        hit = status == HIT
        degraded = np.where(status >= BUDGET, status - 1, 0).astype(np.int8)
        return cls(routing.latency_ms, degraded, hit, np.where(hit, t - routing.fill_t, 0.0))


def route(
    state: ServingSystemState,
    config: ServingConfig,
    t: np.ndarray,
    users: np.ndarray,
    service_ms: np.ndarray,
    expected_ms: float,
    version: int,
) -> Routing:
    """Apply the module's rules to one chunk (arrival order), updating ``state`` in place."""
    budget = -1.0 if config.latency_budget_ms is None else float(config.latency_budget_ms)
    status, latency, hit_row, fill_t = _compiled_route()(
        np.ascontiguousarray(t, dtype=np.float64),
        np.ascontiguousarray(users, dtype=np.int64),
        np.ascontiguousarray(service_ms, dtype=np.float64),
        float(expected_ms),
        state.server_free,
        state.cache_t,
        state.cache_version,
        int(version),
        float(config.cache_ttl_hours),
        bool(config.cache_invalidate_on_deploy),
        budget,
        float(config.cache_ms),
        float(config.fallback_ms),
    )
    return Routing(status, latency, hit_row, fill_t)


@functools.cache
def _compiled_route() -> Any:
    """:func:`_route` compiled by numba (``njit(cache=True)``), imported on first use only: a
    run with the default serving system never loads numba."""
    from numba import njit

    return njit(cache=True)(_route)


def _route(
    t: np.ndarray,
    users: np.ndarray,
    service_ms: np.ndarray,
    expected_ms: float,
    server_free: np.ndarray,
    cache_t: np.ndarray,
    cache_version: np.ndarray,
    version: int,
    ttl_h: float,
    invalidate_on_deploy: bool,
    budget_ms: float,
    cache_ms: float,
    fallback_ms: float,
) -> tuple[Any, Any, Any, Any]:
    n = t.size
    status = np.zeros(n, dtype=np.int8)
    latency = np.zeros(n)
    hit_row = np.full(n, -1, dtype=np.int64)
    fill_t = np.zeros(n)
    c = server_free.size
    # user -> the chunk row that last filled their entry (-1: filled before this chunk)
    row_of = np.full(cache_t.size if ttl_h > 0.0 else 0, -1, dtype=np.int64)
    for i in range(n):
        u = users[i]
        if ttl_h > 0.0 and t[i] - cache_t[u] < ttl_h:
            if not invalidate_on_deploy or cache_version[u] == version:
                status[i] = HIT
                latency[i] = cache_ms
                fill_t[i] = cache_t[u]
                hit_row[i] = row_of[u]
                continue
        wait = 0.0
        j = 0
        if c > 0:
            for s in range(1, c):
                if server_free[s] < server_free[j]:
                    j = s
            wait = max(0.0, (server_free[j] - t[i]) * MS_PER_HOUR)
        if budget_ms > 0.0:
            if wait > budget_ms:
                status[i] = OVERLOAD
                latency[i] = fallback_ms
                continue
            if wait + expected_ms > budget_ms:
                status[i] = BUDGET
                latency[i] = fallback_ms
                continue
        latency[i] = wait + service_ms[i]
        if c > 0:
            server_free[j] = t[i] + latency[i] / MS_PER_HOUR
        if ttl_h > 0.0:
            cache_t[u] = t[i]
            cache_version[u] = version
            row_of[u] = i
    return status, latency, hit_row, fill_t


def serve_routed(
    policy: ServingPolicy,
    rand: Randomness,
    users: np.ndarray,
    routing: Routing,
    system: ServingSystemState,
    times: np.ndarray | None = None,
) -> SlateBatch:
    """The chunk's slates, merged in request order: the model rows from ``policy.serve`` (only
    those rows, in order, so the policy's draws stay in request order), the degraded rows from
    the deployment's popularity fallback (deterministic: propensity 1, method ``exact``, score
    NaN, source ``degraded_fallback``; the K items are also its candidates), the hits copied
    from the slate that filled the cache entry (items, propensities, scores, sources, version;
    no candidate rows: nothing was retrieved). Then the cache payload takes each user's last
    model-served slate of the chunk."""
    status = routing.status
    model_rows = np.flatnonzero(status == MODEL)
    cache = system.slates
    if model_rows.size == users.size and cache is None:
        return policy.serve(users, rand, times)
    n, k = users.size, policy.config.slate_size
    sub_times = None if times is None else times[model_rows]
    sub = policy.serve(users[model_rows], rand, sub_times) if model_rows.size else None
    c_model = sub.candidates.shape[1] if sub is not None else 0
    c = max(c_model, k)
    positions = np.broadcast_to(np.arange(k, dtype=np.int16), (n, k))
    out = {
        "items": np.zeros((n, k), dtype=np.int64),
        "propensity": np.ones((n, k)),
        "prefix_propensity": np.ones((n, k)),
        "score": np.full((n, k), np.nan, dtype=np.float32),
        "rerank_score": np.full((n, k), np.nan, dtype=np.float32),
        "source": np.full((n, k), SOURCE_CODE["degraded_fallback"], dtype=np.int8),
        "original_position": positions.copy(),
        "intervention": np.zeros(n, dtype=np.int8),
        "method": np.full(n, METHODS.index(EXACT), dtype=np.int8),
        "model_version": np.full(n, policy.model_version, dtype=np.int32),
    }
    cand = {
        "candidates": np.zeros((n, c), dtype=np.int64),
        "candidate_scores": np.full((n, c), np.nan, dtype=np.float32),
        "candidate_shown": np.zeros((n, c), dtype=bool),
        "candidate_show_probability": np.zeros((n, c)),
        "candidate_source": np.full((n, c), SOURCE_CODE["degraded_fallback"], dtype=np.int8),
        "candidate_logged": np.zeros((n, c), dtype=bool),
        # a fallback list's own order is its retriever rank
        "candidate_retriever_rank": np.tile(np.arange(c, dtype=np.int16), (n, 1)),
    }
    if sub is not None:
        m = model_rows
        out["items"][m] = sub.items
        out["propensity"][m] = sub.propensity
        out["prefix_propensity"][m] = sub.prefix_propensity
        out["score"][m] = sub.score
        out["source"][m] = sub.source
        if sub.rerank_score is not None:
            out["rerank_score"][m] = sub.rerank_score
        if sub.original_position is not None:
            out["original_position"][m] = sub.original_position
        if sub.intervention is not None:
            out["intervention"][m] = sub.intervention
        out["method"][m] = (
            METHODS.index(sub.propensity_method)
            if isinstance(sub.propensity_method, str)
            else sub.propensity_method
        )
        out["model_version"][m] = sub.model_version
        cand["candidates"][m, :c_model] = sub.candidates
        cand["candidate_scores"][m, :c_model] = sub.candidate_scores
        cand["candidate_shown"][m, :c_model] = sub.candidate_shown
        cand["candidate_show_probability"][m, :c_model] = sub.candidate_show_probability
        cand["candidate_source"][m, :c_model] = sub.candidate_source
        cand["candidate_logged"][m, :c_model] = True
        if sub.candidate_retriever_rank is not None:
            cand["candidate_retriever_rank"][m, :c_model] = sub.candidate_retriever_rank
    degraded = np.flatnonzero(status >= BUDGET)
    if degraded.size:
        assert system.fallback is not None and policy.model is not None
        # the deployment's popularity order minus what each user clicked and what left the
        # catalog (or has not arrived)
        seen = with_unavailable(policy.model.seen[users[degraded]], policy.unavailable)
        fallback = first_unfiltered(system.fallback, k, seen)
        out["items"][degraded] = fallback
        cand["candidates"][degraded, :k] = fallback
        cand["candidate_shown"][degraded, :k] = True
        cand["candidate_show_probability"][degraded, :k] = 1.0
        cand["candidate_logged"][degraded, :k] = True
    hits = status == HIT
    if hits.any():
        assert cache is not None
        # Entries filled before this chunk: the payload (not yet updated by this chunk).
        old = np.flatnonzero(hits & (routing.hit_row < 0))
        u = users[old]
        for name in ("items", "propensity", "prefix_propensity", "score", "rerank_score", "source"):
            out[name][old] = getattr(cache, name)[u]
        out["original_position"][old] = cache.original_position[u]
        out["intervention"][old] = cache.intervention[u]
        out["method"][old] = cache.method[u]
        out["model_version"][old] = cache.model_version[u]
        # Entries filled earlier in this chunk: that model-served row, already in place.
        new = np.flatnonzero(hits & (routing.hit_row >= 0))
        src = routing.hit_row[new]
        for values in out.values():
            values[new] = values[src]
    if cache is not None and model_rows.size:
        # Each user's last model-served row of the chunk refills the payload.
        filled_users = users[model_rows]
        _, last_rev = np.unique(filled_users[::-1], return_index=True)
        rows = model_rows[model_rows.size - 1 - last_rev]
        u = users[rows]
        for name in ("items", "propensity", "prefix_propensity", "score", "rerank_score", "source"):
            getattr(cache, name)[u] = out[name][rows]
        cache.original_position[u] = out["original_position"][rows]
        cache.intervention[u] = out["intervention"][rows]
        cache.method[u] = out["method"][rows]
        cache.model_version[u] = out["model_version"][rows]
    return SlateBatch(
        items=out["items"],
        propensity=out["propensity"],
        prefix_propensity=out["prefix_propensity"],
        propensity_method=out["method"],
        score=out["score"],
        source=out["source"],
        model_version=out["model_version"],
        policy_name=policy.name,
        original_position=out["original_position"],
        intervention=out["intervention"],
        rerank_score=out["rerank_score"],
        **cand,
    )
