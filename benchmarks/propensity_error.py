"""How accurate the logged Monte-Carlo propensities are, against a 20,000-draw reference.

    python benchmarks/propensity_error.py [--requests 300] [--reference 20000] [--policies ...]

Every named policy (default: softmax, thompson, lints at their preset settings) is fitted on the
same synthetic log as ``benchmarks/selection_cost.py`` (2,000 users × 1,000 items) and serves the
same batch of requests once. For each request the reference distribution of its slate is
estimated here, independently of the selector's own estimator, from ``--reference`` fresh draws
of the policy's ranking: Plackett–Luce by Gumbel-top-K over the logged candidate scores
(softmax), or the ranked posterior samples ``mean + β·Gᵀz`` of the deployed model (Thompson,
LinTS). Printed per policy, over the slots whose propensity is an estimate (softmax: slots 1..K-1,
slot 0 is exact; Thompson: all):

* ``marginal``: RMSE and mean relative error ``|p̂ − p| / p`` of the logged ``propensity`` (what
  slot-level IPS divides by) against the reference frequency;
* ``show``: RMSE of ``candidate_show_probability`` over every candidate;
* the reference's own standard error (``sqrt(p(1 − p) / R)``, RMS over the same cells), the
  floor below which a difference means nothing.

Run it at two commits (``PYTHONPATH=<checkout>``) to compare estimators. Not a test.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from selection_cost import deployed_policy, synthetic_log

from policies.randomness import Randomness

CHUNK = 2000  # reference draws per block (bounds memory at CHUNK × C per request)


def reference_frequencies(draw, n_draws: int, k: int, c: int, rng: np.random.Generator):
    """(slot, candidate) frequencies (K, C) and show frequencies (C,) of the top-``k`` of
    ``n_draws`` score vectors from ``draw(m, rng) -> (m, C)``."""
    slot = np.zeros((k, c))
    for lo in range(0, n_draws, CHUNK):
        m = min(CHUNK, n_draws - lo)
        ranked = np.argsort(-draw(m, rng), axis=1, kind="stable")[:, :k]
        for j in range(k):
            slot[j] += np.bincount(ranked[:, j], minlength=c)
    slot /= n_draws
    return slot, slot.sum(axis=0)


def gumbel_draws(logits: np.ndarray):
    """Plackett–Luce keys ``logits + Gumbel`` (the textbook ``-log(-log U)``)."""
    return lambda m, rng: logits - np.log(-np.log(rng.random((m, logits.size))))


def posterior_draws(mean: np.ndarray, g: np.ndarray, beta: float):
    """Posterior score samples ``mean + β·Gᵀz``."""
    return lambda m, rng: mean + beta * (rng.standard_normal((m, g.shape[0])) @ g)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--users", type=int, default=2000)
    ap.add_argument("--items", type=int, default=1000)
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--reference", type=int, default=20_000)
    ap.add_argument("--mc-samples", type=int, default=None, help="override policy.mc_samples")
    ap.add_argument("--policies", nargs="+", default=["softmax", "thompson", "lints"])
    args = ap.parse_args()

    world, inter, rng = synthetic_log(args.users, args.items)
    users = rng.integers(0, args.users, args.requests)
    results = {}
    for name in args.policies:
        policy = deployed_policy(name, world, inter, args.mc_samples)
        cfg = policy.config
        batch = policy.serve(users, Randomness.from_seed(1))
        selector = policy.selector
        k = batch.items.shape[1]
        cands = batch.candidates
        n_c = cands.shape[1]
        ref_rng = np.random.default_rng(12345)
        if selector.name == "softmax":
            logits = selector.logits(batch.candidate_scores)
            estimated_slots = list(range(1, k))

            def draws_for(r, logits=logits):
                return gumbel_draws(logits[r])

        else:
            mean, gmat = policy.model.score_distribution(users, cands)
            beta = selector.beta
            estimated_slots = list(range(k))

            def draws_for(r, mean=mean, gmat=gmat, beta=beta):
                return posterior_draws(mean[r], gmat[r], beta)

        err_m, rel_m, ref_se_m, err_s, ref_se_s = [], [], [], [], []
        for r in range(args.requests):
            slot, show = reference_frequencies(draws_for(r), args.reference, k, n_c, ref_rng)
            index = np.array([np.flatnonzero(cands[r] == it)[0] for it in batch.items[r]])
            p = slot[np.arange(k), index][estimated_slots]
            logged = batch.propensity[r, estimated_slots]
            err_m.append(logged - p)
            rel_m.append(np.abs(logged - p) / np.maximum(p, 1.0 / args.reference))
            ref_se_m.append(p * (1 - p) / args.reference)
            err_s.append(batch.candidate_show_probability[r] - show)
            ref_se_s.append(show * (1 - show) / args.reference)
        cat = np.concatenate
        results[name] = {
            "mc_samples": cfg.selector.mc_samples,
            "marginal_rmse": float(np.sqrt(np.mean(cat(err_m) ** 2))),
            "marginal_mean_rel_err": float(np.mean(cat(rel_m))),
            "marginal_reference_se": float(np.sqrt(np.mean(cat(ref_se_m)))),
            "show_rmse": float(np.sqrt(np.mean(cat(err_s) ** 2))),
            "show_reference_se": float(np.sqrt(np.mean(cat(ref_se_s)))),
        }
        print(name, json.dumps({k2: round(v, 5) for k2, v in results[name].items()}), flush=True)


if __name__ == "__main__":
    main()
