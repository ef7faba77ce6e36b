"""What reaches a reranker at serve time: the platform's item metadata (``BuildContext.items``)
and each request's simulated hour, row-aligned with the batch (multi-objective ranking's
freshness and creator objectives read them)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from policies.components import BuildContext
from policies.policy import build_policy
from policies.randomness import Randomness
from policies.rerank import Reranker
from tests.policies import test_selection_contract as contract
from tests.policies.test_selection_contract import clicks, world  # noqa: F401 (fixtures)

SEEN: list[tuple] = []


@dataclass(frozen=True)
class Recording(Reranker):
    """Keeps the retrieval order and records what it was given."""

    name: ClassVar[str] = ""

    def rerank(self, ctx):
        SEEN.append((ctx.items, None if ctx.times is None else ctx.times.copy(), ctx.user_ids))
        return ctx


def test_items_and_request_times_reach_the_rerank_stage(world, clicks):  # noqa: F811
    inter, _ = clicks
    config = dataclasses.replace(
        contract._tiny(contract.CONFIG_DIR / "greedy.yaml"), rerank=Recording()
    )
    meta = world.catalog.metadata
    policy = build_policy(config, contract.N_ITEMS, contract.N_USERS, seed=5, items=meta)
    assert policy.items is meta
    assert policy.item_content is meta.content  # defaults to the metadata's content
    policy.deploy(policy.fit(inter, version=1))
    users = np.array([0, 2, 1, 0])
    times = np.array([1.5, 2.0, 7.25, 30.0])
    SEEN.clear()
    plain = policy.serve(users, Randomness.from_seed(0))
    timed = policy.serve(users, Randomness.from_seed(0), times)
    (items0, times0, _), (items1, times1, users1) = SEEN
    assert items0 is meta and times0 is None
    assert items1 is meta
    np.testing.assert_array_equal(times1, times)
    np.testing.assert_array_equal(users1, users)
    np.testing.assert_array_equal(plain.items, timed.items)  # greedy ignores the hour


def test_build_context_carries_item_metadata(world):  # noqa: F811
    meta = world.catalog.metadata
    ctx = BuildContext(n_users=3, n_items=meta.n_items, slate_size=2, seed=0, items=meta)
    assert ctx.items.publish_t.shape == (meta.n_items,)
    assert (ctx.items.publish_t <= 0).all()
