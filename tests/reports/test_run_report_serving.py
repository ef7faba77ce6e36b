"""The run report's Serving section, from a hand-made finished run (``test_run_report``'s)
with the serving columns added to its ``metrics.parquet`` and a ``serving`` node in its config."""

from __future__ import annotations

import html
import math
import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml
from test_run_report import _write_run

from reports.metric_catalog import format_metric, metric_info
from reports.run_report import SERVING_METRICS, _serving_text, build_run_report, serving_reasons

NAN = math.nan
SERVING_VALUES = {
    "latency_p50_ms": [12.0, 35.5, 8.25],
    "latency_p95_ms": [80.0, 900.0, 30.0],
    "latency_p99_ms": [150.0, 4200.0, 155000.0],  # the mean prints in s
    "fallback_share_budget": [0.0, 0.125, 0.02],
    "fallback_share_overload": [0.0, 0.05, 0.0],
    "cum_fallback_share": [0.0, 0.09, 0.07],
    "cache_hit_rate": [0.0, 0.3, 0.25],
    "staleness_h": [10.0, 14.5, 7.25],
    "retrieval_recall": [NAN, NAN, NAN],  # no retrieval probe in this run: no panel
    "retrieval_recall_n": [NAN, NAN, NAN],
    "reranker_auc": [NAN, 0.61, 0.64],
}
SERVING_CONFIG = """seed: 3
policy:
  name: greedy
serving:
  model_servers: 2
  latency_budget_ms: 200
  cache_ttl_hours: 6
"""


def _with_serving(run: Path, values: dict[str, list[float]], config: str) -> Path:
    m = pl.read_parquet(run / "metrics.parquet")
    m.with_columns(pl.Series(k, v, dtype=pl.Float64) for k, v in values.items()).write_parquet(
        run / "metrics.parquet"
    )
    (run / "config.yaml").write_text(config)
    return run


@pytest.fixture(scope="module")
def serving_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("serving_run")
    _write_run(run)
    return _with_serving(run, SERVING_VALUES, SERVING_CONFIG)


@pytest.fixture(scope="module")
def section(serving_run: Path) -> str:
    page = build_run_report(serving_run).read_text(encoding="utf-8")
    start = page.index('<h2 id="serving">')
    return page[start : page.index("<h2", start + 5)]


def _cells(section: str) -> set[str]:
    return {html.unescape(c) for c in re.findall(r'<td class="num">([^<]*)</td>', section)}


def test_section_shown_with_reasons_and_panels(section: str) -> None:
    assert "2 model servers" in section
    assert "latency budget 200 ms" in section
    assert "slate cache with a TTL of 6 h" in section
    for div in ("fig-latency", "fig-fallback", "fig-cache", "fig-reranker"):
        assert f'id="{div}"' in section, div
    assert 'id="fig-retrieval"' not in section  # every value NaN: no empty panel
    # the table has one row per serving metric with a value, recall left out
    rows = re.findall(r"<tr><td>([^<]*)</td>", section)
    assert rows == [
        metric_info(c).title
        for c in SERVING_METRICS
        if not all(math.isnan(v) for v in SERVING_VALUES[c])
    ]


def test_table_cells_are_the_metrics_values(section: str) -> None:
    cells = _cells(section)
    for col, values in SERVING_VALUES.items():
        finite = [v for v in values if not math.isnan(v)]
        if not finite:
            continue
        kind = metric_info(col).kind
        assert format_metric(values[0], kind) in cells
        assert format_metric(values[-1], kind) in cells
        if metric_info(col).per_window:
            assert format_metric(sum(finite) / len(finite), kind) in cells


def test_every_number_in_the_text_is_a_table_value(section: str) -> None:
    text = html.unescape(re.search(r'<p class="serving-text">(.*?)</p>', section, re.S)[1])
    numbers = re.findall(r"(?<![\w.])\d[\d,]*(?:\.\d+)?(?: ms| s| min|%| h)?", text)  # not p99
    assert len(numbers) >= 8
    cells = _cells(section)
    for number in numbers:
        assert number in cells, (number, text)
    # and the cells are the metrics' values computed independently here
    assert format_metric(0.07, "pct") in text  # cumulative fallback share, final window
    assert format_metric((12.0 + 35.5 + 8.25) / 3, "ms") in text  # mean p50


def test_fallback_panel_is_stacked(section: str) -> None:
    fallback = section[section.index('id="fig-fallback"') :]
    fallback = fallback[: fallback.index("</section>")]
    assert fallback.count('"stackgroup":"left"') == 2


def test_latency_axis_is_logarithmic(section: str) -> None:
    latency = section[section.index('id="fig-latency"') :]
    latency = latency[: latency.index("</section>")]
    assert '"type":"log"' in latency
    assert "1,000 ms" in latency  # ticks in the metric's own format


def test_no_section_for_a_default_serving_run(tmp_path: Path) -> None:
    """Serving columns present but nothing to show: the default config as hydra composes it
    (unlimited servers, no budget, no cache, the identity rerank stage), no fallback, no
    reranker AUC, recall 1."""
    from conftest import compose_config

    run = tmp_path / "run"
    run.mkdir()
    _write_run(run)
    config = yaml.safe_dump(compose_config())
    assert serving_reasons(pl.DataFrame({"window": [0]}), yaml.safe_load(config)) == []
    default = {c: [0.0, 0.0, 0.0] for c in SERVING_METRICS} | {
        "latency_p50_ms": [5.0, 5.0, 5.0],
        "staleness_h": [3.0, 4.0, 5.0],
        "retrieval_recall": [1.0, 1.0, 1.0],
        "retrieval_recall_n": [1.0, 1.0, 1.0],
        "reranker_auc": [NAN, NAN, NAN],
    }
    _with_serving(run, default, config)
    page = build_run_report(run).read_text(encoding="utf-8")
    assert 'id="serving"' not in page and "fig-latency" not in page


def test_no_section_for_an_older_run(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    _write_run(run)
    page = build_run_report(run).read_text(encoding="utf-8")
    assert 'id="serving"' not in page


def test_reasons_from_data_alone() -> None:
    m = pl.DataFrame(
        {
            "fallback_share_budget": [0.0, 0.01],
            "retrieval_recall": [1.0, 0.8],
            "reranker_auc": [NAN, NAN],
        }
    )
    assert serving_reasons(m, None) == [
        "requests served by the popularity fallback",
        "retrieval recall below 1",
    ]
    text = _serving_text(
        pl.DataFrame({"retrieval_recall": [NAN, 1.0, 0.9], "retrieval_recall_n": [NAN, 0.8, 0.7]})
    )
    assert (
        text
        == "Retrieval kept 0.950 of the model's own top-K and 0.750 of its top-N candidates on average."
    )
    mixed = {"policy": {"retrieve": {"quotas": {"als": 0.6, "covisit": 0.4}}}}
    assert serving_reasons(m.head(1), mixed) == ["retrievers als 0.6, covisit 0.4"]
    single = {"policy": {"retrieve": {"quotas": {"als": 1.0, "covisit": 0.0}}}}
    assert serving_reasons(m.head(1), single) == []
    learned = {"policy": {"rerank": {"_target_": "policies.learned_rerank.LearnedRerank"}}}
    assert serving_reasons(m.head(1), learned) == ["a learned reranker"]
    identity = {"policy": {"rerank": {"_target_": "policies.rerank.Identity"}}}
    assert serving_reasons(m.head(1), identity) == []


def test_text_leaves_out_a_fallback_and_cache_that_never_served() -> None:
    """A run whose serving section exists for a reranker only: no sentence about a popularity
    fallback or a slate cache that served 0% of requests, but the model's age still."""
    values = SERVING_VALUES | {
        "fallback_share_budget": [0.0, 0.0, 0.0],
        "fallback_share_overload": [0.0, 0.0, 0.0],
        "cum_fallback_share": [0.0, 0.0, 0.0],
        "cache_hit_rate": [0.0, 0.0, 0.0],
    }
    text = _serving_text(pl.DataFrame({"window": [0, 1, 2], **values}))
    assert "fallback" not in text and "cache" not in text
    stale = format_metric(float(np.mean(values["staleness_h"])), metric_info("staleness_h").kind)
    assert f"The model behind a slate was {stale} old on average." in text
    assert "reranker's AUC" in text
    # and where they served, both are reported
    both = _serving_text(pl.DataFrame({"window": [0, 1, 2], **SERVING_VALUES}))
    assert "popularity fallback" in both and "slate cache served" in both
