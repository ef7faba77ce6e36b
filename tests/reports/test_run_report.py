"""The run report is rebuilt from a run's files alone: a hand-made finished run in tmp_path."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from plotly.offline import get_plotlyjs

from reports.cli import main
from reports.files import ReportError, item_exposure
from reports.inequality import lorenz
from reports.run_report import build_run_report, headline
from sim.inequality import gini

N_ITEMS = 20
# per-item impressions by window; items 0-4 are never shown in the first window
FIRST = np.array([0, 0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 5, 6, 8, 10, 12, 15, 20, 30])
MIDDLE = np.full(N_ITEMS, 5)
LAST = np.zeros(N_ITEMS, dtype=np.int64)
LAST[[3, 7]] = [90, 10]
FIG_IDS = (
    "fig-coverage",
    "fig-concentration",
    "fig-popularity",
    "fig-utility",
    "fig-ctr",
    "fig-diversity",
    "fig-lorenz",
)
IMPRESSION_SCHEMA = {
    "request_id": pl.Int64,
    "t": pl.Float64,
    "user_id": pl.Int32,
    "item_id": pl.Int32,
    "position": pl.Int16,
    "model_version": pl.Int32,
    "policy": pl.Categorical(),
    "score": pl.Float32,
    "propensity": pl.Float64,
    "clicked": pl.Boolean,
    "source": pl.Enum(["model", "explore"]),
}


def _impressions(counts: np.ndarray, window: int, version: int, rng: np.random.Generator):
    items = np.repeat(np.arange(N_ITEMS), counts)
    rng.shuffle(items)
    n = items.size
    return {
        "t": 24.0 * window + np.sort(rng.uniform(0, 24, n)) * 0.999,  # strictly inside
        "item_id": items,
        "model_version": np.full(n, version),
    }


def _gini_mean_abs_difference(x: np.ndarray) -> float:
    """Textbook definition, independent of the sorted-rank formula under test."""
    x = x.astype(np.float64)
    return float(np.abs(x[:, None] - x[None, :]).sum() / (2 * x.size**2 * x.mean()))


def _write_run(run: Path) -> None:
    rng = np.random.default_rng(7)
    parts = [
        _impressions(FIRST, 0, -1, rng),
        _impressions(MIDDLE, 1, 0, rng),
        _impressions(LAST, 2, 1, rng),
        # boundaries: t == 24 starts window 1; t == 72 (the horizon) belongs to the last window
        {"t": np.array([24.0, 72.0]), "item_id": np.array([0, 3]), "model_version": [0, 1]},
    ]
    imp = pl.DataFrame(
        {k: np.concatenate([np.asarray(p[k]) for p in parts]) for k in parts[0]}
    ).sort("t")
    n = imp.height
    imp = imp.with_columns(
        request_id=pl.int_range(n) // 4,
        user_id=pl.int_range(n) % 13,
        position=pl.int_range(n) % 4,
        policy=pl.lit("greedy"),
        score=pl.lit(0.5),
        propensity=pl.lit(1.0),
        clicked=pl.int_range(n) % 9 == 0,
        source=pl.lit("model"),
    ).select([pl.col(c).cast(d) for c, d in IMPRESSION_SCHEMA.items()])
    rounds = {0: imp.filter(pl.col("t") < 24), 1: imp.filter(pl.col("t") >= 24)}
    for r, df in rounds.items():
        path = run / "logs" / "impressions" / f"round={r:04d}" / "part.parquet"
        path.parent.mkdir(parents=True)
        df.write_parquet(path)
    # what the run writes beside the log: per-item counts per window (the last one closed on the
    # right), shown items only; and the deployments
    (
        imp.with_columns(window=(pl.col("t") // 24).clip(0, 2).cast(pl.Int32))
        .group_by("window", "item_id")
        .agg(impressions=pl.len().cast(pl.Int64), clicks=pl.col("clicked").sum().cast(pl.Int64))
        .sort("window", "item_id")
        .write_parquet(run / "item_exposure.parquet")
    )
    pl.DataFrame(
        {"model_version": [0, 1], "t_train_start": [23.0, 47.0], "t_deployed": [24.0, 48.0]}
    ).cast({"model_version": pl.Int32}).write_parquet(run / "logs" / "deployments.parquet")

    bounds = {"window": [0, 1, 2], "t_start": [0.0, 24.0, 48.0], "t_end": [24.0, 48.0, 72.0]}
    pl.DataFrame(bounds | {"model_version": [-1, 0, 1]}).cast(
        {"window": pl.Int32, "model_version": pl.Int32}
    ).write_parquet(run / "logs" / "snapshots.parquet")
    nan = float("nan")
    floats = {
        "coverage_exposure": [0.75, 1.0, 0.10],
        "coverage_clicks": [0.4, 0.6, 0.05],
        "gini_exposure": [0.41, 0.05, 0.92],
        "gini_clicks": [0.5, 0.3, 0.95],
        "popularity_percentile": [0.5, 0.6, 0.9],
        "popularity_drift": [0.0, 0.1, 0.4],
        "homogenization": [nan, 0.2, 0.7],
        "utility": [0.31, 0.35, 0.33],
        "utility_clicked": [0.5, nan, 0.6],
        "cumulative_utility": [10.0, 25.0, 40.0],
        "ctr": [0.11, 0.12, 0.10],
        "long_tail_share": [0.6, 0.5, 0.0],
        "top1pct_exposure_share": [0.25, 0.05, 0.9],
        "intra_list_diversity": [0.8, 0.7, 0.3],
        "cum_coverage_exposure": [0.75, 1.0, 1.0],
        "cum_gini_exposure": [0.41, 0.3, 0.5],
    }
    counts = {
        "n_requests": [31, 25, 25],
        "n_impressions": [124, 101, 101],
        "n_clicks": [14, 11, 11],
    }
    pl.DataFrame(bounds | floats | counts | {"model_version": [-1, 0, 1]}).cast(
        {"window": pl.Int32, "model_version": pl.Int32}
    ).write_parquet(run / "metrics.parquet")
    summary = {
        "status": "complete",
        "policy": "greedy",
        "seed": 3,
        "config_name": "config",
        "catalog_size": N_ITEMS,
        "n_users": 13,
        "days": 3,
        "n_windows": 3,
        "n_requests": 81,
        "n_impressions": 326,
        "n_clicks": 36,
        "final": {"ctr": 0.10, "homogenization": None},
        "mean": {"ctr": 0.11},
        "timing_seconds": {"total": 1.0},
    }
    (run / "summary.json").write_text(json.dumps(summary))
    (run / "config.yaml").write_text("seed: 3\npolicy:\n  name: greedy  # <b>not html</b>\n")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("run")
    _write_run(run)
    return run


@pytest.fixture(scope="module")
def page(run_dir: Path) -> str:
    return build_run_report(run_dir).read_text(encoding="utf-8")


# ------------------------------------------------------------------ Lorenz and exposure


def test_lorenz_textbook_cases() -> None:
    x, y = lorenz(np.full(4, 5))
    np.testing.assert_allclose(x, [0, 0.25, 0.5, 0.75, 1])
    np.testing.assert_allclose(y, x)  # all equal: the diagonal
    assert gini(np.full(4, 5)) == 0.0

    x, y = lorenz(np.array([0, 0, 7, 0]))
    np.testing.assert_allclose(y, [0, 0, 0, 0, 1])  # one item takes all: flat, then a jump
    assert gini(np.array([0, 0, 7, 0])) == pytest.approx(0.75)  # (n - 1) / n


def test_lorenz_counts_zero_items() -> None:
    x, y = lorenz(np.array([6, 0, 2, 0]))
    np.testing.assert_allclose(x, [0, 0.25, 0.5, 0.75, 1])
    np.testing.assert_allclose(y, [0, 0, 0, 0.25, 1])
    # Gini = 1 − 2 · area under the Lorenz curve = 1 − 2 · 0.1875
    assert gini(np.array([6, 0, 2, 0])) == pytest.approx(0.625)
    assert np.isnan(gini(np.zeros(3)))
    assert np.isnan(lorenz(np.zeros(3))[1]).all()


def test_lorenz_vertices_are_exact() -> None:
    counts = np.random.default_rng(1).poisson(0.7, 500)
    x, y = lorenz(counts)
    vx, vy = lorenz(counts, vertices_only=True)
    assert vx.size < x.size / 10
    np.testing.assert_allclose(np.interp(x, vx, vy), y)  # linear between the vertices
    assert gini(counts) == pytest.approx(1 - np.sum(np.diff(x) * (y[1:] + y[:-1])))


def test_item_exposure_reads_one_window(tmp_path: Path) -> None:
    pl.DataFrame(
        {"window": [0, 0, 1, 1], "item_id": [2, 0, 0, 3], "impressions": [2, 1, 5, 7]}
    ).write_parquet(tmp_path / "item_exposure.parquet")
    np.testing.assert_array_equal(item_exposure(tmp_path, 0, 4), [1, 0, 2, 0])
    np.testing.assert_array_equal(item_exposure(tmp_path, 1, 4), [5, 0, 0, 7])
    np.testing.assert_array_equal(item_exposure(tmp_path, 2, 4), [0, 0, 0, 0])
    with pytest.raises(ReportError, match="outside the catalog"):
        item_exposure(tmp_path, 1, 3)
    with pytest.raises(ReportError, match="not a finished run"):
        item_exposure(tmp_path / "nope", 0, 4)


def test_exposure_from_run_files_matches_construction(run_dir: Path) -> None:
    np.testing.assert_array_equal(item_exposure(run_dir, 0, N_ITEMS), FIRST)
    last = item_exposure(run_dir, 2, N_ITEMS)
    np.testing.assert_array_equal(last, LAST + np.eye(N_ITEMS, dtype=np.int64)[3])


# ------------------------------------------------------------------ the page


def test_page_is_self_contained(page: str) -> None:
    bundle = get_plotlyjs()
    assert page.count(bundle) == 1
    assert page.count(bundle.splitlines()[1]) == 1  # the "plotly.js vX.Y.Z" banner
    assert page.index(bundle) < page.index("</head>")
    assert not re.search(r"<script[^>]*\bsrc\s*=", page)
    assert "<link" not in page
    rest = page.replace(bundle, "")
    assert "cdn.plot.ly" not in rest
    assert "https://" not in rest


def test_page_content(page: str) -> None:
    assert "<title>recloop run report — greedy (seed 3)</title>" in page
    for fig_id in FIG_IDS:
        assert f'id="{fig_id}"' in page
    positions = [page.index(f'id="{fig_id}"') for fig_id in FIG_IDS]
    assert positions == sorted(positions)
    assert (
        "3 windows over 3 simulated days. CTR rose from 11.0% (bootstrap) to 12.0% on day 2 and "
        "fell to 10.0% by day 3. Exposure coverage rose from 75.0% (bootstrap) to 100.0% on day 2 "
        "and fell to 10.0% by day 3. True utility of shown items rose from 0.310 (bootstrap) to "
        "0.350 on day 2 and fell to 0.330 by day 3."
    ) in page
    assert "<th>First window (bootstrap)</th>" in page
    assert "&lt;b&gt;not html&lt;/b&gt;" in page  # config is escaped
    assert "recloop-report" in page.split("<footer>")[1]
    homogenization_row = re.search(r"<tr><td>Homogenization</td>.*?</tr>", page)
    assert homogenization_row and '<td class="num">–</td>' in homogenization_row.group(0)
    assert "326" in page and "81" in page  # totals from summary.json
    # this run's metrics.parquet predates the exploration and model-quality columns
    for fig_id in ("fig-exploration", "fig-model-quality"):
        assert f'id="{fig_id}"' not in page
    assert page.count("Not in this run&#x27;s metrics.parquet") == 2


def test_lorenz_labels_carry_window_gini(page: str) -> None:
    last = LAST.copy()
    last[3] += 1  # the impression at the horizon t == 72
    for counts in (FIRST, last):
        g = _gini_mean_abs_difference(counts)
        assert gini(counts) == pytest.approx(g)
    # the labels print metrics.parquet's exposure Gini of the window, not a recount
    assert "first window (day 0\\u20131): Gini 0.410" in page  # plotly's JSON escapes the dash
    assert "last window (day 2\\u20133): Gini 0.920" in page


def test_deployment_markers_are_a_rug(page: str) -> None:
    """One short tick per deployment (logs/deployments.parquet) along the bottom of each chart,
    not a full-height line."""
    assert "Ticks along the bottom: deployment of each new model version." in page
    coverage = page.split('id="fig-coverage"')[1].split("</script>")[0]
    markers = re.findall(r'"x0":([\d.]+),"x1":([\d.]+),"xref":"x","y0":0,"y1":([\d.]+)', coverage)
    assert [(float(a), float(b)) for a, b, _ in markers] == [(1.0, 1.0), (2.0, 2.0)]
    assert all(float(top) <= 0.05 for _, _, top in markers)


def test_run_without_item_exposure_skips_lorenz(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    _write_run(run)
    (run / "item_exposure.parquet").unlink()
    page = build_run_report(run).read_text(encoding="utf-8")
    assert 'id="fig-lorenz"' not in page and "No item_exposure.parquet" in page


def test_headline_single_window_and_nan(run_dir: Path) -> None:
    metrics = pl.read_parquet(run_dir / "metrics.parquet")
    assert headline(metrics.head(1)) == (
        "A single window of 1 simulated day. CTR was 11.0% on day 1. Exposure coverage was "
        "75.0% on day 1. True utility of shown items was 0.310 on day 1."
    )
    text = headline(metrics.with_columns(coverage_exposure=pl.lit(float("nan"))))
    assert "Exposure coverage: no value in any window." in text
    # a NaN bootstrap value: the sentence starts at the first model window
    text = headline(metrics.with_columns(ctr=pl.Series([float("nan"), 0.12, 0.10])))
    assert "CTR was 12.0% on day 2 and fell to 10.0% by day 3." in text


# ------------------------------------------------------------------ CLI


def test_cli_rebuilds_from_files(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = run_dir / "report.html"
    report.unlink(missing_ok=True)
    assert main([str(run_dir)]) == 0
    assert capsys.readouterr().out.strip() == str(report)
    assert report.is_file() and report.stat().st_size > len(get_plotlyjs())
    assert not (run_dir / ".report.html.tmp").exists()


@pytest.mark.parametrize("missing", ["summary.json", "metrics.parquet"])
def test_cli_missing_file_exit_2(
    run_dir: Path, tmp_path: Path, missing: str, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(run_dir, broken)
    (broken / missing).unlink()
    (broken / "report.html").unlink(missing_ok=True)
    with pytest.raises(ReportError, match=missing):
        build_run_report(broken)
    assert main([str(broken)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("recloop-report: error: not a finished run:")
    assert missing in err and err.count("\n") == 1
    assert not (broken / "report.html").exists()


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize(
    "broken_file",
    ["metrics.parquet", "summary.json", "logs/impressions/round=0001/part.parquet"],
)
@pytest.mark.parametrize("with_log", [False, True])
def test_cli_truncated_input_is_one_line_naming_the_file(
    run_dir: Path, tmp_path: Path, broken_file: str, with_log: bool
) -> None:
    """A truncated input (a full disk, a copy cut short) is one line naming the file, exit 1,
    no traceback on the terminal (it goes to the run's cli.log, or a temp file when the run has
    none), no page and no temp file written, nothing else touched. A log partition the page
    does not read is checked too (its footer): the run's data are incomplete."""
    import subprocess
    import sys

    broken = tmp_path / "run"
    shutil.copytree(run_dir, broken)
    (broken / "report.html").unlink(missing_ok=True)
    for r in range(2):
        part = broken / "logs" / "impressions" / f"round={r:04d}" / "part.parquet"
        part.parent.mkdir(parents=True, exist_ok=True)
        pl.DataFrame({"request_id": [1, 2, 3]}).write_parquet(part)
    if with_log:
        (broken / "cli.log").write_text("the run's log\n")
    _truncate(broken / broken_file)
    before = {p: p.read_bytes() for p in broken.rglob("*") if p.is_file() and p.name != "cli.log"}
    temp = tmp_path / "temp"
    temp.mkdir()
    proc = subprocess.run(
        [sys.executable, "-m", "reports.cli", str(broken)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "TMPDIR": str(temp)},
    )
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    prefix = (
        f"recloop-report: error: {broken / broken_file}: cannot be read, truncated or corrupt ("
    )
    assert lines[0].startswith(prefix), lines[0]
    where = Path(lines[0].rpartition("traceback in ")[2].rstrip(")"))
    assert where == (broken / "cli.log" if with_log else where)
    assert where.parent == (broken if with_log else temp)
    assert "Traceback (most recent call last)" in where.read_text()
    after = {p: p.read_bytes() for p in broken.rglob("*") if p.is_file() and p.name != "cli.log"}
    assert after == before  # no page, no temp file, nothing rewritten


def test_cli_page_that_cannot_be_written(
    run_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A full disk while writing report.html: one line naming the page, exit 1, no temp file
    left and the previous page untouched."""
    import errno

    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    (run / "report.html").write_text("the previous page")
    (run / "cli.log").write_text("")
    original = Path.write_text

    def write_text(self: Path, data: str, *args: object, **kwargs: object) -> int:
        if self.name == ".report.html.tmp":
            original(self, data[:10])
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(self, data, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "write_text", write_text)
    assert main([str(run)]) == 1
    err = capsys.readouterr().err
    assert err == (
        f"recloop-report: error: cannot write {run / 'report.html'}: No space left on device "
        f"(traceback in {run / 'cli.log'})\n"
    )
    assert (run / "report.html").read_text() == "the previous page"
    assert not [p for p in run.rglob("*.tmp")]


def test_cli_nonexistent_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("recloop-report: error:") and "nope" in err


def test_examination_section_only_when_estimated(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    _write_run(run)
    assert "fig-examination" not in build_run_report(run).read_text(encoding="utf-8")
    truth = [1.0, 0.5, 0.25]
    est = {"randomized": [1.0, 0.47, 0.31], "regression_em": [1.0, 0.52, 0.24]}
    pl.DataFrame(
        {
            "method": [m for m in est for _ in range(3)],
            "slot": [0, 1, 2] * 2,
            "estimate": est["randomized"] + est["regression_em"],
            "std_error": [0.0, 0.02, 0.03] + [float("nan")] * 3,
            "truth": truth * 2,
            "n_impressions": [100, 100, 100, 50, 50, 50],
        }
    ).write_parquet(run / "examination.parquet")
    page = build_run_report(run).read_text(encoding="utf-8")
    assert 'id="fig-examination"' in page
    for method, values in est.items():
        worst = max(abs(a - b) for a, b in zip(values, truth, strict=True))
        row = re.search(rf"<tr><td>{method}</td>.*?</tr>", page)
        assert row and f"{worst:.2f}" in row.group(0), (method, worst)
