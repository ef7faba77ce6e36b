"""Cost per request of each exploration strategy relative to greedy, on one batch size.

    python benchmarks/selection_cost.py [--users 2000] [--items 1000] [--batch 4096] [--repeats 7]

Every policy config is fitted on the same synthetic log (clicks of a random policy under the
position-based click model) and serves the same batch of requests; the median wall time of
``ServingPolicy.serve`` over the repeats is reported per request, and as a ratio to greedy.
Not a test: numbers depend on the machine (state threadpoolctl's BLAS limits when you quote them).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_info

from agents.streams import Streams
from agents.world import WorldConfig, build_world
from experiments.config import compose_policy, parse_policy
from policies.interactions import Interactions, RoundImpressions
from policies.policy import PolicyConfig, build_policy
from policies.randomness import Randomness

CONFIGS = Path(__file__).resolve().parent.parent / "configs" / "policy"


def policy_config(name: str) -> PolicyConfig:
    """Preset ``name`` as hydra composes it (``policy=<name>``)."""
    return parse_policy(compose_policy(name))


def with_mc_samples(cfg: PolicyConfig, mc_samples: int | None) -> PolicyConfig:
    """``cfg`` with its selector's ``mc_samples`` replaced (selectors without one unchanged)."""
    if mc_samples is None or not hasattr(cfg.selector, "mc_samples"):
        return cfg
    return dataclasses.replace(
        cfg, selector=dataclasses.replace(cfg.selector, mc_samples=mc_samples)
    )


def random_policy_log(world, n_requests: int, k: int, rng: np.random.Generator):
    users = rng.integers(0, world.users.n_users, n_requests)
    items = np.argsort(rng.random((n_requests, world.catalog.n_items)), axis=1)[:, :k]
    rel = world.relevance(users[:, None], items)
    clicked = world.click_model.sample(rel, rng.random(rel.shape))
    u = np.repeat(users, k)
    return u, items.ravel(), clicked.ravel()


def synthetic_log(n_users: int, n_items: int):
    """The benchmark world (seed 0), the training view of ``10 · n_users`` random-policy slates
    of 10 under its click model, and the generator that drew them (to draw the requests)."""
    world = build_world(WorldConfig(n_users=n_users, n_items=n_items), Streams(0))
    rng = np.random.default_rng(0)
    u, i, c = random_policy_log(world, 10 * n_users, 10, rng)
    inter = Interactions.from_pairs(
        u[c],
        i[c],
        n_users,
        n_items,
        item_impressions=np.bincount(i, minlength=n_items).astype(float),
        latest_round=RoundImpressions(u, i, c, np.full(u.shape, -1)),
    )
    return world, inter, rng


def deployed_policy(name: str, world, inter, mc_samples: int | None = None):
    """Preset ``name`` (``mc_samples`` overridden when given) fitted on ``inter`` and deployed."""
    cfg = with_mc_samples(policy_config(name), mc_samples)
    n_users, n_items = inter.n_users, inter.n_items
    policy = build_policy(
        cfg,
        n_items,
        n_users,
        seed=0,
        relevance=world.relevance_matrix,
        item_content=world.catalog.metadata.content,
    )
    policy.deploy(policy.fit(inter, version=0))
    return policy


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--users", type=int, default=2000)
    ap.add_argument("--items", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--mc-samples", type=int, default=None, help="override policy.mc_samples")
    args = ap.parse_args()

    world, inter, rng = synthetic_log(args.users, args.items)
    batch = rng.integers(0, args.users, args.batch)
    names = sorted(p.stem for p in CONFIGS.glob("*.yaml") if not p.stem.startswith("_"))
    names.remove("greedy")
    results = {}
    for name in ["greedy", *names]:
        policy = deployed_policy(name, world, inter, args.mc_samples)
        policy.serve(batch, Randomness.from_seed(99))  # warm-up: thread pools, caches
        times = []
        for r in range(args.repeats):
            rand = Randomness.from_seed(r)
            start = time.perf_counter()
            policy.serve(batch, rand)
            times.append(time.perf_counter() - start)
        results[name] = statistics.median(times) / args.batch * 1e6
    blas = [(x.get("internal_api"), x.get("num_threads")) for x in threadpool_info()]
    print(
        f"{args.users} users × {args.items} items, batch {args.batch}, median of "
        f"{args.repeats}; BLAS pools {blas}"
    )
    print(f"{'policy':16s} {'µs/request':>11s} {'× greedy':>9s}")
    for name, us in results.items():
        print(f"{name:16s} {us:11.1f} {us / results['greedy']:9.2f}")


if __name__ == "__main__":
    main()
