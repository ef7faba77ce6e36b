"""Check the constrained reranker's guardrails from a run's logs alone (not its own counters).

    python benchmarks/check_guardrails.py RUN_DIR [RUN_DIR ...]

Floor (``policy.rerank.min_content_diversity`` / ``min_creators``): every model-served slate's
mean pairwise cosine distance of the shown items' content vectors / its distinct creators,
recomputed from the impressions log and the world (rebuilt from the run's config and seed).
Caps (``item_cap`` / ``creator_cap``): at every tick, each item's / creator's share of the
impressions in the rolling window ``(t − window_hours, t]``, against cap + the share of the
window's impressions served in the last tick ``(t − tick_hours, t]`` (the bound the reranker
promises: it only learns of exposure at ticks). Prints one line per run and check.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import polars as pl
import yaml

from agents.streams import Streams
from agents.world import WorldConfig, build_world


def _world(cfg: dict):
    return build_world(WorldConfig(**cfg["world"]), Streams(int(cfg["seed"])))


def check(run: Path) -> None:
    cfg = yaml.safe_load((run / ".hydra" / "config.yaml").read_text())
    rr = cfg["policy"]["rerank"]
    meta = _world(cfg).catalog.metadata
    imp = (
        pl.scan_parquet(run / "logs" / "impressions" / "**" / "*.parquet", hive_partitioning=True)
        .select("request_id", "t", "item_id", "position", "model_version")
        .collect()
        .sort("request_id", "position")
    )
    k = int(cfg["policy"]["slate_size"])
    items = imp["item_id"].to_numpy().reshape(-1, k)
    version = imp["model_version"].to_numpy().reshape(-1, k)[:, 0]
    served = version >= 0
    floor = float(rr.get("min_content_diversity") or 0)
    if floor > 0:
        unit = meta.content / np.linalg.norm(meta.content, axis=1, keepdims=True)
        v = unit[items[served]]
        sim = np.einsum("nkd,njd->nkj", v, v)
        iu = np.triu_indices(k, 1)
        div = (1 - sim[:, iu[0], iu[1]]).mean(axis=1)
        met = div >= floor - 1e-9
        print(
            f"{run.name}: content-diversity floor {floor}: {met.sum():,} of {met.size:,} "
            f"model-served slates meet it ({met.mean():.4%}); lowest {div.min():.4f}"
        )
    n_creators = int(rr.get("min_creators") or 0)
    if n_creators > 0:
        creators = meta.creator_id[items[served]]
        distinct = np.array([len(set(r)) for r in creators])
        print(
            f"{run.name}: creator floor {n_creators}: {(distinct >= n_creators).mean():.4%} meet it"
        )
    tick, window = float(rr["tick_hours"]), float(rr["window_hours"])
    t = imp["t"].to_numpy()
    horizon = float(cfg["sim"]["days"]) * 24
    for key, ids in (
        ("item_cap", imp["item_id"].to_numpy()),
        ("creator_cap", meta.creator_id[imp["item_id"].to_numpy()]),
    ):
        cap = rr.get(key)
        if cap is None:
            continue
        order = np.argsort(t, kind="stable")
        ts, ids_s = t[order], ids[order]
        worst, worst_after, n_over = -np.inf, -np.inf, 0
        above_cap, n_above_cap, tick_share = -np.inf, 0, []
        n_ticks = int(np.ceil(horizon / tick))
        for j in range(1, n_ticks + 1):  # a loop over ticks (hundreds to a few thousand)
            end = min(j * tick, horizon)
            lo, hi = np.searchsorted(ts, end - window, "right"), np.searchsorted(ts, end, "right")
            if hi <= lo:
                continue
            counts = np.bincount(ids_s[lo:hi])
            total = hi - lo
            last = hi - np.searchsorted(ts, end - tick, "right")
            excess = counts.max() / total - cap - last / total
            above_cap = max(above_cap, counts.max() / total - cap)
            n_above_cap += counts.max() / total > cap + 1e-12
            tick_share.append(last / total)
            worst = max(worst, excess)
            n_over += excess > 1e-12
            if end > 2 * 24 + window:  # the window holds model-served traffic only
                worst_after = max(worst_after, excess)
        print(
            f"{run.name}: {key} {cap}: largest rolling share − cap − last tick's share = "
            f"{worst:+.4f} over {n_ticks} ticks ({n_over} ticks above the bound; "
            f"{worst_after:+.4f} once the window holds only model-served traffic); above the cap "
            f"itself at {n_above_cap} ticks, by at most {above_cap:+.4f} (a tick's traffic: "
            f"median {np.median(tick_share):.4f} of the window)"
        )


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        check(Path(arg))
