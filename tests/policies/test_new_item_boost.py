"""New-item exploration (``policy.selector=new_item_boost``) and the availability mask of every
exploring selector.

The exact propensities of the new-item boost are checked against enumerations in the selector
contract (``test_selection_contract.py``); here: which items may fill the reserved slots (new,
available, not yet evidenced), the evidence rules that end an item's exploration, the pools'
respect of the catalog (``SelectionContext.unavailable``), and the config's validation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.catalog import ItemMetadata
from experiments.config import parse_policy
from policies.exclusion import PAD
from policies.exposure_boost import (
    ExposureBoost,
    NewItemBoost,
    ctr_interval_width,
    new_items,
    under_exposed,
)
from policies.randomness import Randomness
from policies.selection import EpsilonGreedy, SelectionContext, UniformRandom


@dataclass(frozen=True)
class SeenModel:
    """What the new-item boost reads from a deployed model: its click matrix."""

    seen: sp.csr_matrix


def _metadata(arrival_t: np.ndarray, depart_t: np.ndarray | None = None) -> ItemMetadata:
    n = arrival_t.shape[0]
    return ItemMetadata(
        content=np.zeros((n, 2), dtype=np.float32),
        creator_id=np.zeros(n, dtype=np.int32),
        price=np.ones(n, dtype=np.float32),
        arrival_t=np.asarray(arrival_t, dtype=np.float64),
        depart_t=depart_t,
    )


def _padded(rows: list[set[int]]) -> np.ndarray:
    width = max((len(r) for r in rows), default=0)
    return np.array(
        [sorted(r) + [int(PAD)] * (width - len(r)) for r in rows], dtype=np.int64
    ).reshape(len(rows), width)


def _context(
    candidates: list[list[int]],
    excluded: list[set[int]],
    n_items: int,
    impressions: np.ndarray,
    items: ItemMetadata | None,
    unavailable: set[int] = frozenset(),
    model=None,
) -> SelectionContext:
    """Requests as the pipeline builds them: the unavailable items are in every filter row."""
    gone = np.array(sorted(unavailable), dtype=np.int64)
    cands = np.array(candidates, dtype=np.int64)
    return SelectionContext(
        user_ids=np.arange(cands.shape[0]),
        candidates=cands,
        scores=np.broadcast_to(-np.arange(cands.shape[1], dtype=float), cands.shape).copy(),
        excluded=_padded([e | set(unavailable) for e in excluded]),
        n_items=n_items,
        model=model,
        model_version=1,
        item_impressions=np.asarray(impressions, dtype=np.float64),
        items=items,
        unavailable=gone if gone.size else None,
    )


def _repeat(ctx: SelectionContext, n: int) -> SelectionContext:
    return SelectionContext(
        user_ids=np.repeat(ctx.user_ids, n),
        candidates=np.repeat(ctx.candidates, n, axis=0),
        scores=np.repeat(ctx.scores, n, axis=0),
        excluded=np.repeat(ctx.excluded, n, axis=0),
        n_items=ctx.n_items,
        model=ctx.model,
        model_version=ctx.model_version,
        item_impressions=ctx.item_impressions,
        items=ctx.items,
        unavailable=ctx.unavailable,
    )


# A 14-item catalog: items 0-5 were there at the start; 6-13 arrived during the run. Item 7
# left again, item 12 has not arrived yet (both unavailable); item 9 has 50 impressions (enough
# evidence at until_impressions=50), item 10 has 49.
N = 14
ARRIVAL = np.array([0, 0, 0, 0, 0, 0, 5, 6, 7, 8, 9, 10, 300, 11], dtype=float)
IMPRESSIONS = np.array([90, 0, 3, 40, 7, 0, 2, 0, 10, 50, 49, 0, 0, 20], dtype=float)
UNAVAILABLE = {7, 12}
EXPECTED_NEW = [6, 8, 10, 11, 13]  # new, available, fewer than 50 impressions


def test_new_items_are_arrived_available_and_short_of_evidence():
    pool = new_items(_metadata(ARRIVAL), IMPRESSIONS, np.array(sorted(UNAVAILABLE)), 50)
    assert pool.tolist() == EXPECTED_NEW
    # a lower bar takes out items 8 (10 impressions) and 13 (20)
    pool = new_items(_metadata(ARRIVAL), IMPRESSIONS, np.array(sorted(UNAVAILABLE)), 10)
    assert pool.tolist() == [6, 11]
    # no evidence rule on impressions: item 9 stays
    pool = new_items(_metadata(ARRIVAL), IMPRESSIONS, None, None, 1e-9, np.zeros(N))
    assert pool.tolist() == [6, 7, 8, 9, 10, 11, 12, 13]


def test_reserved_slots_show_only_available_new_unevidenced_items():
    """Over many draws the reserved slots show exactly the new, available items with fewer
    than ``until_impressions`` impressions, minus the request's filtered items and greedy head,
    each equally often; the head is greedy."""
    sel = NewItemBoost(4, boost_slots=2, until_impressions=50)
    cands = [[0, 6, 3, 8, 2, 1], [4, 3, 13, 10, 9, 0]]
    excluded = [{11}, set()]
    ctx = _context(cands, excluded, N, IMPRESSIONS, _metadata(ARRIVAL), UNAVAILABLE)
    n = 6000
    out = sel.select(_repeat(ctx, n), Randomness.from_seed(3))
    for r, (cand, ex) in enumerate(zip(cands, excluded, strict=True)):
        rows = out.items[r * n : (r + 1) * n]
        np.testing.assert_array_equal(rows[:, :2], np.tile(cand[:2], (n, 1)))
        pool = sorted(set(EXPECTED_NEW) - ex - set(cand[:2]))
        shown, counts = np.unique(rows[:, 2:], return_counts=True)
        assert shown.tolist() == pool
        expected = n * 2 / len(pool)
        assert (np.abs(counts - expected) < 5 * math.sqrt(expected)).all(), counts
        np.testing.assert_array_equal(out.propensity[r * n : (r + 1) * n, 2:], 1 / len(pool))
        assert out.explored[r * n : (r + 1) * n, 2:].all()


def test_an_item_with_enough_impressions_is_never_boosted():
    """Item 9 has 50 impressions: with until_impressions=50 it never fills a reserved slot;
    lowering its count to 49 (or raising the bar) makes it eligible again."""
    cands = [[0, 1, 2, 3, 4, 5]]
    meta = _metadata(ARRIVAL)
    sel = NewItemBoost(3, boost_slots=2, until_impressions=50)
    ctx = _repeat(_context(cands, [set()], N, IMPRESSIONS, meta, UNAVAILABLE), 3000)
    assert 9 not in sel.select(ctx, Randomness.from_seed(1)).items
    fewer = IMPRESSIONS.copy()
    fewer[9] = 49
    ctx = _repeat(_context(cands, [set()], N, fewer, meta, UNAVAILABLE), 3000)
    assert 9 in sel.select(ctx, Randomness.from_seed(1)).items
    higher = NewItemBoost(3, boost_slots=2, until_impressions=51)
    ctx = _repeat(_context(cands, [set()], N, IMPRESSIONS, meta, UNAVAILABLE), 3000)
    assert 9 in higher.select(ctx, Randomness.from_seed(1)).items


def test_without_new_items_requests_are_served_greedily():
    """No item arrived during the run (or every new one has evidence): the slate is the top-K
    with probability 1, exactly as the under-exposed boost does for a small pool."""
    sel = NewItemBoost(3, boost_slots=2, until_impressions=5)
    cands = [[3, 0, 4, 2, 1], [2, 4, 0, 5, 3]]
    for meta, imp in [
        (_metadata(np.zeros(6)), np.zeros(6)),  # no arrivals
        (_metadata(np.array([0, 0, 0, 1.0, 2.0, 3.0])), np.array([0, 0, 0, 5, 9, 6.0])),
    ]:
        out = sel.select(_context(cands, [set(), set()], 6, imp, meta), Randomness.from_seed(0))
        np.testing.assert_array_equal(out.items, np.array(cands)[:, :3])
        assert (out.propensity == 1).all() and (out.prefix_propensity == 1).all()
        assert not out.explored.any()
        np.testing.assert_array_equal(out.candidate_show_probability, [[1, 1, 1, 0, 0]] * 2)


def test_ctr_interval_width_matches_the_closed_form_without_clicks():
    """With no click the posterior is Beta(1, 1 + n), whose CDF is ``1 − (1 − x)^(n+1)``: the
    q-quantile is ``1 − (1 − q)^(1/(n+1))``. With clicks, against sampled quantiles."""
    n = np.array([0, 1, 5, 40, 1000], dtype=float)
    q = lambda p: 1 - (1 - p) ** (1 / (n + 1))  # noqa: E731
    np.testing.assert_allclose(ctr_interval_width(np.zeros(5), n), q(0.975) - q(0.025), rtol=1e-9)
    rng = np.random.default_rng(0)
    for c, m in [(3, 10), (20, 100), (1, 400)]:
        draws = rng.beta(1 + c, 1 + m - c, 400_000)
        want = np.quantile(draws, 0.975) - np.quantile(draws, 0.025)
        got = ctr_interval_width(np.array([c], float), np.array([m], float))[0]
        assert abs(got - want) < 0.004, (c, m, got, want)


def test_interval_rule_ends_exploration_of_items_whose_ctr_is_known():
    """With ``max_interval_width`` the pool keeps a new item only while its CTR interval (clicks
    = column sums of the deployed model's click matrix) is at least that wide."""
    arrival = np.array([0, 0, 0, 1, 2, 3, 4, 5], dtype=float)
    impressions = np.array([50, 50, 50, 2, 400, 400, 30, 0], dtype=float)
    # item 4: 200 clicks of 400 (width ~0.1); item 5: 4 of 400 (~0.02); item 6: 3 of 30 (~0.22)
    users = np.concatenate([np.arange(200), np.arange(4), np.arange(3)]) % 50
    items = np.concatenate([np.full(200, 4), np.full(4, 5), np.full(3, 6)])
    seen = sp.csr_matrix((np.ones(users.size, np.float32), (users, items)), shape=(50, 8))
    widths = ctr_interval_width(np.array([0, 200, 4, 3, 0.0]), impressions[[3, 4, 5, 6, 7]])
    assert widths[1] < 0.12 and widths[2] < 0.05 and widths[3] > 0.15  # the design above
    meta = _metadata(arrival)
    sel = NewItemBoost(2, boost_slots=1, until_impressions=None, max_interval_width=0.12)
    ctx = _context([[0, 1, 2]], [set()], 8, impressions, meta, model=SeenModel(seen))
    assert sel.pool(ctx).tolist() == [3, 6, 7]
    both = NewItemBoost(2, boost_slots=1, until_impressions=10, max_interval_width=0.12)
    assert both.pool(ctx).tolist() == [3, 7]  # either rule ends exploration
    shown = sel.select(_repeat(ctx, 2000), Randomness.from_seed(2)).items[:, 1]
    assert set(shown.tolist()) == {3, 6, 7}


def test_under_exposed_never_picks_unarrived_or_departed_items():
    """Items not in the catalog at hour t have no impressions (unarrived) or few (departed);
    the under-exposed pool ignores them, and its quantile is over the available items only."""
    rng = np.random.default_rng(4)
    n = 40
    arrival = np.where(np.arange(n) < 25, 0.0, rng.uniform(1, 100, n))
    depart = np.where(rng.random(n) < 0.2, rng.uniform(20, 200, n), np.inf)
    meta = _metadata(arrival, depart)
    t = 60.0
    available = meta.available(t)
    impressions = np.where(arrival < t, rng.integers(0, 30, n), 0).astype(float)
    gone = np.flatnonzero(~available)
    assert (impressions[gone] == 0).any() and (arrival[gone] > t).any()
    for q in (0.0, 0.2, 0.5, 1.0):
        pool = under_exposed(impressions, q, gone)
        values = sorted(impressions[available])
        pos = q * (len(values) - 1)
        lo, hi = math.floor(pos), math.ceil(pos)
        threshold = values[lo] + (pos - lo) * (values[hi] - values[lo])
        want = [i for i in range(n) if available[i] and impressions[i] <= threshold]
        assert pool.tolist() == want
    cands = [np.flatnonzero(available)[:6].tolist()]
    ctx = _repeat(_context(cands, [set()], n, impressions, meta, set(gone.tolist())), 2000)
    shown = ExposureBoost(4, 3, 0.5).select(ctx, Randomness.from_seed(5)).items
    assert not np.isin(shown, gone).any()


# --------------------------------------------------------------------------------------------
# Every exploring selector respects the availability mask (property)
# --------------------------------------------------------------------------------------------


@st.composite
def living_batches(draw):
    """A catalog with random arrivals, an availability mask, per-request clicked sets and
    candidate rankings of the eligible items, built as the pipeline builds them."""
    k = draw(st.integers(1, 4))
    n_items = draw(st.integers(2 * k + 1, 30))
    unavailable = draw(st.sets(st.integers(0, n_items - 1), max_size=n_items - 2 * k))
    arrival = np.array(
        draw(st.lists(st.sampled_from([0.0, 2.0, 9.0]), min_size=n_items, max_size=n_items))
    )
    impressions = np.array(
        draw(st.lists(st.integers(0, 8), min_size=n_items, max_size=n_items)), float
    )
    available = sorted(set(range(n_items)) - unavailable)
    n_req = draw(st.integers(1, 5))
    candidates, clicked = [], []
    c = draw(st.integers(k, 2 * k))
    for _ in range(n_req):
        ex = draw(st.sets(st.sampled_from(available), max_size=len(available) - 2 * k))
        eligible = [i for i in available if i not in ex]
        clicked.append(ex)
        candidates.append(draw(st.permutations(eligible))[:c])
    seed = draw(st.integers(0, 2**32 - 1))
    return k, n_items, unavailable, arrival, impressions, candidates, clicked, seed


SELECTOR_KINDS = ("epsilon_greedy", "uniform", "boost", "new_item_boost")


def _selector(kind: str, k: int, slots: int):
    return {
        "epsilon_greedy": EpsilonGreedy(k, 0.7),
        "uniform": UniformRandom(k),
        "boost": ExposureBoost(k, slots, 0.6),
        "new_item_boost": NewItemBoost(k, slots, until_impressions=5),
    }[kind]


@settings(max_examples=60, deadline=None)
@given(living_batches(), st.sampled_from(SELECTOR_KINDS), st.data())
def test_exploring_selectors_never_show_unavailable_items_or_an_item_twice(case, kind, data):
    k, n_items, unavailable, arrival, impressions, candidates, clicked, seed = case
    selector = _selector(kind, k, data.draw(st.integers(1, k)))
    ctx = _context(candidates, clicked, n_items, impressions, _metadata(arrival), set(unavailable))
    out = selector.select(_repeat(ctx, 30), Randomness.from_seed(seed))
    items = out.items
    assert ((items >= 0) & (items < n_items)).all()
    assert not np.isin(items, sorted(unavailable)).any(), f"{kind} showed an unavailable item"
    assert (np.diff(np.sort(items, axis=1), axis=1) != 0).all(), f"{kind} repeated an item"
    for r, ex in enumerate(clicked):
        assert not np.isin(items[r * 30 : (r + 1) * 30], sorted(ex)).any()
    assert ((out.propensity > 0) & (out.propensity <= 1)).all()


# --------------------------------------------------------------------------------------------
# Config validation
# --------------------------------------------------------------------------------------------


def _node(**selector) -> dict:
    return {
        "name": "p",
        "scorer": "als",
        "slate_size": 5,
        "selector": {"_target_": "policies.exposure_boost.NewItemBoost", **selector},
    }


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"boost_slots": 0}, r"^policy\.selector\.boost_slots=0: "),
        ({"boost_slots": 6}, r"^policy\.selector\.boost_slots=6: "),
        ({"boost_slots": 2, "until_impressions": 0}, r"^policy\.selector\.until_impressions=0: "),
        ({"boost_slots": 2, "until_impressions": 2.5}, r"^policy\.selector\.until_impressions="),
        ({"boost_slots": 2, "until_impressions": True}, r"^policy\.selector\.until_impressions="),
        ({"boost_slots": 2, "max_interval_width": 0.0}, r"^policy\.selector\.max_interval_width="),
        ({"boost_slots": 2, "max_interval_width": 1.5}, r"^policy\.selector\.max_interval_width="),
        (
            {"boost_slots": 2, "until_impressions": None, "max_interval_width": None},
            r"^policy\.selector\.until_impressions=None: .*set one of them",
        ),
        ({"boost_slots": 2, "quantile": 0.2}, r"^policy\.selector\.quantile: unknown key"),
    ],
)
def test_new_item_boost_rejects_bad_values_naming_the_key(keys, message):
    with pytest.raises(ValueError, match=message):
        parse_policy(_node(**keys))


def test_new_item_boost_accepts_its_boundaries():
    for keys in (
        {"boost_slots": 5, "until_impressions": 1},
        {"boost_slots": 1, "until_impressions": None, "max_interval_width": 1.0},
        {"boost_slots": 2, "until_impressions": 10, "max_interval_width": 1e-3},
    ):
        parse_policy(_node(**keys))


def test_new_item_boost_needs_item_metadata():
    sel = NewItemBoost(2, 1)
    ctx = _context([[0, 1, 2]], [set()], 4, np.zeros(4), None)
    with pytest.raises(ValueError, match=r"new_item_boost.*metadata"):
        sel.select(ctx, Randomness.from_seed(0))
