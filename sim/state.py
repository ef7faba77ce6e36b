"""Everything that changes during a run, in one object: :class:`SimulationState`.

A :class:`sim.engine.Simulation` is this state plus static configuration (the sim config, the log
directory, callbacks). Its processes keep no state of their own: at every wake-up they read what
is due from the state and record their next wake-up in it. So a run paused at a round boundary
(``Simulation.run(until=...)``) can be continued by a new ``Simulation`` built on the same state —
or on a ``copy.deepcopy`` of it, which then continues exactly as the original does.

What the state holds by reference, and deep-copies with it: the world (users' preferences drift,
item popularity under conformity), the serving policy (its deployed model, the scorer's learned
state — ALS warm-start factors, the linear bandit's ``A``/``b`` and profiles —, the selector it
switched to, its shadow-replay randomness for off-policy evaluation, the constrained reranker's
multipliers, rolling exposure window and ledger — :attr:`SimulationState.constraints`) and every
random generator.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl

from agents.response import ResponseRandomness
from agents.streams import Streams
from agents.world import World
from policies.constrained_rerank import ConstraintState
from policies.onboarding import Onboarding
from policies.policy import Deployment, ServingPolicy
from policies.randomness import Randomness
from sim.event_log import TABLES
from sim.onboarding import OnboardingRandomness
from sim.serving_system import ServingConfig, ServingSystemState
from sim.training_data import TrainingLog


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


@dataclass
class PendingRequests:
    """Requests that arrived and were not served yet, sorted by arrival time."""

    t: np.ndarray = field(default_factory=lambda: np.empty(0))
    user_id: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int32))
    request_id: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))

    def add(self, t: np.ndarray, user_id: np.ndarray, request_id: np.ndarray) -> None:
        """Append requests that arrive after every pending one (a new day's sessions)."""
        self.t = np.concatenate([self.t, t])
        self.user_id = np.concatenate([self.user_id, user_id])
        self.request_id = np.concatenate([self.request_id, request_id])

    def pop_before(self, t: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Remove and return ``(t, user_id, request_id)`` of the requests that arrived before ``t``."""
        n_due = int(np.searchsorted(self.t, t, side="left"))
        due = self.t[:n_due], self.user_id[:n_due], self.request_id[:n_due]
        self.t, self.user_id, self.request_id = (
            self.t[n_due:],
            self.user_id[n_due:],
            self.request_id[n_due:],
        )
        return due


@dataclass
class Counters:
    """Where each process is."""

    next_day: int = 0  # arrivals: the next day whose sessions are drawn
    next_model_version: int = 0  # retrain: the version the next cut-off trains
    next_snapshot_window: int = 0  # snapshots: the next metric window to close
    log_round: int = 0  # the event-log round being buffered (written at the next cut-off)
    next_request_id: int = 0
    next_catalog_event: int = 0  # catalog: index of the next item arrival/departure hour


@dataclass
class InTraining:
    """A model fitted at a retrain cut-off that serves only once its training time has passed."""

    deployment: Deployment
    t_train_start: float
    n_train_clicks: int
    n_train_users: int
    model_ndcg: float
    fallback: np.ndarray | None = None  # the degraded path's popularity list (with a budget)
    retrieval_recall: float = float("nan")  # sim.model_quality.RetrievalRecallProbe
    retrieval_recall_n: float = float("nan")
    # sim.model_quality conversion NDCG (None: conversions off, no column)
    model_ndcg_conversion: float | None = None


@dataclass(frozen=True)
class Wakeup:
    """The simulated hour a process waits for, and when it was scheduled.

    ``seq`` counts the wake-ups scheduled in the run: simpy fires events at equal times in the
    order they were scheduled, and a resumed run schedules its pending wake-ups again in ``seq``
    order, so they keep that order.
    """

    t: float
    seq: int


@dataclass
class SimulationState:
    """Everything that changes during a run (see the module docstring)."""

    world: World
    policy: ServingPolicy
    policy_randomness: Randomness  # serving draws (streams policy.*)
    response_randomness: ResponseRandomness  # users' clicks (streams sim.responses*)
    arrivals_rng: np.random.Generator  # sessions (stream sim.arrivals)
    service_rng: np.random.Generator  # model servers' service times (stream sim.service)
    # The model servers' next-free hours and the slate cache (sim.serving_system)
    serving: ServingSystemState
    training: TrainingLog  # the training view of the rounds written so far
    # The current round's rows, not yet written: table -> frames (sim.event_log.EventLog).
    log_buffers: dict[str, list[pl.DataFrame]]
    pending: PendingRequests = field(default_factory=PendingRequests)
    counters: Counters = field(default_factory=Counters)
    in_training: InTraining | None = None
    snapshots: list[dict[str, float | int]] = field(default_factory=list)
    deployments: list[dict[str, float | int]] = field(default_factory=list)
    stats: RunStats = field(default_factory=RunStats)
    # sim.item_probes: each probe's rows so far, by its file name (written at the end)
    probe_frames: dict[str, list[pl.DataFrame]] = field(default_factory=dict)
    # Each process's pending wake-up (absent: not started yet; None: the process has ended).
    wakeups: dict[str, Wakeup | None] = field(default_factory=dict)
    next_seq: int = 0
    now: float = 0.0  # simulated hour of the last wake-up (of a pause: its cut-off)
    done: bool = False  # the run reached its horizon and wrote its tables
    # New users' answers to onboarding screens (streams sim.onboarding*; None: no onboarding)
    onboarding_randomness: OnboardingRandomness | None = None

    @classmethod
    def initial(
        cls,
        world: World,
        policy: ServingPolicy,
        streams: Streams,
        serving: ServingConfig | None = None,
    ) -> SimulationState:
        """The state at hour 0: nothing arrived, nothing logged, no model deployed, servers
        idle, cache empty (``serving``: the run's serving config, default unlimited)."""
        needs = policy.training_needs()
        return cls(
            world=world,
            policy=policy,
            policy_randomness=Randomness.from_streams(streams),
            response_randomness=ResponseRandomness.from_streams(streams),
            arrivals_rng=streams.generator("sim.arrivals"),
            service_rng=streams.generator("sim.service"),
            serving=ServingSystemState.initial(
                serving or ServingConfig(), world.users.n_users, policy.config.slate_size
            ),
            training=TrainingLog(
                world.users.n_users,
                world.catalog.n_items,
                needs.window_rounds,
                keep_exposures=needs.keep_exposures,
                rerank_rounds=needs.rerank_rounds,
                label=needs.label,
                label_correction=needs.label_correction,
            ),
            log_buffers={table: [] for table in TABLES},
            onboarding_randomness=OnboardingRandomness.from_streams(streams)
            if any(isinstance(s, Onboarding) for s in policy.user_seeders)
            else None,
        )

    @property
    def constraints(self) -> ConstraintState | None:
        """The constrained reranker's state (multipliers, exposure window, ledger), held by the
        serving policy; None for every other reranker."""
        state = self.policy.rerank_state
        return state if isinstance(state, ConstraintState) else None

    @property
    def onboarding(self) -> Onboarding | None:
        """The policy's onboarding layer (a user seeder; policies.onboarding), if any."""
        return next((s for s in self.policy.user_seeders if isinstance(s, Onboarding)), None)

    @property
    def deployed(self) -> Deployment | None:
        """The deployment serving now (``None``: the bootstrap serves)."""
        return self.policy.deployment
