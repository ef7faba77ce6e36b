"""The Pareto front (``reports.pareto``) and the sweep report's Trade-offs section.

Dominance is checked against a brute-force numpy comparison; the section's numbers against means,
t-intervals and paired t-tests computed here (scipy) from the values written into the jobs'
``metrics.parquet``.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from test_sweep_report import N_WINDOWS, _write_finished, figure

from reports.metric_catalog import CATALOG
from reports.pareto import dominates, dominators, front
from reports.sweep_report import build_sweep_report

# ------------------------------------------------------------------ dominance


def test_dominates_by_hand() -> None:
    up = [True, True, False]  # two to maximize, one to minimize
    assert dominates([2, 2, 0.1], [1, 2, 0.1], up)  # better on one, equal on the rest
    assert not dominates([1, 2, 0.1], [1, 2, 0.1], up)  # equal everywhere: not strictly better
    assert not dominates([3, 3, 0.5], [1, 1, 0.1], up)  # worse on the minimized objective
    assert dominates([1, 1, 0.05], [1, 1, 0.1], up)
    assert not dominates([float("nan"), 9, 0.0], [1, 1, 0.1], up)
    values = {"a": [1, 1, 0.5], "b": [2, 2, 0.2], "c": [3, 0, 0.2], "d": [1, 1, 0.9]}
    assert dominators(values, up) == {"a": ["b"], "b": [], "c": [], "d": ["a", "b"]}
    assert front(values, up) == ["b", "c"]


@settings(max_examples=80, deadline=None)
@given(
    st.integers(1, 8),
    st.lists(st.booleans(), min_size=1, max_size=3),
    st.integers(0, 2**32 - 1),
)
def test_front_matches_brute_force(n_arms: int, higher: list[bool], seed: int) -> None:
    """Small integer grids (many ties): the front is exactly the arms no other arm beats
    (numpy: ≥ on every oriented objective, > on one), it is never empty, and every arm off it
    is dominated by an arm on it."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 3, size=(n_arms, len(higher))).astype(float)
    names = [f"arm{i}" for i in range(n_arms)]
    values = {n: x[i].tolist() for i, n in enumerate(names)}
    oriented = np.where(higher, x, -x)
    ge = (oriented[:, None, :] >= oriented[None, :, :]).all(axis=2)
    gt = (oriented[:, None, :] > oriented[None, :, :]).any(axis=2)
    beats = ge & gt  # beats[j, i]: arm j dominates arm i
    expected = [names[i] for i in range(n_arms) if not beats[:, i].any()]
    got = front(values, higher)
    assert got == expected and got
    dom = dominators(values, higher)
    for i, name in enumerate(names):
        assert dom[name] == [names[j] for j in range(n_arms) if beats[j, i]]
        if name not in got:
            assert set(dom[name]) & set(got) or any(set(dom[d]) & set(got) for d in dom[name])


# ------------------------------------------------------------------ the section

SEEDS = (0, 1, 2)
# final-window values per arm and seed: A and B on the front; A dominates D on every seed
# (beyond seed noise); B dominates C by means only (paired differences change sign)
FINALS = {
    "greedy": {  # A
        "cumulative_utility": [100.0, 110.0, 105.0],
        "cum_revenue": [50.0, 52.0, 51.0],
        "creator_gini_exposure": [0.30, 0.32, 0.31],
        "coverage_exposure": [0.5, 0.6, 0.55],
    },
    "softmax": {  # B
        "cumulative_utility": [120.0, 118.0, 125.0],
        "cum_revenue": [40.0, 45.0, 38.0],
        "creator_gini_exposure": [0.35, 0.30, 0.40],
        "coverage_exposure": [0.7, 0.75, 0.72],
    },
    "epsilon_greedy": {  # C
        "cumulative_utility": [115.0, 119.0, 117.0],
        "cum_revenue": [39.0, 46.0, 37.0],
        "creator_gini_exposure": [0.36, 0.34, 0.42],
        "coverage_exposure": [0.8, 0.85, 0.9],
    },
    "item_boost": {  # D
        "cumulative_utility": [90.0, 101.0, 94.0],
        "cum_revenue": [45.0, 46.5, 46.0],
        "creator_gini_exposure": [0.40, 0.41, 0.42],
        "coverage_exposure": [0.95, 0.97, 0.99],
    },
}
OBJECTIVES = ("cumulative_utility", "cum_revenue", "creator_gini_exposure")


def _write(root: Path, arms: dict[str, dict[str, list[float]]], drop: tuple[str, ...] = ()) -> Path:
    num = 0
    for policy, finals in arms.items():
        for seed in SEEDS:
            metrics = {
                col: [v[seed] * (w + 1) / N_WINDOWS for w in range(N_WINDOWS)]
                if col.startswith("cum")
                else [v[seed]] * N_WINDOWS
                for col, v in finals.items()
                if col not in drop
            }
            overrides = [f"policy={policy}", f"seed={seed}"]
            _write_finished(
                root / f"{num}_{policy}_seed{seed}",
                policy,
                seed,
                overrides,
                np.ones(20, dtype=np.int64),
                metrics,
                f"seed: {seed}\npolicy:\n  name: {policy}\n",
            )
            num += 1
    return root


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = _write(tmp_path_factory.mktemp("sweep"), FINALS)
    return build_sweep_report(root).read_text(encoding="utf-8")


def _section(page: str) -> str:
    start = page.index('<h2 id="tradeoffs">')
    return page[start : page.index("<h2", start + 1)]


def _rows(section: str) -> dict[str, list[str]]:
    body = section.split('<table class="pareto">')[1].split("<tbody>")[1].split("</tbody>")[0]
    rows = {}
    for row in re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.S):
        cells = [
            " ".join(html.unescape(re.sub(r"<[^>]+>", " ", c)).split())
            for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
        ]
        rows[cells[0]] = cells[1:]
    return rows


def _stats(metric: str, arm: str) -> tuple[float, float, float]:
    """Mean and 95% t-interval across seeds, cut to the metric's range."""
    a = np.array(FINALS[arm][metric])
    low, high = stats.t.interval(0.95, a.size - 1, loc=a.mean(), scale=stats.sem(a))
    lo, hi = CATALOG[metric].domain
    return a.mean(), low if lo is None else max(low, lo), high if hi is None else min(high, hi)


def _p(better: str, worse: str, metric: str) -> float:
    return float(stats.ttest_rel(FINALS[better][metric], FINALS[worse][metric]).pvalue)


def test_table_values_are_means_and_intervals_of_the_metrics(page: str) -> None:
    rows = _rows(_section(page))
    assert list(rows) == ["greedy", "softmax", "epsilon_greedy", "item_boost"]
    fmt = {
        "cumulative_utility": lambda v: f"{v:,.0f}",
        "cum_revenue": lambda v: f"{v:,.0f}",
        "creator_gini_exposure": lambda v: f"{v:.3f}",
        "coverage_exposure": lambda v: f"{v:.1%}",
    }
    for arm, cells in rows.items():
        assert cells[0] == "3"  # seeds
        for k, metric in enumerate(fmt):
            mean, low, high = _stats(metric, arm)
            f = fmt[metric]
            assert cells[1 + k] == f"{f(mean)} [{f(low)}, {f(high)}]", (arm, metric)


def test_dominance_marks_and_seed_noise(page: str) -> None:
    rows = _rows(_section(page))
    assert rows["greedy"][-1] == "on the front"
    assert rows["softmax"][-1] == "on the front"
    assert rows["epsilon_greedy"][-1] == (
        "dominated by softmax beyond seed noise: no (within seed noise)"
    )
    # every objective's paired difference greedy − item_boost is significant here
    for metric in OBJECTIVES:
        assert _p("greedy", "item_boost", metric) < 0.05, metric
        assert _p("softmax", "epsilon_greedy", metric) >= 0.05, metric
    noise = "; ".join(
        f"{CATALOG[m].label}, p = {_p('greedy', 'item_boost', m):.3f}" for m in OBJECTIVES
    )
    assert rows["item_boost"][-1] == (f"dominated by greedy beyond seed noise: by greedy ({noise})")
    assert 'class="dominated"' in _section(page)
    text = html.unescape(re.search(r'tradeoffs-text">(.*?)</p>', page, re.S).group(1))
    assert "2 of 4 arms are on the Pareto front" in text and "greedy, softmax." in text
    assert "2 dominated by means; 1 of them also beyond seed noise" in text


@pytest.mark.parametrize(
    ("div", "x_metric"),
    [("fig-pareto-revenue", "cum_revenue"), ("fig-pareto-creators", "creator_gini_exposure")],
)
def test_charts_points_error_bars_and_front(page: str, div: str, x_metric: str) -> None:
    data, layout = figure(page, div)
    line, points = data[0], data[1:]
    assert line["mode"] == "lines"
    # the two-objective front of both charts: greedy and softmax, left to right
    expected_line = sorted(["greedy", "softmax"], key=lambda a: _stats(x_metric, a)[0])
    assert line["meta"]["front"] == expected_line
    np.testing.assert_allclose(
        np.asarray(line["x"], float), [_stats(x_metric, a)[0] for a in expected_line]
    )
    assert [p["meta"]["arm"] for p in points] == list(FINALS)
    for p in points:
        arm = p["meta"]["arm"]
        for axis, metric in (("x", x_metric), ("y", "cumulative_utility")):
            mean, low, high = _stats(metric, arm)
            assert np.asarray(p[axis], float)[0] == pytest.approx(mean)
            bar = p[f"error_{axis}"]
            assert np.asarray(bar["array"], float)[0] == pytest.approx(high - mean)
            assert np.asarray(bar["arrayminus"], float)[0] == pytest.approx(mean - low)
        dominated = arm in ("epsilon_greedy", "item_boost")
        assert p["meta"]["dominated"] is dominated
        assert (p["marker"]["symbol"] == "circle-open") is dominated
    assert "better to the " + ("right" if x_metric == "cum_revenue" else "left") in str(
        layout["xaxis"]["title"]
    )


def test_nav_links_the_section(page: str) -> None:
    assert '<a href="#tradeoffs">' in page
    assert page.index('id="tradeoffs"') < page.index('id="series"')


def test_section_is_deterministic(tmp_path: Path) -> None:
    a = _section(build_sweep_report(_write(tmp_path / "a", FINALS)).read_text(encoding="utf-8"))
    b = _section(build_sweep_report(_write(tmp_path / "b", FINALS)).read_text(encoding="utf-8"))
    assert a == b


def test_no_section_with_two_arms_or_without_revenue(tmp_path: Path) -> None:
    two = {k: FINALS[k] for k in ("greedy", "softmax")}
    page = build_sweep_report(_write(tmp_path / "two", two)).read_text(encoding="utf-8")
    assert 'id="tradeoffs"' not in page and "#tradeoffs" not in page
    root = _write(tmp_path / "old", FINALS, drop=("cum_revenue",))
    page = build_sweep_report(root).read_text(encoding="utf-8")
    assert 'id="tradeoffs"' not in page
