"""The per-cut-off item probes: new items' rank percentiles and the content map against the truth."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp

from agents.catalog import ItemMetadata, generate_catalog, topic_centers
from experiments.run import run
from policies.content_map import fit_content_map
from policies.models import ALSModel, PopularityModel
from sim.item_probes import ContentMapProbe, ItemRankProbe, linear_r2
from tests.conftest import tiny_config
from tests.sim.test_engine import _run_files
from tests.sim.test_state import _assert_same_files, _paused_copy_continued


def _metadata(arrival_t, depart_t=None, content=None) -> ItemMetadata:
    n = len(arrival_t)
    return ItemMetadata(
        content=np.zeros((n, 2), np.float32) if content is None else content,
        creator_id=np.zeros(n, np.int32),
        price=np.ones(n, np.float32),
        arrival_t=np.asarray(arrival_t, dtype=np.float64),
        depart_t=None if depart_t is None else np.asarray(depart_t, dtype=np.float64),
    )


def _als_model(rng) -> ALSModel:
    n_users, n_items = 6, 10
    items = rng.normal(size=(n_items, 3)).astype(np.float32)
    items[8] = items[6]  # a tie
    clicks = np.zeros((n_users, n_items), np.float32)
    clicks[0, [0, 5]] = 1
    clicks[1, [1, 5, 6]] = [2, 1, 1]
    clicks[2, 2] = 1
    clicks[3, 3] = 1
    clicks[4, [4, 7]] = 1  # user 5: no clicks (cold)
    seen = sp.csr_matrix(clicks)
    pop = PopularityModel(0, seen, np.asarray(clicks.sum(axis=0)).ravel(), np.zeros(n_items))
    return ALSModel(
        version=0,
        seen=seen,
        user_factors=rng.normal(size=(n_users, 3)).astype(np.float32),
        item_factors=items,
        fallback=pop,
        cold=np.array([False] * 5 + [True]),
    )


def test_rank_pct_matches_a_direct_count():
    model = _als_model(np.random.default_rng(0))
    # items 5.. arrived after hour 0; item 9 left before hour 30; item 4 arrives after it
    items = _metadata([0, 0, 0, 0, 40, 5, 6, 7, 8, 9], depart_t=[np.inf] * 9 + [20.0])
    order = np.array([5, 4, 0, 2, 1, 3])  # user 5 is cold: skipped
    frame = ItemRankProbe(order, n_users=3, items=items)(model, 7, 30.0)
    assert frame.schema == pl.Schema(ItemRankProbe.schema)
    assert frame["item_id"].to_list() == [5, 6, 7, 8]
    assert frame["model_version"].to_list() == [7] * 4
    assert frame["t"].to_list() == [30.0] * 4
    assert frame["n_clicks"].to_list() == [2, 1, 1, 0]
    assert frame["learned_weight"].to_list() == [1.0, 1.0, 1.0, 0.0]
    available = [0, 1, 2, 3, 5, 6, 7, 8]
    users = [4, 0, 2]
    for row in frame.iter_rows(named=True):
        i = row["item_id"]
        pcts = []
        for u in users:
            s = {j: float(model.user_factors[u] @ model.item_factors[j]) for j in available}
            beats = sum(s[j] < s[i] for j in available if j != i)
            ties = sum(s[j] == s[i] for j in available if j != i)
            pcts.append((beats + 0.5 * ties) / (len(available) - 1))
        assert row["rank_pct"] == pytest.approx(np.mean(pcts), abs=1e-12)


def test_rank_pct_ties_count_half():
    model = _als_model(np.random.default_rng(1))
    items = _metadata([0, 0, 0, 0, 0, 0, 1, 0, 1, 0])  # items 6 and 8 tie everywhere
    frame = ItemRankProbe(np.arange(6), n_users=5, items=items)(model, 0, 2.0)
    pct = dict(zip(frame["item_id"], frame["rank_pct"], strict=True))
    assert pct[6] == pct[8]


def test_rank_probe_reads_the_blend_weight_of_a_content_map():
    model = _als_model(np.random.default_rng(2))
    n = np.asarray(model.seen.sum(axis=0)).ravel()
    fitted = fit_content_map(
        np.random.default_rng(3).normal(size=(10, 2)),
        model.item_factors,
        n,
        warm_clicks=1,
        lambdas=[1.0],
        blend_k=5.0,
        seed=0,
        version=0,
        n_folds=2,
    )
    mapped = ALSModel(
        0, model.seen, model.user_factors, model.item_factors, model.fallback, model.cold,
        content_map=fitted,
    )  # fmt: skip
    items = _metadata([0, 0, 0, 0, 0, 1, 1, 1, 1, 1])
    frame = ItemRankProbe(np.arange(6), n_users=5, items=items)(mapped, 0, 2.0)
    np.testing.assert_allclose(frame["learned_weight"], n[5:] / (n[5:] + 5.0))


def test_linear_r2_matches_the_normal_equations():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3))
    y = x @ rng.normal(size=(3, 2)) + rng.normal(size=(40, 2))
    design = np.column_stack([np.ones(40), x])
    beta = np.linalg.solve(design.T @ design, design.T @ y)
    expected = 1 - ((y - design @ beta) ** 2).sum() / ((y - y.mean(axis=0)) ** 2).sum()
    assert linear_r2(x, y) == pytest.approx(expected)
    assert np.isnan(linear_r2(x[:4], y[:4]))  # 4 items, 3 predictors + intercept: any y fits


# r2_true is not refitted: it can fall below 0 (predictions further from the truth than its mean)
@pytest.mark.parametrize(("noise", "low", "high"), [(0.0, 0.9, 1.0), (5.0, -0.5, 0.3)])
def test_content_map_r2_against_the_truth_follows_the_content_noise(noise, low, high):
    """A catalog whose content is an exact linear image of the true factors (noise 0) lets the
    map recover them; drowned content (noise 5) does not. The stand-in for ALS's learned item
    factors is a random invertible linear image of the truth (ALS's space is a rotation of it)."""
    rng = np.random.default_rng(4)
    catalog = generate_catalog(
        600,
        topic_centers(8, 16, rng),
        topic_spread=0.6,
        appeal_scale=0.5,
        appeal_tail_df=3.0,
        content_dim=24,
        content_noise=noise,
        n_creators=60,
        rng=rng,
    )
    learned = catalog.factors @ rng.normal(size=(16, 16)) + 0.05 * rng.normal(size=(600, 16))
    n_clicks = np.r_[np.full(300, 4), rng.integers(0, 3, size=300)]  # the last 300 are cold
    fitted = fit_content_map(
        catalog.metadata.content,
        learned,
        n_clicks,
        warm_clicks=3,
        lambdas=[0.01, 0.1, 1.0, 10.0, 100.0],
        blend_k=5.0,
        seed=0,
        version=0,
    )
    model = SimpleNamespace(
        content_map=fitted,
        seen=sp.csr_matrix(n_clicks[None, :]),
        item_factors=fitted.blend(learned),  # what the deployed model serves with
    )
    probe = ContentMapProbe(catalog.factors, catalog.metadata, content_noise=noise)
    row = probe(model, 3, 10.0).row(0, named=True)
    assert row["model_version"] == 3 and row["n_warm"] == 300 and row["content_noise"] == noise
    assert row["lambda"] == fitted.lambda_ and row["cv_r2"] == fitted.cv_r2
    assert max(low, 0.0) <= row["r2_ceiling"] <= high
    assert low <= row["r2_true"] <= high
    # the predicted factors are an affine image of the content: never above the ceiling
    assert row["r2_true"] <= row["r2_ceiling"] + 1e-9
    if noise == 0:
        assert row["r2_ceiling"] == pytest.approx(1.0, abs=1e-6)
        assert row["r2_signal"] == pytest.approx(1.0, abs=1e-6)  # an affine image of the truth
    else:
        assert row["r2_signal"] < 0.5
    cold = n_clicks < 3
    assert row["r2_signal"] == pytest.approx(
        linear_r2(catalog.factors[cold], fitted.predicted[cold])
    )
    # r2_true by hand: the truth in the model's coordinates (normal equations on the warm
    # items' learned factors), against the predictions as they are
    warm = ~cold
    design = np.column_stack([np.ones(warm.sum()), catalog.factors[warm]])
    coef = np.linalg.solve(design.T @ design, design.T @ learned[warm])
    target = np.column_stack([np.ones(cold.sum()), catalog.factors[cold]]) @ coef
    pred = fitted.predicted[cold]
    expected = 1 - ((pred - target) ** 2).sum() / ((target - target.mean(axis=0)) ** 2).sum()
    assert row["r2_true"] == pytest.approx(expected, abs=1e-9)
    # the span: the best affine refit of the predictions, never above the content's own
    assert row["r2_subspace"] == pytest.approx(linear_r2(pred, target), abs=1e-9)
    assert row["r2_true"] <= row["r2_subspace"] + 1e-9 <= row["r2_ceiling"] + 2e-9


def test_content_map_probe_skips_models_without_a_map():
    model = SimpleNamespace(content_map=None, seen=sp.csr_matrix((1, 3)))
    probe = ContentMapProbe(np.zeros((3, 2)), _metadata([0, 0, 0]), content_noise=0.5)
    assert probe(model, 0, 1.0) is None


# --- end to end ---------------------------------------------------------------------------------
LIVING = {
    "world.item_arrival_rate": 10.0,
    "world.user_arrival_rate": 10.0,
    "world.item_lifetime_days": 40.0,
}


def _living(**dotted) -> dict:
    return tiny_config(**{**LIVING, **dotted})


@pytest.mark.slow
def test_a_living_run_with_a_content_map_writes_both_tables(tmp_path):
    cfg = _living(**{"policy.scorer.content_map": True})
    run(cfg, tmp_path / "run")
    logs = tmp_path / "run" / "logs"
    maps = pl.read_parquet(logs / "content_map.parquet")
    ranks = pl.read_parquet(logs / "item_ranks.parquet")
    deployments = pl.read_parquet(logs / "deployments.parquet")
    assert maps.schema == pl.Schema(ContentMapProbe.schema)
    assert ranks.schema == pl.Schema(ItemRankProbe.schema)
    assert maps["model_version"].to_list() == deployments["model_version"].to_list()
    assert (maps["content_noise"] == cfg["world"]["content_noise"]).all()
    assert maps["r2_true"].drop_nans().len() > 0
    fitted = maps.filter(pl.col("r2_true").is_not_nan())
    assert (fitted["r2_true"] <= fitted["r2_ceiling"] + 1e-9).all()
    # n_clicks: the item's clicks logged before the model's cut-off (an independent count)
    clicks = pl.read_parquet(logs / "impressions" / "**" / "*.parquet").filter("clicked")
    for version, t in ranks.select("model_version", "t").unique().iter_rows():
        counted = clicks.filter(pl.col("t") < t).group_by("item_id").agg(pl.len().alias("n"))
        rows = ranks.filter(pl.col("model_version") == version).join(
            counted.with_columns(pl.col("item_id").cast(pl.Int32)), on="item_id", how="left"
        )
        assert rows["n_clicks"].to_list() == rows["n"].fill_null(0).to_list()
    n = ranks["n_clicks"].cast(pl.Float64)
    np.testing.assert_allclose(ranks["learned_weight"], n / (n + 5.0))
    assert ranks["rank_pct"].is_between(0.0, 1.0).all()
    # only items that arrived during the run, and only while in the catalog
    world_items = ranks["item_id"].min()
    assert world_items >= cfg["world"]["n_items"]


@pytest.mark.slow
def test_content_map_off_is_byte_identical_to_a_config_without_its_keys(tmp_path):
    with_keys = _living(**{"policy.scorer.content_map": False})
    without = _living()
    for key in ("content_map", "content_warm_clicks", "content_lambdas", "content_blend_k"):
        del without["policy"]["scorer"][key]
    run(with_keys, tmp_path / "a")
    run(without, tmp_path / "b")
    a, b = _run_files(tmp_path / "a"), _run_files(tmp_path / "b")
    assert a == b
    assert "logs/item_ranks.parquet" in a and "logs/content_map.parquet" not in a


@pytest.mark.slow
def test_content_map_results_do_not_depend_on_the_batch_size(tmp_path):
    outputs = []
    for max_batch in (8192, 37):
        out = tmp_path / str(max_batch)
        run(
            _living(**{"policy.scorer.content_map": True, "sim.max_batch_requests": max_batch}), out
        )
        outputs.append(_run_files(out))
    assert outputs[0] == outputs[1]


def test_a_fixed_world_writes_no_item_probe_table(run_tiny):
    out = run_tiny("fixed")
    assert not (out / "logs" / "item_ranks.parquet").exists()
    assert not (out / "logs" / "content_map.parquet").exists()


def test_no_probe_users_gives_nan_ranks():
    model = _als_model(np.random.default_rng(0))
    items = _metadata([0, 0, 0, 0, 0, 1, 1, 1, 1, 1])
    frame = ItemRankProbe(np.arange(6), n_users=0, items=items)(model, 0, 2.0)
    assert frame.height == 5 and frame["rank_pct"].is_nan().all()


@pytest.mark.slow
def test_a_paused_living_run_with_a_content_map_continues_like_the_whole_run(tmp_path):
    """The probes' rows so far live in the simulation state: a copy continued after a pause
    writes the same tables as the uninterrupted run."""
    cfg = _living(**{"policy.scorer.content_map": True})
    whole, original, copied = _paused_copy_continued(tmp_path, cfg, 40.0)
    assert (whole / "logs" / "content_map.parquet").exists()
    _assert_same_files(whole, original)
    _assert_same_files(whole, copied)
