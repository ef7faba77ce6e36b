"""The OPE page is built from the study's files alone: hand-made ope.parquet / ope_summary.csv /
ope.json in tmp_path."""

from __future__ import annotations

import json
import re
from pathlib import Path

import polars as pl
import pytest
from plotly.offline import get_plotlyjs

from reports.cli import main
from reports.files import ReportError
from reports.ope_report import build_ope_report

ROWS = [  # estimator, level, target, estimate, low, high, truth, warning
    ("IPS", "item", "greedy", 0.31, 0.25, 0.37, 0.30, ""),
    ("IPS", "item", "softmax", 0.12, 0.02, 0.30, 0.20, "few logged actions the target takes"),
    ("slate_standard_IPS", "slate", "greedy", 1.10, 0.90, 1.30, 1.00, ""),
    ("slate_standard_IPS", "slate", "softmax", 0.80, 0.50, 1.20, 0.70, ""),
]


@pytest.fixture
def study(tmp_path: Path) -> Path:
    cols = ("estimator", "level", "target", "estimate", "ci_low", "ci_high", "truth")
    table = pl.DataFrame([dict(zip(cols, r[:7], strict=True)) for r in ROWS]).with_columns(
        seed=pl.lit(0, pl.Int64),
        ess_share=pl.lit(0.5),
        clipped_share=pl.lit(0.0),
        support_warning=pl.Series([r[7] for r in ROWS]),
    )
    table.write_parquet(tmp_path / "ope.parquet")
    pl.DataFrame(
        {
            "estimator": ["IPS", "slate_standard_IPS"],
            "level": ["item", "slate"],
            "bias": [-0.035, 0.1],
            "rmse": [0.0570088, 0.1],
            "relative_error": [0.2166667, 0.1214286],
            "ci_coverage": [1.0, 1.0],
            "support_warning": [True, False],
            "kendall_tau": [float("nan"), 1.0],
        }
    ).write_csv(tmp_path / "ope_summary.csv")
    (tmp_path / "ope.json").write_text(
        json.dumps({"logging": "epsilon_greedy", "window_start_hour": 73.0})
    )
    return tmp_path


def test_page_from_files(study: Path) -> None:
    page = build_ope_report(study).read_text(encoding="utf-8")
    assert page.count(get_plotlyjs()) == 1
    assert "Off-policy evaluation — logged by epsilon_greedy" in page
    assert "from hour 73 (the last deployment)" in page
    assert 'id="fig-ope-item"' in page and 'id="fig-ope-slate"' in page
    rows = re.findall(r"<tr>(<td>.*?)</tr>", page)
    assert rows[0] == (
        "<td>IPS</td><td>item</td><td class='num'>-0.035</td><td class='num'>0.057</td>"
        "<td class='num'>0.217</td><td class='num'>1.000</td><td>True</td>"
        "<td class='num'>nan</td>"
    )
    assert "<li><b>softmax</b>: few logged actions the target takes</li>" in page


def test_cli_rebuilds_the_page(study: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(study)]) == 0
    assert capsys.readouterr().out.strip() == str(study / "ope.html")
    (study / "ope.json").unlink()
    with pytest.raises(ReportError, match=r"ope\.json"):
        build_ope_report(study)
