"""The closed loop on one simpy Environment (time in simulated hours).

Processes (plain generators):

* ``arrivals`` — each simulated day, draws that day's per-user Poisson sessions;
* ``retrain`` — every ``retrain_every_hours``: close the log round, train on the log, wait
  ``train_hours`` of simulated time, deploy (the new model serves only from then on);
* ``snapshots`` — every ``snapshot_every_hours``: mark a metric window and the deployed version.

Serving is vectorized: pending requests are served as numpy batches whenever an event changes what
the policy knows (a retrain cut-off, a deployment, the end of the run). The policy's random draws
come from generators consumed in request order (see :mod:`policies.randomness`), so how requests
are chunked into batches does not change any outcome.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
import simpy

from agents.streams import Streams
from agents.validation import is_number, is_positive_int
from agents.world import World
from policies.models import Model
from policies.policy import ServingPolicy, Target
from policies.randomness import Randomness
from sim.event_log import EventLog, partition_path, write_parquet_atomic
from sim.training_data import TrainingLog

HOURS_PER_DAY = 24.0


@dataclass(frozen=True)
class SimConfig:
    """Parameters of the ``sim`` config group."""

    days: int = 30
    retrain_every_hours: float = 24.0
    train_hours: float = 1.0
    snapshot_every_hours: float = 24.0
    max_batch_requests: int = 8192

    def __post_init__(self) -> None:
        for key in ("days", "max_batch_requests"):
            value = getattr(self, key)
            if not is_positive_int(value):
                raise ValueError(f"sim.{key}={value!r}: must be a positive integer")
        for key in ("retrain_every_hours", "snapshot_every_hours"):
            value = getattr(self, key)
            if not is_number(value) or value <= 0:
                raise ValueError(f"sim.{key}={value!r}: must be a number of hours > 0")
        if not is_number(self.train_hours) or not 0 <= self.train_hours <= self.retrain_every_hours:
            raise ValueError(
                f"sim.train_hours={self.train_hours!r}: must be in [0, sim.retrain_every_hours"
                f"={self.retrain_every_hours}]"
            )

    @property
    def horizon(self) -> float:
        return self.days * HOURS_PER_DAY


@dataclass
class RunStats:
    """Counts and wall-clock timings of a run (timings are not part of any compared output)."""

    n_requests: int = 0
    n_impressions: int = 0
    n_clicks: int = 0
    seconds: dict[str, float] = field(
        default_factory=lambda: {
            "fit": 0.0,
            "serve": 0.0,
            "respond": 0.0,
            "log": 0.0,
            "quality": 0.0,
        }
    )


class Simulation:
    """One closed-loop run. Writes the event log under ``log_root``."""

    def __init__(
        self,
        world: World,
        policy: ServingPolicy,
        config: SimConfig,
        streams: Streams,
        log_root: Path,
        progress: Callable[[float, float], None] | None = None,
        fail_at_hour: float | None = None,
        quality_probe: Callable[[Model], float] | None = None,
        switch: tuple[float, Target] | None = None,
    ) -> None:
        self.world = world
        self.policy = policy
        self.config = config
        self.log_root = log_root
        self.progress = progress or (lambda now, horizon: None)
        self.env = simpy.Environment()
        self.log = EventLog(log_root)
        self.training = TrainingLog(
            world.users.n_users,
            world.catalog.n_items,
            policy.training_needs().window_rounds,
            keep_exposures=policy.training_needs().keep_exposures,
        )
        self.rng_arrivals = streams.generator("sim.arrivals")
        self.randomness = Randomness(
            uniform=streams.generator("policy.uniform"),
            normal=streams.generator("policy.normal"),
            monte_carlo=streams.generator("policy.monte_carlo"),
            intervention=streams.generator("policy.intervention"),
        )
        self.rng_responses = streams.generator("sim.responses")
        # Its own stream, drawn only by click models that need it, so the others keep their draws.
        self.rng_continue = streams.generator("sim.responses.continue")
        self.stats = RunStats()
        self._pending_t = np.empty(0)
        self._pending_user = np.empty(0, dtype=np.int32)
        self._pending_id = np.empty(0, dtype=np.int64)
        self._next_request_id = 0
        self._round = 0
        # (users, items, times) of the clicks since the last event boundary.
        self._clicks_since_drift: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.fail_at_hour = fail_at_hour
        self.quality_probe = quality_probe  # truth-side score of each fitted model (model_ndcg)
        self.switch = switch  # (hour, config): serve with another selector from then on (OPE truth)
        self.snapshots: list[dict[str, float | int]] = []
        self.deployments: list[dict[str, float | int]] = []

    # --- processes -------------------------------------------------------------------------
    def _arrivals(self) -> Generator[simpy.Event, None, None]:
        for day in range(self.config.days):
            t0 = day * HOURS_PER_DAY
            times, users = self.world.users.sample_sessions(
                t0, t0 + HOURS_PER_DAY, self.rng_arrivals
            )
            ids = np.arange(
                self._next_request_id, self._next_request_id + times.size, dtype=np.int64
            )
            self._next_request_id += times.size
            self._pending_t = np.concatenate([self._pending_t, times])
            self._pending_user = np.concatenate([self._pending_user, users])
            self._pending_id = np.concatenate([self._pending_id, ids])
            yield self.env.timeout(HOURS_PER_DAY)

    def _retrain(self) -> Generator[simpy.Event, None, None]:
        every = self.config.retrain_every_hours
        version = 0
        while (version + 1) * every < self.config.horizon:
            yield self.env.timeout((version + 1) * every - self.env.now)
            t_cutoff = self.env.now
            self._serve_until(t_cutoff)
            self._close_round()
            interactions = self.training.interactions()
            start = time.perf_counter()
            deployment = self.policy.fit(interactions, version)
            self.stats.seconds["fit"] += time.perf_counter() - start
            model_ndcg = float("nan")
            if self.quality_probe is not None:
                start = time.perf_counter()
                model_ndcg = self.quality_probe(deployment.model)
                self.stats.seconds["quality"] += time.perf_counter() - start
            yield self.env.timeout(self.config.train_hours)
            self._serve_until(self.env.now)  # the old model serves everything before deployment
            self.policy.deploy(deployment)
            self.deployments.append(
                {
                    "model_version": version,
                    "t_train_start": t_cutoff,
                    "t_deployed": self.env.now,
                    "n_train_clicks": int(interactions.clicks.sum()),
                    "n_train_users": int((interactions.user_activity > 0).sum()),
                    "model_ndcg": model_ndcg,
                }
            )
            version += 1

    def _injected_fault(self) -> Generator[simpy.Event, None, None]:
        """Fault injection (``debug.fail_at_hour``): fail mid-run, as a crash would."""
        yield self.env.timeout(self.fail_at_hour)
        raise RuntimeError(
            f"injected fault at simulated hour {self.env.now:g} (debug.fail_at_hour)"
        )

    def _switch(self) -> Generator[simpy.Event, None, None]:
        """From ``switch[0]`` on, the same deployed model serves with ``switch[1]``'s selector."""
        hour, config = self.switch
        yield self.env.timeout(hour)
        self._serve_until(self.env.now)  # everything before the switch: the logging selector
        self.policy.switch_selector(config)

    def _snapshots(self) -> Generator[simpy.Event, None, None]:
        every = self.config.snapshot_every_hours
        window = 0
        while window * every < self.config.horizon:
            t_end = min((window + 1) * every, self.config.horizon)
            yield self.env.timeout(t_end - self.env.now)
            self.snapshots.append(
                {
                    "window": window,
                    "t_start": window * every,
                    "t_end": t_end,
                    "model_version": self.policy.model_version,
                }
            )
            self.progress(self.env.now, self.config.horizon)
            window += 1

    # --- serving ---------------------------------------------------------------------------
    def _serve_until(self, t: float) -> None:
        """Serve every pending request that arrived before ``t``, in chunks of at most
        ``max_batch_requests`` (chunking does not change outcomes)."""
        n_due = int(np.searchsorted(self._pending_t, t, side="left"))
        if n_due:
            times, users, ids = (
                self._pending_t[:n_due],
                self._pending_user[:n_due],
                self._pending_id[:n_due],
            )
            self._pending_t = self._pending_t[n_due:]
            self._pending_user = self._pending_user[n_due:]
            self._pending_id = self._pending_id[n_due:]
            step = self.config.max_batch_requests
            for lo in range(0, n_due, step):
                self._serve_batch(times[lo : lo + step], users[lo : lo + step], ids[lo : lo + step])
        self._apply_drift()

    def _serve_batch(self, times: np.ndarray, users: np.ndarray, ids: np.ndarray) -> None:
        clock = time.perf_counter()
        batch = self.policy.serve(users, self.randomness)
        k = batch.items.shape[1]
        clock = self._tick("serve", clock)
        relevance, attraction = self.world.relevance_and_attraction(users[:, None], batch.items)
        click_model = self.world.click_model
        uniforms = self.rng_responses.random((users.size, k))
        extra = (
            self.rng_continue.random((users.size, k)) if click_model.needs_extra_uniforms else None
        )
        clicked = click_model.sample(attraction, uniforms, extra)
        if self.world.users.drift_rate > 0 or self.world.config.conformity != 0:
            rows, slots = np.nonzero(clicked)
            self._clicks_since_drift.append((users[rows], batch.items[rows, slots], times[rows]))
        clock = self._tick("respond", clock)
        self.log.append(ids, times, users, batch, clicked, relevance)
        self._tick("log", clock)
        self.stats.n_requests += users.size
        self.stats.n_impressions += batch.items.size
        self.stats.n_clicks += int(clicked.sum())

    def _apply_drift(self) -> None:
        """Preferences drift and item popularity (conformity) update at event boundaries, not per
        chunk, so chunking stays invisible. The boundary is the simulation clock now."""
        if self.world.config.conformity == 0 and not self._clicks_since_drift:
            return
        clock = time.perf_counter()
        clicks = self._clicks_since_drift
        users = np.concatenate([u for u, _, _ in clicks]) if clicks else np.empty(0, np.int32)
        items = np.concatenate([i for _, i, _ in clicks]) if clicks else np.empty(0, np.int64)
        times = np.concatenate([t for _, _, t in clicks]) if clicks else np.empty(0)
        clicks.clear()
        if self.world.users.drift_rate > 0:
            self.world.users.drift_toward(users, self.world.catalog.factors[items])
        # Popularity decays with time even without clicks, so it is refreshed at every boundary.
        self.world.record_clicks(items, times, self.env.now)
        self._tick("respond", clock)

    def _tick(self, key: str, since: float) -> float:
        now = time.perf_counter()
        self.stats.seconds[key] += now - since
        return now

    def _close_round(self) -> None:
        start = time.perf_counter()
        paths = self.log.write_round(self._round)
        self.training.add_partition(paths["impressions"])
        self._round += 1
        self.stats.seconds["log"] += time.perf_counter() - start

    # --- run -------------------------------------------------------------------------------
    def run(self) -> RunStats:
        self.env.process(self._arrivals())
        self.env.process(self._retrain())
        self.env.process(self._snapshots())
        if self.fail_at_hour is not None:
            self.env.process(self._injected_fault())
        if self.switch is not None:
            self.env.process(self._switch())
        # Every process is finite, so run() returns after the last snapshot at the horizon
        # (run(until=horizon) would drop the events scheduled exactly at the horizon).
        self.env.run()
        self._serve_until(self.config.horizon)
        self._close_round()
        write_parquet_atomic(
            pl.DataFrame(self.snapshots).cast({"window": pl.Int32, "model_version": pl.Int32}),
            self.log_root / "snapshots.parquet",
        )
        deployments = pl.DataFrame(
            self.deployments,
            schema={
                "model_version": pl.Int32,
                "t_train_start": pl.Float64,
                "t_deployed": pl.Float64,
                "n_train_clicks": pl.Int64,
                "n_train_users": pl.Int64,
                "model_ndcg": pl.Float64,
            },
        )
        write_parquet_atomic(deployments, self.log_root / "deployments.parquet")
        return self.stats


__all__ = ["HOURS_PER_DAY", "RunStats", "SimConfig", "Simulation", "partition_path"]
