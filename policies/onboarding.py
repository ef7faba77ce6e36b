"""Onboarding: a new user's first request starts with a short elicitation whose answers seed
the user's vector in the deployed ALS model (config section ``onboarding``).

What the platform decides lives here: which items the ``screens × items_per_screen`` screens
show, what it keeps of the answers, and how they become a user vector. The user's side (clicks
on the true attraction, abandoning after a screen) is the simulator's (:mod:`sim.onboarding`).

Screens. The same screens for every new user while neither the deployed model nor the catalog
changes (both change only at engine events, so batching cannot move them). Chosen among the
available items with at least ``min_item_clicks`` clicks in the deployed model's training log
(the most-clicked available items when fewer qualify), by ``chooser``:

* ``diverse`` — farthest-point sampling over the normalized item factors: start from the most
  clicked item, then repeatedly add the item whose cosine distance to the nearest item already
  chosen is largest (ties by item id): representatives of the taste clusters without k-means;
* ``variance`` — greedy maximum posterior variance under the ALS prior: a cold user's vector has
  precision ``A = YᵀY + λI``; pick the item with the largest score variance ``yᵀA⁻¹y``, then
  update ``A += (alpha − 1)·y yᵀ`` as if it were clicked (what a click adds to ALS's normal
  equations), and repeat: each pick is the direction the previous ones left most uncertain.

Screen ``s`` shows picks ``s·k … s·k + k − 1``: the most informative first, since fewer users
reach the later screens. Before the first deployment there are no factors: the screens are the
first available items of a random permutation of the catalog drawn once from the stream
``policy.onboarding``.

Fold-in, immediately. A user who clicked on a screen gets a vector at once, by the exact
weighted least-squares solve implicit's ALS does for one user against fixed item factors
(:func:`fold_in`): ``A = YᵀY + λI + Σ_{i∈clicked} (c − 1) y_i y_iᵀ``, ``b = Σ_{i∈clicked} c·y_i``
with ``c = alpha`` (one click each), plus ``λ·x_prior`` in ``b`` when another cold-start layer
already gave the user a vector (the ridge then shrinks toward that prior instead of zero). Why
not wait for the next deployment: a new user's first sessions are when they decide whether to
stay, and until the next retrain (up to a day) they would see the popularity fallback, wasting
the answers just given. The solve is the one ALS itself would do for this user on the next
retrain with these clicks (so nothing is approximated), O(f³) per user and only for the users
onboarded in a batch. At every later deployment (:meth:`Onboarding.on_deploy`), users with
answers who are still cold in the new model (no clicks in its training log) are folded in again
against its new item factors. A user who clicked nothing, or only items without factors in the
model (never clicked in its training log), stays cold (popularity fallback).

Answers are not impressions: they never enter the training log or any exposure metric, and they
stay in this object (part of the simulation state: deep-copied and resumed with it). Two limits:
the items clicked on a screen are not added to the serving filter (they may be recommended), and
a posterior selector (UCB, Thompson) sees the folded-in mean with the covariance of the model's
training clicks (none: the prior), not of the answers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from agents.validation import is_number, is_positive_int
from policies.exclusion import PAD, padded_rows

CHOOSERS = ("diverse", "variance")


@dataclass(frozen=True)
class OnboardingConfig:
    """The ``onboarding`` config section (keys documented in ``configs/onboarding/default.yaml``)."""

    enabled: bool = False
    screens: int = 3
    items_per_screen: int = 5
    drop_per_screen: float = 0.2
    chooser: str = "diverse"
    min_item_clicks: int = 5

    def __post_init__(self) -> None:
        if not isinstance(self.enabled, bool):
            raise ValueError(f"onboarding.enabled={self.enabled!r}: must be true or false")
        for key in ("screens", "items_per_screen", "min_item_clicks"):
            value = getattr(self, key)
            if not is_positive_int(value):
                raise ValueError(f"onboarding.{key}={value!r}: must be a positive integer")
        d = self.drop_per_screen
        if not is_number(d) or not 0 <= d < 1:
            raise ValueError(f"onboarding.drop_per_screen={d!r}: must be in [0, 1)")
        if self.chooser not in CHOOSERS:
            raise ValueError(
                f"onboarding.chooser={self.chooser!r}: must be one of {', '.join(CHOOSERS)}"
            )

    @property
    def n_shown(self) -> int:
        """Items the full elicitation shows (``screens × items_per_screen``)."""
        return self.screens * self.items_per_screen

    def check_catalog(self, n_items: int) -> None:
        """The screens show distinct items: they must fit in the catalog (``world.n_items``)."""
        if self.enabled and self.n_shown > n_items:
            raise ValueError(
                f"onboarding.screens={self.screens}: screens × items_per_screen = {self.n_shown}"
                f" distinct items, larger than the catalog (world.n_items={n_items})"
            )


def fold_in(
    item_factors: np.ndarray,
    regularization: float,
    alpha: float,
    clicked: np.ndarray,
    prior: np.ndarray | None = None,
    gram: np.ndarray | None = None,
) -> np.ndarray:
    """ALS's exact user solve against fixed item factors, for a batch of users.

    ``clicked`` (m, L) int64: each user's clicked item ids, padded with ``PAD``; ``prior``
    (m, f) or None: the vectors the ridge shrinks toward (zero without). Solves
    ``(YᵀY + λI + (alpha − 1) Σ y_i y_iᵀ) x = alpha Σ y_i + λ x_prior`` per row (float64, one
    batched call; ``gram`` = a precomputed ``YᵀY``). A row without clicks gets its prior.
    """
    y = item_factors.astype(np.float64)
    f = y.shape[1]
    if gram is None:
        gram = y.T @ y
    valid = clicked < PAD
    yo = y[np.where(valid, clicked, 0)] * valid[:, :, None]  # (m, L, f), padding zeroed
    a = gram + regularization * np.eye(f) + (alpha - 1.0) * np.swapaxes(yo, 1, 2) @ yo
    b = alpha * yo.sum(axis=1)
    if prior is not None:
        b = b + regularization * prior.astype(np.float64)
    return np.linalg.solve(a, b[:, :, None])[:, :, 0]


def choose_diverse(factors: np.ndarray, pool: np.ndarray, n: int) -> np.ndarray:
    """Farthest-point sampling of ``n`` items of ``pool`` (ids, the first one the start) over
    cosine distance of their factors; ties by the order of ``pool``."""
    v = factors[pool].astype(np.float64)
    norm = np.linalg.norm(v, axis=1, keepdims=True)
    v = np.divide(v, norm, out=np.zeros_like(v), where=norm > 0)
    picked = [0]
    nearest = 1.0 - v @ v[0]
    nearest[0] = -np.inf
    for _ in range(n - 1):  # n is a handful of screens' items, not the catalog
        j = int(np.argmax(nearest))
        picked.append(j)
        nearest = np.minimum(nearest, 1.0 - v @ v[j])
        nearest[picked] = -np.inf
    return pool[np.array(picked)]


def choose_variance(
    factors: np.ndarray, pool: np.ndarray, n: int, regularization: float, alpha: float
) -> np.ndarray:
    """Greedy maximum posterior variance of ``n`` items of ``pool`` under the ALS prior
    ``N(0, (YᵀY + λI)⁻¹)``, each pick updating the precision as a click would
    (``+ (alpha − 1)·y yᵀ``, at least ``y yᵀ``); ties by the order of ``pool``."""
    y = factors.astype(np.float64)
    cov = np.linalg.inv(y.T @ y + regularization * np.eye(y.shape[1]))
    w = max(alpha - 1.0, 1.0)
    v = y[pool]
    picked: list[int] = []
    for _ in range(n):
        var = np.einsum("nf,fg,ng->n", v, cov, v)
        var[picked] = -np.inf
        j = int(np.argmax(var))
        picked.append(j)
        sy = cov @ v[j]
        cov = cov - w * np.outer(sy, sy) / (1.0 + w * v[j] @ sy)  # Sherman–Morrison
    return pool[np.array(picked)]


def _item_factors(deployment: Any) -> np.ndarray | None:
    """The deployed model's item factors (None: bootstrap, or a model without factors)."""
    if deployment is None:
        return None
    return getattr(deployment.model, "item_factors", None)


@dataclass
class Onboarding:
    """The platform's side of onboarding: screens, the answers kept, and the fold-in.

    ``bootstrap_order`` is a permutation of the catalog (stream ``policy.onboarding``) the
    screens come from before the first deployment. Registered in
    ``ServingPolicy.user_seeders``; the engine asks it which requests start an elicitation
    (:meth:`due`), for the screens (:meth:`screens`) and hands it the answers (:meth:`record`).
    """

    config: OnboardingConfig
    n_users: int
    n_items: int
    bootstrap_order: np.ndarray
    onboarded: np.ndarray = field(init=False)  # (n_users,) bool: elicited once already
    # Every answered slot, in request order (chunks of numpy arrays: the onboarding table).
    rows: list[dict[str, np.ndarray]] = field(default_factory=list, init=False)
    # The clicks among the answers: (user, item) pairs, the fold-in's input.
    clicked_users: np.ndarray = field(init=False)
    clicked_items: np.ndarray = field(init=False)
    # The screens in force, and the (model version, unavailable items) they were chosen for.
    _screens: np.ndarray | None = field(default=None, init=False, repr=False)
    _screens_key: tuple[int, np.ndarray | None] | None = field(default=None, init=False, repr=False)
    _gram: tuple[int, np.ndarray] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.onboarded = np.zeros(self.n_users, dtype=bool)
        self.clicked_users = np.empty(0, dtype=np.int64)
        self.clicked_items = np.empty(0, dtype=np.int64)

    @classmethod
    def build(
        cls, config: OnboardingConfig, n_users: int, n_items: int, rng: np.random.Generator
    ) -> Onboarding:
        return cls(config, n_users, n_items, rng.permutation(n_items).astype(np.int64))

    # --- which requests -------------------------------------------------------------------
    def due(self, user_ids: np.ndarray, is_new: np.ndarray) -> np.ndarray:
        """Rows (sorted) of the requests that start an elicitation: the first request in this
        batch of each new user (``is_new``: arrived after hour 0) not onboarded yet."""
        rows = np.flatnonzero(is_new & ~self.onboarded[user_ids])
        _, first = np.unique(user_ids[rows], return_index=True)
        return np.sort(rows[first])

    # --- which items ----------------------------------------------------------------------
    def screens(self, deployment: Any, unavailable: np.ndarray | None) -> np.ndarray:
        """The ``(screens, items_per_screen)`` item ids every new user sees now."""
        version = -1 if deployment is None else deployment.version
        key = self._screens_key
        if (
            self._screens is not None
            and key is not None
            and key[0] == version
            and _same(key[1], unavailable)
        ):
            return self._screens
        c = self.config
        available = np.ones(self.n_items, dtype=bool)
        if unavailable is not None:
            available[unavailable] = False
        if int(available.sum()) < c.n_shown:
            raise RuntimeError(
                f"onboarding.screens={c.screens}: the catalog holds {int(available.sum())} items"
                f" now, fewer than screens × items_per_screen = {c.n_shown}"
            )
        factors = _item_factors(deployment)
        if factors is None:
            order = self.bootstrap_order
            picks = order[available[order]][: c.n_shown]
        else:
            picks = self._choose(deployment.model, factors, available)
        self._screens = picks.reshape(c.screens, c.items_per_screen)
        self._screens_key = (version, None if unavailable is None else unavailable.copy())
        return self._screens

    def _choose(self, model: Any, factors: np.ndarray, available: np.ndarray) -> np.ndarray:
        c = self.config
        clicks = np.asarray(model.seen.sum(axis=0)).ravel()
        ids = np.flatnonzero(available)
        by_clicks = ids[np.lexsort((ids, -clicks[ids]))]  # most clicked first, ties by id
        pool = by_clicks[clicks[by_clicks] >= c.min_item_clicks]
        if pool.size < c.n_shown:
            pool = by_clicks[: c.n_shown]
        if c.chooser == "diverse":
            return choose_diverse(factors, pool, c.n_shown)
        pool = np.sort(pool)
        return choose_variance(
            factors, pool, c.n_shown, float(model.regularization), float(model.alpha)
        )

    # --- the answers ----------------------------------------------------------------------
    def record(
        self,
        request_ids: np.ndarray,
        times: np.ndarray,
        user_ids: np.ndarray,
        screens: np.ndarray,
        clicked: np.ndarray,
        n_answered: np.ndarray,
        completed: np.ndarray,
        deployment: Any,
    ) -> None:
        """Keep the answers of ``m`` elicitations (``clicked`` (m, q, k) over the screens
        shown, of which the first ``n_answered`` were answered) and fold the users who clicked
        into the deployed model at once."""
        q, k = screens.shape
        m = user_ids.size
        self.onboarded[user_ids] = True
        answered = np.arange(q)[None, :] < n_answered[:, None]  # (m, q)
        slot = np.broadcast_to(answered[:, :, None], (m, q, k))
        r, s, p = np.nonzero(slot)  # request-major, then screen, then position
        self.rows.append(
            {
                "request_id": request_ids[r].astype(np.int64),
                "t": times[r].astype(np.float64),
                "user_id": user_ids[r].astype(np.int32),
                "screen": s.astype(np.int16),
                "position": p.astype(np.int16),
                "item_id": screens[s, p].astype(np.int32),
                "clicked": clicked[r, s, p],
                "completed": completed[r],
            }
        )
        hit = clicked[r, s, p]
        self.clicked_users = np.concatenate([self.clicked_users, user_ids[r[hit]].astype(np.int64)])
        self.clicked_items = np.concatenate([self.clicked_items, screens[s[hit], p[hit]]])
        self._seed(np.unique(user_ids[r[hit]]).astype(np.int64), deployment)

    def on_deploy(self, deployment: Any) -> None:
        """A new model: users with answers and still no clicks in its training log are folded
        in again against its item factors (after any seeder listed before this one)."""
        if _item_factors(deployment) is None or self.clicked_users.size == 0:
            return
        users = np.unique(self.clicked_users)
        no_clicks = np.diff(deployment.model.seen.indptr)[users] == 0
        self._seed(users[no_clicks], deployment)

    def _seed(self, users: np.ndarray, deployment: Any) -> None:
        factors = _item_factors(deployment)
        if factors is None or users.size == 0:
            return
        model = deployment.model
        if self._gram is None or self._gram[0] != deployment.version:
            y = factors.astype(np.float64)
            self._gram = (deployment.version, y.T @ y)
        mine = np.isin(self.clicked_users, users)
        answers = sp.csr_matrix(
            (np.ones(int(mine.sum())), (self.clicked_users[mine], self.clicked_items[mine])),
            shape=(self.n_users, self.n_items),
        )
        # A vector another layer already gave a user without clicks is the ridge's prior.
        prior = np.where(
            model.cold[users][:, None], 0.0, model.user_factors[users].astype(np.float64)
        )
        # One width for every batch (a user clicks at most screens × items_per_screen items):
        # the float sums must not depend on which users share the batch.
        clicked = padded_rows(answers[users])
        pad = np.full((users.size, self.config.n_shown - clicked.shape[1]), PAD, dtype=np.int64)
        vectors = fold_in(
            factors,
            float(model.regularization),
            float(model.alpha),
            np.concatenate([clicked, pad], axis=1),
            prior,
            gram=self._gram[1],
        )
        # No signal (every clicked item has zero factors, e.g. never clicked in the training
        # log, and no prior): the user stays cold, as the model's own rule has it.
        signal = np.any(vectors != 0, axis=1)
        model.seed_users(users[signal], vectors[signal])

    def table(self) -> dict[str, np.ndarray]:
        """The onboarding table's columns (every answered slot, in request order)."""
        names = ("request_id", "t", "user_id", "screen", "position", "item_id", "clicked")
        dtypes = (np.int64, np.float64, np.int32, np.int16, np.int16, np.int32, bool)
        out = {
            name: np.concatenate([c[name] for c in self.rows]).astype(dtype)
            if self.rows
            else np.empty(0, dtype=dtype)
            for name, dtype in zip(names, dtypes, strict=True)
        }
        out["completed"] = (
            np.concatenate([c["completed"] for c in self.rows]) if self.rows else np.empty(0, bool)
        )
        return out


def _same(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return np.array_equal(a, b)
