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


DELAY = [  # level, target, estimator, elapsed, complete, estimate, truth, open, seen
    ("item", "greedy", "IPS", 0.0, False, 0.0412, 0.1203, 1.0, 0.3815),
    ("item", "greedy", "IPS", 24.0, False, 0.0951, 0.1203, 0.4, 0.8123),
    ("item", "greedy", "IPS", 48.0, True, 0.1125, 0.1203, 0.0, 1.0),
    ("slate", "greedy", "slate_standard_IPS", 0.0, False, 0.0817, 0.2310, 1.0, 0.3815),
    ("slate", "greedy", "slate_standard_IPS", 24.0, False, 0.1997, 0.2310, 0.4, 0.8123),
    ("slate", "greedy", "slate_standard_IPS", 48.0, True, 0.2178, 0.2310, 0.0, 1.0),
]


@pytest.fixture
def conversion_study(study: Path) -> Path:
    cols = ("level", "target", "estimator", "elapsed_hours", "labels_complete", "estimate")
    rows = [dict(zip(cols, r[:6], strict=True)) for r in DELAY]
    frame = pl.DataFrame(rows).with_columns(
        truth=pl.Series([r[6] for r in DELAY]),
        bias=pl.Series([r[5] - r[6] for r in DELAY]),
        relative_bias=pl.Series([(r[5] - r[6]) / r[6] for r in DELAY]),
        open_share=pl.Series([r[7] for r in DELAY]),
        seen_share=pl.Series([r[8] for r in DELAY]),
        n_seeds=pl.lit(1, pl.Int64),
    )
    frame.write_csv(study / "ope_delay_summary.csv")
    meta = {
        "logging": "epsilon_greedy",
        "window_start_hour": 49.0,
        "window_end_hour": 72.0,
        "reward": "conversion",
        "reward_unit": "conversions within 48 h",
        "label_horizon_hours": 48.0,
        "conversion_value": False,
        "elapsed_hours": [0.0, 24.0, 48.0],
        "label_tail_days": 2,
    }
    (study / "ope.json").write_text(json.dumps(meta))
    return study


def test_click_reward_page_has_no_delay_section(study: Path) -> None:
    page = build_ope_report(study).read_text(encoding="utf-8")
    assert "ope-delay" not in page and "to the horizon" in page
    assert '"title":{"text":"slot-1 CTR"}' in page


def test_delay_section_shows_the_files_numbers(conversion_study: Path) -> None:
    page = build_ope_report(conversion_study).read_text(encoding="utf-8")
    assert '<h2 id="ope-delay">Estimating before the labels are in</h2>' in page
    flat = " ".join(page.split())  # sentences wrap in the HTML source
    assert "from hour 49 (the last deployment) to hour 72" in flat
    assert "went on 2 days past the window's end (hour 72)" in flat
    assert 'id="fig-ope-delay-item"' in page and 'id="fig-ope-delay-slate"' in page
    assert "conversions within 48 h per request" in page
    # the label table: one row per time, shares as the file holds them
    assert "<tr><td>+24 h</td><td class='num'>40.0%</td><td class='num'>81.2%</td></tr>" in page
    assert "<td>+48 h (complete)</td><td class='num'>0.0%</td><td class='num'>100.0%</td>" in page
    # each level's row: the estimate at each time, the truth, the relative bias at the first
    summary = pl.read_csv(conversion_study / "ope_delay_summary.csv")
    for level, estimator in (("item", "IPS"), ("slate", "slate_standard_IPS")):
        part = summary.filter(pl.col("estimator") == estimator).sort("elapsed_hours")
        cells = "".join(f"<td class='num'>{v:.3f}</td>" for v in part["estimate"])
        rel = part["relative_bias"][0]
        row = (
            f"<tr><td>greedy</td><td>{estimator}</td>{cells}"
            f"<td class='num'>{part['truth'][0]:.3f}</td>"
            f"<td class='num'>{100 * rel:.1f}%</td></tr>"
        )
        assert row in page, level
    assert "<td class='num'>0.041</td><td class='num'>0.095</td><td class='num'>0.113</td>" in page
    assert "-65.8%" in page  # (0.0412 - 0.1203) / 0.1203
    # the headline: the share logged at the first time, the range of relative biases then and
    # at complete labels ((0.0817 − 0.2310) / 0.2310 = −64.6%; (0.1125 − 0.1203) / 0.1203 = −6.5%)
    assert (
        "<b>Estimated at the window's end +0 h</b>, 38.1% of the conversions that count were in "
        "the log; the estimates' relative bias ran from -65.8% to -64.6% over every target and "
        "estimator, against -6.5% to -5.7% with complete labels." in flat
    )


def test_delay_section_needs_its_file(conversion_study: Path) -> None:
    (conversion_study / "ope_delay_summary.csv").unlink()
    with pytest.raises(ReportError, match=r"ope_delay_summary\.csv"):
        build_ope_report(conversion_study)
