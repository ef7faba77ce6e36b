"""The slate contract, checked the same way for every selector and every configured policy.

A "server" maps (request contexts, :class:`Randomness`) to slates. For bare selectors a context is
a hand-built request (candidate ranking with scores, excluded set, a fake posterior, item
impressions); for serving policies it is a user of a tiny world whose log the policy was fitted
on. Every server must:

* show K distinct in-catalog items, never an already-clicked one (unless the filter had to be
  relaxed), with marginal and prefix propensities in (0, 1], prefixes non-increasing along the
  slate, the slate probability = the last prefix, and candidate show probabilities in [0, 1]
  summing to at most K (exactly K when the slate can only come from the candidates);
* log, for each (slot, item), the *marginal* probability of that item in that slot, and for each
  candidate its probability of being shown: checked against empirical frequencies over many
  draws of one fixed context;
* consume its random streams in request order: same seed → same output, different seeds →
  different slates (stochastic servers only), and a batch served whole, in chunks, or one request
  at a time (one ``Randomness`` continuing) gives bit-identical output on every field.

Exactness is then checked per selector against independent brute-force enumerations on tiny
catalogs (epsilon-greedy, uniform, exposure boost, Plackett–Luce) or, for Thompson sampling, which
has no closed form, against the slate frequencies of an independent posterior sampler.

Monte-Carlo propensities of Thompson sampling follow the convention of
:mod:`policies.propensity`: the shown slate is one of ``M + 1`` samples. Given the context, the
``M`` extra samples are independent of the shown slate, so ``logged·(M+1) − 1`` (marginal and
prefix) and ``logged·(M+1) − shown`` (show probability) are exact ``Binomial(M, p)`` counts. The
tests use that: the counts must be integers, and their sum over all rows that logged the same
(slot, item) is ``Binomial(M·n, p)`` — an exact, powerful test when ``p`` is known (enumeration),
a normal-approximation test (with the reference's own sampling error) when it is not.

Softmax's Monte-Carlo columns (its marginals past slot 0, its show probabilities) are
Rao–Blackwellized instead (:func:`policies.plackett_luce.key_marginals`): each logged value is a
mean of conditional probabilities, unbiased, not a count. Over many draws of one context the mean
of the logged values of each (slot, item) must match its frequency (and the enumerated value),
allowing the spread of the logged values themselves.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import pytest
from conftest import policy_config
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from agents.catalog import ItemMetadata
from agents.streams import Streams
from agents.world import WorldConfig, build_world
from experiments.config import parse_policy
from policies import Interactions, PolicyConfig, SlateBatch, build_policy
from policies.exclusion import PAD
from policies.exposure_boost import ExposureBoost, NewItemBoost
from policies.fair_exposure import FairExposure
from policies.interactions import RoundImpressions
from policies.models import SOURCE_CODE
from policies.plackett_luce import Softmax
from policies.posterior_sampling import UCB, Thompson
from policies.propensity import EXACT, EXACT_SEQUENTIAL_MC_MARGINAL, METHODS, MONTE_CARLO
from policies.randomness import Randomness
from policies.selection import EpsilonGreedy, Greedy, SelectionContext, UniformRandom

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples" / "explore_slot"))
from explore_slot import ExploreSlot

K, C = 3, 6
N_USERS, N_ITEMS = 30, 25
MC_DRAWS = 20_000  # draws of one fixed context in the frequency checks
Z = 5.0  # standard errors allowed in normal-approximation comparisons
ALPHA = 1e-7  # two-sided tail probability below which an exact binomial check fails
M_SELECTOR = 100  # Monte-Carlo samples of the bare softmax / Thompson selectors
M_POLICY = 100  # ... and of the configured policies (overrides the config's mc_samples)

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs" / "policy"
POLICY_FILES = sorted(p for p in CONFIG_DIR.glob("*.yaml") if not p.name.startswith("_"))


def load_policy_config(path: Path, **overrides) -> PolicyConfig:
    """The preset as hydra composes it (``policy=<stem>``), with the given settings where the
    preset's components have them."""
    return policy_config(path.stem, lenient=True, **overrides)


def test_policy_configs_are_found():
    names = {p.stem for p in POLICY_FILES}
    assert {
        "greedy",
        "epsilon_greedy",
        "epsilon_decay",
        "softmax",
        "ucb",
        "thompson",
        "linucb",
        "lints",
        "item_boost",
        "new_item_boost",
        "popularity",
        "random",
        "oracle",
    } <= names


# --------------------------------------------------------------------------------------------
# Helpers: contexts, a fake posterior model, independent reference computations
# --------------------------------------------------------------------------------------------


def _padded(sets: list[set[int]]) -> np.ndarray:
    width = max((len(s) for s in sets), default=0)
    rows = [sorted(s) + [int(PAD)] * (width - len(s)) for s in sets]
    return np.array(rows, dtype=np.int64).reshape(len(sets), width)


@dataclass(frozen=True)
class FakePosterior:
    """Scores of every item for each "user" (= context index) are ``mean + Gᵀz``."""

    mean: np.ndarray  # (n_users, n_items)
    g: np.ndarray  # (n_users, f, n_items)

    def score_distribution(self, user_ids, candidates):
        mean = np.take_along_axis(self.mean[user_ids], candidates, axis=1)
        g = np.take_along_axis(self.g[user_ids], candidates[:, None, :], axis=2)
        return mean, g


def make_context(
    candidates,
    excluded,
    n_items,
    scores=None,
    model=None,
    version=0,
    impressions=None,
    user_ids=None,
) -> SelectionContext:
    candidates = np.asarray(candidates, dtype=np.int64)
    n, c = candidates.shape
    if scores is None:  # any decreasing scores: the ranking is what matters
        scores = np.broadcast_to(-np.arange(c, dtype=np.float64), (n, c)).copy()
    return SelectionContext(
        user_ids=np.arange(n) if user_ids is None else np.asarray(user_ids),
        candidates=candidates,
        scores=np.asarray(scores),
        excluded=_padded(excluded),
        n_items=n_items,
        model=model,
        model_version=version,
        item_impressions=np.zeros(n_items) if impressions is None else np.asarray(impressions),
    )


def repeat(ctx: SelectionContext, n: int) -> SelectionContext:
    """``n`` copies of the one-request context ``ctx``."""
    return SelectionContext(
        user_ids=np.repeat(ctx.user_ids, n),
        candidates=np.repeat(ctx.candidates, n, axis=0),
        scores=np.repeat(ctx.scores, n, axis=0),
        excluded=np.repeat(ctx.excluded, n, axis=0),
        n_items=ctx.n_items,
        model=ctx.model,
        model_version=ctx.model_version,
        item_impressions=ctx.item_impressions,
    )


def quantile_threshold(values: np.ndarray, q: float) -> float:
    """numpy's default ("linear") quantile, written out."""
    v = sorted(float(x) for x in values)
    pos = q * (len(v) - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    return v[lo] + (pos - lo) * (v[hi] - v[lo])


def boost_pool(impressions, q, excluded: set[int], head: list[int]) -> list[int]:
    """U_u: under-exposed items (impressions <= quantile) the request may show, minus the head."""
    thr = quantile_threshold(impressions, q)
    return [
        i
        for i in range(len(impressions))
        if impressions[i] <= thr and i not in excluded | set(head)
    ]


def new_item_pool(
    impressions, arrival_t, until: int, excluded: set[int], head: list[int]
) -> list[int]:
    """U_u of the new-item boost: items that arrived after the start (``arrival_t > 0``) with
    fewer than ``until`` impressions, that the request may show, minus the head."""
    return [
        i
        for i in range(len(impressions))
        if arrival_t[i] > 0 and impressions[i] < until and i not in excluded | set(head)
    ]


# Independent enumerations: each returns {slate (tuple of item ids): probability}.


def epsilon_greedy_slates(greedy, pool, eps) -> dict[tuple[int, ...], float]:
    """Every explore/exploit pattern, and every ordered draw of distinct pool items for the
    explored slots (all equally likely)."""
    k = len(greedy)
    out: dict[tuple[int, ...], float] = {}
    for pattern in itertools.product((False, True), repeat=k):
        m = sum(pattern)
        p_pattern = eps**m * (1.0 - eps) ** (k - m)
        if p_pattern == 0.0:
            continue
        explored_slots = [s for s in range(k) if pattern[s]]
        draws = list(itertools.permutations(pool, m))
        for draw in draws:
            slate = list(greedy)
            for s, item in zip(explored_slots, draw, strict=True):
                slate[s] = item
            key = tuple(slate)
            out[key] = out.get(key, 0.0) + p_pattern / len(draws)
    return out


def uniform_slates(eligible, k) -> dict[tuple[int, ...], float]:
    perms = list(itertools.permutations(eligible, k))
    return {p: 1.0 / len(perms) for p in perms}


def boost_slates(candidates, k, r, pool) -> dict[tuple[int, ...], float]:
    head = tuple(candidates[: k - r])
    if len(pool) < r:  # served greedily
        return {tuple(candidates[:k]): 1.0}
    draws = list(itertools.permutations(pool, r))
    return {head + d: 1.0 / len(draws) for d in draws}


def plackett_luce_slates(candidates, scores, temperature, k) -> dict[tuple[int, ...], float]:
    """P(σ) = Π_t w_σt / Σ_{j not yet drawn} w_j with w = exp(score / T), by enumeration."""
    logits = [float(s) / temperature for s in scores]
    top = max(logits)
    w = [math.exp(x - top) for x in logits]
    out = {}
    for perm in itertools.permutations(range(len(w)), k):
        p, left = 1.0, set(range(len(w)))
        for idx in perm:
            p *= w[idx] / math.fsum(w[j] for j in left)
            left.remove(idx)
        out[tuple(int(candidates[i]) for i in perm)] = p
    return out


def thompson_slates(mean, g, beta, k, candidates, n_samples, seed) -> dict[tuple[int, ...], float]:
    """Empirical slate distribution of an independent posterior sampler (no closed form)."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n_samples, g.shape[0]))
    draws = mean[None, :] + beta * (z @ g)  # (S, C) = mean + Gᵀz per sample
    top = np.argsort(-draws, axis=1, kind="stable")[:, :k]
    counts = Counter(map(tuple, np.asarray(candidates)[top].tolist()))
    return {s: n / n_samples for s, n in counts.items()}


def derived(dist: dict[tuple[int, ...], float]):
    """Prefix, (slot, item) marginal and show probabilities from a slate distribution, by summing
    over completions."""
    prefix: dict[tuple[int, ...], float] = {}
    marginal: dict[tuple[int, int], float] = {}
    show: dict[int, float] = {}
    for slate, p in dist.items():
        for t, item in enumerate(slate):
            prefix[slate[: t + 1]] = prefix.get(slate[: t + 1], 0.0) + p
            marginal[(t, item)] = marginal.get((t, item), 0.0) + p
            show[item] = show.get(item, 0.0) + p
    return prefix, marginal, show


def _binomial_ok(count: np.ndarray, trials: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Two-sided exact binomial check at level ALPHA (elementwise)."""
    low = stats.binom.cdf(count, trials, p)
    high = stats.binom.sf(count - 1, trials, p)
    return np.minimum(low, high) > ALPHA / 2


def check_against_reference(
    out: dict,
    dist: dict,
    mc: int,
    label: str,
    reference_samples: int | None = None,
    rb: bool = False,
):
    """``out``: a selector's output for many draws of ONE context; ``dist``: the reference slate
    distribution (exact enumeration, or ``reference_samples`` posterior samples).

    * the shown slates follow ``dist`` (support and frequencies);
    * exact columns equal the reference within 1e-12;
    * Monte-Carlo columns are integer counts; grouped by what they estimate, their sums are
      ``Binomial(M·n, p)`` (exact test when ``dist`` is exact; normal approximation including
      the reference's sampling variance otherwise);
    * ``rb``: Monte-Carlo columns are Rao–Blackwellized means (softmax); grouped by what they
      estimate, their mean is ``p`` within ``Z`` standard errors of the group's own spread.
    """
    items, cands = out["items"], out["candidates"]
    n, k = items.shape
    method = out["method"]
    prefix_p, marg_p, show_p = derived(dist)
    slates = [tuple(r) for r in items.tolist()]

    counts = Counter(slates)
    support = {s for s, p in dist.items() if p > 0}
    if reference_samples is None:
        assert set(counts) <= support, f"{label}: impossible slates {set(counts) - support}"
    for s in set(dist) | set(counts):
        p, f = dist.get(s, 0.0), counts.get(s, 0) / n
        v = p * (1 - p) if reference_samples is None else max(p * (1 - p), f * (1 - f))
        var = v * (1 / n + (1 / reference_samples if reference_samples else 0.0))
        assert abs(f - p) <= Z * math.sqrt(var) + 1e-9, f"{label}: slate {s} freq {f} vs {p}"

    true = {
        "prefix_propensity": np.array(
            [[prefix_p.get(s[: t + 1], 0.0) for t in range(k)] for s in slates]
        ),
        "propensity": np.array([[marg_p.get((t, s[t]), 0.0) for t in range(k)] for s in slates]),
        "candidate_show_probability": np.vectorize(lambda c: show_p.get(int(c), 0.0))(cands)
        if cands.size
        else np.zeros(cands.shape),
    }
    mc_columns = {
        "propensity": {
            EXACT: [],
            EXACT_SEQUENTIAL_MC_MARGINAL: list(range(1, k)),
            MONTE_CARLO: list(range(k)),
        }[method],
        "prefix_propensity": list(range(k)) if method == MONTE_CARLO else [],
        "candidate_show_probability": [] if method == EXACT else list(range(cands.shape[1])),
    }
    np.testing.assert_array_equal(out["slate_propensity"], out["prefix_propensity"][:, -1])
    for key, cols in mc_columns.items():
        logged = out[key]
        exact_cols = [c for c in range(logged.shape[1]) if c not in cols]
        np.testing.assert_allclose(
            logged[:, exact_cols],
            true[key][:, exact_cols],
            rtol=0,
            atol=1e-12,
            err_msg=f"{label} {key}",
        )
        if not cols:
            continue
        if rb:
            _check_rb_means(logged, true[key], items, key, cols, label)
            continue
        shown = out["candidate_shown"] if key == "candidate_show_probability" else 1.0
        raw = logged * (mc + 1) - shown  # the count among the M extra samples
        count = np.rint(raw)
        assert np.abs(raw - count)[:, cols].max() < 1e-6, (
            f"{label} {key}: not a count over M + 1 samples"
        )
        assert ((count >= 0) & (count <= mc))[:, cols].all(), f"{label} {key}: count out of range"
        for col in cols:  # group the rows by what each estimate targets, sum their counts
            if key == "candidate_show_probability":
                targets = np.zeros(n, dtype=np.int64)  # every row estimates the same q_c
            elif key == "propensity":
                targets = items[:, col]
            else:
                targets = np.unique(items[:, : col + 1], axis=0, return_inverse=True)[1].ravel()
            for target in np.unique(targets):
                rows = targets == target
                p = true[key][rows, col][0]
                total, trials = count[rows, col].sum(), mc * rows.sum()
                msg = f"{label} {key} col {col}: {total / trials:.5f} vs p={p:.5f}"
                if reference_samples is None:
                    assert _binomial_ok(total, trials, p), msg
                else:
                    f = total / trials  # conservative where p is near 0 or 1:
                    v = max(p * (1 - p), f * (1 - f))
                    var = trials * v * (1 + trials / reference_samples)
                    assert abs(total - trials * p) <= Z * math.sqrt(var) + 1e-9, msg


def _check_rb_means(logged, true, items, key, cols, label):
    """Rao–Blackwellized columns: per column and per target (the row's item at that slot for the
    marginal; the candidate itself for the show probability), the mean of the logged values is
    the true ``p`` within ``Z`` standard errors of their own spread; each value is in [0, 1]."""
    assert ((logged >= 0) & (logged <= 1))[:, cols].all(), f"{label} {key}: outside [0, 1]"
    n = logged.shape[0]
    for col in cols:
        targets = items[:, col] if key == "propensity" else np.zeros(n, dtype=np.int64)
        for target in np.unique(targets):
            rows = targets == target
            values = logged[rows, col]
            p = true[rows, col][0]
            se = math.sqrt(values.var() / rows.sum()) if rows.sum() > 1 else 1.0
            msg = f"{label} {key} col {col}: mean {values.mean():.5f} vs p={p:.5f} (se {se:.2g})"
            assert abs(values.mean() - p) <= Z * se + 1e-6, msg


# --------------------------------------------------------------------------------------------
# Servers
# --------------------------------------------------------------------------------------------


@dataclass
class Server:
    name: str
    k: int
    clicked: list[set[int]]  # per context: items the request must not show ...
    relaxed: list[bool]  # ... unless the filter is relaxed for it
    closed: list[bool]  # the slate can only come from the retrieved candidates
    method: str  # the propensity_method it must report
    mc: int  # Monte-Carlo samples M (0: exact)
    stochastic: bool
    serve: Callable[[np.ndarray, Randomness], dict]  # (context indices, randomness) -> fields
    rb: bool = False  # Monte-Carlo columns are Rao–Blackwellized means, not counts (softmax)

    @property
    def n_contexts(self) -> int:
        return len(self.clicked)


@dataclass(frozen=True)
class SelectorData:
    """Three hand-built requests on a 25-item catalog: no exclusions; a few; and so many that
    only 2K items remain eligible (all of them retrieved: the epsilon-greedy pool has K items).
    The under-exposed items (zero impressions) make exposure boost draw from 8, 5 and 1 items
    (the last request is served greedily: its pool is smaller than ``boost_slots``)."""

    excluded: list[set[int]]
    candidates: np.ndarray
    scores: np.ndarray
    model: FakePosterior
    impressions: np.ndarray

    def context(self, ctx: np.ndarray) -> SelectionContext:
        return SelectionContext(
            user_ids=ctx,
            candidates=self.candidates[ctx],
            scores=self.scores[ctx],
            excluded=_padded(self.excluded)[ctx],
            n_items=N_ITEMS,
            model=self.model,
            model_version=SELECTOR_VERSION,
            item_impressions=self.impressions,
            items=SELECTOR_ITEMS,
        )


SELECTOR_VERSION = 1
NEW_ITEMS = {1, 2, 4, 12, 15, 18, 21, 23}  # arrived during the run (arrival_t > 0)
# What the platform knows about the 25 items (fair exposure groups them by creator: i mod 3).
SELECTOR_ITEMS = ItemMetadata(
    content=np.zeros((N_ITEMS, 2), dtype=np.float32),
    creator_id=(np.arange(N_ITEMS) % 3).astype(np.int32),
    price=np.ones(N_ITEMS, dtype=np.float32),
    arrival_t=np.array([1.0 + i if i in NEW_ITEMS else 0.0 for i in range(N_ITEMS)]),
)
UNDER_EXPOSED = {0, 4, 7, 9, 13, 16, 20, 23}
BOOST_QUANTILE = 0.2  # 8 of 25 items have 0 impressions: the 0.2-quantile is 0
# The new-item boost draws from the new items with fewer than NEW_UNTIL impressions (12 and 18
# have more): 6, 5 and 1 items in the three requests.
NEW_UNTIL = 20


def _selector_data() -> SelectorData:
    rng = np.random.default_rng(123)
    excluded = [
        set(),
        {0, 5, 7, 11},
        set(rng.choice(N_ITEMS, N_ITEMS - 2 * K, replace=False).tolist()),
    ]
    mean = rng.normal(size=(3, N_ITEMS)) * 0.5
    g = rng.normal(size=(3, 2, N_ITEMS)) * 0.3
    candidates = []
    for c, ex in enumerate(excluded):  # retrieval: the top C eligible items by posterior mean
        eligible = np.array(sorted(set(range(N_ITEMS)) - ex))
        candidates.append(eligible[np.argsort(-mean[c, eligible], kind="stable")][:C])
    candidates = np.array(candidates, dtype=np.int64)
    impressions = rng.integers(5, 40, N_ITEMS).astype(np.float64)
    impressions[sorted(UNDER_EXPOSED)] = 0.0
    data = SelectorData(
        excluded,
        candidates,
        np.take_along_axis(mean, candidates, axis=1),
        FakePosterior(mean, g),
        impressions,
    )
    pools = [
        boost_pool(impressions, BOOST_QUANTILE, ex, list(cand[:1]))
        for ex, cand in zip(excluded, candidates, strict=True)
    ]
    assert [len(p) for p in pools] == [8, 5, 1], pools  # the design above
    arrival = SELECTOR_ITEMS.arrival_t
    pools = [
        new_item_pool(impressions, arrival, NEW_UNTIL, ex, list(cand[:1]))
        for ex, cand in zip(excluded, candidates, strict=True)
    ]
    assert [len(p) for p in pools] == [6, 5, 1], pools
    return data


SELECTOR_DATA = _selector_data()

SELECTORS = {
    "greedy": Greedy(K),
    "epsilon_greedy_0": EpsilonGreedy(K, 0.0),
    "epsilon_greedy_0.1": EpsilonGreedy(K, 0.1),
    "epsilon_greedy_0.5": EpsilonGreedy(K, 0.5),
    "epsilon_greedy_1": EpsilonGreedy(K, 1.0),
    "epsilon_decay": EpsilonGreedy(K, 0.6, decay=0.5, epsilon_min=0.05),  # version 1: ε = 0.3
    "uniform": UniformRandom(K),
    "softmax": Softmax(K, temperature=0.3, mc_samples=M_SELECTOR),
    "ucb": UCB(K, beta=1.0),
    "thompson": Thompson(K, beta=1.0, mc_samples=M_SELECTOR),
    "boost": ExposureBoost(K, boost_slots=2, quantile=BOOST_QUANTILE),
    "new_item_boost": NewItemBoost(K, boost_slots=2, until_impressions=NEW_UNTIL),
    "fair_exposure_creators": FairExposure(K, groups="creators", delta=0.0),
    "fair_exposure_tiers": FairExposure(K, groups="popularity_tiers", n_tiers=2, delta=0.02),
    # a user's component from outside the package (examples/explore_slot): the same contract
    "example_explore_slot_1": ExploreSlot(K, slots=1),
    "example_explore_slot_all": ExploreSlot(K, slots=K),
}
SELECTOR_METHOD = {
    ExploreSlot: EXACT,
    Greedy: EXACT,
    EpsilonGreedy: EXACT,
    UniformRandom: EXACT,
    UCB: EXACT,
    ExposureBoost: EXACT,
    NewItemBoost: EXACT,
    FairExposure: EXACT,
    Softmax: EXACT_SEQUENTIAL_MC_MARGINAL,
    Thompson: MONTE_CARLO,
}


def _closed(selector, excluded: set[int], candidates: np.ndarray) -> bool:
    """Whether every item the selector can show for this request is a retrieved candidate."""
    eligible = set(range(N_ITEMS)) - excluded
    cands = set(candidates.tolist())
    if isinstance(selector, EpsilonGreedy):
        return selector.epsilon_at(SELECTOR_VERSION) == 0 or eligible <= cands
    if isinstance(selector, UniformRandom):
        return eligible <= cands
    if isinstance(selector, ExposureBoost):
        head = list(candidates[: selector.slate_size - selector.boost_slots])
        pool = boost_pool(SELECTOR_DATA.impressions, selector.quantile, excluded, head)
        return len(pool) < selector.boost_slots or set(pool) <= cands
    if isinstance(selector, NewItemBoost):
        head = list(candidates[: selector.slate_size - selector.boost_slots])
        arrival = SELECTOR_ITEMS.arrival_t
        pool = new_item_pool(SELECTOR_DATA.impressions, arrival, NEW_UNTIL, excluded, head)
        return len(pool) < selector.boost_slots or set(pool) <= cands
    return True


def _with_shown(fields_: dict) -> dict:
    items, cands = fields_["items"], fields_["candidates"]
    fields_["candidate_shown"] = (cands[:, :, None] == items[:, None, :]).any(axis=2)
    return fields_


def selector_server(name: str) -> Server:
    selector = SELECTORS[name]
    data = SELECTOR_DATA

    def serve(ctx, rand):
        sc = data.context(np.asarray(ctx, dtype=np.int64))
        sel = selector.select(sc, rand)
        out = {f.name: getattr(sel, f.name) for f in fields(sel)}
        out["slate_propensity"] = sel.slate_propensity
        out["candidates"] = sc.candidates
        return _with_shown(out)

    deterministic = isinstance(selector, Greedy | UCB) or (
        isinstance(selector, EpsilonGreedy) and selector.epsilon_at(SELECTOR_VERSION) == 0
    )
    return Server(
        name=f"selector:{name}",
        k=K,
        clicked=data.excluded,
        relaxed=[False] * 3,
        closed=[
            _closed(selector, ex, cand)
            for ex, cand in zip(data.excluded, data.candidates, strict=True)
        ],
        method=SELECTOR_METHOD[type(selector)],
        mc=getattr(selector, "mc_samples", 0),
        stochastic=not deterministic,
        serve=serve,
        rb=isinstance(selector, Softmax),
    )


@pytest.fixture(scope="module")
def world():
    config = WorldConfig(n_users=N_USERS, n_items=N_ITEMS, dim=4, n_topics=3, content_dim=5)
    return build_world(config, Streams(7))


# Contexts of the policy servers: a user with a few clicks, a user with none (cold for ALS),
# and a user who clicked all but 2 items (a K-slate cannot avoid clicked items: relaxed).
POLICY_USERS = np.array([0, 1, 2])
FIT_VERSION = 3


@pytest.fixture(scope="module")
def clicks() -> tuple[Interactions, list[set[int]]]:
    """A log: clicks (some repeated), impressions per item (some never shown) and a latest
    round of impressions served by the bootstrap (what the linear bandit updates on)."""
    rng = np.random.default_rng(99)
    users, items = [], []
    per_user: list[set[int]] = []
    for u in range(N_USERS):
        if u == 0:
            chosen = {3, 8, 13, 21, 24}
        elif u == 1:
            chosen = set()
        elif u == 2:
            chosen = set(range(N_ITEMS)) - {4, 17}
        else:
            chosen = set(rng.choice(N_ITEMS, rng.integers(0, 9), replace=False).tolist())
        per_user.append(chosen)
        for i in sorted(chosen):
            for _ in range(rng.integers(1, 3)):  # repeated clicks are counts
                users.append(u)
                items.append(i)
    impressions = rng.integers(1, 60, N_ITEMS).astype(np.float64)
    impressions[[2, 6, 10, 19]] = 0.0
    m = 300
    rnd = RoundImpressions(
        user_ids=rng.integers(0, N_USERS, m),
        item_ids=rng.integers(0, N_ITEMS, m),
        clicked=rng.random(m) < 0.3,
        model_version=np.full(m, -1),
        position=np.tile(np.arange(K), m // K + 1)[:m],
        score=rng.normal(size=m),
    )
    n_shown = 200  # shown-but-not-clicked pairs, for exposure-aware training
    inter = Interactions.from_pairs(
        np.array(users),
        np.array(items),
        N_USERS,
        N_ITEMS,
        item_impressions=impressions,
        latest_round=rnd,
        click_positions=rng.integers(0, K, len(users)),
        exposures=(rng.integers(0, N_USERS, n_shown), rng.integers(0, N_ITEMS, n_shown)),
    )
    return inter, per_user


def _tiny(path: Path, **overrides) -> PolicyConfig:
    kw = dict(slate_size=K, n_candidates=C, factors=4, iterations=3, mc_samples=M_POLICY)
    return load_policy_config(path, **{**kw, **overrides})


# A policy that explores new items sees these items of the tiny world as arrived during the run
# (the fixture's world has no arrivals).
NEW_POLICY_ITEMS = np.arange(N_ITEMS) % 3 == 1


def _platform_items(config: PolicyConfig, world) -> ItemMetadata:
    meta = world.catalog.metadata
    if not isinstance(config.selector, NewItemBoost):
        return meta
    return dataclasses.replace(meta, arrival_t=np.where(NEW_POLICY_ITEMS, 1.0, 0.0))


def _build(config: PolicyConfig, world, seed: int = 5):
    return build_policy(
        config,
        N_ITEMS,
        N_USERS,
        seed=seed,
        relevance=world.relevance_matrix,
        item_content=world.catalog.metadata.content,
        examination=world.click_model.examination(config.slate_size),
        items=_platform_items(config, world),  # as a run builds it (objectives read it)
    )


SLATE_FIELDS = [f.name for f in fields(SlateBatch)]


def policy_server(path: Path, world, clicks, retrieve: str | None = None) -> Server:
    inter, per_user = clicks
    config = _tiny(path) if retrieve is None else _tiny(path, retrieve=retrieve)
    if config.selector.name == "fair_exposure":  # exactly proportional: random on these users
        # (the mixed candidates of users 1 and 2 come from one creator: group them by tier)
        groups = "popularity_tiers" if retrieve == "mixed" else "creators"
        fair = dataclasses.replace(config.selector, delta=0, groups=groups, n_tiers=3)
        config = dataclasses.replace(config, selector=fair)
    policy = _build(config, world)
    policy.deploy(policy.fit(inter, version=FIT_VERSION))
    if retrieve == "mixed":  # the contexts do get candidates from the other retrievers
        sources = policy.serve(POLICY_USERS, Randomness.from_seed(0)).candidate_source
        assert np.isin(sources, [SOURCE_CODE[s] for s in ("covisit", "content")]).any()

    def serve(ctx, rand):
        batch = policy.serve(POLICY_USERS[np.asarray(ctx, dtype=np.int64)], rand)
        assert batch.model_version == FIT_VERSION
        out = {f: getattr(batch, f) for f in SLATE_FIELDS}
        out["slate_propensity"] = batch.slate_propensity
        out["method"] = out.pop("propensity_method")
        return out

    clicked = [per_user[u] for u in POLICY_USERS]
    relaxed = [N_ITEMS - len(s) < K for s in clicked]
    assert relaxed == [False, False, True]
    method = {
        "softmax": EXACT_SEQUENTIAL_MC_MARGINAL,
        "thompson": MONTE_CARLO,
    }.get(config.selector.name, EXACT)
    return Server(
        name=f"policy:{path.stem}" + ("" if retrieve is None else f"+retrieve={retrieve}"),
        k=K,
        clicked=clicked,
        relaxed=relaxed,
        closed=[config.selector.name in ("greedy", "ucb", "softmax", "thompson", "fair_exposure")]
        * 3,
        method=method,
        mc=getattr(config.selector, "mc_samples", 0) if method != EXACT else 0,
        stochastic=config.selector.name not in ("greedy", "ucb") or config.intervention is not None,
        serve=serve,
        rb=config.selector.name == "softmax",
    )


# Presets also served through the mixed retrieval stage (policies.retrieval): every selector kind
# (deterministic, exact-stochastic, Monte-Carlo, posterior, boost, intervention) and another scorer.
MIXED_PRESETS = (
    "greedy",
    "epsilon_greedy",
    "softmax",
    "ucb",
    "thompson",
    "item_boost",
    "fair_exposure",
    "randomized_topk",
    "bpr",
    "popularity",
)
SERVER_IDS = (
    [f"selector:{s}" for s in SELECTORS]
    + [f"policy:{p.stem}" for p in POLICY_FILES]
    + [f"policy+mixed:{name}" for name in MIXED_PRESETS]
)


@pytest.fixture(scope="module", params=SERVER_IDS)
def server(request, world, clicks) -> Server:
    kind, name = request.param.split(":")
    if kind == "selector":
        return selector_server(name)
    retrieve = "mixed" if kind == "policy+mixed" else None
    return policy_server(CONFIG_DIR / f"{name}.yaml", world, clicks, retrieve=retrieve)


def _assert_same(a: dict, b: dict):
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], np.ndarray):
            assert a[key].dtype == b[key].dtype, key
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
        else:
            assert a[key] == b[key], key


def _concat(parts: list[dict]) -> dict:
    out = {}
    for key, value in parts[0].items():
        if isinstance(value, np.ndarray):
            out[key] = np.concatenate([p[key] for p in parts])
        else:
            assert all(p[key] == value for p in parts), key
            out[key] = value
    return out


# --------------------------------------------------------------------------------------------
# The contract
# --------------------------------------------------------------------------------------------


def test_slates_are_valid(server: Server):
    """Shapes and dtypes; K distinct valid items; propensities in (0, 1]; prefixes
    non-increasing, starting at the slot-0 marginal, ending at the slate probability and never
    above the marginal where both are exact or both Monte-Carlo; filtered items hidden; show
    probabilities in [0, 1], summing to at most K (exactly K for a closed slate), positive for
    every shown candidate, and consistent with ``candidate_shown``."""
    n = 3000
    ctx = np.random.default_rng(1).integers(0, server.n_contexts, n)
    out = server.serve(ctx, Randomness.from_seed(1))
    items, prop, prefix = out["items"], out["propensity"], out["prefix_propensity"]
    k = server.k
    assert out["method"] == server.method and out["method"] in METHODS
    assert items.shape == prop.shape == prefix.shape == (n, k)
    assert items.dtype == np.int64
    for key in ("propensity", "prefix_propensity", "candidate_show_probability"):
        assert out[key].dtype == np.float64, key
        assert np.isfinite(out[key]).all(), key
    assert ((items >= 0) & (items < N_ITEMS)).all()
    assert (np.diff(np.sort(items, axis=1), axis=1) != 0).all(), "a slate shows an item twice"

    assert ((prop > 0) & (prop <= 1)).all(), f"marginals outside (0, 1]: {np.unique(prop)}"
    assert ((prefix > 0) & (prefix <= 1)).all(), f"prefixes outside (0, 1]: {np.unique(prefix)}"
    assert (np.diff(prefix, axis=1) <= 0).all(), "prefix propensity increases along the slate"
    np.testing.assert_array_equal(out["slate_propensity"], prefix[:, -1])
    np.testing.assert_allclose(
        prefix[:, 0], prop[:, 0], rtol=0, atol=1e-15
    )  # slot 0: the same event
    if server.method != EXACT_SEQUENTIAL_MC_MARGINAL:  # same footing: P(prefix) <= P(last item)
        assert (prefix <= prop + 1e-15).all()
    if server.mc and not server.rb:  # the shown slate counts as one of M + 1 samples
        assert (prop[:, 1:] >= 1 / (server.mc + 1) - 1e-15).all()

    for c in range(server.n_contexts):
        rows = items[ctx == c]
        shown_clicked = np.isin(rows, sorted(server.clicked[c]))
        if server.relaxed[c]:  # fewer than K unclicked items exist
            assert shown_clicked.any(axis=1).all()
        else:
            assert not shown_clicked.any(), f"context {c} was shown an already-clicked item"

    cands, show, shown = (
        out["candidates"],
        out["candidate_show_probability"],
        out["candidate_shown"],
    )
    assert show.shape == shown.shape == cands.shape and shown.dtype == bool
    np.testing.assert_array_equal(shown, (cands[:, :, None] == items[:, None, :]).any(axis=2))
    assert ((show >= 0) & (show <= 1)).all()
    assert (show[shown] > 0).all(), "a shown candidate has show probability 0"
    if server.mc and not server.rb:
        assert (show[shown] >= 1 / (server.mc + 1) - 1e-15).all()
    totals = show.sum(axis=1)
    closed = np.array(server.closed)[ctx]
    if server.rb:  # unbiased estimates: the slate size on average, not row by row
        assert (totals <= show.shape[1]).all()
        if closed.any():
            se = totals[closed].std() / math.sqrt(closed.sum())
            assert abs(totals[closed].mean() - k) <= Z * se + 1e-9, totals[closed].mean()
        return
    assert (totals <= k + 1e-9).all()
    np.testing.assert_allclose(totals[closed], k, rtol=0, atol=1e-9)


def test_explored_marks_slots_that_differ_from_the_greedy_choice(server: Server):
    """``explored`` is True wherever the slot does not show the greedy (top-ranked) item."""
    ctx = np.tile(np.arange(server.n_contexts), 300)
    out = server.serve(ctx, Randomness.from_seed(12))
    explored = out.get("explored")
    if explored is None:  # policies log it as the source code
        explored = np.isin(out["source"], [SOURCE_CODE["explore"], SOURCE_CODE["random"]])
    cands = out["candidates"]
    if cands.shape[1] == 0:  # no ranking at all: every slot is random
        assert explored.all()
        return
    differs = out["items"] != cands[:, : server.k]
    assert explored[differs].all()


def test_empty_batch(server: Server):
    rand = Randomness.from_seed(0)
    out = server.serve(np.array([], dtype=np.int64), rand)
    assert out["items"].shape == (0, server.k)
    assert out["propensity"].shape == out["prefix_propensity"].shape == (0, server.k)
    assert out["candidate_show_probability"].shape[0] == 0
    # serving nothing draws nothing
    _assert_same(
        server.serve(np.array([0]), rand), server.serve(np.array([0]), Randomness.from_seed(0))
    )


def _is_mc(server: Server, slot: int) -> bool:
    return server.method == MONTE_CARLO or (
        server.method == EXACT_SEQUENTIAL_MC_MARGINAL and slot > 0
    )


def _compare_frequency(freq, logged, is_mc, mc, n, n_group, label, row_var=None):
    """Empirical frequency of an event vs its logged probability, for one fixed context.

    Exact: the logged value is the probability; ``|freq − p| ≤ Z·sqrt(p(1−p)/n)``.
    Monte-Carlo: each logged value is ``(Bin(M, p) + indicator)/(M + 1)``, so the logged values
    of the ``n_group`` rows are turned into the unbiased ``p̃ = (mean count)/M`` (standard error
    ``sqrt(p(1−p)/(M·n_group))``) and compared with the frequency allowing both errors. The
    variance uses the larger of ``p(1−p)`` at ``freq`` and at ``p̃``: conservative for rare (and
    near-certain) events, where one count in a small group would otherwise look like many
    standard errors. Rao–Blackwellized: ``logged`` is the group's mean logged value and
    ``row_var`` their variance (standard error ``sqrt(row_var / n_group)``).
    """
    if row_var is not None:
        v = np.maximum(freq * (1 - freq), logged * (1 - logged))
        se = np.sqrt(v / n + row_var / n_group)
    elif is_mc:
        v = np.maximum(freq * (1 - freq), logged * (1 - logged))
        se = np.sqrt(v * (1 / n + 1 / (mc * n_group)))
    else:
        se = np.sqrt(logged * (1 - logged) / n)
    bad = np.abs(freq - logged) > Z * se + 1e-9
    assert not bad.any(), f"{label}: freq {freq[bad]} vs logged {logged[bad]}"


def test_logged_marginals_and_show_probabilities_match_frequencies(server: Server):
    """Over MC_DRAWS draws of each fixed context: the frequency of each (slot, item) matches its
    logged marginal, and the frequency with which each candidate is shown matches its logged show
    probability (exact values must also be constant within the context and, for exact methods,
    a slot's support must sum to 1)."""
    rand = Randomness.from_seed(2)
    for c in range(server.n_contexts):
        out = server.serve(np.full(MC_DRAWS, c), rand)
        items, prop = out["items"], out["propensity"]
        label = f"{server.name} context {c}"
        for slot in range(server.k):
            is_mc = _is_mc(server, slot)
            shown, inverse, counts = np.unique(
                items[:, slot], return_inverse=True, return_counts=True
            )
            values = prop[:, slot]
            row_var = None
            if is_mc and server.rb:
                logged = np.bincount(inverse, weights=values) / counts
                row_var = np.bincount(inverse, weights=values**2) / counts - logged**2
            elif is_mc:
                counts_mc = values * (server.mc + 1) - 1.0
                logged = np.bincount(inverse, weights=counts_mc) / counts / server.mc
            else:
                lo = np.full(shown.shape, np.inf)
                hi = np.full(shown.shape, -np.inf)
                np.minimum.at(lo, inverse, values)
                np.maximum.at(hi, inverse, values)
                assert (hi - lo <= 1e-12).all(), f"{label} slot {slot}: marginal varies"
                logged = lo
                total = logged.sum()
                if server.method == EXACT:  # every item with p·n >> 1 appeared
                    assert abs(total - 1.0) <= 1e-9, f"{label} slot {slot}: support sums to {total}"
                else:
                    # softmax slot 0: exact in float64 (the logits are float64 even for float32 scores)
                    assert total <= 1.0 + 1e-9, f"{label} slot {slot}: support sums to {total}"
            _compare_frequency(
                counts / MC_DRAWS,
                logged,
                is_mc,
                server.mc,
                MC_DRAWS,
                counts,
                f"{label} slot {slot}",
                row_var,
            )

        cands, show, cshown = (
            out["candidates"],
            out["candidate_show_probability"],
            out["candidate_shown"],
        )
        if cands.shape[1] == 0:
            continue
        assert (cands == cands[0]).all(), "retrieval differs between draws of one context"
        row_var = None
        if server.method == EXACT:
            assert (show.max(axis=0) - show.min(axis=0) <= 1e-12).all()
            logged = show[0]
        elif server.rb:
            logged, row_var = show.mean(axis=0), show.var(axis=0)
        else:
            logged = (show * (server.mc + 1) - cshown).mean(axis=0) / server.mc
        _compare_frequency(
            cshown.mean(axis=0),
            logged,
            server.method != EXACT,
            server.mc,
            MC_DRAWS,
            MC_DRAWS,
            f"{label} show",
            row_var,
        )


def test_same_seed_same_output_different_seed_different_slates(server: Server):
    ctx = np.tile(np.arange(server.n_contexts), 70)
    first = server.serve(ctx, Randomness.from_seed(1))
    _assert_same(first, server.serve(ctx, Randomness.from_seed(1)))
    other = server.serve(ctx, Randomness.from_seed(2))
    if server.stochastic:
        assert not np.array_equal(first["items"], other["items"]), f"{server.name}: seed ignored"
    else:
        _assert_same(first, other)


def test_batch_independence(server: Server):
    """A batch served whole, in chunks (one ``Randomness`` continuing; chunk sizes cross the
    Monte-Carlo block of 256 requests, one chunk is empty), or one request at a time gives
    bit-identical output on every field."""
    n = 600
    ctx = np.random.default_rng(3).integers(0, server.n_contexts, n)
    whole = server.serve(ctx, Randomness.from_seed(11))
    rand = Randomness.from_seed(11)
    cuts = [(0, 1), (1, 100), (100, 100), (100, 401), (401, 600)]
    _assert_same(whole, _concat([server.serve(ctx[a:b], rand) for a, b in cuts]))

    few = 15
    whole = server.serve(ctx[:few], Randomness.from_seed(12))
    rand = Randomness.from_seed(12)
    _assert_same(whole, _concat([server.serve(ctx[i : i + 1], rand) for i in range(few)]))


# --------------------------------------------------------------------------------------------
# Each selector against an independent brute-force reference on a tiny catalog
# --------------------------------------------------------------------------------------------

N_REF = 20_000  # draws of one context compared with the reference


def _select(selector, ctx: SelectionContext, seed: int) -> dict:
    sel = selector.select(ctx, Randomness.from_seed(seed))
    out = {f.name: getattr(sel, f.name) for f in fields(sel)}
    out["slate_propensity"] = sel.slate_propensity
    out["candidates"] = ctx.candidates
    return _with_shown(out)


# one request on a 9-item catalog: items 1 and 6 filtered, the other 7 ranked
TINY_ITEMS = 9
TINY_EXCLUDED = {1, 6}
TINY_RANKING = [5, 0, 3, 8, 2, 4, 7]


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.5, 1.0])
@pytest.mark.parametrize("k", [1, 2, 3])
@pytest.mark.parametrize("n_cand", [3, 7])
def test_epsilon_greedy_matches_enumeration(eps, k, n_cand):
    """Marginals, prefixes, slate and show probabilities of every draw equal the enumeration of
    explore patterns × ordered pool draws (1e-12); slates follow it; explored = the coin."""
    greedy, pool = TINY_RANKING[:k], TINY_RANKING[k:]
    dist = epsilon_greedy_slates(greedy, pool, eps)
    assert math.isclose(math.fsum(dist.values()), 1.0)
    ctx = make_context([TINY_RANKING[: max(n_cand, k)]], [TINY_EXCLUDED], TINY_ITEMS)
    out = _select(EpsilonGreedy(k, eps), repeat(ctx, 4000), seed=11)
    check_against_reference(out, dist, 0, f"eps={eps} k={k}")
    np.testing.assert_array_equal(out["explored"], out["items"] != np.array(greedy))
    _, marginal, _ = derived(dist)  # every (slot, item) with positive probability was produced
    produced = {(t, i) for r in out["items"].tolist() for t, i in enumerate(r)}
    assert produced == {key for key, p in marginal.items() if p > 0}


@pytest.mark.parametrize("version", [-1, 0, 1, 3, 10])
def test_epsilon_decay_explores_with_the_decayed_epsilon(version):
    selector = EpsilonGreedy(2, 0.4, decay=0.5, epsilon_min=0.06)
    eps = max(0.06, 0.4 * 0.5 ** max(version, 0))  # bootstrap (-1) explores like version 0
    assert selector.epsilon_at(version) == pytest.approx(eps, rel=1e-15)
    ctx = make_context([TINY_RANKING], [TINY_EXCLUDED], TINY_ITEMS, version=version)
    out = _select(selector, repeat(ctx, 3000), seed=version + 2)
    check_against_reference(
        out, epsilon_greedy_slates(TINY_RANKING[:2], TINY_RANKING[2:], eps), 0, f"v={version}"
    )


@pytest.mark.parametrize("k", [1, 2, 3])
def test_uniform_matches_enumeration(k):
    eligible = sorted(set(range(TINY_ITEMS)) - TINY_EXCLUDED)
    ctx = make_context([TINY_RANKING[:4]], [TINY_EXCLUDED], TINY_ITEMS)
    out = _select(UniformRandom(k), repeat(ctx, N_REF), seed=3)
    check_against_reference(out, uniform_slates(eligible, k), 0, f"uniform k={k}")
    assert out["explored"].all()


@pytest.mark.parametrize("context", range(3))
@pytest.mark.parametrize("slots", [1, 2, 3])
def test_exposure_boost_matches_enumeration(context, slots):
    """Boosted slots draw uniformly without replacement from U_u = (items with impressions at or
    below the quantile) minus filtered minus the greedy head; fewer than ``slots`` such items:
    greedy. The pool is recomputed here with a hand-written quantile."""
    data = SELECTOR_DATA
    head = list(data.candidates[context, : K - slots])
    pool = boost_pool(data.impressions, BOOST_QUANTILE, data.excluded[context], head)
    dist = boost_slates(list(data.candidates[context]), K, slots, pool)
    out = _select(
        ExposureBoost(K, slots, BOOST_QUANTILE), data.context(np.full(N_REF, context)), seed=4
    )
    check_against_reference(out, dist, 0, f"boost ctx={context} slots={slots}")
    boosted = len(pool) >= slots
    assert (out["explored"][:, K - slots :] == boosted).all() and not out["explored"][
        :, : K - slots
    ].any()


@pytest.mark.parametrize("context", range(3))
@pytest.mark.parametrize("slots", [1, 2, 3])
def test_new_item_boost_matches_enumeration(context, slots):
    """Boosted slots draw uniformly without replacement from U_u = (items with arrival_t > 0 and
    fewer than NEW_UNTIL impressions) minus filtered minus the greedy head; fewer than ``slots``
    such items: greedy. The pool is recomputed here from the metadata, item by item."""
    data = SELECTOR_DATA
    head = list(data.candidates[context, : K - slots])
    arrival = SELECTOR_ITEMS.arrival_t
    pool = new_item_pool(data.impressions, arrival, NEW_UNTIL, data.excluded[context], head)
    dist = boost_slates(list(data.candidates[context]), K, slots, pool)
    out = _select(
        NewItemBoost(K, slots, until_impressions=NEW_UNTIL),
        data.context(np.full(N_REF, context)),
        seed=4,
    )
    check_against_reference(out, dist, 0, f"new_item_boost ctx={context} slots={slots}")
    boosted = len(pool) >= slots
    assert (out["explored"][:, K - slots :] == boosted).all()
    assert not out["explored"][:, : K - slots].any()


@pytest.mark.parametrize(
    ("scores", "temperature"),
    [
        ([0.9, 0.7, 0.65, 0.2, -0.1], 0.3),
        ([0.9, 0.7, 0.65, 0.2, -0.1], 5.0),  # nearly uniform
        ([1.0, 1.0, 1.0, 1.0, 1.0], 0.05),  # exactly uniform
        ([3.0, 0.1, 0.0, -0.2, -2.0], 0.4),  # one dominant candidate
    ],
)
def test_softmax_matches_plackett_luce_enumeration(scores, temperature):
    """Slate, prefix and slot-0 marginal equal the Plackett–Luce product over the enumerated
    ordered triples (1e-12); later marginals and show probabilities are Binomial(M, p) counts
    around the enumerated values; the shown slates follow the enumeration."""
    cands = [11, 4, 7, 0, 9]
    ctx = make_context([cands], [{1, 2}], 12, scores=[scores])
    dist = plackett_luce_slates(cands, scores, temperature, K)
    assert math.isclose(math.fsum(dist.values()), 1.0)
    out = _select(Softmax(K, temperature, mc_samples=50), repeat(ctx, N_REF), seed=5)
    check_against_reference(out, dist, 50, f"softmax T={temperature}", rb=True)


@pytest.mark.parametrize(
    ("groups", "delta", "context"),
    [
        ("creators", 0.0, 0),
        ("creators", 0.0, 1),
        ("creators", 0.1, 2),
        ("popularity_tiers", 0.0, 0),
    ],
)
def test_fair_exposure_matches_enumeration_of_its_mixture(groups, delta, context):
    """The reference is the request's LP assignment ``P`` (solved here, directly) decomposed by
    Birkhoff–von Neumann: its (slot, item) marginals equal ``P`` (1e-9) and every logged
    marginal, prefix, slate and show probability equals the enumeration of that mixture
    (1e-12); the shown slates follow it."""
    from policies.fair_exposure import assignment_lp, birkhoff, exposure_weights, merits

    data = SELECTOR_DATA
    sel = FairExposure(K, groups=groups, n_tiers=2, delta=delta)
    ctx = data.context(np.full(N_REF, context))
    m = sel.pool_size(C)
    labels = sel.labels(ctx, ctx.candidates[:1, :m])[0]
    assert len(set(labels.tolist())) > 1
    u = merits(data.scores[context : context + 1, :m], sel.merit_floor)[0]
    p, _ = assignment_lp(u, labels, exposure_weights(K), delta, sel.slack_penalty)
    rankings, weights = birkhoff(p)
    dist: dict[tuple[int, ...], float] = {}
    for r, w in zip(rankings.tolist(), weights.tolist(), strict=True):
        slate = tuple(int(data.candidates[context, i]) for i in r)
        dist[slate] = dist.get(slate, 0.0) + w
    _, marg_p, _ = derived(dist)
    for i in range(m):
        for t in range(K):
            want = p[i, t]
            got = marg_p.get((t, int(data.candidates[context, i])), 0.0)
            assert abs(got - want) <= 1e-9, (i, t, got, want)
    out = _select(sel, ctx, seed=13)
    check_against_reference(out, dist, 0, f"fair_exposure {groups} delta={delta} ctx={context}")
    assert len(dist) > 1  # a genuinely random ranking


def test_softmax_survives_scores_far_apart():
    """Weights far below the top underflow ``exp``: the sequential conditionals must still be
    finite probabilities (here the order is all but certain)."""
    cands = [3, 1, 2, 0]
    ctx = make_context([cands], [set()], 6, scores=[[100.0, 50.0, 40.0, 30.0]])
    out = _select(Softmax(K, 0.05, mc_samples=20), repeat(ctx, 50), seed=6)
    for key in ("propensity", "prefix_propensity", "candidate_show_probability"):
        assert np.isfinite(out[key]).all(), key
    np.testing.assert_array_equal(out["items"], np.tile(cands[:K], (50, 1)))
    np.testing.assert_allclose(out["prefix_propensity"], 1.0, rtol=0, atol=1e-12)


def test_softmax_exact_probabilities_are_float64_accurate_for_float32_scores():
    cands = [11, 4, 7, 0, 9]
    scores = np.array([[0.91, 0.73, 0.6542, 0.21, -0.13]], dtype=np.float32)  # as retrieval logs
    ctx = make_context([cands], [set()], 12, scores=scores)
    dist = plackett_luce_slates(cands, scores[0].astype(np.float64), 0.05, K)
    prefix_p, _, _ = derived(dist)
    out = _select(Softmax(K, 0.05, mc_samples=10), repeat(ctx, 200), seed=7)
    true = np.array(
        [[prefix_p[tuple(s[: t + 1])] for t in range(K)] for s in out["items"].tolist()]
    )
    np.testing.assert_allclose(out["prefix_propensity"], true, rtol=1e-12, atol=0)


def _tiny_posterior():
    """One request: 4 candidates whose posterior scores overlap (mean gaps ~ posterior sd)."""
    cands = np.array([6, 2, 9, 4])
    mean = np.zeros((1, 10))
    mean[0, cands] = [0.5, 0.35, 0.3, 0.0]
    g = np.zeros((1, 2, 10))
    g[0, :, cands] = [[0.3, 0.1], [0.2, -0.25], [-0.1, 0.3], [0.4, 0.2]]
    return cands, FakePosterior(mean, g)


def test_thompson_matches_independent_posterior_sampling():
    """No closed form: the reference is the slate frequency over 400,000 independent posterior
    samples ``mean + β·Gᵀz``. The selector's slates follow it, and every logged Monte-Carlo
    estimate (marginal, prefix, slate, show) is a Binomial(M, p) count around it (normal
    approximation including the reference's sampling error)."""
    cands, model = _tiny_posterior()
    beta, k, s = 1.3, 2, 400_000
    ctx = make_context([cands], [set()], 10, scores=model.mean[:, cands], model=model, user_ids=[0])
    dist = thompson_slates(model.mean[0, cands], model.g[0][:, cands], beta, k, cands, s, seed=0)
    assert len(dist) > 6  # a genuinely random ranking
    out = _select(Thompson(k, beta, mc_samples=40), repeat(ctx, N_REF), seed=8)
    check_against_reference(out, dist, 40, "thompson", reference_samples=s)


def test_thompson_with_zero_spread_is_greedy_with_probability_one():
    cands, model = _tiny_posterior()
    ctx = make_context([cands], [set()], 10, scores=model.mean[:, cands], model=model, user_ids=[0])
    out = _select(Thompson(3, 0.0, mc_samples=30), repeat(ctx, 20), seed=9)
    np.testing.assert_array_equal(out["items"], np.tile(cands[:3], (20, 1)))
    for key in ("propensity", "prefix_propensity"):
        np.testing.assert_array_equal(out[key], 1.0)


@pytest.mark.parametrize("beta", [0.0, 0.5, 3.0])
def test_ucb_ranks_by_mean_plus_beta_sd(beta):
    """Deterministic: the top K of ``mean + β·sqrt(diag(GᵀG))``, computed with an explicit
    covariance matrix; all probabilities 1."""
    cands, model = _tiny_posterior()
    ctx = make_context([cands], [set()], 10, scores=model.mean[:, cands], model=model, user_ids=[0])
    g = model.g[0][:, cands]
    cov = g.T @ g
    bound = model.mean[0, cands] + beta * np.sqrt(np.diag(cov))
    expected = cands[np.argsort(-bound, kind="stable")[:K]]
    out = _select(UCB(K, beta), repeat(ctx, 5), seed=10)
    np.testing.assert_array_equal(out["items"], np.tile(expected, (5, 1)))
    for key in ("propensity", "prefix_propensity"):
        np.testing.assert_array_equal(out[key], 1.0)
    show = np.isin(cands, expected).astype(float)
    np.testing.assert_array_equal(out["candidate_show_probability"], np.tile(show, (5, 1)))


@st.composite
def request_batches(draw):
    """A batch of heterogeneous requests sharing n_items and K (each repeated, shuffled)."""
    k = draw(st.integers(1, 3))
    n_items = draw(st.integers(2 * k, 9))
    contexts = []
    for _ in range(draw(st.integers(1, 4))):
        ex = draw(st.sets(st.integers(0, n_items - 1), max_size=n_items - 2 * k))
        eligible = sorted(set(range(n_items)) - ex)
        order = draw(st.permutations(eligible))
        contexts.append((ex, list(order)))
    n_cand = draw(st.integers(k, min(len(c) for _, c in contexts)))
    seed = draw(st.integers(0, 2**32 - 1))
    return k, n_items, contexts, n_cand, seed


def _batch(contexts, n_cand, n_items, reps, seed, **kw):
    idx = np.repeat(np.arange(len(contexts)), reps)
    np.random.default_rng(seed).shuffle(idx)
    ctx = make_context([c[:n_cand] for _, c in contexts], [ex for ex, _ in contexts], n_items, **kw)
    return idx, SelectionContext(
        user_ids=idx,
        candidates=ctx.candidates[idx],
        scores=ctx.scores[idx],
        excluded=ctx.excluded[idx],
        n_items=n_items,
        model=ctx.model,
        model_version=ctx.model_version,
        item_impressions=ctx.item_impressions,
    )


def _check_rows_exact(out, idx, dists, label):
    """Every row's logged probabilities equal its own context's enumeration (1e-12)."""
    derivations = [derived(d) for d in dists]
    for row, c in enumerate(idx):
        prefix_p, marg_p, show_p = derivations[c]
        slate = tuple(out["items"][row].tolist())
        assert dists[c].get(slate, 0.0) > 0, f"{label} context {c}: impossible slate {slate}"
        for t in range(len(slate)):
            assert abs(out["propensity"][row, t] - marg_p[(t, slate[t])]) <= 1e-12
            assert abs(out["prefix_propensity"][row, t] - prefix_p[slate[: t + 1]]) <= 1e-12
        want = [show_p.get(int(i), 0.0) for i in out["candidates"][row]]
        np.testing.assert_allclose(out["candidate_show_probability"][row], want, rtol=0, atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(request_batches(), st.sampled_from([0.0, 0.1, 0.5, 1.0]) | st.floats(0.0, 1.0))
def test_epsilon_greedy_bruteforce_property(case, eps):
    k, n_items, contexts, n_cand, seed = case
    idx, ctx = _batch(contexts, n_cand, n_items, 25, seed)
    out = _select(EpsilonGreedy(k, eps), ctx, seed)
    dists = [
        epsilon_greedy_slates(r[:k], sorted(set(range(n_items)) - ex - set(r[:k])), eps)
        for ex, r in contexts
    ]
    _check_rows_exact(out, idx, dists, f"eps={eps}")


@settings(max_examples=40, deadline=None)
@given(request_batches())
def test_uniform_bruteforce_property(case):
    k, n_items, contexts, n_cand, seed = case
    idx, ctx = _batch(contexts, n_cand, n_items, 20, seed)
    out = _select(UniformRandom(k), ctx, seed)
    dists = [uniform_slates(sorted(set(range(n_items)) - ex), k) for ex, _ in contexts]
    _check_rows_exact(out, idx, dists, "uniform")


@settings(max_examples=40, deadline=None)
@given(request_batches(), st.data())
def test_exposure_boost_bruteforce_property(case, data):
    k, n_items, contexts, n_cand, seed = case
    slots = data.draw(st.integers(1, k))
    q = data.draw(st.sampled_from([0.0, 0.3, 0.5, 1.0]))
    impressions = np.array(
        data.draw(st.lists(st.integers(0, 4), min_size=n_items, max_size=n_items)), float
    )
    idx, ctx = _batch(contexts, n_cand, n_items, 20, seed, impressions=impressions)
    out = _select(ExposureBoost(k, slots, q), ctx, seed)
    dists = []
    for ex, r in contexts:
        pool = boost_pool(impressions, q, ex, r[: k - slots])
        dists.append(boost_slates(r[:n_cand], k, slots, pool))
    _check_rows_exact(out, idx, dists, "boost")


@settings(max_examples=40, deadline=None)
@given(request_batches(), st.data())
def test_new_item_boost_bruteforce_property(case, data):
    """Random catalogs, arrivals, impressions and evidence thresholds; the items not in the
    catalog (``unavailable``, also filtered from every request as the pipeline does) are never
    in the pool."""
    k, n_items, contexts, n_cand, seed = case
    slots = data.draw(st.integers(1, k))
    until = data.draw(st.integers(1, 5))
    impressions = np.array(
        data.draw(st.lists(st.integers(0, 6), min_size=n_items, max_size=n_items)), float
    )
    arrival = np.array(
        data.draw(st.lists(st.sampled_from([0.0, 3.0, 7.5]), min_size=n_items, max_size=n_items))
    )
    gone = set.intersection(*(ex for ex, _ in contexts))  # filtered in every request
    unavailable = np.array(
        sorted(data.draw(st.sets(st.sampled_from(sorted(gone))))) if gone else [], dtype=np.int64
    )
    items = dataclasses.replace(SELECTOR_ITEMS, arrival_t=arrival)
    idx, ctx = _batch(contexts, n_cand, n_items, 20, seed, impressions=impressions)
    ctx = dataclasses.replace(ctx, items=items, unavailable=unavailable)
    out = _select(NewItemBoost(k, slots, until_impressions=until), ctx, seed)
    dists = []
    for ex, r in contexts:
        pool = new_item_pool(
            impressions, arrival, until, ex | set(unavailable.tolist()), r[: k - slots]
        )
        dists.append(boost_slates(r[:n_cand], k, slots, pool))
    _check_rows_exact(out, idx, dists, "new_item_boost")


@settings(max_examples=25, deadline=None)
@given(
    st.lists(st.floats(-2, 2), min_size=3, max_size=5),
    st.sampled_from([0.1, 0.5, 2.0]),
    st.integers(1, 3),
    st.integers(0, 2**32 - 1),
)
def test_softmax_exact_columns_property(scores, temperature, k, seed):
    k = min(k, len(scores))
    cands = list(range(len(scores)))
    ctx = make_context([cands], [set()], len(scores) + 2, scores=[scores])
    out = _select(Softmax(k, temperature, mc_samples=5), repeat(ctx, 30), seed)
    prefix_p, marg_p, _ = derived(plackett_luce_slates(cands, scores, temperature, k))
    for row in out["items"].tolist():
        assert len(set(row)) == k
    true_prefix = [[prefix_p[tuple(r[: t + 1])] for t in range(k)] for r in out["items"].tolist()]
    np.testing.assert_allclose(out["prefix_propensity"], true_prefix, rtol=0, atol=1e-12)
    true_first = [marg_p[(0, r[0])] for r in out["items"].tolist()]
    np.testing.assert_allclose(out["propensity"][:, 0], true_first, rtol=0, atol=1e-12)


# --------------------------------------------------------------------------------------------
# Configured policies: wiring of the exact probabilities
# --------------------------------------------------------------------------------------------


def test_softmax_policy_logs_plackett_luce_of_its_candidate_scores(world, clicks):
    """The policy's prefix probabilities are Plackett–Luce over the logged candidate scores at the
    configured temperature (rtol 1e-5: the logged scores are float32)."""
    inter, _ = clicks
    config = _tiny(CONFIG_DIR / "softmax.yaml", temperature=0.5)
    policy = _build(config, world)
    policy.deploy(policy.fit(inter, version=0))
    batch = policy.serve(np.repeat(np.arange(6), 20), Randomness.from_seed(3))
    for row in range(batch.items.shape[0]):
        dist = plackett_luce_slates(
            batch.candidates[row], batch.candidate_scores[row].astype(np.float64), 0.5, K
        )
        prefix_p, _, _ = derived(dist)
        s = tuple(batch.items[row].tolist())
        want = [prefix_p[s[: t + 1]] for t in range(K)]
        np.testing.assert_allclose(batch.prefix_propensity[row], want, rtol=1e-5)


@pytest.mark.parametrize(
    "name", ["epsilon_greedy", "epsilon_decay", "item_boost", "new_item_boost", "random"]
)
def test_exact_policies_match_enumeration_of_their_own_context(name, world, clicks):
    """For the exact policies, the logged probabilities of user 0 (5 clicked items) equal the
    enumeration built from what the log shows (candidates, the user's clicks, impressions)."""
    inter, per_user = clicks
    config = _tiny(CONFIG_DIR / f"{name}.yaml")
    policy = _build(config, world)
    deployment = policy.fit(inter, version=FIT_VERSION)
    policy.deploy(deployment)
    batch = policy.serve(np.zeros(300, dtype=np.int64), Randomness.from_seed(4))
    ranking = [int(i) for i in batch.candidates[0]]
    excluded = per_user[0]
    sel = config.selector
    if sel.name == "epsilon_greedy":
        eps = max(sel.epsilon_min, sel.epsilon * sel.decay**FIT_VERSION)
        pool = sorted(set(range(N_ITEMS)) - excluded - set(ranking[:K]))
        dist = epsilon_greedy_slates(ranking[:K], pool, eps)
    elif sel.name == "boost":
        head = ranking[: K - sel.boost_slots]
        pool = boost_pool(deployment.item_impressions, sel.quantile, excluded, head)
        dist = boost_slates(ranking, K, sel.boost_slots, pool)
    elif sel.name == "new_item_boost":  # the new items of _platform_items
        head = ranking[: K - sel.boost_slots]
        arrival = NEW_POLICY_ITEMS.astype(float)
        until = sel.until_impressions
        pool = new_item_pool(inter.item_impressions, arrival, until, excluded, head)
        assert len(pool) >= sel.boost_slots  # the context explores
        dist = boost_slates(ranking, K, sel.boost_slots, pool)
    else:
        dist = uniform_slates(sorted(set(range(N_ITEMS)) - excluded), K)
    out = {f: getattr(batch, f) for f in SLATE_FIELDS}
    _check_rows_exact(out, np.zeros(300, dtype=np.int64), [dist], name)


# --------------------------------------------------------------------------------------------
# Serving-policy lifecycle and configuration
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", POLICY_FILES, ids=[p.stem for p in POLICY_FILES])
def test_bootstrap_serves_before_deploy_then_fitted_version(path, world, clicks):
    inter, _ = clicks
    config = _tiny(path)
    policy = _build(config, world)
    users = np.random.default_rng(6).integers(0, N_USERS, 50)

    before = policy.serve(users, Randomness.from_seed(6))
    assert before.model_version == -1 and policy.model_version == -1
    assert (before.source == SOURCE_CODE["bootstrap"]).all()
    assert before.items.shape == (50, K)
    assert before.policy_name == config.bootstrap
    if config.bootstrap == "random":  # an empty log filters nothing: uniform over the catalog
        np.testing.assert_allclose(before.propensity, 1.0 / N_ITEMS)
        np.testing.assert_allclose(before.slate_propensity, 1.0 / (25 * 24 * 23))

    deployment = policy.fit(inter, version=12)
    assert deployment.version == deployment.model.version == 12
    np.testing.assert_array_equal(deployment.item_impressions, inter.item_impressions)
    assert not np.shares_memory(deployment.item_impressions, inter.item_impressions)
    not_deployed = policy.serve(users, Randomness.from_seed(6))  # fitting alone changes nothing
    assert not_deployed.model_version == -1
    _assert_same(
        {f: getattr(before, f) for f in SLATE_FIELDS},
        {f: getattr(not_deployed, f) for f in SLATE_FIELDS},
    )

    policy.deploy(deployment)
    after = policy.serve(users, Randomness.from_seed(6))
    assert after.model_version == 12 and policy.model_version == 12
    assert policy.model is deployment.model
    assert not (after.source == SOURCE_CODE["bootstrap"]).any()
    assert after.policy_name == config.name


@pytest.mark.parametrize(
    "path",
    [p for p in POLICY_FILES],
    ids=[p.stem for p in POLICY_FILES],
)
def test_refit_on_the_next_round_serves_the_new_version(path, world, clicks):
    inter, _ = clicks
    policy = _build(_tiny(path), world)
    policy.deploy(policy.fit(inter, version=12))
    users = np.arange(N_USERS)
    served = policy.serve(users, Randomness.from_seed(7))
    rnd = RoundImpressions(
        user_ids=np.repeat(users, K),
        item_ids=served.items.ravel(),
        clicked=(np.arange(N_USERS * K) % 4) == 0,
        model_version=np.full(N_USERS * K, served.model_version),
    )
    nxt = dataclasses.replace(inter, item_impressions=inter.item_impressions + 1, latest_round=rnd)
    deployment = policy.fit(nxt, version=13)
    assert deployment.version == 13
    policy.deploy(deployment)
    assert policy.serve(users, Randomness.from_seed(7)).model_version == 13


def test_popularity_bootstrap_is_logged_as_bootstrap():
    policy = build_policy(
        policy_config(name="g", bootstrap="popularity", slate_size=K, n_candidates=C, factors=4),
        N_ITEMS,
        N_USERS,
        seed=1,
    )
    batch = policy.serve(np.arange(10), Randomness.from_seed(0))
    assert batch.model_version == -1
    assert (batch.source == SOURCE_CODE["bootstrap"]).all()
    np.testing.assert_array_equal(batch.propensity, 1.0)  # greedy over the (empty) popularity
    np.testing.assert_array_equal(batch.prefix_propensity, 1.0)
    assert batch.propensity_method == EXACT
    assert (np.diff(np.sort(batch.items, axis=1), axis=1) != 0).all()


def test_als_scores_do_not_depend_on_batch_size(world, clicks):
    """Regression: implicit.cpu.topk scores queries in internal blocks of 100 and a 1-query
    block takes a different BLAS path (float32 scores 1 ulp off), so a request served alone or
    as row 100 of a 101-request batch used to log different scores (and could flip near-ties)."""
    inter, _ = clicks
    policy = _build(_tiny(CONFIG_DIR / "greedy.yaml"), world)
    policy.deploy(policy.fit(inter, version=0))
    filler = np.random.default_rng(9).integers(0, N_USERS, 100)
    mismatched = []
    for user in range(N_USERS):
        if user == 1:  # cold user: popularity fallback, not ALS
            continue
        reference = policy.serve(np.array([user, user]), Randomness.from_seed(0))
        for batch_users in (np.array([user]), np.append(filler, user)):  # sizes 1 and 101
            batch = policy.serve(batch_users, Randomness.from_seed(0))
            np.testing.assert_array_equal(batch.candidates[-1], reference.candidates[0])
            if not np.array_equal(batch.candidate_scores[-1], reference.candidate_scores[0]):
                mismatched.append((user, batch_users.shape[0]))
    assert not mismatched, f"(user, batch size) with different logged scores: {mismatched}"


def test_logged_score_is_the_retrieval_score_of_a_shown_candidate(world, clicks):
    inter, _ = clicks
    policy = _build(_tiny(CONFIG_DIR / "epsilon_greedy.yaml", epsilon=0.5), world)
    policy.deploy(policy.fit(inter, version=0))
    batch = policy.serve(np.tile(np.arange(N_USERS), 10), Randomness.from_seed(1))
    match = batch.candidates[:, :, None] == batch.items[:, None, :]
    retrieved = match.any(axis=1)
    at = np.take_along_axis(batch.candidate_scores, match.argmax(axis=1), axis=1)
    np.testing.assert_array_equal(batch.score[retrieved], at[retrieved])
    assert (~retrieved).any()  # explored items outside the candidates are scored by the model
    model = policy.model
    users = np.repeat(np.tile(np.arange(N_USERS), 10)[:, None], K, axis=1)
    expected = model.score(users[:, 0], batch.items)
    np.testing.assert_array_equal(batch.score[~retrieved], expected[~retrieved])


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"selector": "epsilon_greedy", "epsilon": 1.5}, "selector.epsilon"),
        ({"selector": "epsilon_greedy", "epsilon": -0.1}, "selector.epsilon"),
        ({"selector": "epsilon_greedy", "epsilon": float("nan")}, "selector.epsilon"),
        ({"selector": "epsilon_greedy", "epsilon_decay": 0.0}, "selector.decay"),
        ({"selector": "epsilon_greedy", "epsilon_decay": 1.5}, "selector.decay"),
        ({"selector": "epsilon_greedy", "epsilon_min": -0.1}, "selector.epsilon_min"),
        ({"selector": "epsilon_greedy", "epsilon_min": 1.1}, "selector.epsilon_min"),
        ({"selector": "softmax", "temperature": 0.0}, "selector.temperature"),
        ({"selector": "softmax", "temperature": -1.0}, "selector.temperature"),
        ({"selector": "ucb", "beta": -0.5}, "selector.beta"),
        ({"selector": "thompson", "beta": float("nan")}, "selector.beta"),
        ({"selector": "softmax", "mc_samples": 0}, "selector.mc_samples"),
        ({"selector": "thompson", "mc_samples": 2.5}, "selector.mc_samples"),
        ({"selector": "boost", "boost_slots": 0}, "selector.boost_slots"),
        ({"selector": "boost", "boost_slots": 11}, "selector.boost_slots"),
        ({"selector": "boost", "boost_quantile": 1.5}, "selector.quantile"),
        ({"selector": "boost", "boost_quantile": -0.1}, "selector.quantile"),
        ({"scorer": "linear", "bandit_regularization": 0.0}, "scorer.regularization"),
        ({"slate_size": 0}, "slate_size"),
        ({"slate_size": -2}, "slate_size"),
        ({"slate_size": 2.5}, "slate_size"),
        ({"slate_size": True}, "slate_size"),
        ({"n_candidates": 0}, "n_candidates"),
        ({"bootstrap": "oracle"}, "bootstrap"),
        ({"factors": 0}, "scorer.factors"),
        ({"iterations": 0}, "scorer.iterations"),
        ({"regularization": 0.0}, "scorer.regularization"),
        ({"alpha": -1.0}, "scorer.alpha"),
        ({"warm_start": "yes"}, "scorer.warm_start"),
        ({"training_window_rounds": 0}, "training_window_rounds"),
        ({"name": ""}, "name"),
        ({"selector": "ucb", "scorer": "popularity"}, "scorer"),
        ({"selector": "thompson", "scorer": "oracle"}, "scorer"),
        ({"selector": "softmax", "scorer": "random"}, "selector"),
        ({"intervention": "swap", "intervention_share": 2.0}, "intervention.share"),
        ({"debias": "position_ipw", "ipw_clip": 0.5}, "debias.clip"),
        ({"debias": "position_ipw", "ipw_propensity": "magic"}, "debias.propensity"),
        ({"debias": "exposure", "scorer": "popularity"}, "debias.mode"),
        ({"intervention": "shuffle", "selector": "softmax"}, "intervention.kind"),
        ({"debias": "position_unbiased", "selector": "thompson"}, "debias.mode"),
        ({"debias": "exposure", "selector": "ucb"}, "debias.mode"),
    ],
)
def test_policy_config_rejects_bad_values_naming_the_key(kwargs, key):
    """Each component validates its own keys; the message names the nested key and value."""
    with pytest.raises(ValueError, match=rf"^policy\.{key}="):
        policy_config(**kwargs)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"scorer": "foo"}, r"^policy\.scorer='foo': unknown; choose one of"),
        ({"selector": "foo"}, r"^policy\.selector='foo': unknown; choose one of"),
        ({"selector": {"_target_": "nowhere.Class"}}, r"^policy\.selector\._target_="),
        (
            {"selector": {"_target_": "policies.scorers.ALS"}},
            r"^policy\.selector: .* not a Selector",
        ),
        (
            {"selector": {"_target_": "policies.selection.Greedy", "epsilon": 0.1}},
            r"^policy\.selector\.epsilon: unknown key for Greedy",
        ),
        (
            {"selector": {"_target_": "policies.selection.Greedy", "slate_size": 3}},
            r"^policy\.selector\.slate_size: set by the policy",
        ),
        ({"epsilon": 0.1}, r"^policy\.epsilon=0\.1: moved to policy\.selector\.epsilon"),
        ({"foo": 1}, r"^policy\.foo=1: unknown key"),
    ],
)
def test_policy_nodes_with_unknown_components_or_keys_are_named(raw, message):
    """Unknown component names, unimportable targets, keys a component lacks and the flat keys
    of the old config each fail with one line naming the config path."""
    node = {"name": "p", "scorer": "als", "selector": "greedy", "slate_size": K, **raw}
    with pytest.raises(ValueError, match=message):
        parse_policy(node)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"epsilon": 0.0},
        {"epsilon": 1.0},
        {"epsilon_decay": 1.0},
        {"epsilon_min": 0.0},
        {"epsilon_min": 1.0},
        {"beta": 0.0},
        {"boost_slots": 1},
        {"boost_slots": 5},
        {"boost_quantile": 0.0},
        {"boost_quantile": 1.0},
        {"mc_samples": 1},
        {"selector": "ucb", "scorer": "linear"},
        {"selector": "thompson", "scorer": "als"},
    ],
)
def test_policy_config_accepts_boundaries(kwargs):
    selector = {"epsilon": "epsilon_greedy", "epsilon_decay": "epsilon_greedy"}
    selector |= {"epsilon_min": "epsilon_greedy", "beta": "ucb", "mc_samples": "softmax"}
    selector |= {"boost_slots": "boost", "boost_quantile": "boost"}
    extra = {}
    for key in kwargs:
        if key in selector:
            extra["selector"] = selector[key]
    policy_config(slate_size=5, n_candidates=5, training_window_rounds=3, **{**extra, **kwargs})


def test_n_candidates_below_slate_size_is_raised_to_the_slate_size():
    """Retrieval feeds the slate: a smaller n_candidates is raised to slate_size, so slates are
    never short or padded."""
    config = policy_config(name="p", scorer="popularity", slate_size=4, n_candidates=2)
    policy = build_policy(config, N_ITEMS, N_USERS, seed=0)
    policy.deploy(policy.fit(Interactions.empty(N_USERS, N_ITEMS), version=0))
    batch = policy.serve(np.arange(5), Randomness.from_seed(0))
    assert batch.items.shape == (5, 4)
    assert batch.candidates.shape[1] == 4
    np.testing.assert_array_equal(batch.items, batch.candidates[:, :4])
    assert (np.diff(np.sort(batch.items, axis=1), axis=1) != 0).all()


@pytest.mark.parametrize("selector", ["greedy", "epsilon_greedy", "softmax", "boost"])
def test_random_scorer_with_ranking_selector_is_rejected(selector):
    """The random scorer ranks nothing, so only the uniform selector can draw from it."""
    with pytest.raises(ValueError, match=r"^policy\.selector=.*use policy/selector=uniform"):
        policy_config(name="r", scorer="random", selector=selector, slate_size=K)


def test_build_policy_rejects_slate_larger_than_catalog():
    with pytest.raises(ValueError, match=r"^policy\.slate_size="):
        build_policy(policy_config(slate_size=30, n_candidates=30), N_ITEMS, N_USERS, seed=0)
    with pytest.raises(ValueError, match=r"^policy\.slate_size="):  # nothing left to explore
        build_policy(
            policy_config(selector="epsilon_greedy", slate_size=13, n_candidates=13),
            N_ITEMS,
            N_USERS,
            seed=0,
        )
    build_policy(policy_config(slate_size=N_ITEMS, n_candidates=N_ITEMS), N_ITEMS, N_USERS, seed=0)


def test_oracle_needs_the_truth_callback():
    with pytest.raises(ValueError, match="oracle"):
        build_policy(policy_config(name="o", scorer="oracle"), N_ITEMS, N_USERS, seed=0)


def test_linear_scorer_needs_item_content():
    with pytest.raises(ValueError, match="linear"):
        build_policy(
            policy_config(name="l", scorer="linear", selector="ucb", slate_size=K, n_candidates=C),
            N_ITEMS,
            N_USERS,
            seed=0,
        )
