"""What a reader takes from the run report: the headline's trajectory (and that each of its
numbers is a window's value), summaries that mean something per metric, chart axes that stay
in each metric's range, charts that apply to the run, a header that says what ran, and one
plotly.js per sweep."""

from __future__ import annotations

import math
import re
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from plotly.offline import get_plotlyjs

from experiments.run import run
from reports.metric_catalog import CATALOG, format_metric
from reports.run_report import PAD, build_run_report, headline, nice_step, y_axis

NAN = float("nan")
SUBJECTS = {"CTR": "ctr", "Exposure coverage": "coverage_exposure"}
SUBJECTS["True utility of shown items"] = "utility"


def _frame(versions: list[int], hours: float = 24.0, **columns: list[float]) -> pl.DataFrame:
    n = len(versions)
    return pl.DataFrame(
        {
            "window": list(range(n)),
            "t_start": [hours * w for w in range(n)],
            "t_end": [hours * (w + 1) for w in range(n)],
            "model_version": versions,
            **columns,
        }
    )


# ------------------------------------------------------------------ headline: exact sentences

BOOT = [-1, 0, 1, 2, 3]  # one bootstrap window, then a model per window


@pytest.mark.parametrize(
    ("versions", "column", "values", "sentence"),
    [
        (  # the shape: up after the first deployment, a peak, a decay
            BOOT,
            "ctr",
            [0.043, 0.07, 0.088, 0.06, 0.045],
            "CTR rose from 4.3% (bootstrap) to 7.0% on day 2, peaked at 8.8% on day 3 and fell "
            "to 4.5% by day 5.",
        ),
        (  # monotone: no peak, no trough
            BOOT[:4],
            "coverage_exposure",
            [1.0, 0.795, 0.6, 0.395],
            "Exposure coverage fell from 100.0% (bootstrap) to 79.5% on day 2 and to 39.5% by day 4.",
        ),
        (  # the maximum is the end: not a peak
            BOOT[:4],
            "ctr",
            [0.043, 0.05, 0.06, 0.088],
            "CTR rose from 4.3% (bootstrap) to 5.0% on day 2 and to 8.8% by day 4.",
        ),
        (  # a trough, for a metric where higher is better
            BOOT[:4],
            "coverage_exposure",
            [1.0, 0.8, 0.3, 0.5],
            "Exposure coverage fell from 100.0% (bootstrap) to 80.0% on day 2, bottomed out at "
            "30.0% on day 3 and rose to 50.0% by day 4.",
        ),
        (  # a peak and a trough: the one further outside the ends' range is named
            BOOT,
            "ctr",
            [0.05, 0.06, 0.085, 0.04, 0.05],
            "CTR rose from 5.0% (bootstrap) to 6.0% on day 2, peaked at 8.5% on day 3 and fell "
            "to 5.0% by day 5.",
        ),
        (  # a peak printed like the end is no peak
            BOOT[:4],
            "ctr",
            [0.05, 0.06, 0.0801, 0.08],
            "CTR rose from 5.0% (bootstrap) to 6.0% on day 2 and to 8.0% by day 4.",
        ),
        (  # a wobble next to the end (under a tenth of the range) is no trough: the quickstart's
            # greedy coverage, 38.4% on day 4 then 38.8% at the end
            BOOT,
            "coverage_exposure",
            [1.0, 0.763, 0.5, 0.384, 0.388],
            "Exposure coverage fell from 100.0% (bootstrap) to 76.3% on day 2 and to 38.8% by day 5.",
        ),
        (  # … and a dip of just over a tenth of the range is named
            BOOT,
            "coverage_exposure",
            [1.0, 0.763, 0.5, 0.34, 0.388],
            "Exposure coverage fell from 100.0% (bootstrap) to 76.3% on day 2, bottomed out at "
            "34.0% on day 4 and rose to 38.8% by day 5.",
        ),
        (  # no bootstrap window
            [0, 1, 2],
            "ctr",
            [0.05, 0.07, 0.06],
            "CTR was 5.0% on day 1, peaked at 7.0% on day 2 and fell to 6.0% by day 3.",
        ),
        (  # flat: the random policy's coverage
            BOOT[:4],
            "coverage_exposure",
            [1.0, 1.0, 1.0, 1.0],
            "Exposure coverage stayed at 100.0% from the bootstrap to day 4.",
        ),
        (
            BOOT[:3],
            "ctr",
            [0.05, 0.05, 0.07],
            "CTR stayed at 5.0% from the bootstrap to day 2 and rose to 7.0% by day 3.",
        ),
        (  # a single model window
            BOOT[:2],
            "ctr",
            [0.043, 0.088],
            "CTR rose from 4.3% (bootstrap) to 8.8% on day 2.",
        ),
        (  # two bootstrap windows: the last one before the model is the bootstrap's value
            [-1, -1, 0, 1],
            "utility",
            [0.2, 0.21, 0.3, 0.25],
            "True utility of shown items rose from 0.210 (bootstrap) to 0.300 on day 3 and fell "
            "to 0.250 by day 4.",
        ),
    ],
)
def test_headline_sentence(versions, column, values, sentence):
    n = len(versions)
    assert headline(_frame(versions, **{column: values})) == (
        f"{n} windows over {n} simulated days. {sentence}"
    )


def test_headline_without_a_deployed_model():
    frame = _frame([-1, -1, -1], ctr=[0.05, 0.06, 0.07])
    assert headline(frame) == (
        "3 windows over 3 simulated days; no model was deployed: every window was served by the "
        "bootstrap. CTR was 5.0% on day 1 and rose to 7.0% by day 3."
    )


def test_headline_days_are_window_ends():
    frame = _frame([-1, 0, 1], hours=12.0, ctr=[0.05, 0.09, 0.07])
    assert headline(frame) == (
        "3 windows over 1.5 simulated days. CTR rose from 5.0% (bootstrap) to 9.0% on day 1 and "
        "fell to 7.0% by day 1.5."
    )


# ------------------------------------------------------------------ headline: every number


def _claims(text: str) -> list[tuple[str, str, str]]:
    """``(column, printed value, "bootstrap" or the day)`` for every number the headline's
    metric sentences state, in the order they happen, read back from the words alone."""
    out = []
    for sentence in re.split(r"(?<=\.) (?=[A-Z])", text):
        column = next((c for s, c in SUBJECTS.items() if sentence.startswith(s + " ")), None)
        if column is None:
            continue
        flat = re.search(
            r"stayed at (\S+) from (?:the (bootstrap)|day ([\d.]+)) to day ([\d.]+)", sentence
        )
        if flat:
            value, boot, start, end = flat.groups()
            out += [(column, value, (boot or start).rstrip(".")), (column, value, end.rstrip("."))]
        out += [(column, v, "bootstrap") for v in re.findall(r"(\S+) \(bootstrap\)", sentence)]
        out += [
            (column, v, d.rstrip("."))
            for v, d in re.findall(r"(\S+) (?:on|by) day ([\d.]+)", sentence)
        ]
    return out


def _check_claims(metrics: pl.DataFrame, text: str) -> int:
    """Assert that each number in ``text`` is what ``metrics`` holds for the window it names;
    returns how many were checked."""
    claims = _claims(text)
    for column, value, when in claims:
        kind = CATALOG[column].kind
        if when == "bootstrap":
            boot = metrics.filter(pl.col("model_version") < 0)[column].drop_nans()
            assert format_metric(boot[-1], kind) == value, (column, value)
        else:
            days = [f"{t / 24.0:.4g}" for t in metrics["t_end"].to_list()]
            assert days.count(when) == 1, (column, when)
            row = days.index(when)
            assert format_metric(metrics[column][row], kind) == value, (column, value, when)
    return len(claims)


unit = st.floats(0.0, 1.0, allow_nan=False) | st.just(NAN)


@st.composite
def runs(draw):
    n = draw(st.integers(1, 10))
    booting = draw(st.integers(0, n))
    versions = [-1] * booting + list(range(n - booting))
    columns = {c: draw(st.lists(unit, min_size=n, max_size=n)) for c in SUBJECTS.values()}
    return _frame(versions, hours=draw(st.sampled_from([6.0, 24.0])), **columns)


@settings(max_examples=300, deadline=None)
@given(runs())
def test_every_headline_number_is_a_windows_value(metrics):
    text = headline(metrics)
    _check_claims(metrics, text)
    served = metrics.filter(pl.col("model_version") >= 0)
    if served.height == 0:
        served = metrics
    for subject, column in SUBJECTS.items():
        sentence = next(s for s in re.split(r"(?<=\.) (?=[A-Z])", text) if s.startswith(subject))
        values = served[column].drop_nans()
        if values.len() == 0:
            assert sentence == f"{subject}: no value in any window."
            continue
        kind = CATALOG[column].kind
        # it starts at the first window with a value and ends at the last one
        days = served.filter(pl.col(column).is_not_nan())["t_end"] / 24.0
        said = [(v, when) for c, v, when in _claims(text) if c == column and when != "bootstrap"]
        flat = re.fullmatch(rf"{subject} stayed at (\S+) from [^,]* to day [\d.]+\.", sentence)
        if flat:  # every window printed the same: no day in between is named
            assert {format_metric(v, kind) for v in values} == {flat[1]}
        else:
            assert said[0] == (format_metric(values[0], kind), f"{days[0]:.4g}")
        assert said[-1] == (format_metric(values[-1], kind), f"{days[-1]:.4g}")
        # a named peak is the series' maximum, a named trough its minimum, neither an end
        if m := re.search(r"peaked at (\S+)", sentence):
            assert m[1] == format_metric(values.max(), kind)
            assert m[1] not in (format_metric(values[0], kind), format_metric(values[-1], kind))
        if m := re.search(r"bottomed out at (\S+)", sentence):
            assert m[1] == format_metric(values.min(), kind)
            assert m[1] not in (format_metric(values[0], kind), format_metric(values[-1], kind))
        x = values.to_numpy()
        if np.all(np.diff(x) >= 0) or np.all(np.diff(x) <= 0):
            assert "peaked" not in sentence and "bottomed out" not in sentence


# ------------------------------------------------------------------ axes


def test_nice_steps():
    assert [nice_step(s) for s in (1.0, 0.4, 0.15, 2.0, 0.0123)] == [0.2, 0.1, 0.05, 0.5, 0.005]


def test_a_constant_zero_share_gets_a_zero_to_one_axis():
    axis = y_axis(("exploration_share",), [np.zeros(5)], "data")
    assert axis["range"] == pytest.approx([-PAD, 1 + PAD])
    assert axis["tickformat"] == ".0%" and axis["dtick"] == pytest.approx(0.2)


def test_domain_axes_are_the_metrics_range():
    axis = y_axis(("coverage_exposure", "coverage_clicks"), [np.array([0.4, 0.9])] * 2, "domain")
    assert axis["range"] == pytest.approx([-PAD, 1 + PAD])
    assert axis["tickformat"] == ".0%"
    gini = y_axis(("gini_exposure",), [np.array([0.1, 0.2])], "domain")
    assert gini["range"] == pytest.approx([-PAD, 1 + PAD]) and gini["tickformat"] == ".1f"


def test_a_signed_metric_keeps_zero_in_view():
    axis = y_axis(("popularity_drift",), [np.array([0.0, 0.36, 0.31])], "data")
    lo, hi = axis["range"]
    assert lo == pytest.approx(-PAD * 0.4) and hi == pytest.approx(0.4 * (1 + PAD))


def test_min_propensity_gets_a_log_axis_up_to_one():
    axis = y_axis(("min_propensity",), [np.array([0.00667, 0.00069, 0.00069])], "domain")
    assert axis["type"] == "log"
    assert axis["tickvals"] == pytest.approx([1e-4, 1e-3, 1e-2, 1e-1, 1.0])
    assert axis["ticktext"] == ["0.0001", "0.001", "0.01", "0.1", "1"]
    lo, hi = axis["range"]  # log10 units
    assert hi == pytest.approx(4 * PAD) and lo == pytest.approx(-4 - 4 * PAD)


BOUNDED = sorted(c for c, m in CATALOG.items() if None not in m.domain and not m.log_axis)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(BOUNDED),
    st.lists(st.floats(0.0, 1.0), min_size=1, max_size=30),
    st.sampled_from(["data", "domain"]),
)
def test_axis_holds_the_data_within_the_domain(column, fractions, scale):
    low, high = CATALOG[column].domain
    data = low + (high - low) * np.array(fractions)
    axis = y_axis((column,), [data], scale)
    lo, hi = axis["range"]
    span = hi - lo
    assert lo >= low - PAD * span / (1 + 2 * PAD) - 1e-12
    assert hi <= high + PAD * span / (1 + 2 * PAD) + 1e-12
    assert lo <= data.min() and data.max() <= hi
    step = axis["dtick"]  # 1, 2 or 5 times a power of ten: round ticks
    mantissa = step / 10 ** math.floor(math.log10(step) + 1e-9)
    assert min(abs(mantissa - f) for f in (1, 2, 5)) < 1e-9
    assert 2 <= span / step <= 12


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(1e-7, 1.0), min_size=1, max_size=20))
def test_log_axis_holds_the_propensities(props):
    axis = y_axis(("min_propensity",), [np.array(props)], "domain")
    lo, hi = axis["range"]
    assert (
        10**lo <= min(props)
        and max(props) <= 10**hi <= 10 ** (PAD * (hi - lo) / (1 + 2 * PAD)) + 1e-9
    )
    ticks = np.log10(axis["tickvals"])
    np.testing.assert_allclose(ticks, np.round(ticks))  # powers of ten only


# ------------------------------------------------------------------ real tiny runs


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from conftest import tiny_config

    root = tmp_path_factory.mktemp("policies")
    presets = {"greedy": (), "random": ("policy=random",), "epsilon": ("policy=epsilon_greedy",)}
    for name, overrides in presets.items():
        run(tiny_config(*overrides, **{"report.enabled": True}), root / name)
    return {name: root / name for name in presets}


def _table_cells(page: str, title: str) -> list[str]:
    row = re.search(rf"<tr><td>{re.escape(title)}</td><td>.*?</td>(.*?)</tr>", page)
    assert row, title
    return re.findall(r'<td class="num">(.*?)</td>', row.group(1))


@pytest.mark.parametrize("name", ["greedy", "random", "epsilon"])
def test_headline_numbers_are_the_tables_and_the_metrics(tiny_runs, name):
    page = (tiny_runs[name] / "report.html").read_text(encoding="utf-8")
    metrics = pl.read_parquet(tiny_runs[name] / "metrics.parquet")
    text = re.search(r'<p class="headline">(.*?)</p>', page, re.S).group(1).replace("&#x27;", "'")
    assert text == headline(metrics)
    assert _check_claims(metrics, text) >= 6  # at least bootstrap and end for three metrics
    # the bootstrap and end values are the table's first- and final-window cells
    for subject, column in SUBJECTS.items():
        first, final, _ = _table_cells(page, CATALOG[column].title)
        values = [v for c, v, when in _claims(text) if c == column]
        boots = [v for c, v, when in _claims(text) if c == column and when == "bootstrap"]
        assert boots and set(boots) == {first}, subject
        assert values[-1] == final, subject


def test_no_mean_over_windows_of_a_cumulative(tiny_runs):
    page = (tiny_runs["greedy"] / "report.html").read_text(encoding="utf-8")
    metrics = pl.read_parquet(tiny_runs["greedy"] / "metrics.parquet")
    _, final, mean = _table_cells(page, "Cumulative utility")
    assert mean == "–" and final == format_metric(metrics["cumulative_utility"][-1], "num0")
    assert "Cumulative utility: not a per-window rate" in page
    ctr = metrics["ctr"].drop_nans().to_numpy()
    assert _table_cells(page, "CTR")[2] == format_metric(ctr.sum() / ctr.size, "pct")


def test_panels_that_do_not_apply_say_so(tiny_runs):
    greedy = (tiny_runs["greedy"] / "report.html").read_text(encoding="utf-8")
    rand = (tiny_runs["random"] / "report.html").read_text(encoding="utf-8")
    eps = (tiny_runs["epsilon"] / "report.html").read_text(encoding="utf-8")
    # greedy: no exploration draw; uniform bootstrap slates, then propensity 1
    assert 'id="fig-exploration"' not in greedy and 'id="fig-model-quality"' in greedy
    assert re.search(
        r"No exploration in this run: exploration share 0 in every window\. The smallest logged "
        r"propensity was 0\.00667 up to day \d and 1 from day \d on \(propensity 1: a "
        r"deterministic log",
        greedy,
    )
    # random: no model to score, uniform slates throughout
    assert 'id="fig-model-quality"' not in rand and 'id="fig-exploration"' not in rand
    assert "No model true NDCG in this run" in rand
    assert "propensity was 0.00667 in every window." in rand
    # epsilon-greedy explores: its chart is drawn, min propensity on a log axis
    assert 'id="fig-exploration"' in eps and 'id="fig-model-quality"' in eps
    exploration = eps.split('id="fig-exploration"')[1].split("</script>")[0]
    assert '"yaxis2":{' in exploration and '"type":"log"' in exploration


# ------------------------------------------------------------------ header and plotly.js


def _copy_run(source: Path, target: Path, overrides: list[str] | None) -> Path:
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("report.html", "logs"))
    if overrides is not None:
        (target / ".hydra").mkdir()
        (target / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    return target


def test_header_says_what_ran(tiny_runs, tmp_path):
    run_dir = _copy_run(tiny_runs["greedy"], tmp_path / "single", ["policy=greedy", "seed=0"])
    page = build_run_report(run_dir).read_text(encoding="utf-8")
    meta = re.search(r'<p class="meta">(.*?)</p>', page, re.S).group(1)
    assert "config <code>config</code>" not in page
    assert "policy <b>greedy</b> · seed 0 · 4 simulated days · 300 users × 150 items" in meta
    assert "command <code>recloop policy=greedy seed=0</code>" in meta
    assert f"run directory <code>{run_dir}</code>" in meta


def test_a_single_run_inlines_plotly(tiny_runs, tmp_path):
    page = build_run_report(_copy_run(tiny_runs["greedy"], tmp_path / "one", None))
    text = page.read_text(encoding="utf-8")
    assert text.count(get_plotlyjs()) == 1 and "plotly.min.js" not in text
    assert not list(tmp_path.rglob("*.js"))


def test_jobs_of_a_sweep_share_one_plotly(tiny_runs, tmp_path):
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / "multirun.yaml").write_text("hydra: {}\n")
    pages = []
    for i, name in enumerate(["greedy", "random"]):
        job = _copy_run(tiny_runs[name], sweep / str(i), [f"policy={name}", "seed=0"])
        pages.append(build_run_report(job).read_text(encoding="utf-8"))
    assert [p.name for p in tmp_path.rglob("*.js")] == ["plotly.min.js"]
    assert (sweep / "plotly.min.js").read_text(encoding="utf-8") == get_plotlyjs()
    banner = get_plotlyjs().splitlines()[1]  # "plotly.js vX.Y.Z"
    for page in pages:
        assert '<script type="text/javascript" src="../plotly.min.js"></script>' in page
        assert banner not in page and len(page) < len(get_plotlyjs()) / 4
        assert (
            f"one job of the sweep in <code>{sweep.resolve()}</code>, with overrides <code>policy="
            in page
        )
