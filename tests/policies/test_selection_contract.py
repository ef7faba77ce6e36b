"""The slate contract, checked the same way for every selector and every configured policy.

A "server" maps (request contexts, uniform blocks) to slates. For bare selectors a context is a
hand-built (candidate ranking, excluded set); for serving policies it is a user of a tiny world
whose log the policy was fitted on. Every server must:

* show K distinct in-catalog items, never an already-clicked one (unless the filter had to be
  relaxed), with propensities in (0, 1];
* log, for each (slot, item), the *marginal* probability of that item in that slot: checked by
  Monte Carlo against empirical frequencies, and the support of each slot must sum to 1;
* be a pure function of (context, uniforms): same uniforms → same slates, and splitting or
  reordering a batch changes nothing.

EpsilonGreedy is also checked exactly against a brute-force enumeration of its randomness.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from agents.streams import Streams
from agents.world import WorldConfig, build_world
from policies import Interactions, PolicyConfig, build_policy
from policies.exclusion import PAD
from policies.models import SOURCE_CODE
from policies.selection import EpsilonGreedy, Greedy, UniformRandom

K, C = 3, 6
N_USERS, N_ITEMS = 30, 25
MC_DRAWS = 20_000
Z = 5.0  # binomial standard errors allowed in the Monte Carlo comparison

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs" / "policy"
POLICY_FILES = sorted(p for p in CONFIG_DIR.glob("*.yaml") if not p.name.startswith("_"))


def load_policy_config(path: Path, **overrides) -> PolicyConfig:
    """``_base.yaml`` then the file itself (hydra's ``defaults: [_base, _self_]``)."""
    base = OmegaConf.load(CONFIG_DIR / "_base.yaml")
    own = OmegaConf.load(path)
    own.pop("defaults", None)
    merged = OmegaConf.to_container(OmegaConf.merge(base, own), resolve=True)
    merged.update(overrides)
    known = {f.name for f in fields(PolicyConfig)}
    return PolicyConfig(**{k: v for k, v in merged.items() if k in known})


def test_policy_configs_are_found():
    names = {p.stem for p in POLICY_FILES}
    assert {"greedy", "epsilon_greedy", "popularity", "random", "oracle"} <= names


# --------------------------------------------------------------------------------------------
# Servers
# --------------------------------------------------------------------------------------------


@dataclass
class Server:
    name: str
    n_items: int
    k: int
    clicked: list[set[int]]  # per context: items the request must not show ...
    relaxed: list[bool]  # ... unless the filter is relaxed for it
    serve: Callable[[np.ndarray, np.ndarray], dict[str, np.ndarray]]  # (ctx idx, uniforms)

    @property
    def n_contexts(self) -> int:
        return len(self.clicked)

    def draw(self, ctx: np.ndarray, uniforms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out = self.serve(ctx, uniforms)
        return out["items"], out["propensity"]


def _padded(sets: list[set[int]]) -> np.ndarray:
    width = max(len(s) for s in sets)
    return np.array([sorted(s) + [int(PAD)] * (width - len(s)) for s in sets], dtype=np.int64)


def selector_server(name: str, selector) -> Server:
    """Three hand-built contexts on a 25-item catalog: no exclusions, a few, and so many that
    only 2K items remain eligible (the exploration pool then has exactly K items)."""
    rng = np.random.default_rng(123)
    excluded = [set(), {0, 5, 7, 11}, set(rng.choice(N_ITEMS, N_ITEMS - 2 * K, replace=False))]
    candidates = np.array(
        [rng.permutation(sorted(set(range(N_ITEMS)) - ex))[:C] for ex in excluded], dtype=np.int64
    )
    padded = _padded(excluded)

    def serve(ctx, uniforms):
        sel = selector.select(candidates[ctx], padded[ctx], N_ITEMS, uniforms)
        return {"items": sel.items, "propensity": sel.propensity, "explored": sel.explored}

    return Server(name, N_ITEMS, K, excluded, [False] * len(excluded), serve)


@pytest.fixture(scope="module")
def world():
    return build_world(WorldConfig(n_users=N_USERS, n_items=N_ITEMS, dim=4, n_topics=3), Streams(7))


# Contexts of the policy servers: a user with a few clicks, a user with none (cold for ALS),
# and a user who clicked all but 2 items (a K-slate cannot avoid clicked items: relaxed).
POLICY_USERS = np.array([0, 1, 2])


@pytest.fixture(scope="module")
def clicks() -> tuple[Interactions, list[set[int]]]:
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
    inter = Interactions.from_pairs(np.array(users), np.array(items), N_USERS, N_ITEMS)
    return inter, per_user


def _tiny(path: Path, **overrides) -> PolicyConfig:
    return load_policy_config(
        path, slate_size=K, n_candidates=C, factors=4, iterations=3, **overrides
    )


def policy_server(path: Path, world, clicks) -> Server:
    inter, per_user = clicks
    policy = build_policy(_tiny(path), N_ITEMS, N_USERS, seed=5, relevance=world.relevance_matrix)
    policy.deploy(policy.fit(inter, version=3))
    array_fields = [
        "items",
        "propensity",
        "score",
        "source",
        "candidates",
        "candidate_scores",
        "candidate_shown",
    ]

    def serve(ctx, uniforms):
        batch = policy.serve(POLICY_USERS[ctx], uniforms)
        assert batch.model_version == 3
        return {f: getattr(batch, f) for f in array_fields}

    clicked = [per_user[u] for u in POLICY_USERS]
    relaxed = [N_ITEMS - len(s) < K for s in clicked]
    assert relaxed == [False, False, True]
    return Server(f"policy:{path.stem}", N_ITEMS, K, clicked, relaxed, serve)


SELECTORS = {
    "greedy": Greedy(K),
    "epsilon_greedy_0": EpsilonGreedy(K, 0.0),
    "epsilon_greedy_0.1": EpsilonGreedy(K, 0.1),
    "epsilon_greedy_0.5": EpsilonGreedy(K, 0.5),
    "epsilon_greedy_1": EpsilonGreedy(K, 1.0),
    "uniform": UniformRandom(K),
}
SERVER_IDS = [f"selector:{s}" for s in SELECTORS] + [f"policy:{p.stem}" for p in POLICY_FILES]


@pytest.fixture(scope="module", params=SERVER_IDS)
def server(request, world, clicks) -> Server:
    kind, name = request.param.split(":")
    if kind == "selector":
        return selector_server(request.param, SELECTORS[name])
    return policy_server(CONFIG_DIR / f"{name}.yaml", world, clicks)


# --------------------------------------------------------------------------------------------
# The contract
# --------------------------------------------------------------------------------------------


def test_slates_are_valid(server: Server):
    rng = np.random.default_rng(1)
    n = 3000
    ctx = rng.integers(0, server.n_contexts, n)
    items, prop = server.draw(ctx, rng.random((n, 2 * server.k)))
    assert items.shape == (n, server.k) and prop.shape == (n, server.k)
    assert np.issubdtype(items.dtype, np.integer)
    assert ((items >= 0) & (items < server.n_items)).all()
    srt = np.sort(items, axis=1)
    assert (np.diff(srt, axis=1) != 0).all(), "a slate shows the same item twice"
    assert np.isfinite(prop).all()
    assert ((prop > 0) & (prop <= 1)).all(), f"propensities outside (0, 1]: {np.unique(prop)}"
    for c in range(server.n_contexts):
        rows = items[ctx == c]
        shown_clicked = np.isin(rows, sorted(server.clicked[c]))
        if server.relaxed[c]:
            # fewer than K unclicked items exist: every slate must contain a clicked item
            assert shown_clicked.any(axis=1).all()
        else:
            assert not shown_clicked.any(), f"context {c} was shown an already-clicked item"


def test_empty_batch(server: Server):
    items, prop = server.draw(np.array([], dtype=np.int64), np.empty((0, 2 * server.k)))
    assert items.shape == (0, server.k) and prop.shape == (0, server.k)


def _check_marginals(items, prop, label):
    """Empirical (slot, item) frequencies vs the logged propensity for one fixed context."""
    n, k = items.shape
    for slot in range(k):
        shown, inverse, counts = np.unique(items[:, slot], return_inverse=True, return_counts=True)
        logged = np.empty(shown.shape[0])
        for i in range(shown.shape[0]):
            values = prop[inverse == i, slot]
            assert values.max() - values.min() <= 1e-12, (
                f"{label} slot {slot} item {shown[i]}: propensity varies within one context"
            )
            logged[i] = values[0]
        freq = counts / n
        se = np.sqrt(logged * (1.0 - logged) / n)
        bad = np.abs(freq - logged) > Z * se + 1e-9
        assert not bad.any(), (
            f"{label} slot {slot}: items {shown[bad]} freq {freq[bad]} vs logged {logged[bad]}"
        )
        # every item that can appear did appear (all have p*n >> 1 here): support sums to 1
        assert abs(logged.sum() - 1.0) <= 1e-9, (
            f"{label} slot {slot}: support sums to {logged.sum()}"
        )


def test_logged_propensity_is_the_marginal_slot_probability(server: Server):
    rng = np.random.default_rng(2)
    for c in range(server.n_contexts):  # one fixed request context, many uniform blocks
        ctx = np.full(MC_DRAWS, c)
        items, prop = server.draw(ctx, rng.random((MC_DRAWS, 2 * server.k)))
        _check_marginals(items, prop, f"{server.name} context {c}")


def _assert_same(a: dict, b: dict):
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_pure_function_of_context_and_uniforms(server: Server):
    rng = np.random.default_rng(3)
    n = 41
    ctx = rng.integers(0, server.n_contexts, n)
    uniforms = rng.random((n, 2 * server.k))
    whole = server.serve(ctx, uniforms.copy())
    _assert_same(whole, server.serve(ctx, uniforms.copy()))  # same uniforms → same slates

    cut = 17  # batch independence: two chunks with their uniform rows == one batch
    head, tail = server.serve(ctx[:cut], uniforms[:cut]), server.serve(ctx[cut:], uniforms[cut:])
    _assert_same(whole, {key: np.concatenate([head[key], tail[key]]) for key in whole})

    perm = rng.permutation(n)  # and the order of requests within a batch does not matter
    permuted = server.serve(ctx[perm], uniforms[perm])
    _assert_same({key: v[perm] for key, v in whole.items()}, permuted)


def test_one_request_at_a_time_gives_the_same_result(server: Server):
    rng = np.random.default_rng(8)
    n = 12
    ctx = rng.integers(0, server.n_contexts, n)
    uniforms = rng.random((n, 2 * server.k))
    whole = server.serve(ctx, uniforms)
    single = [server.serve(ctx[i : i + 1], uniforms[i : i + 1]) for i in range(n)]
    _assert_same(whole, {key: np.concatenate([s[key] for s in single]) for key in whole})


def test_als_scores_do_not_depend_on_batch_size(world, clicks):
    """Regression: implicit.cpu.topk scores queries in internal blocks of 100 and a 1-query
    block takes a different BLAS path (float32 scores 1 ulp off), so a request served alone or
    as row 100 of a 101-request batch used to log different scores (and could flip near-ties)."""
    inter, _ = clicks
    policy = build_policy(
        _tiny(CONFIG_DIR / "greedy.yaml"),
        N_ITEMS,
        N_USERS,
        seed=5,
        relevance=world.relevance_matrix,
    )
    policy.deploy(policy.fit(inter, version=0))
    rng = np.random.default_rng(9)
    filler = rng.integers(0, N_USERS, 100)
    mismatched = []
    for user in range(N_USERS):
        if user in (1,):  # cold user: popularity fallback, not ALS
            continue
        reference = policy.serve(np.array([user, user]), rng.random((2, 2 * K)))
        for batch_users in (np.array([user]), np.append(filler, user)):  # sizes 1 and 101
            batch = policy.serve(batch_users, rng.random((batch_users.shape[0], 2 * K)))
            np.testing.assert_array_equal(batch.candidates[-1], reference.candidates[0])
            if not np.array_equal(batch.candidate_scores[-1], reference.candidate_scores[0]):
                mismatched.append((user, batch_users.shape[0]))
    assert not mismatched, f"(user, batch size) with different logged scores: {mismatched}"


def test_different_uniforms_give_different_slates_unless_greedy(server: Server):
    rng = np.random.default_rng(4)
    ctx = np.zeros(200, dtype=np.int64)
    items, _ = server.draw(ctx, rng.random((200, 2 * server.k)))
    n_distinct = len({tuple(r) for r in items})
    deterministic = server.name.endswith(
        ("selector:greedy", "epsilon_greedy_0", ":greedy", ":popularity", ":oracle")
    )
    assert (n_distinct == 1) == deterministic, f"{server.name}: {n_distinct} distinct slates"


# --------------------------------------------------------------------------------------------
# EpsilonGreedy against brute-force enumeration
# --------------------------------------------------------------------------------------------


def exact_epsilon_greedy_marginals(greedy, pool, eps) -> dict[tuple[int, int], float]:
    """P(item in slot) by enumerating every explore/exploit pattern and every ordered draw of
    distinct pool items for the explored slots (each equally likely)."""
    k = len(greedy)
    out: dict[tuple[int, int], float] = {}
    for pattern in itertools.product((False, True), repeat=k):
        m = sum(pattern)
        p_pattern = eps**m * (1.0 - eps) ** (k - m)
        if p_pattern == 0.0:
            continue
        explored_slots = [s for s in range(k) if pattern[s]]
        draws = list(itertools.permutations(pool, m))
        for draw in draws:
            p = p_pattern / len(draws)
            slate = list(greedy)
            for s, item in zip(explored_slots, draw, strict=True):
                slate[s] = item
            for s, item in enumerate(slate):
                out[(s, item)] = out.get((s, item), 0.0) + p
    return out


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.5, 1.0])
@pytest.mark.parametrize("k", [1, 2, 3])
def test_epsilon_greedy_propensity_equals_bruteforce(eps, k):
    n_items = 9
    excluded = {1, 6}
    ranking = [5, 0, 3, 8, 2, 4, 7]  # the eligible items, best first
    greedy, pool = ranking[:k], ranking[k:]
    exact = exact_epsilon_greedy_marginals(greedy, pool, eps)
    for slot in range(k):  # sanity of the enumeration itself
        assert math.isclose(sum(p for (s, _), p in exact.items() if s == slot), 1.0)

    rng = np.random.default_rng(11)
    n = 4000
    sel = EpsilonGreedy(k, eps).select(
        np.tile(np.array(ranking[:C]), (n, 1)),
        np.tile(_padded([excluded]), (n, 1)),
        n_items,
        rng.random((n, 2 * k)),
    )
    for row in range(n):
        for slot in range(k):
            item = int(sel.items[row, slot])
            assert (slot, item) in exact, f"item {item} cannot be in slot {slot}"
            assert abs(sel.propensity[row, slot] - exact[(slot, item)]) <= 1e-12
            assert bool(sel.explored[row, slot]) == (item != greedy[slot])
    # every (slot, item) with positive probability was produced
    produced = {(s, int(sel.items[r, s])) for r in range(n) for s in range(k)}
    assert produced == {key for key, p in exact.items() if p > 0}


@st.composite
def epsilon_contexts(draw):
    """A batch of heterogeneous contexts sharing n_items and K."""
    k = draw(st.integers(1, 3))
    n_items = draw(st.integers(2 * k, 9))
    eps = draw(st.sampled_from([0.0, 0.1, 0.5, 1.0]) | st.floats(0.0, 1.0))
    contexts = []
    for _ in range(draw(st.integers(1, 4))):
        ex = draw(st.sets(st.integers(0, n_items - 1), max_size=n_items - 2 * k))
        eligible = sorted(set(range(n_items)) - ex)
        order = draw(st.permutations(eligible))
        n_cand = draw(st.integers(k, len(eligible)))
        contexts.append((ex, list(order[:n_cand])))
    seed = draw(st.integers(0, 2**32 - 1))
    return k, n_items, eps, contexts, seed


@settings(max_examples=60, deadline=None)
@given(epsilon_contexts())
def test_epsilon_greedy_bruteforce_property(case):
    k, n_items, eps, contexts, seed = case
    n_cand = min(len(c) for _, c in contexts)
    reps = 30
    idx = np.repeat(np.arange(len(contexts)), reps)
    rng = np.random.default_rng(seed)
    rng.shuffle(idx)
    cand = np.array([c[:n_cand] for _, c in contexts], dtype=np.int64)[idx]
    excl = _padded([ex for ex, _ in contexts])[idx]
    sel = EpsilonGreedy(k, eps).select(cand, excl, n_items, rng.random((idx.shape[0], 2 * k)))
    exacts = []
    for ex, ranking in contexts:
        pool = sorted(set(range(n_items)) - ex - set(ranking[:k]))
        exacts.append(exact_epsilon_greedy_marginals(ranking[:k], pool, eps))
    for row, c in enumerate(idx):
        assert len(set(sel.items[row].tolist())) == k
        for slot in range(k):
            key = (slot, int(sel.items[row, slot]))
            assert exacts[c].get(key, 0.0) > 0, f"context {c}: impossible (slot, item) {key}"
            assert abs(sel.propensity[row, slot] - exacts[c][key]) <= 1e-12


@settings(max_examples=60, deadline=None)
@given(epsilon_contexts())
def test_uniform_random_propensity_is_one_over_eligible(case):
    k, n_items, _, contexts, seed = case
    rng = np.random.default_rng(seed)
    idx = np.repeat(np.arange(len(contexts)), 20)
    excl = _padded([ex for ex, _ in contexts])[idx]
    sel = UniformRandom(k).select(
        np.empty((idx.shape[0], 0), dtype=np.int64),
        excl,
        n_items,
        rng.random((idx.shape[0], 2 * k)),
    )
    for row, c in enumerate(idx):
        ex = contexts[c][0]
        assert len(set(sel.items[row].tolist())) == k
        assert not set(sel.items[row].tolist()) & ex
        np.testing.assert_allclose(sel.propensity[row], 1.0 / (n_items - len(ex)), rtol=1e-15)


# --------------------------------------------------------------------------------------------
# Serving-policy lifecycle and configuration
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", POLICY_FILES, ids=[p.stem for p in POLICY_FILES])
def test_bootstrap_serves_before_deploy_then_fitted_version(path, world, clicks):
    inter, _ = clicks
    config = _tiny(path)
    policy = build_policy(config, N_ITEMS, N_USERS, seed=5, relevance=world.relevance_matrix)
    rng = np.random.default_rng(6)
    users = rng.integers(0, N_USERS, 50)
    uniforms = rng.random((50, 2 * K))

    before = policy.serve(users, uniforms)
    assert before.model_version == -1
    assert (before.source == SOURCE_CODE["bootstrap"]).all()
    assert before.items.shape == (50, K)
    if config.bootstrap == "random":  # an empty log filters nothing: uniform over the catalog
        np.testing.assert_allclose(before.propensity, 1.0 / N_ITEMS)

    model = policy.fit(inter, version=12)
    assert model.version == 12
    not_deployed = policy.serve(users, uniforms)  # fitting alone changes nothing
    assert not_deployed.model_version == -1
    np.testing.assert_array_equal(not_deployed.items, before.items)

    policy.deploy(model)
    after = policy.serve(users, uniforms)
    assert after.model_version == 12
    assert policy.model_version == 12
    assert not (after.source == SOURCE_CODE["bootstrap"]).any()
    assert after.policy_name == config.name

    policy.deploy(policy.fit(inter, version=13))
    assert policy.serve(users, uniforms).model_version == 13


def test_popularity_bootstrap_is_logged_as_bootstrap(world):
    policy = build_policy(
        PolicyConfig(name="g", bootstrap="popularity", slate_size=K, n_candidates=C, factors=4),
        N_ITEMS,
        N_USERS,
        seed=1,
    )
    batch = policy.serve(np.arange(10), np.random.default_rng(0).random((10, 2 * K)))
    assert batch.model_version == -1
    assert (batch.source == SOURCE_CODE["bootstrap"]).all()
    np.testing.assert_array_equal(batch.propensity, 1.0)  # greedy over the (empty) popularity
    assert (np.diff(np.sort(batch.items, axis=1), axis=1) != 0).all()


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"epsilon": 1.5}, "epsilon"),
        ({"epsilon": -0.1}, "epsilon"),
        ({"epsilon": float("nan")}, "epsilon"),
        ({"slate_size": 0}, "slate_size"),
        ({"slate_size": -2}, "slate_size"),
        ({"slate_size": 2.5}, "slate_size"),
        ({"slate_size": True}, "slate_size"),
        ({"n_candidates": 0}, "n_candidates"),
        ({"scorer": "foo"}, "scorer"),
        ({"selector": "softmax"}, "selector"),
        ({"bootstrap": "oracle"}, "bootstrap"),
        ({"factors": 0}, "factors"),
        ({"iterations": 0}, "iterations"),
        ({"regularization": 0.0}, "regularization"),
        ({"alpha": -1.0}, "alpha"),
        ({"warm_start": "yes"}, "warm_start"),
        ({"training_window_rounds": 0}, "training_window_rounds"),
        ({"name": ""}, "name"),
    ],
)
def test_policy_config_rejects_bad_values_naming_the_key(kwargs, key):
    with pytest.raises(ValueError, match=rf"^policy\.{key}="):
        PolicyConfig(**kwargs)


@pytest.mark.parametrize("eps", [0.0, 1.0])
def test_policy_config_accepts_boundaries(eps):
    PolicyConfig(epsilon=eps, slate_size=5, n_candidates=5, training_window_rounds=3)


def test_n_candidates_below_slate_size_is_raised_to_the_slate_size():
    """Retrieval feeds the slate: a smaller n_candidates is raised to slate_size, so slates are
    never short or padded."""
    config = PolicyConfig(name="p", scorer="popularity", slate_size=4, n_candidates=2)
    policy = build_policy(config, N_ITEMS, N_USERS, seed=0)
    policy.deploy(policy.fit(Interactions.empty(N_USERS, N_ITEMS), version=0))
    batch = policy.serve(np.arange(5), np.random.default_rng(0).random((5, 8)))
    assert batch.items.shape == (5, 4)
    assert batch.candidates.shape[1] == 4
    np.testing.assert_array_equal(batch.items, batch.candidates[:, :4])
    assert (np.diff(np.sort(batch.items, axis=1), axis=1) != 0).all()


@pytest.mark.parametrize("selector", ["greedy", "epsilon_greedy"])
def test_random_scorer_with_ranking_selector_is_rejected(selector):
    """The random scorer ranks nothing, so only the uniform selector can draw from it."""
    with pytest.raises(ValueError, match=r"^policy\.selector=.*use policy\.selector=uniform"):
        PolicyConfig(name="r", scorer="random", selector=selector, slate_size=K)


def test_build_policy_rejects_slate_larger_than_catalog():
    with pytest.raises(ValueError, match=r"^policy\.slate_size="):
        build_policy(PolicyConfig(slate_size=30, n_candidates=30), N_ITEMS, N_USERS, seed=0)
    with pytest.raises(ValueError, match=r"^policy\.slate_size="):  # nothing left to explore
        build_policy(
            PolicyConfig(selector="epsilon_greedy", slate_size=13, n_candidates=13),
            N_ITEMS,
            N_USERS,
            seed=0,
        )
    build_policy(PolicyConfig(slate_size=N_ITEMS, n_candidates=N_ITEMS), N_ITEMS, N_USERS, seed=0)


def test_oracle_needs_the_truth_callback():
    with pytest.raises(ValueError, match="oracle"):
        build_policy(PolicyConfig(name="o", scorer="oracle"), N_ITEMS, N_USERS, seed=0)
