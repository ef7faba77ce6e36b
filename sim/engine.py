"""The closed loop on one simpy Environment (time in simulated hours).

Processes (plain generators, driven from a :class:`~sim.state.SimulationState`):

* ``arrivals`` — each simulated day, draws that day's per-user Poisson sessions;
* ``retrain`` — every ``retrain_every_hours``: close the log round, train on the log, wait
  ``train_hours`` of simulated time, deploy (the new model serves only from then on);
* ``snapshots`` — every ``snapshot_every_hours``: mark a metric window and the deployed version;
* ``fault`` (``debug.fail_at_hour``) and ``switch`` (off-policy evaluation's on-policy truth);
* ``constraints`` — only with ``policy/rerank=constrained``: every ``tick_hours``, serve what is
  pending, then update the reranker's exposure window and multipliers and append a ledger row
  (:mod:`policies.constrained_rerank`); ``logs/constraints.parquet`` is written at the end;
* ``catalog`` — only in a living world whose catalog changes (``world.item_arrival_rate``,
  ``world.item_lifetime_days``): at hour 0 and at every hour an item arrives or leaves, serve
  what is pending with the old catalog, then tell the policy what it may no longer (or not yet)
  serve (:meth:`~policies.policy.ServingPolicy.set_unavailable`) and drop cached slates holding
  an item that left. Users who arrive need no event: their sessions start at their arrival
  (:meth:`agents.users.UserPopulation.sample_sessions`).

With ``onboarding.enabled`` a new user's first request starts with the onboarding screens before
it is served (:meth:`Simulation._onboard`; :mod:`policies.onboarding`, :mod:`sim.onboarding`);
``logs/onboarding.parquet`` is written at the end.

The engine only schedules: users' responses and what changes in the world between events are the
world's (:meth:`agents.world.World.respond`, :meth:`~agents.world.World.advance`); the policy
serves and trains. Serving is vectorized: pending requests are served as numpy batches whenever an
event changes what the policy knows (a retrain cut-off, a deployment, a switch, the end of the
run). The policy's random draws come from generators consumed in request order (see
:mod:`policies.randomness`), so how requests are chunked into batches does not change any outcome.
Each chunk first goes through the serving system (:mod:`sim.serving_system`: queue, latency
budget, slate cache, one compiled pass in arrival order whose state lives in the simulation
state); only the rows it sends to a model server reach ``policy.serve``, in order.

Order of events at equal times: simpy fires them in the order they were scheduled (its queue is
ordered by time, then priority — all ours are NORMAL —, then scheduling order). Each process
schedules its next wake-up at the end of its step, so at a shared hour the wake-up scheduled
earlier fires first. At hour 0 the processes start in the order arrivals, retrain, snapshots,
fault, switch (fault and switch schedule their one wake-up then, so at their hour they go before
every wake-up scheduled later), then ``constraints`` (only with ``policy/rerank=constrained``:
every ``tick_hours`` it serves what is pending and updates the reranker's multipliers; its tick
serves before the tick hour and changes only what requests at or after it see, so its place
among events at the same hour changes nothing). With the defaults (retrain and snapshots every 24 h, 1 h of training)
the first day boundary runs arrivals, retrain cut-off, snapshot, and every later one arrivals,
snapshot, retrain cut-off (that cut-off was scheduled at the previous deployment, the snapshot at
the previous day boundary). The order changes results in one place: a snapshot at the hour of a
deployment records the version deployed when it fires. Arrivals at hour ``t`` add requests at
``t`` or later while serving takes those before the current hour, a switch serves everything
before its hour first, and an injected fault surfaces when simpy processes the failed process,
after every event already queued for that hour (a cut-off at that hour still writes its round).
The state records each pending wake-up with its scheduling sequence number, and a resumed
simulation schedules them again in that order: the order across a pause is the order without one.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import simpy

from agents.validation import is_number, is_positive_int
from agents.world import World
from policies.constrained_rerank import INFEASIBLE_FILE
from policies.constrained_rerank import LEDGER_FILE as CONSTRAINT_LEDGER_FILE
from policies.models import Model, ranking_order
from policies.pipeline import Deployment
from policies.policy import ServingPolicy, Target
from policies.rerank import Identity
from sim.engagement_log import (
    CONVERSIONS,
    ENGAGEMENT_DAYS_FILE,
    ENGAGEMENT_FILE,
    engagement_frames,
)
from sim.event_log import EventLog, partition_path, write_parquet_atomic
from sim.item_probes import ItemProbe
from sim.onboarding import ONBOARDING_FILE, elicit, onboarding_frame
from sim.serving_system import (
    RequestOutcome,
    ServingConfig,
    route,
    serve_routed,
)
from sim.state import InTraining, RunStats, SimulationState, Wakeup

HOURS_PER_DAY = 24.0
# The processes in the order they start at hour 0 (which orders their first wake-ups).
PROCESSES = ("arrivals", "retrain", "snapshots", "fault", "switch", "constraints", "catalog")


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


class Simulation:
    """One closed-loop run: a :class:`SimulationState` driven by simpy processes.

    ``state`` is everything that changes (``SimulationState.initial(world, policy, streams)``
    for a new run, or a paused run's state — possibly a deep copy — to continue it); the rest is
    static: the ``sim`` config, the log directory ``log_root``, a ``progress(now, horizon)``
    callback, the injected fault hour, the truth-side score of each fitted model
    (``quality_probe``), the retrieval stage's recall against the model's exhaustive ranking
    (``retrieval_probe``: ``(recall@slate_size, recall@n_candidates)``), the per-cut-off item
    probes whose tables land in ``logs/`` (``item_probes``, :mod:`sim.item_probes`), the OPE switch
    ``(hour, config)``: serve with another selector from then on, and the ``serving`` config
    (:mod:`sim.serving_system`; the state must have been made with the same one). A continued run
    must get the same static configuration. With conversions on, ``conversion_probe`` scores
    each fitted model's ranking by the true chance a click converts (``model_ndcg_conversion``
    in ``deployments.parquet``; the column exists only then).
    """

    def __init__(
        self,
        state: SimulationState,
        config: SimConfig,
        log_root: Path,
        progress: Callable[[float, float], None] | None = None,
        fail_at_hour: float | None = None,
        quality_probe: Callable[[Model], float] | None = None,
        switch: tuple[float, Target] | None = None,
        serving: ServingConfig | None = None,
        retrieval_probe: Callable[[ServingPolicy, Deployment], tuple[float, float]] | None = None,
        item_probes: Sequence[ItemProbe] = (),
        conversion_probe: Callable[[Model], float] | None = None,
    ) -> None:
        if state.done:
            raise ValueError("the state is of a finished run: there is nothing left to simulate")
        self.state = state
        self.config = config
        self.log_root = log_root
        self.progress = progress or (lambda now, horizon: None)
        self.log = EventLog.continuing(log_root, state.log_buffers)
        self.fail_at_hour = fail_at_hour
        self.quality_probe = quality_probe
        self.conversion_probe = conversion_probe
        self.retrieval_probe = retrieval_probe
        self.item_probes = tuple(item_probes)
        self.switch = switch
        self.serving = serving or ServingConfig()
        policy_cfg = state.policy.config
        self._expected_service_ms = self.serving.expected_service_ms(
            state.policy.n_candidates, reranks=not isinstance(policy_cfg.rerank, Identity)
        )
        self._pause_from: float | None = None
        self._paused = False
        # A resumed clock starts at 0 and every process first waits for the exact hour the state
        # recorded: 0 + t == t, while waiting t - now from the pause hour lands on now + (t - now),
        # which differs from t in the last bit for some floats. No process acts before its wake-up.
        self.env = simpy.Environment()
        steps: dict[str, tuple[Callable[[], float | None], Callable[[], float | None]]] = {
            "arrivals": (self._arrive, self._arrive),  # the first day arrives at once
            "retrain": (self._delay_to_cutoff, self._retrain_step),
            "snapshots": (self._delay_to_snapshot, self._snapshot),
        }
        if fail_at_hour is not None:
            steps["fault"] = (lambda: self.fail_at_hour, self._fail)
        if switch is not None:
            steps["switch"] = (lambda: self.switch[0], self._switch)
        if state.constraints is not None:  # only with policy/rerank=constrained
            steps["constraints"] = (self._delay_to_constraint_tick, self._constraint_tick)
        self._catalog_changes = state.world.catalog_changes(config.horizon)
        if self._catalog_changes.size or state.world.unavailable(0.0).size:  # a living catalog
            steps["catalog"] = (self._open_catalog, self._catalog_event)
        if state.wakeups:
            if set(state.wakeups) != set(steps):
                raise ValueError(
                    f"the state ran the processes {sorted(state.wakeups)}; this simulation has "
                    f"{sorted(steps)} (pass the same fail_at_hour and switch to continue it)"
                )
            waiting = [name for name, wake in state.wakeups.items() if wake is not None]
            order = sorted(waiting, key=lambda name: state.wakeups[name].seq)
        else:
            order = [name for name in PROCESSES if name in steps]
        for name in order:
            self.env.process(self._drive(name, *steps[name]))

    @property
    def world(self) -> World:
        return self.state.world

    @property
    def policy(self) -> ServingPolicy:
        return self.state.policy

    @property
    def stats(self) -> RunStats:
        return self.state.stats

    # --- processes -------------------------------------------------------------------------
    def _drive(
        self,
        name: str,
        start: Callable[[], float | None],
        step: Callable[[], float | None],
    ) -> Generator[simpy.Event, None, None]:
        """Process ``name``: ``start()`` (a new run) or the wake-up the state recorded (a resumed
        one), then ``step()`` at every wake-up; each returns the delay to the next wake-up in
        hours, or ``None`` when the process is done."""
        state = self.state
        wake = state.wakeups.get(name)
        if wake is None:
            delay = start()
        else:
            yield self._wake_at(name, wake.t, wake.t)  # the resumed clock starts at 0
            state.now = self.env.now
            delay = step()
        while delay is not None:
            yield self._wake_at(name, delay, self.env.now + delay)
            state.now = self.env.now
            delay = step()
        state.wakeups[name] = None

    def _wake_at(self, name: str, delay: float, t: float) -> simpy.Timeout:
        """A timeout of ``delay`` hours that ends at hour ``t``, recorded in the state."""
        state = self.state
        state.wakeups[name] = Wakeup(t, state.next_seq)
        state.next_seq += 1
        return self.env.timeout(delay)

    def _arrive(self) -> float | None:
        """The next day's sessions join the pending requests; the next wake-up is a day later
        (after the last day, one more to the horizon)."""
        state = self.state
        if state.counters.next_day >= self.config.days:
            return None
        t0 = state.counters.next_day * HOURS_PER_DAY
        multiplier = None
        engagement = state.world.engagement
        if engagement is not None:
            # The day that ended is served and folded into satisfaction before anyone churns,
            # returns, or draws today's sessions (agents.engagement).
            self._serve_until(t0)
            multiplier = engagement.start_day(t0, state.world.users.arrival_t <= t0)
            if not engagement.config.tracks_satisfaction:
                multiplier = None  # satiation alone: the rates are the plain ones
        times, users = state.world.users.sample_sessions(
            t0, t0 + HOURS_PER_DAY, state.arrivals_rng, multiplier
        )
        first = state.counters.next_request_id
        state.pending.add(times, users, np.arange(first, first + times.size, dtype=np.int64))
        state.counters.next_request_id += times.size
        state.counters.next_day += 1
        return HOURS_PER_DAY

    def _open_catalog(self) -> float | None:
        """Hour 0 of a living catalog: only the items there at hour 0 may be served."""
        self.state.policy.set_unavailable(self.state.world.unavailable(0.0))
        return self._delay_to_catalog_event()

    def _delay_to_catalog_event(self) -> float | None:
        i = self.state.counters.next_catalog_event
        if i >= self._catalog_changes.size:
            return None
        return float(self._catalog_changes[i]) - self.env.now

    def _catalog_event(self) -> float | None:
        """Items arrive or leave: serve what is pending with the old catalog, then serve from
        the new one (cached slates holding an item that left are dropped)."""
        state = self.state
        now = self.env.now
        self._serve_until(now)
        before = state.policy.unavailable
        unavailable = state.world.unavailable(now)
        slates = state.serving.slates
        if slates is not None:
            left = np.setdiff1d(unavailable, before if before is not None else [])
            stale = np.isin(slates.items, left).any(axis=1)
            state.serving.cache_t[stale] = -np.inf
        state.policy.set_unavailable(unavailable)
        state.counters.next_catalog_event += 1
        return self._delay_to_catalog_event()

    def _delay_to_cutoff(self) -> float | None:
        t_cutoff = (self.state.counters.next_model_version + 1) * self.config.retrain_every_hours
        if not t_cutoff < self.config.horizon:
            return None
        return t_cutoff - self.env.now

    def _retrain_step(self) -> float | None:
        """A retrain cut-off (then wait for training to end) or a deployment (then wait for the
        next cut-off)."""
        if self.state.in_training is None:
            self._cut_off()
            return self.config.train_hours
        self._deploy()
        return self._delay_to_cutoff()

    def _cut_off(self) -> None:
        """Close the log round and fit on the log; the model serves from its deployment on."""
        state = self.state
        t_cutoff = self.env.now
        self._serve_until(t_cutoff)
        self._close_round()
        interactions = state.training.interactions()
        start = time.perf_counter()
        deployment = state.policy.fit(interactions, state.counters.next_model_version)
        fallback = None
        if self.serving.latency_budget_ms is not None:
            # The degraded path's list: the training log's clicks per item, ties by item id.
            fallback = ranking_order(np.asarray(interactions.clicks.sum(axis=0)).ravel())
        state.stats.seconds["fit"] += time.perf_counter() - start
        model_ndcg = float("nan")
        if self.quality_probe is not None:
            start = time.perf_counter()
            model_ndcg = self.quality_probe(deployment.model)
            state.stats.seconds["quality"] += time.perf_counter() - start
        ndcg_conversion = None
        if self.conversion_probe is not None:
            start = time.perf_counter()
            ndcg_conversion = self.conversion_probe(deployment.model)
            state.stats.seconds["quality"] += time.perf_counter() - start
        recall = (float("nan"), float("nan"))
        if self.retrieval_probe is not None:
            start = time.perf_counter()
            recall = self.retrieval_probe(state.policy, deployment)
            state.stats.seconds["quality"] += time.perf_counter() - start
        self._probe_items(deployment.model, t_cutoff)
        state.in_training = InTraining(
            deployment=deployment,
            t_train_start=t_cutoff,
            # the training matrix's total: clicks, or the (weighted) labels of policy.label
            n_train_clicks=int(interactions.clicks.sum()),
            n_train_users=int((interactions.user_activity > 0).sum()),
            model_ndcg=model_ndcg,
            fallback=fallback,
            retrieval_recall=recall[0],
            retrieval_recall_n=recall[1],
            model_ndcg_conversion=ndcg_conversion,
        )
        if self._pause_from is not None and t_cutoff >= self._pause_from:
            self._paused = True  # run() returns once this step has scheduled the deployment

    def _probe_items(self, model: Model, t_cutoff: float) -> None:
        """Each item probe's rows for the model fitted at this cut-off (kept in the state)."""
        start = time.perf_counter()
        for probe in self.item_probes:
            frame = probe(model, self.state.counters.next_model_version, t_cutoff)
            if frame is not None:
                self.state.probe_frames.setdefault(probe.file, []).append(frame)
        self.state.stats.seconds["quality"] += time.perf_counter() - start

    def _deploy(self) -> None:
        state = self.state
        trained = state.in_training
        assert trained is not None
        self._serve_until(self.env.now)  # the old model serves everything before deployment
        state.policy.deploy(trained.deployment)
        state.serving.fallback = trained.fallback
        state.deployments.append(
            {
                "model_version": state.counters.next_model_version,
                "t_train_start": trained.t_train_start,
                "t_deployed": self.env.now,
                "n_train_clicks": trained.n_train_clicks,
                "n_train_users": trained.n_train_users,
                "model_ndcg": trained.model_ndcg,
                "retrieval_recall": trained.retrieval_recall,
                "retrieval_recall_n": trained.retrieval_recall_n,
            }
        )
        if trained.model_ndcg_conversion is not None:
            state.deployments[-1]["model_ndcg_conversion"] = trained.model_ndcg_conversion
        state.in_training = None
        state.counters.next_model_version += 1

    def _fail(self) -> float | None:
        """Fault injection (``debug.fail_at_hour``): fail mid-run, as a crash would."""
        raise RuntimeError(
            f"injected fault at simulated hour {self.env.now:g} (debug.fail_at_hour)"
        )

    def _switch(self) -> float | None:
        """From ``switch[0]`` on, the same deployed model serves with ``switch[1]``'s selector."""
        self._serve_until(self.env.now)  # everything before the switch: the logging selector
        self.state.policy.switch_selector(self.switch[1])
        return None

    def _delay_to_constraint_tick(self) -> float | None:
        """Ticks at every ``tick_hours`` (the last one at the horizon)."""
        every = self.state.constraints.config.tick_hours
        n = self.state.constraints.n_ticks
        if not n * every < self.config.horizon:
            return None
        return min((n + 1) * every, self.config.horizon) - self.env.now

    def _constraint_tick(self) -> float | None:
        """A constraint tick (policies.constrained_rerank): serve everything before it with the
        last tick's multipliers, then update the multipliers from the rolling window and append
        a ledger row. Requests at or after the tick see the new multipliers, however batched."""
        self._serve_until(self.env.now, advance=False)
        self.state.constraints.tick(self.env.now)
        return self._delay_to_constraint_tick()

    def _delay_to_snapshot(self) -> float | None:
        every = self.config.snapshot_every_hours
        window = self.state.counters.next_snapshot_window
        if not window * every < self.config.horizon:
            return None
        return min((window + 1) * every, self.config.horizon) - self.env.now

    def _snapshot(self) -> float | None:
        state = self.state
        every = self.config.snapshot_every_hours
        window = state.counters.next_snapshot_window
        state.snapshots.append(
            {
                "window": window,
                "t_start": window * every,
                "t_end": min((window + 1) * every, self.config.horizon),
                "model_version": state.policy.model_version,
            }
        )
        self.progress(self.env.now, self.config.horizon)
        state.counters.next_snapshot_window += 1
        return self._delay_to_snapshot()

    # --- serving ---------------------------------------------------------------------------
    def _serve_until(self, t: float, advance: bool = True) -> None:
        """Serve every pending request that arrived before ``t``, in chunks of at most
        ``max_batch_requests`` (chunking does not change outcomes), then let the world advance
        to now (``advance=False``: a constraint tick, which is not a world event — its clicks
        apply at the next one, so a constrained arm's world changes at the same hours as any
        other arm's)."""
        times, users, ids = self.state.pending.pop_before(t)
        step = self.config.max_batch_requests
        for lo in range(0, times.size, step):
            self._serve_batch(times[lo : lo + step], users[lo : lo + step], ids[lo : lo + step])
        if not advance:
            return
        # Drift and conformity act at event boundaries, not per chunk, so chunking stays
        # invisible. The boundary is the simulation clock now.
        clock = time.perf_counter()
        self.state.world.advance(self.env.now)
        self._tick("respond", clock)

    def _serve_batch(self, times: np.ndarray, users: np.ndarray, ids: np.ndarray) -> None:
        state = self.state
        clock = time.perf_counter()
        if state.onboarding is not None:
            self._onboard(times, users, ids)
        # One service-time draw per request, in request order, whatever happens to it.
        service_ms = self._expected_service_ms * self.serving.service.unit_draws(
            state.service_rng, users.size
        )
        if state.policy.deployment is None or self.serving.is_default:
            # Bootstrap: the gate is off until the first deployment (no queue, no cache); with
            # unlimited servers, no budget and no cache every request is model-served at once.
            batch = state.policy.serve(users, state.policy_randomness, times)
            outcome = RequestOutcome.model_served(service_ms)
        else:
            routing = route(
                state.serving,
                self.serving,
                times,
                users,
                service_ms,
                self._expected_service_ms,
                state.policy.model_version,
            )
            batch = serve_routed(
                state.policy, state.policy_randomness, users, routing, state.serving, times
            )
            outcome = RequestOutcome.of(routing, times)
        if state.constraints is not None:  # every served impression counts toward exposure
            state.constraints.observe(batch.items)
        clock = self._tick("serve", clock)
        response = state.world.respond(
            users, times, batch.items, state.response_randomness, request_ids=ids
        )
        clock = self._tick("respond", clock)
        self.log.append(ids, times, users, batch, response.clicked, response.relevance, outcome)
        self._tick("log", clock)
        state.stats.n_requests += users.size
        state.stats.n_impressions += batch.items.size
        state.stats.n_clicks += int(response.clicked.sum())

    def _onboard(self, times: np.ndarray, users: np.ndarray, ids: np.ndarray) -> None:
        """New users' first requests start with the onboarding screens (policies.onboarding,
        sim.onboarding): the answers are recorded and folded into the deployed model before
        the request is served. Which requests, the screens and the draws depend only on the
        request order and on state that changes at events, never on the batch."""
        state = self.state
        onboarding = state.onboarding
        assert onboarding is not None and state.onboarding_randomness is not None
        rows = onboarding.due(users, state.world.users.arrival_t[users] > 0)
        if rows.size == 0:
            return
        deployment = state.policy.deployment
        screens = onboarding.screens(deployment, state.policy.unavailable)
        answers = elicit(
            state.world,
            users[rows],
            times[rows],
            screens,
            onboarding.config.drop_per_screen,
            state.onboarding_randomness,
        )
        onboarding.record(
            ids[rows],
            times[rows],
            users[rows],
            screens,
            answers.clicked,
            answers.n_answered,
            answers.completed,
            deployment,
        )

    def _tick(self, key: str, since: float) -> float:
        now = time.perf_counter()
        self.state.stats.seconds[key] += now - since
        return now

    def _close_round(self) -> None:
        start = time.perf_counter()
        counters = self.state.counters
        paths = self.log.write_round(counters.log_round)
        conversions = self.state.world.conversions
        if conversions is not None:  # those that happened in this round (agents.conversions)
            paths["conversions"] = partition_path(self.log_root, CONVERSIONS, counters.log_round)
            write_parquet_atomic(conversions.pop_before(self.env.now), paths["conversions"])
        self.state.training.add_partition(paths["impressions"], paths["candidates"])
        if conversions is not None:
            # truth, read only by the conversions_oracle reference arm (policies.label_delay)
            oracle = self.state.training.label == "conversions_oracle"
            pending = conversions.clicked_before(self.env.now) if oracle else None
            self.state.training.add_conversions(paths["conversions"], self.env.now, pending)
        counters.log_round += 1
        self.state.stats.seconds["log"] += time.perf_counter() - start

    # --- run -------------------------------------------------------------------------------
    def run(self, until: float | None = None) -> RunStats:
        """Simulate to the horizon and write the run's tables.

        With ``until`` (hours), pause instead at the first round boundary at or after it: once
        that retrain cut-off has written its log round and fitted its model (events at the same
        hour that come after the cut-off have not run yet). ``run()`` again continues; so does a
        new ``Simulation`` on :attr:`state` (or on a deep copy of it) with the same static
        configuration. Without a round boundary left at or after ``until``, runs to the end.
        """
        if self.state.done:
            raise RuntimeError("this run is finished")
        self._pause_from, self._paused = until, False
        # Every process is finite, so the queue empties after the last event at (or, for a
        # deployment, after) the horizon; stepping by hand lets a cut-off pause the run between
        # two events at the same hour.
        while not self._paused and self.env.peek() < math.inf:
            self.env.step()
        if self._paused:
            return self.state.stats
        self._finish()
        return self.state.stats

    def _finish(self) -> None:
        state = self.state
        self._serve_until(self.config.horizon)
        self._close_round()
        write_parquet_atomic(
            pl.DataFrame(state.snapshots).cast({"window": pl.Int32, "model_version": pl.Int32}),
            self.log_root / "snapshots.parquet",
        )
        deployments = pl.DataFrame(
            state.deployments,
            schema={
                "model_version": pl.Int32,
                "t_train_start": pl.Float64,
                "t_deployed": pl.Float64,
                "n_train_clicks": pl.Int64,
                "n_train_users": pl.Int64,
                "model_ndcg": pl.Float64,
                "retrieval_recall": pl.Float64,
                "retrieval_recall_n": pl.Float64,
            }
            | ({"model_ndcg_conversion": pl.Float64} if self.conversion_probe is not None else {}),
        )
        write_parquet_atomic(deployments, self.log_root / "deployments.parquet")
        if state.onboarding is not None:
            write_parquet_atomic(
                onboarding_frame(state.onboarding.table()), self.log_root / ONBOARDING_FILE
            )
        if state.world.engagement is not None:
            events, days = engagement_frames(state.world.engagement)
            write_parquet_atomic(events, self.log_root / ENGAGEMENT_FILE)
            write_parquet_atomic(days, self.log_root / ENGAGEMENT_DAYS_FILE)
        for probe in self.item_probes:  # sim.item_probes: one table each
            frames = state.probe_frames.get(probe.file, [])
            table = pl.concat(frames) if frames else pl.DataFrame(schema=probe.schema)
            write_parquet_atomic(table, self.log_root / probe.file)
        if state.constraints is not None:
            write_parquet_atomic(
                state.constraints.ledger_frame(), self.log_root / CONSTRAINT_LEDGER_FILE
            )
            write_parquet_atomic(
                state.constraints.explanation_frame(), self.log_root / INFEASIBLE_FILE
            )
        state.done = True


__all__ = [
    "HOURS_PER_DAY",
    "RunStats",
    "SimConfig",
    "Simulation",
    "SimulationState",
    "partition_path",
]
