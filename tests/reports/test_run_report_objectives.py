"""The run report's Objectives and Constraint ledger sections, on synthetic run folders.

The constrained reranker that writes ``logs/constraints.parquet`` is built elsewhere: the ledger
files and metric columns here are made by hand in the contract's schema, and every number the
page shows is checked against values computed here from those files.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

import polars as pl
from test_run_report import _write_run

from reports.run_report import LEDGER_METRICS, OBJECTIVE_METRICS, build_run_report

NAN = float("nan")
OBJECTIVES = {
    "revenue_per_request": [4.25, 5.5, NAN],  # no request in the last window's measure
    "cum_revenue": [131.75, 269.25, 269.25],
    "creator_gini_exposure": [0.3125, 0.2, 0.875],
    "max_creator_share": [0.125, 0.1, 0.9],
    "content_diversity": [0.95, 0.9, 0.4],
}
LEDGER_COLUMNS = {
    "floor_met_share": [1.0, 0.985, 0.99],
    "floor_infeasible_share": [0.0, 0.015, 0.01],
    "item_max_share": [0.04, 0.052, 0.049],
    "item_cap": [0.05, 0.05, 0.05],
    "creator_max_share_window": [0.08, 0.07, 0.06],
    "creator_cap": [NAN, NAN, NAN],  # creator cap off
    "multiplier_max": [0.0, 1.25, 0.5],
}


def _run(tmp_path: Path, columns: dict[str, list[float]]) -> Path:
    run = tmp_path / "run"
    _write_run(run)
    metrics = pl.read_parquet(run / "metrics.parquet")
    metrics.with_columns(
        *(pl.Series(k, v, dtype=pl.Float64) for k, v in columns.items())
    ).write_parquet(run / "metrics.parquet")
    return run


def _ledger_file(run: Path) -> pl.DataFrame:
    """Four ticks: 400 slates, 390 met the floor, 6 infeasible; the item cap (5%) exceeded at
    one tick (5.2%); the creator cap off."""
    ledger = pl.DataFrame(
        {
            "t": [12.0, 24.0, 48.0, 72.0],
            "n_slates": [100, 100, 150, 50],
            "n_floor_met": [100, 97, 145, 48],
            "n_floor_infeasible": [0, 3, 2, 1],
            "item_max_share": [0.04, 0.052, 0.049, 0.045],
            "creator_max_share": [0.08, 0.07, 0.06, 0.06],
            "item_cap": [0.05] * 4,
            "creator_cap": [NAN] * 4,
            "item_multiplier_max": [0.0, 1.25, 0.5, 0.375],
            "creator_multiplier_max": [0.0] * 4,
            "n_items_penalized": [0, 3, 2, 1],
            "n_creators_penalized": [0] * 4,
        },
        schema_overrides={
            k: pl.Int64
            for k in (
                "n_slates",
                "n_floor_met",
                "n_floor_infeasible",
                "n_items_penalized",
                "n_creators_penalized",
            )
        },
    )
    ledger.write_parquet(run / "logs" / "constraints.parquet")
    return ledger


def _section(page: str, anchor: str) -> str:
    start = page.index(f'<h2 id="{anchor}">')
    end = page.find("<h2", start + 1)
    return page[start:end]


def _table_rows(section: str, table_class: str) -> list[list[str]]:
    table = section[section.index(f'<table class="{table_class}">') :]
    table = table[: table.index("</table>")]
    body = table[table.index("<tbody>") :]
    return [
        [html.unescape(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", row)]
        for row in re.findall(r"<tr>(.*?)</tr>", body)
    ]


def test_objectives_section_absent_without_the_columns(tmp_path: Path) -> None:
    run = tmp_path / "run"
    _write_run(run)
    page = build_run_report(run).read_text(encoding="utf-8")
    assert 'id="objectives"' not in page
    assert 'id="constraint-ledger"' not in page


def test_objectives_section_numbers_are_the_metrics(tmp_path: Path) -> None:
    page = build_run_report(_run(tmp_path, OBJECTIVES)).read_text(encoding="utf-8")
    section = _section(page, "objectives")
    for div in ("fig-revenue", "fig-creators", "fig-content-diversity"):
        assert f'id="{div}"' in section
    rows = _table_rows(section, "metrics")
    assert len(rows) == len(OBJECTIVE_METRICS)
    by_label = {r[0]: r[2:] for r in rows}  # first, final, mean
    assert by_label["Revenue per request"] == ["4.250", "–", "4.875"]  # mean of 4.25, 5.5
    assert by_label["Cumulative revenue"] == ["132", "269", "–"]  # a running total: no mean
    assert by_label["Creator exposure Gini"] == [
        "0.312",
        "0.875",
        f"{(0.3125 + 0.2 + 0.875) / 3:.3f}",
    ]
    assert by_label["Max creator share"] == ["12.5%", "90.0%", f"{(0.125 + 0.1 + 0.9) / 3:.1%}"]
    assert by_label["Content diversity"] == ["0.950", "0.400", f"{(0.95 + 0.9 + 0.4) / 3:.3f}"]
    text = html.unescape(re.search(r'<p class="objectives-text">(.*?)</p>', section).group(1))
    # the sentence's numbers are the table's means (and the revenue total its final value)
    cells = [by_label[label][2] for label in ("Revenue per request", "Creator exposure Gini")]
    cells += [by_label["Max creator share"][2], by_label["Content diversity"][2]]
    cells.append(by_label["Cumulative revenue"][1])
    assert cells == ["4.875", "0.462", "37.5%", "0.750", "269"]
    for number in cells:
        assert number in text, number


def test_ledger_absent_without_its_file(tmp_path: Path) -> None:
    """The ledger's metric columns alone (NaN in a run without the file) show nothing."""
    nan_ledger = {k: [NAN] * 3 for k in LEDGER_METRICS}
    page = build_run_report(_run(tmp_path, OBJECTIVES | nan_ledger)).read_text(encoding="utf-8")
    assert 'id="constraint-ledger"' not in page
    assert 'id="objectives"' in page


def test_ledger_table_per_window_and_totals(tmp_path: Path) -> None:
    run = _run(tmp_path, OBJECTIVES | LEDGER_COLUMNS)
    ledger = _ledger_file(run)
    section = _section(build_run_report(run).read_text(encoding="utf-8"), "constraint-ledger")
    rows = _table_rows(section, "ledger")
    assert rows == [
        ["1.0", "100.0%", "0.0%", "4.0% / 5.0%", "8.0% / off", "0"],
        ["2.0", "98.5%", "1.5%", "5.2% / 5.0% (over)", "7.0% / off", "1.25"],
        ["3.0", "99.0%", "1.0%", "4.9% / 5.0%", "6.0% / off", "0.5"],
    ]
    text = html.unescape(re.search(r'<p class="ledger-text">(.*?)</p>', section).group(1))
    n = int(ledger["n_slates"].sum())
    met, infeasible = int(ledger["n_floor_met"].sum()), int(ledger["n_floor_infeasible"].sum())
    assert (n, met, infeasible) == (400, 390, 6)
    assert "400 slates" in text and "at 4 ticks" in text
    assert f"{met / n:.1%} met the per-slate floor" in text  # 97.5%
    assert f"({infeasible / n:.1%} could not" in text  # 1.5%
    assert f"{met / (n - infeasible):.1%} of the feasible ones" in text  # 99.0%
    assert "at most 5.2% against a cap of 5.0%; 1 of 4 ticks" in text
    assert "creator share" not in text  # the creator cap is off
    assert "were 0.375 (items, 1 penalized) and 0 (creators, 0 penalized)" in text


def test_ledger_file_without_metric_columns_says_so(tmp_path: Path) -> None:
    run = _run(tmp_path, OBJECTIVES)
    _ledger_file(run)
    section = _section(build_run_report(run).read_text(encoding="utf-8"), "constraint-ledger")
    assert "no ledger column floor_met_share" in section
    assert '<table class="ledger">' not in section


def test_ledger_without_slates(tmp_path: Path) -> None:
    run = _run(tmp_path, OBJECTIVES | LEDGER_COLUMNS)
    _ledger_file(run).with_columns(
        n_slates=pl.lit(0, pl.Int64),
        n_floor_met=pl.lit(0, pl.Int64),
        n_floor_infeasible=pl.lit(0, pl.Int64),
    ).write_parquet(run / "logs" / "constraints.parquet")
    section = _section(build_run_report(run).read_text(encoding="utf-8"), "constraint-ledger")
    assert "served no slate" in section


def test_ledger_of_a_cap_only_run_claims_no_floor(tmp_path: Path) -> None:
    """A constrained run without a floor (caps only): every slate trivially "meets" the floor,
    so the text says no floor was set instead of "100% met the per-slate floor"."""
    import yaml

    from reports.run_report import read_config

    run = _run(tmp_path, OBJECTIVES | LEDGER_COLUMNS)
    _ledger_file(run)
    config = read_config(run) or {}
    rerank = {"_target_": "x.ConstrainedRerank", "min_creators": 0, "min_content_diversity": 0.0}
    config.setdefault("policy", {})["rerank"] = rerank
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    section = _section(build_run_report(run).read_text(encoding="utf-8"), "constraint-ledger")
    text = html.unescape(re.search(r'<p class="ledger-text">(.*?)</p>', section).group(1))
    assert "no per-slate floor was set" in text
    assert "met the per-slate floor" not in text
    assert "at most 5.2% against a cap of 5.0%" in text  # the caps are still reported
