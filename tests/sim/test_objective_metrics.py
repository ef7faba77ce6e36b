"""The objective columns of ``sim.metrics`` (revenue, creator exposure, content diversity).

Every expected value is recomputed here from the rows with plain Python: revenue by summing the
clicked rows' prices, creator Gini by the mean-absolute-difference formula over every creator
(zeros included), content diversity by the cosine distance of every pair of a slate.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_serving_metrics import EVERY, N_ITEMS, N_WINDOWS, _impressions, _requests, write_log

from agents.catalog import ItemMetadata
from sim.metrics import METRIC_COLUMNS, OBJECTIVE_COLUMNS, MetricsAccumulator, compute_metrics

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def ref_gini(x) -> float:
    """Σ_i Σ_j |x_i − x_j| / (2 n² mean); NaN if Σx = 0."""
    x = [float(v) for v in x]
    n, total = len(x), sum(x)
    if n == 0 or total <= 0:
        return math.nan
    return sum(abs(a - b) for a in x for b in x) / (2.0 * n * total)


def ref_pair_distance(vectors: list[np.ndarray]) -> float:
    """Mean over unordered pairs of 1 − cos(a, b); NaN for one item."""
    pairs = list(itertools.combinations(vectors, 2))
    if not pairs:
        return math.nan
    cos = [float(a @ b) / (math.sqrt(float(a @ a)) * math.sqrt(float(b @ b))) for a, b in pairs]
    return sum(1.0 - c for c in cos) / len(cos)


def ref_objectives(
    rows: list[dict], items: ItemMetadata, n_windows: int, every: float
) -> dict[str, list[float]]:
    """The objective columns from impression rows (dicts with t, request_id, item_id, clicked),
    one Python pass per window."""
    creators = sorted(set(items.creator_id.tolist()))
    out: dict[str, list[float]] = {c: [] for c in OBJECTIVE_COLUMNS}
    cum = 0.0
    for w in range(n_windows):
        sel = [r for r in rows if min(max(math.floor(r["t"] / every), 0), n_windows - 1) == w]
        requests = sorted({r["request_id"] for r in sel})
        revenue = sum(float(items.price[r["item_id"]]) for r in sel if r["clicked"])
        cum += revenue
        out["revenue_per_request"].append(revenue / len(requests) if requests else math.nan)
        out["cum_revenue"].append(cum)
        per_creator = {c: 0 for c in creators}
        for r in sel:
            per_creator[int(items.creator_id[r["item_id"]])] += 1
        counts = list(per_creator.values())
        out["creator_gini_exposure"].append(ref_gini(counts))
        out["max_creator_share"].append(max(counts) / len(sel) if sel else math.nan)
        divs = []
        for q in requests:
            shown = [r["item_id"] for r in sel if r["request_id"] == q]
            d = ref_pair_distance([items.content[i].astype(np.float64) for i in shown])
            if not math.isnan(d):
                divs.append(d)
        out["content_diversity"].append(sum(divs) / len(divs) if divs else math.nan)
    return out


def metadata(n_items: int, n_creators: int, seed: int = 3, dim: int = 5) -> ItemMetadata:
    rng = np.random.default_rng(seed)
    return ItemMetadata(
        content=rng.standard_normal((n_items, dim)).astype(np.float32),
        creator_id=(rng.integers(0, n_creators, n_items) * 7 + 2).astype(np.int32),  # sparse ids
        price=rng.lognormal(1.0, 0.8, n_items).astype(np.float32),
        arrival_t=np.zeros(n_items),
    )


def _metrics(root: Path, items: ItemMetadata | None) -> pl.DataFrame:
    factors = np.random.default_rng(5).normal(size=(N_ITEMS, 4))
    return compute_metrics(root, N_ITEMS, factors, EVERY, np.random.default_rng(0), 50, items)


def test_objectives_match_independent_computation(tmp_path: Path) -> None:
    """A log of two rounds split inside window 1 (the serving tests' synthetic log)."""
    imp = _impressions(_requests())
    root = write_log(tmp_path / "logs", imp, None)
    items = metadata(N_ITEMS, 6)
    m = _metrics(root, items)
    assert m.columns == list(METRIC_COLUMNS)
    expected = ref_objectives(imp.to_dicts(), items, N_WINDOWS, EVERY)
    for col in OBJECTIVE_COLUMNS:
        assert all(math.isfinite(v) for v in expected[col]), col  # the log exercises each
        np.testing.assert_allclose(m[col].to_numpy(), expected[col], rtol=1e-9, err_msg=col)


def test_objectives_by_hand(tmp_path: Path) -> None:
    """3 items: creators 5, 5, 9 (and creator 9 owns item 2); prices 2, 10, 4.
    Window 0: request A shows items 0, 1 (click on 1), request B shows 0, 2 (click on 0 and 2):
    revenue (10 + 2 + 4) / 2 requests = 8; creator counts {5: 3, 9: 1} → Gini
    Σ|x_i − x_j| / (2 n² mean) = 4 / (2 · 4 · 2) = 0.25, max share 3/4. Content: items 0, 1 orthogonal (distance 1),
    items 0, 2 opposite (distance 2) → mean 1.5. Window 1 is empty: NaN, revenue total stays 16."""
    items = ItemMetadata(
        content=np.array([[1.0, 0.0], [0.0, 2.0], [-3.0, 0.0]], np.float32),
        creator_id=np.array([5, 5, 9], np.int32),
        price=np.array([2.0, 10.0, 4.0], np.float32),
        arrival_t=np.zeros(3),
    )
    rows = [
        # request, t, item, position, clicked
        (0, 1.0, 0, 0, False),
        (0, 1.0, 1, 1, True),
        (1, 2.0, 0, 0, True),
        (1, 2.0, 2, 1, True),
    ]
    imp = pl.DataFrame(
        [(q, t, 0, i, p, c, "als", 1.0) for q, t, i, p, c in rows],
        schema={
            "request_id": pl.Int64,
            "t": pl.Float64,
            "user_id": pl.Int32,
            "item_id": pl.Int32,
            "position": pl.Int16,
            "clicked": pl.Boolean,
            "source": pl.String,
            "propensity": pl.Float64,
        },
        orient="row",
    )
    acc = MetricsAccumulator(3, 2, np.eye(3)[:, :2] + 0.1, 10.0, items=items)
    acc.add(imp, imp.select("request_id", "position", relevance=pl.lit(0.5)))
    got = acc.objective_metrics()
    assert got["revenue_per_request"][0] == pytest.approx(8.0)
    assert got["cum_revenue"].to_list() == pytest.approx([16.0, 16.0])
    assert got["creator_gini_exposure"][0] == pytest.approx(0.25)
    assert got["max_creator_share"][0] == pytest.approx(0.75)
    assert got["content_diversity"][0] == pytest.approx(1.5)
    for col in ("revenue_per_request", "creator_gini_exposure", "max_creator_share"):
        assert math.isnan(got[col][1]), col
    assert math.isnan(got["content_diversity"][1])


def test_without_metadata_objectives_are_nan_and_nothing_else_moves(tmp_path: Path) -> None:
    imp = _impressions(_requests())
    root = write_log(tmp_path / "logs", imp, None)
    with_items = _metrics(root, metadata(N_ITEMS, 6))
    without = _metrics(root, None)
    for col in OBJECTIVE_COLUMNS:
        assert without[col].is_nan().all(), col
    others = [c for c in METRIC_COLUMNS if c not in OBJECTIVE_COLUMNS]
    assert without.select(others).equals(with_items.select(others))


def test_metadata_must_match_the_catalog_and_have_directions(tmp_path: Path) -> None:
    root = write_log(tmp_path / "logs", _impressions(_requests()), None)
    with pytest.raises(ValueError, match="metadata has 7 items"):
        _metrics(root, metadata(7, 3))
    items = metadata(N_ITEMS, 3)
    items.content[4] = 0.0
    with pytest.raises(ValueError, match="non-zero"):
        _metrics(root, items)


@FAST
@given(
    n_items=st.integers(2, 12),
    n_creators=st.integers(1, 5),
    slate=st.integers(1, 4),
    n_requests=st.integers(1, 25),
    seed=st.integers(0, 2**32 - 1),
)
def test_objective_properties_and_reference(
    n_items: int, n_creators: int, slate: int, n_requests: int, seed: int
) -> None:
    """Random logs straight into the accumulator: values equal the reference, creator Gini in
    [0, 1 − 1/C] (C creators), max share in [1/C, 1], the creators' shares sum to 1 (so the
    largest is at least the mean), revenue ≥ 0 and its running total never decreases."""
    rng = np.random.default_rng(seed)
    items = metadata(n_items, n_creators, seed=seed % 1000)
    slate = min(slate, n_items)
    n_windows = 3
    rows = []
    for q in range(n_requests):
        t = float(rng.uniform(0, n_windows * 10.0))
        for p, i in enumerate(rng.choice(n_items, size=slate, replace=False)):
            rows.append((q, t, 0, int(i), p, bool(rng.random() < 0.4), "als", 1.0))
    imp = pl.DataFrame(
        rows,
        schema={
            "request_id": pl.Int64,
            "t": pl.Float64,
            "user_id": pl.Int32,
            "item_id": pl.Int32,
            "position": pl.Int16,
            "clicked": pl.Boolean,
            "source": pl.String,
            "propensity": pl.Float64,
        },
        orient="row",
    )
    factors = rng.standard_normal((n_items, 3))
    acc = MetricsAccumulator(n_items, n_windows, factors, 10.0, items=items)
    acc.add(imp, imp.select("request_id", "position", relevance=pl.lit(0.1)))
    got = acc.objective_metrics()
    expected = ref_objectives(imp.to_dicts(), items, n_windows, 10.0)
    for col in OBJECTIVE_COLUMNS:
        np.testing.assert_allclose(
            got[col].to_numpy(), expected[col], rtol=1e-9, atol=1e-12, err_msg=col
        )
    c = len(set(items.creator_id.tolist()))
    gini, share = got["creator_gini_exposure"].to_numpy(), got["max_creator_share"].to_numpy()
    shown = ~np.isnan(share)
    assert (gini[shown] >= -1e-12).all() and (gini[shown] <= 1 - 1 / c + 1e-12).all()
    assert (share[shown] >= 1 / c - 1e-12).all() and (share[shown] <= 1 + 1e-12).all()
    cum = got["cum_revenue"].to_numpy()
    assert (np.diff(np.r_[0.0, cum]) >= 0).all()
    assert (got["revenue_per_request"].drop_nans().to_numpy() >= 0).all()
    div = got["content_diversity"].drop_nans().to_numpy()
    assert ((div >= -1e-12) & (div <= 2 + 1e-12)).all()
