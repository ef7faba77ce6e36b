"""``experiments.ope.slot0_model_inputs`` on a log folder written by hand, against features and
target probabilities worked out by hand.

The log (the schema of ``sim.event_log``, three round partitions): 8 items, slates of 2, 3
retrieved candidates per request, the window from hour 10.

=========  =====  =====  ===========  ==================================================
request    round  hour   shown        candidates (rank: item, score)
=========  =====  =====  ===========  ==================================================
1          0      1      0, 3         0: 2, 1: 6, 2: 4 (before the window: not an input)
2          0      2      0, 1         0: 6, 1: 2, 2: 4
3          1      5      0, 5         0: 4, 1: 2, 2: 6
4          1      6      3, 7         0: 2, 1: 6, 2: 4
100        1      11     0, 6         0: 4 (2.0), 1: 0 (1.0), 2: 6 (0.5)
101        2      12     7, 3         0: 3 (0.75), 1: 5 (0.5), 2: 1 (-0.25)
=========  =====  =====  ===========  ==================================================

Impressions before the window: item 0 three times, item 3 twice, items 1, 5, 7 once, items 2, 4, 6
never; the window's own impressions (items 0, 6, 7, 3) must not count. So ``log1p`` popularity is
``[ln 4, ln 2, 0, ln 3, 0, ln 2, 0, ln 2]``. Request 100 showed item 0, its rank-1 candidate;
request 101 showed item 7, not a candidate: the aggregate action.
"""

from __future__ import annotations

from math import exp, log
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from experiments.ope import _window, slot0_model_inputs
from policies.plackett_luce import Softmax
from policies.posterior_sampling import UCB, Thompson
from policies.selection import EpsilonGreedy, Greedy, Selector, UniformRandom
from sim.event_log import CANDIDATES_SCHEMA, IMPRESSIONS_SCHEMA, partition_path

N_ITEMS, K, T0 = 8, 2, 10.0

# (request, round, hour, shown items, [(item, score) by rank])
REQUESTS = [
    (1, 0, 1.0, [0, 3], [(2, 0.0), (6, 0.0), (4, 0.0)]),
    (2, 0, 2.0, [0, 1], [(6, 0.0), (2, 0.0), (4, 0.0)]),
    (3, 1, 5.0, [0, 5], [(4, 0.0), (2, 0.0), (6, 0.0)]),
    (4, 1, 6.0, [3, 7], [(2, 0.0), (6, 0.0), (4, 0.0)]),
    (100, 1, 11.0, [0, 6], [(4, 2.0), (0, 1.0), (6, 0.5)]),
    (101, 2, 12.0, [7, 3], [(3, 0.75), (5, 0.5), (1, -0.25)]),
]


def _write_log(root: Path) -> Path:
    logs = root / "logs"
    for round_idx in sorted({r[1] for r in REQUESTS}):
        imp: dict[str, list] = {name: [] for name in IMPRESSIONS_SCHEMA}
        cand: dict[str, list] = {name: [] for name in CANDIDATES_SCHEMA}
        for request, rnd, hour, shown, candidates in REQUESTS:
            if rnd != round_idx:
                continue
            for position, item in enumerate(shown):
                row = {
                    "request_id": request,
                    "t": hour,
                    "user_id": request % 7,
                    "item_id": item,
                    "position": position,
                    "model_version": 0 if hour > 3 else -1,
                    "policy": "epsilon_greedy",
                    "score": 0.0,
                    "propensity": 0.5,
                    "clicked": position == 0,
                    "source": "als",
                    "prefix_propensity": 0.5 ** (position + 1),
                    "slate_propensity": 0.25,
                    "propensity_method": "exact",
                    "intervention": "none",
                    "original_position": position,
                    "latency_ms": 20.0,
                    "degraded": "none",
                    "cache_hit": False,
                    "slate_age_h": 0.0,
                    "rerank_score": float("nan"),
                }
                for name, value in row.items():
                    imp[name].append(value)
            # rows written out of rank order: the function must sort them
            for rank in (2, 0, 1):
                item, score = candidates[rank]
                row = {
                    "request_id": request,
                    "item_id": item,
                    "score": score,
                    "rank": rank,
                    "shown": item in shown,
                    "show_probability": 0.5,
                    "source": "als",
                    "retriever_rank": rank,
                }
                for name, value in row.items():
                    cand[name].append(value)
        for table, data, schema in (
            ("impressions", imp, IMPRESSIONS_SCHEMA),
            ("candidates", cand, CANDIDATES_SCHEMA),
        ):
            path = partition_path(logs, table, round_idx)
            path.parent.mkdir(parents=True, exist_ok=True)
            pl.DataFrame(data, schema=schema).write_parquet(path)
    return logs


L2, L3, L4 = log(2), log(3), log(4)
# (rank feature 1/(rank+1), candidate flag, log1p impressions before the window); the aggregate
# action: (0, 0, mean log popularity of the 5 non-candidate items).
CAND_X = np.array(
    [
        [
            [1, 1, 0],
            [1 / 2, 1, L4],
            [1 / 3, 1, 0],
            [0, 0, (L2 + 0 + L3 + L2 + L2) / 5],
        ],  # 1,2,3,5,7
        [
            [1, 1, L3],
            [1 / 2, 1, L2],
            [1 / 3, 1, L2],
            [0, 0, (L4 + 0 + 0 + 0 + L2) / 5],
        ],  # 0,2,4,6,7
    ]
)
LOGGED_X = np.array([CAND_X[0, 1], CAND_X[1, 3]])  # item 0 at rank 1; item 7: the aggregate


def _softmax(logits: list[float]) -> list[float]:
    w = [exp(v) for v in logits]
    return [v / sum(w) for v in w]


# Columns: ranks 0, 1, 2 and the aggregate ("any of the other 5 items").
TARGETS: dict[str, tuple[Selector, list[list[float]]]] = {
    "greedy": (Greedy(K), [[1, 0, 0, 0]] * 2),
    # pool outside the top 2: 8 - 2 = 6 items, ε/6 each; rank 2 is in it, so are the 5 others
    "epsilon_greedy": (EpsilonGreedy(K, 0.2), [[0.8, 0, 0.2 / 6, 0.2 * 5 / 6]] * 2),
    # 1/8 per item; 5 items outside the candidates
    "uniform": (UniformRandom(K), [[1 / 8, 1 / 8, 1 / 8, 5 / 8]] * 2),
    # exp((score - max) / 0.5): request 100 (2.0, 1.0, 0.5), request 101 (0.75, 0.5, -0.25)
    "softmax": (
        Softmax(K, 0.5, 10),
        [[*_softmax([0.0, -2.0, -3.0]), 0.0], [*_softmax([0.0, -0.5, -2.0]), 0.0]],
    ),
}


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_log(tmp_path_factory.mktemp("slot0"))


def _first(logs: Path) -> pl.DataFrame:
    """Slot 0 of the window's requests, as ``estimate_target`` passes it."""
    return _window(logs, T0).filter(pl.col("position") == 0)


@pytest.mark.parametrize("name", list(TARGETS))
def test_slot0_model_inputs_match_a_hand_built_log(logs: Path, name: str) -> None:
    selector, target_p = TARGETS[name]
    first = _first(logs)
    assert first["request_id"].to_list() == [100, 101]
    logged_x, cand_x, probs = slot0_model_inputs(logs, T0, first, selector, N_ITEMS)
    np.testing.assert_allclose(cand_x, CAND_X, rtol=0, atol=1e-15)
    np.testing.assert_allclose(logged_x, LOGGED_X, rtol=0, atol=1e-15)
    np.testing.assert_allclose(probs, np.array(target_p), rtol=0, atol=1e-15)


def test_selectors_without_a_first_slot_get_no_model_inputs(logs: Path) -> None:
    for selector in (UCB(K, 1.0), Thompson(K, 1.0, 10)):
        assert slot0_model_inputs(logs, T0, _first(logs), selector, N_ITEMS) == (None, None, None)


@pytest.mark.parametrize("case", ["missing_request", "unsorted_requests"])
def test_candidates_that_do_not_line_up_with_the_requests_are_an_error(
    logs: Path, case: str
) -> None:
    # Rows are reshaped to (requests, candidates). A third request without candidates leaves 6
    # rows for 3 requests, which divides evenly (2 each) and used to pass the check, pairing
    # request 100's rank-2 item with request 101's rank 0; requests out of id order would attach
    # each request's candidates to another's row.
    first = _first(logs)
    if case == "missing_request":
        extra = first.head(1).with_columns(pl.lit(999, dtype=pl.Int64).alias("request_id"))
        first = pl.concat([first, extra])
    else:
        first = first.reverse()
    with pytest.raises(RuntimeError, match="retrieved candidates"):
        slot0_model_inputs(logs, T0, first, Greedy(K), N_ITEMS)
