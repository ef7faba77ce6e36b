"""A learned reranker: a LightGBM click model over (user, candidate, context) features.

``policy/rerank=learned``. At every fit (each retrain cut-off) it trains a gradient-boosted click
classifier on the model-served impressions of the last ``training_rounds`` log rounds
(:class:`policies.interactions.RerankRows`: impressions joined to their candidates rows; labels =
``clicked``) and deploys it with the new model. Serving builds the feature matrix of the ``(n, C)``
retrieved candidates of a batch with numpy (no per-request loop) and scores it with ``predict``
calls of at most ``PREDICT_ROWS`` rows (one call for a batch of up to ~540 requests of 30
candidates; a handful for 8,192), then reorders each request's candidates best first by the
predicted click probability at ``reference_slot`` (ties keep the retrieval order); the selector
then draws from that order as it would from the retrieval order. LightGBM predicts each row on its
own, so the batch size changes no prediction (``sim.max_batch_requests=1`` gives the same log).

Features (:func:`feature_names`), one row per (request, candidate), all from the logs and item metadata:

* ``model_score`` — the deployed model's score: the logged ``score`` of the impression at training
  time, the new model's retrieval score at serving time;
* ``source`` (categorical) and ``retriever_rank`` — the retriever of the candidate and its rank
  there (the candidates table's ``retriever_rank`` when it has one; otherwise the candidate's rank
  by score among its request's candidates of the same source, which is the retrieval order of a
  single retriever whatever order a reranker logged them in). NaN for an impression that was not
  a candidate (explored from beyond them);
* ``item_clicks``, ``item_impressions`` — the item's clicks and impressions in the whole log before
  the round (serving: up to the cut-off);
* ``item_age_h`` — ``now - ItemMetadata.arrival_t``, ``now`` the last logged hour before the round
  (serving: before the cut-off);
* ``user_clicks``, ``user_impressions`` — the user's activity in the log before the round;
* ``position`` — the slot shown; set to ``reference_slot`` at scoring time, so the learned position
  effect is the same for every candidate and the order is by what the model predicts of the item;
* ``content_0..d-1`` — ``ItemMetadata.content``.

Why LightGBM (over scikit-learn's ``HistGradientBoostingClassifier``): one wheel depending on
numpy and scipy (plus narwhals) where scikit-learn brings joblib and threadpoolctl with it, faster
histogram training, and a documented deterministic mode: ``deterministic=True``,
``force_row_wise=True`` and ``num_threads=1`` with an explicit ``seed`` give the same trees for the
same data (checked in ``tests/policies/test_learned_rerank.py``). The seed of fit ``v`` is drawn
from the run's stream ``policy.rerank`` (with ``v``), and so is the subsample of at most
``max_training_rows`` rows.

What is logged and what the selector sees: the impressions' ``score`` stays the model's
(retrieval) score of the item; the new column ``rerank_score`` holds the predicted click
probability at the reference slot (NaN without a trained reranker). The selector gets the
reranked candidates with ``scores = logit(p)``: a score-driven selector (softmax, epsilon-greedy,
exposure boost) acts on the reranker's belief, on a log-odds scale. The candidates table is
logged in the reranked order (``rank`` = the rank the selector saw; the retriever's own rank is
the column ``retriever_rank`` where the log has it), so ``candidate_shown``/``show_probability`` and the greedy slate agree with it.

Before a reranker can be trained — no model-served impressions yet (the first model trains on
bootstrap traffic), or fewer than ``min_train_clicks`` clicks or non-clicks among the rows — the
retrieval order is kept and ``rerank_score`` is NaN.

``position_ipw``: each *click* of slot ``k`` weighs ``min(1/θ_k, ipw_clip)`` (non-clicks weigh 1),
``θ`` relative to slot 0 estimated as the debiasing work does it (``ipw_propensity`` =
``em``: regression EM on the newest round; ``randomized``: shuffled traffic, needs
``policy/intervention=shuffle``; :meth:`policies.debiasing.ClickWeighting.theta`). Weighting every
impression of a slot by the same factor would change nothing the model learns per slot (it sees
the slot as a feature); weighting the clicks is the position-IPW of ``policy/debias=position_ipw``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from policies.components import BuildContext
from policies.debiasing import ClickWeighting
from policies.interactions import Interactions, RerankRows
from policies.models import Retrieval
from policies.rerank import Reranker
from policies.selection import SelectionContext

BASE_FEATURES = (
    "model_score",
    "source",
    "retriever_rank",
    "item_clicks",
    "item_impressions",
    "item_age_h",
    "user_clicks",
    "user_impressions",
    "position",
)
SOURCE_FEATURE = BASE_FEATURES.index("source")
IPW_PROPENSITIES = ("em", "randomized")
PREDICT_ROWS = 16_384  # (request, candidate) rows scored per predict call
PROB_EPS = 1e-7  # predicted probabilities are clipped to [eps, 1 - eps] before the logit


def feature_names(content_dim: int) -> list[str]:
    return [*BASE_FEATURES, *(f"content_{j}" for j in range(content_dim))]


def feature_matrix(
    score: np.ndarray,
    source: np.ndarray,
    retriever_rank: np.ndarray,
    item_ids: np.ndarray,
    item_clicks: np.ndarray,
    item_impressions: np.ndarray,
    item_age_h: np.ndarray,
    user_clicks: np.ndarray,
    user_impressions: np.ndarray,
    position: np.ndarray,
    content: np.ndarray,
) -> np.ndarray:
    """The ``(m, F)`` float64 feature matrix of ``m`` (user, candidate, context) rows: every
    argument but ``content`` (``(n_items, d)``, gathered by ``item_ids``) is ``(m,)`` aligned."""
    columns = (
        score,
        source,
        retriever_rank,
        item_clicks,
        item_impressions,
        item_age_h,
        user_clicks,
        user_impressions,
        position,
    )
    m, nb = np.shape(item_ids)[0], len(columns)
    out = np.empty((m, nb + content.shape[1]), dtype=np.float64)
    for j, column in enumerate(columns):  # a handful of columns, each one vectorized
        out[:, j] = column
    out[:, nb:] = content[item_ids]
    return out


def training_features(rows: RerankRows, content: np.ndarray, arrival_t: np.ndarray) -> np.ndarray:
    """Features of logged impressions (each as of the start of its round)."""
    return feature_matrix(
        rows.score,
        rows.source,
        rows.retriever_rank,
        rows.item_ids,
        rows.item_clicks,
        rows.item_impressions,
        rows.as_of_t - arrival_t[rows.item_ids],
        rows.user_clicks,
        rows.user_impressions,
        rows.position,
        content,
    )


@dataclass(frozen=True)
class LearnedRerank(Reranker):
    """The ``policy.rerank`` node of ``policy/rerank=learned`` (see the module docstring)."""

    n_estimators: int = 100  # boosting rounds
    learning_rate: float = 0.1
    num_leaves: int = 15
    min_child_samples: int = 20  # LightGBM min_data_in_leaf
    training_rounds: int = 3  # train on the impressions of the last N log rounds
    max_training_rows: int = 200_000  # seeded subsample above this
    min_train_clicks: int = 50  # fewer clicks (or non-clicks) in the rows: keep retrieval order
    position_ipw: bool = False  # weight each click by min(1/θ_slot, ipw_clip)
    ipw_propensity: str = "em"  # where θ comes from: em | randomized
    ipw_clip: float = 10.0
    reference_slot: int = 0  # the slot every candidate is scored at

    name: ClassVar[str] = "learned"
    learns: ClassVar[bool] = True

    def __post_init__(self) -> None:
        self._positive_int(
            "n_estimators",
            "num_leaves",
            "min_child_samples",
            "training_rounds",
            "max_training_rows",
            "min_train_clicks",
        )
        if self.num_leaves < 2:
            self._fail("num_leaves", "must be an integer >= 2")
        self._number("learning_rate", 0.0, low_open=True)
        self._bool("position_ipw")
        if self.ipw_propensity not in IPW_PROPENSITIES:
            self._fail("ipw_propensity", f"unknown; choose one of {', '.join(IPW_PROPENSITIES)}")
        self._number("ipw_clip", 1.0)
        r = self.reference_slot
        if isinstance(r, bool) or not isinstance(r, int) or r < 0:
            self._fail("reference_slot", "must be an integer >= 0")

    def rerank(self, ctx: SelectionContext) -> SelectionContext:
        return ctx  # nothing trained yet: the retrieval order

    def build(self, ctx: BuildContext, seed: int) -> RerankTrainer:
        """The runtime trainer, with the item metadata it reads and its seed."""
        n = ctx.n_items
        content = ctx.item_content
        content = np.zeros((n, 0)) if content is None else np.asarray(content, dtype=np.float64)
        arrival = ctx.item_arrival_t
        arrival = np.zeros(n) if arrival is None else np.asarray(arrival, dtype=np.float64)
        return RerankTrainer(self, content, arrival, ctx.slate_size, int(seed))


@dataclass
class RerankTrainer:
    """Fits a :class:`FittedReranker` at every retrain (kept by the serving policy)."""

    config: LearnedRerank
    content: np.ndarray  # (n_items, d) ItemMetadata.content
    arrival_t: np.ndarray  # (n_items,) ItemMetadata.arrival_t
    slate_size: int
    seed: int

    def params(self, version: int) -> dict[str, Any]:
        cfg = self.config
        seed = int(np.random.SeedSequence([self.seed, version + 1]).generate_state(1)[0] >> 1)
        return {
            "objective": "binary",
            "learning_rate": float(cfg.learning_rate),
            "num_leaves": cfg.num_leaves,
            "min_data_in_leaf": cfg.min_child_samples,
            "deterministic": True,
            "force_row_wise": True,
            "num_threads": 1,
            "seed": seed,
            "verbosity": -1,
        }

    def fit(self, interactions: Interactions, version: int) -> FittedReranker | None:
        """Train on the log's reranker rows; ``None`` when there is too little to train on."""
        data = interactions.rerank
        if data is None:
            return None
        rows, cfg = data.rows, self.config
        if rows.n > cfg.max_training_rows:
            rng = np.random.default_rng([self.seed, version + 1])
            keep = np.sort(rng.choice(rows.n, cfg.max_training_rows, replace=False))
            rows = RerankRows(
                **{f: getattr(rows, f)[keep] for f in RerankRows.__dataclass_fields__}
            )
        n_clicks = int(rows.clicked.sum())
        if min(n_clicks, rows.n - n_clicks) < cfg.min_train_clicks:
            return None
        weight = None
        if cfg.position_ipw:
            theta = ClickWeighting(
                "position_ipw",
                clip=cfg.ipw_clip,
                propensity=cfg.ipw_propensity,
                n_slots=self.slate_size,
            ).theta(interactions)
            slot = np.minimum(rows.position, theta.size - 1)
            weight = np.where(rows.clicked, np.minimum(1.0 / theta[slot], cfg.ipw_clip), 1.0)
        booster = train_booster(
            training_features(rows, self.content, self.arrival_t),
            rows.clicked,
            weight,
            self.params(version),
            cfg.n_estimators,
            feature_names(self.content.shape[1]),
        )
        return FittedReranker(
            booster=booster,
            version=version,
            reference_slot=cfg.reference_slot,
            content=self.content,
            arrival_t=self.arrival_t,
            item_clicks=data.item_clicks,
            item_impressions=data.item_impressions,
            user_clicks=data.user_clicks,
            user_impressions=data.user_impressions,
            now=data.now,
        )


def train_booster(
    x: np.ndarray,
    y: np.ndarray,
    weight: np.ndarray | None,
    params: dict[str, Any],
    n_estimators: int,
    names: list[str],
) -> Any:
    """A LightGBM binary classifier (``source`` as a categorical feature)."""
    import lightgbm as lgb  # imported on first fit: serving policies without it stay light

    dataset = lgb.Dataset(
        x,
        label=np.asarray(y, dtype=np.float64),
        weight=weight,
        feature_name=names,
        categorical_feature=[SOURCE_FEATURE],
        params={"verbosity": -1, "max_bin": 255},
        free_raw_data=True,
    )
    return lgb.train(params, dataset, num_boost_round=n_estimators)


@dataclass
class FittedReranker:
    """A trained click model plus the log counts as of its cut-off: what serving reads."""

    booster: Any  # lightgbm.Booster
    version: int
    reference_slot: int
    content: np.ndarray
    arrival_t: np.ndarray
    item_clicks: np.ndarray
    item_impressions: np.ndarray
    user_clicks: np.ndarray
    user_impressions: np.ndarray
    now: float

    def predict(self, x: np.ndarray) -> np.ndarray:
        if x.shape[0] == 0:
            return np.empty(0)
        return np.asarray(self.booster.predict(x, num_threads=1), dtype=np.float64)

    def serving_features(self, user_ids: np.ndarray, retrieval: Retrieval) -> np.ndarray:
        """Features of every (request, candidate) of a batch, row-major ``(n*C, F)``."""
        items = retrieval.items
        n, c = items.shape
        source = np.broadcast_to(
            retrieval.source if retrieval.source.ndim == 2 else retrieval.source[:, None], (n, c)
        )
        rank = getattr(retrieval, "retriever_rank", None)
        if rank is None:
            rank = np.broadcast_to(np.arange(c), (n, c))
        flat = items.ravel()
        users = np.repeat(np.asarray(user_ids, dtype=np.int64), c)
        return feature_matrix(
            retrieval.scores.ravel(),
            source.ravel(),
            np.asarray(rank).ravel(),
            flat,
            self.item_clicks[flat],
            self.item_impressions[flat],
            self.now - self.arrival_t[flat],
            self.user_clicks[users],
            self.user_impressions[users],
            np.full(flat.size, self.reference_slot),
            self.content,
        )

    def rerank(
        self, ctx: SelectionContext, retrieval: Retrieval
    ) -> tuple[SelectionContext, Retrieval, np.ndarray]:
        """The context with candidates best first by predicted click, the retrieval permuted the
        same way, and the predicted probabilities ``(n, C)`` in that order."""
        n, c = retrieval.items.shape
        # A handful of chunks of requests (a feature matrix of a few MB, cache-sized, instead of
        # one of ~65 MB for 8,192 requests); predictions are per row, so chunking changes nothing.
        step = max(1, PREDICT_ROWS // max(c, 1))
        prob = np.empty((n, c))
        for lo in range(0, n, step):
            part = _rows(retrieval, slice(lo, lo + step))
            x = self.serving_features(ctx.user_ids[lo : lo + step], part)
            prob[lo : lo + step] = self.predict(x).reshape(-1, c)
        order = np.argsort(-prob, axis=1, kind="stable")  # ties: the retrieval order
        prob = np.take_along_axis(prob, order, axis=1)
        retrieval = permute_candidates(retrieval, order)
        p = np.clip(prob, PROB_EPS, 1 - PROB_EPS)
        logit = (np.log(p) - np.log1p(-p)).astype(np.float32)
        return dataclasses.replace(ctx, candidates=retrieval.items, scores=logit), retrieval, prob


def _rows(retrieval: Retrieval, rows: slice) -> Retrieval:
    """The requests ``rows`` of a retrieval (every per-request array sliced)."""
    n = retrieval.items.shape[0]
    changes = {}
    for f in dataclasses.fields(retrieval):
        value = getattr(retrieval, f.name)
        if isinstance(value, np.ndarray) and value.ndim >= 1 and value.shape[0] == n:
            changes[f.name] = value[rows]
    return dataclasses.replace(retrieval, **changes)


def permute_candidates(retrieval: Retrieval, order: np.ndarray) -> Retrieval:
    """Every per-candidate ``(n, C)`` array of ``retrieval`` reordered by ``order``."""
    changes = {}
    for f in dataclasses.fields(retrieval):
        value = getattr(retrieval, f.name)
        if isinstance(value, np.ndarray) and value.ndim == 2 and value.shape == order.shape:
            changes[f.name] = np.take_along_axis(value, order, axis=1)
    return dataclasses.replace(retrieval, **changes)
