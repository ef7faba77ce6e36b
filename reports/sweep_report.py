"""Build ``report.html`` for a hydra sweep folder from its jobs' files alone.

A sweep folder holds ``multirun.yaml`` (hydra's, may be absent) and one sub-folder per job. A
job is *finished* (``summary.json`` with status ``complete``), *failed* (``status.json`` written by
``recloop`` when the job raised) or *incomplete* (neither: interrupted, or still running).

Jobs are grouped into **arms**: the policy name plus the overrides (from ``.hydra/overrides.yaml``)
that set the job apart from the other jobs of the sweep, leaving out the seed, the policy, the
study and hydra's own settings; overrides shared by every job are not part of the label
(``softmax [policy.temperature=0.1]`` or just ``greedy``). This is the rule of
``experiments.study`` (the end-of-sweep comparison), reimplemented here because reports read files
only. Seeds are the replicates of an arm; arms are compared with the baseline arm paired by seed.

The page is self-contained like the run report: plotly.js is inlined once in the head.
"""

from __future__ import annotations

import html
import json
import math
import re
import shlex
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import plotly.graph_objects as go
import polars as pl
import yaml
from plotly.colors import qualitative
from scipy import stats

from reports.files import ReportError, has_item_exposure, item_exposure
from reports.inequality import lorenz
from reports.metric_catalog import format_metric, metric_info
from reports.page import CSS, FIG_HEIGHT, figure_html, write_page
from reports.run_report import REPORT_NAME, equality_figure

FINISHED, FAILED, INCOMPLETE = "finished", "failed", "incomplete"
DEFAULT_BASELINE = "greedy"
CONFIDENCE = 0.95
ALPHA = 0.05
# override keys that never name an arm: the replicate, the label's own policy, the study, hydra
IGNORED_KEYS = ("seed", "policy", "study")

# columns of metrics.parquet; labels, formats and descriptions come from the metric catalog
TABLE_METRICS: tuple[str, ...] = (
    "coverage_exposure",
    "gini_exposure",
    "popularity_drift",
    "homogenization",
    "utility",
    "ctr",
    "cumulative_utility",
    "long_tail_share",
    "coverage_clicks",
    "top1pct_exposure_share",
    "intra_list_diversity",
    "exploration_share",
)
SERIES_METRICS: tuple[str, ...] = (
    "coverage_exposure",
    "gini_exposure",
    "popularity_drift",
    "utility",
    "ctr",
    "homogenization",
    "cumulative_utility",
    "exploration_share",
)
PALETTE: tuple[str, ...] = tuple(qualitative.D3) + tuple(qualitative.Dark24)

SWEEP_CSS = """
.container { max-width: 1150px; }
tr.group th { background: #e9eef5; font-weight: 600; }
tr.group th span { font-weight: normal; color: #555; }
td.sig { background: #fff3c4; font-weight: 600; }
tr.baseline td { color: #555; }
.status-failed { color: #b00020; font-weight: 600; }
.status-incomplete { color: #a15c00; font-weight: 600; }
.ok { color: #1b7f3b; }
nav ul { columns: 2; font-size: 0.92rem; }
details { margin: 0.4rem 0 0.8rem; }
summary { cursor: pointer; color: #1f4e9c; }
code.cmd { display: block; background: #f6f6f6; padding: 0.5rem 0.8rem; overflow-x: auto;
  white-space: pre; }
ul.jobs { margin: 0.3rem 0; font-size: 0.92rem; }
"""


class SweepReportError(ReportError):
    """The directory is not a usable sweep folder (e.g. it has no job sub-folders)."""


# ---------------------------------------------------------------- reading the sweep


@dataclass
class Job:
    """One job sub-folder of a sweep, read from its files."""

    path: Path
    status: str  # FINISHED, FAILED or INCOMPLETE
    overrides: list[str] | None  # .hydra/overrides.yaml; None when missing or unreadable
    policy: str | None
    seed: Any
    summary: dict[str, Any] | None = None
    metrics: pl.DataFrame | None = None
    error: str | None = None  # the error line (failed) or why the job counts as incomplete
    traceback: str | None = None
    arm: str | None = None

    @property
    def name(self) -> str:
        return self.path.name


@dataclass
class Sweep:
    """A sweep folder: its jobs (natural order of the folder names) and its arms."""

    path: Path
    jobs: list[Job]
    arms: list[str]  # every known arm; the baseline first, then by first appearance
    baseline: str | None  # None when no job finished
    command: list[str] | None = None  # the sweep's task overrides from multirun.yaml
    shared_overrides: list[str] = field(default_factory=list)

    def jobs_of(self, arm: str, status: str | None = None) -> list[Job]:
        found = [j for j in self.jobs if j.arm == arm and (status is None or j.status == status)]
        return sorted(found, key=lambda j: (_seed_key(j.seed), _natural_key(j.name)))

    @property
    def finished(self) -> list[Job]:
        return [j for j in self.jobs if j.status == FINISHED]

    @property
    def finished_arms(self) -> list[str]:
        return [a for a in self.arms if self.jobs_of(a, FINISHED)]


def _natural_key(name: str) -> list[Any]:
    """``2_x`` before ``10_x``: digit runs compare as numbers (types alternate str/int)."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def _seed_key(seed: Any) -> tuple[int, float, str]:
    if seed is None:
        return (2, 0.0, "")
    if isinstance(seed, int | float) and not isinstance(seed, bool):
        return (0, float(seed), "")
    return (1, 0.0, str(seed))


def _job_dirs(sweep_dir: Path) -> list[Path]:
    """Every non-hidden sub-folder (a job, whatever its name), in natural order."""
    dirs = [p for p in sweep_dir.iterdir() if p.is_dir() and not p.name.startswith(".")]
    return sorted(dirs, key=lambda p: _natural_key(p.name))


def _looks_like_job(path: Path) -> bool:
    return (
        (path / "summary.json").is_file()
        or (path / "status.json").is_file()
        or (path / ".hydra").is_dir()
    )


def is_sweep_dir(path: Path) -> bool:
    """True for a sweep folder: it has hydra's ``multirun.yaml``, or it has no ``summary.json``
    of its own and sub-folders that look like jobs (``summary.json``, ``status.json`` or
    ``.hydra/``)."""
    path = Path(path)
    if not path.is_dir():
        return False
    if (path / "multirun.yaml").is_file():
        return True
    if (path / "summary.json").exists():
        return False
    return any(_looks_like_job(d) for d in _job_dirs(path))


def _first_line(text: str) -> str:
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return lines[0] if lines else ""


def _read_yaml(path: Path) -> Any:
    """Parsed YAML (plain ``yaml.safe_load``: hydra interpolations stay strings), or None."""
    if not path.is_file():
        return None
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None


def read_overrides(job_dir: Path) -> list[str] | None:
    """The job's override strings from ``.hydra/overrides.yaml`` (None when missing/unreadable)."""
    path = Path(job_dir) / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return None
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    if data is None:  # an empty file: no overrides
        return []
    return [str(o) for o in data] if isinstance(data, list) else None


def override_key(override: str) -> str:
    """``+study=exploration`` → ``study``; ``~a.b`` → ``a.b``."""
    return override.partition("=")[0].strip().lstrip("+~")


def is_arm_override(override: str) -> bool:
    """Can this override tell arms apart? Not the seed, policy, study or hydra's settings."""
    key = override_key(override)
    return key not in IGNORED_KEYS and key != "hydra" and not key.startswith("hydra.")


def _override_value(overrides: Sequence[str] | None, key: str) -> str | None:
    for o in overrides or ():
        if override_key(o) == key and "=" in o:
            return o.partition("=")[2]
    return None


def _dig(data: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, Mapping):
            return None
        data = data.get(key)
    return data


def _as_seed(value: Any) -> Any:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value
    try:
        return int(str(value).strip())
    except ValueError:
        return str(value)


def _load_json(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    return data


def load_job(job_dir: Path) -> Job:
    """Read one job folder; never raises for a broken job (it becomes failed/incomplete)."""
    job_dir = Path(job_dir)
    overrides = read_overrides(job_dir)
    hydra_cfg = _read_yaml(job_dir / ".hydra" / "config.yaml")
    run_cfg = _read_yaml(job_dir / "config.yaml")
    summary: dict[str, Any] | None = None
    metrics: pl.DataFrame | None = None
    status, error, trace = INCOMPLETE, "incomplete (no summary.json)", None

    summary_path, status_path = job_dir / "summary.json", job_dir / "status.json"
    if summary_path.is_file():
        try:
            summary = _load_json(summary_path)
        except (OSError, ValueError) as exc:
            error = f"incomplete (unreadable summary.json: {_first_line(str(exc))})"
        else:
            if summary.get("status", "complete") != "complete":
                error = f"incomplete (summary.json status {summary.get('status')!r})"
            else:
                try:
                    metrics = pl.read_parquet(job_dir / "metrics.parquet").sort("window")
                except Exception as exc:  # missing or corrupt file: report it, never crash
                    error = f"incomplete (metrics.parquet unreadable: {_first_line(str(exc))})"
                else:
                    status, error = FINISHED, None
    elif status_path.is_file():
        status = FAILED
        try:
            data = _load_json(status_path)
        except (OSError, ValueError) as exc:
            error = f"failed (unreadable status.json: {_first_line(str(exc))})"
        else:
            if str(data.get("status", "failed")) != "failed":
                status = INCOMPLETE
                error = f"incomplete (status.json status {data.get('status')!r})"
            else:
                error = _first_line(str(data.get("error") or "")) or "failed (no error recorded)"
                trace = str(data["traceback"]) if data.get("traceback") else None

    policy = next(
        (
            str(p)
            for p in (
                (summary or {}).get("policy"),
                _dig(hydra_cfg, "policy", "name"),
                _override_value(overrides, "policy"),
                _dig(run_cfg, "policy", "name"),
            )
            if p is not None and str(p) != ""
        ),
        None,
    )
    seed = next(
        (
            _as_seed(s)
            for s in (
                (summary or {}).get("seed"),
                _override_value(overrides, "seed"),
                _dig(hydra_cfg, "seed"),
                _dig(run_cfg, "seed"),
            )
            if s is not None
        ),
        None,
    )
    return Job(job_dir, status, overrides, policy, seed, summary, metrics, error, trace)


def label_arms(jobs: Sequence[Job]) -> list[str]:
    """Set ``job.arm`` for every job whose policy is known; return the overrides shared by every
    job that has an ``overrides.yaml`` (none of them is part of a label).

    The label is the policy plus the job's remaining arm overrides in file order, e.g.
    ``softmax [policy.temperature=0.1]``; jobs of every status count when finding what is
    shared, so a failed job does not change the other arms' labels.
    """
    with_overrides = [j.overrides for j in jobs if j.overrides is not None]
    shared = set.intersection(*(set(o) for o in with_overrides)) if with_overrides else set()
    for job in jobs:
        if job.policy is None:
            job.arm = None
            continue
        extra = [o for o in job.overrides or () if is_arm_override(o) and o not in shared]
        job.arm = f"{job.policy} [{', '.join(extra)}]" if extra else job.policy
    first = with_overrides[0] if with_overrides else []
    return [o for o in first if o in shared]


def choose_baseline(arms: Sequence[str], policies: Mapping[str, str], wanted: str | None) -> str:
    """The baseline arm: ``wanted`` (an arm label, or a policy with exactly one arm), else
    ``greedy`` (or the first greedy arm), else the first arm."""
    if wanted is not None:
        if wanted in arms:
            return wanted
        by_policy = [a for a in arms if policies.get(a) == wanted]
        if len(by_policy) == 1:
            return by_policy[0]
        choices = ", ".join(repr(a) for a in arms) or "none"
        raise SweepReportError(
            f"baseline arm {wanted!r} not among the arms with finished jobs ({choices})"
        )
    if DEFAULT_BASELINE in arms:
        return DEFAULT_BASELINE
    greedy = [a for a in arms if policies.get(a) == DEFAULT_BASELINE]
    return greedy[0] if greedy else arms[0]


def _sweep_command(sweep_dir: Path) -> list[str] | None:
    task = _dig(_read_yaml(sweep_dir / "multirun.yaml"), "hydra", "overrides", "task")
    return [str(o) for o in task] if isinstance(task, list) else None


def load_sweep(sweep_dir: Path, baseline: str | None = None) -> Sweep:
    """Read every job of ``sweep_dir`` and label the arms.

    Raises
    ------
    SweepReportError
        When the folder has no job sub-folders, or ``baseline`` is not an arm with finished jobs.
    """
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise SweepReportError(f"no such sweep directory: {sweep_dir}")
    dirs = _job_dirs(sweep_dir)
    if not dirs:
        raise SweepReportError(f"not a sweep: {sweep_dir} has no job sub-folders")
    jobs = [load_job(d) for d in dirs]
    shared = label_arms(jobs)
    arms: list[str] = []
    for job in jobs:
        if job.arm is not None and job.arm not in arms:
            arms.append(job.arm)
    policies = {j.arm: j.policy for j in jobs if j.arm is not None and j.policy is not None}
    done = [a for a in arms if any(j.arm == a and j.status == FINISHED for j in jobs)]
    base = choose_baseline(done, policies, baseline) if done else None  # nothing to compare
    if base is not None:
        arms.remove(base)
        arms.insert(0, base)
    return Sweep(sweep_dir, jobs, arms, base, _sweep_command(sweep_dir), shared)


# ---------------------------------------------------------------- statistics


def _finite(values: Iterable[Any]) -> np.ndarray:
    arr = np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)
    return arr[np.isfinite(arr)]


def t_halfwidth(std: float, n: int, confidence: float = CONFIDENCE) -> float:
    """Half-width of the two-sided t confidence interval of a mean (NaN when ``n < 2``)."""
    if n < 2 or not np.isfinite(std):
        return float("nan")
    return float(stats.t.ppf(0.5 + confidence / 2, n - 1) * std / math.sqrt(n))


@dataclass(frozen=True)
class MeanCI:
    mean: float
    half: float  # NaN when n < 2
    n: int


def mean_ci(values: Iterable[Any]) -> MeanCI:
    """Mean and 95% t-interval half-width of the finite values (None/NaN are dropped)."""
    x = _finite(values)
    if x.size == 0:
        return MeanCI(float("nan"), float("nan"), 0)
    std = float(x.std(ddof=1)) if x.size > 1 else float("nan")
    return MeanCI(float(x.mean()), t_halfwidth(std, x.size), int(x.size))


@dataclass(frozen=True)
class Paired:
    n: int  # seeds with a finite value in both arms
    mean: float  # mean of (arm − baseline); NaN when n < 2
    low: float
    high: float
    p: float  # paired t-test; NaN when n < 2 or the differences do not vary

    @property
    def significant(self) -> bool:
        return bool(np.isfinite(self.p) and self.p < ALPHA)


def paired_difference(arm: Mapping[Any, float], base: Mapping[Any, float]) -> Paired:
    """Arm minus baseline, paired by seed (seeds with finite values in both): mean difference,
    95% t-interval and ``scipy.stats.ttest_rel`` p-value; all NaN with fewer than 2 pairs."""
    seeds = [
        s
        for s in arm
        if s in base
        and arm[s] is not None
        and base[s] is not None
        and np.isfinite(arm[s])
        and np.isfinite(base[s])
    ]
    nan = float("nan")
    if len(seeds) < 2:
        return Paired(len(seeds), nan, nan, nan, nan)
    a = np.array([arm[s] for s in seeds], dtype=np.float64)
    b = np.array([base[s] for s in seeds], dtype=np.float64)
    d = a - b
    mean, half = float(d.mean()), t_halfwidth(float(d.std(ddof=1)), d.size)
    if np.ptp(d) == 0:  # no spread: the t statistic is undefined
        p = nan
    else:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            p = float(stats.ttest_rel(a, b).pvalue)
    return Paired(len(seeds), mean, mean - half, mean + half, p)


def _metric_values(job: Job, metric: str) -> np.ndarray | None:
    """The job's per-window values of ``metric`` (NaN for null), None when the column is missing."""
    if job.metrics is None or metric not in job.metrics.columns:
        return None
    return job.metrics[metric].cast(pl.Float64).fill_null(float("nan")).to_numpy()


def final_value(job: Job, metric: str) -> float | None:
    """The metric in the job's last window (NaN if null there); None when the column is missing."""
    values = _metric_values(job, metric)
    if values is None or values.size == 0:
        return None
    return float(values[-1])


def final_by_seed(jobs: Sequence[Job], metric: str) -> dict[Any, float]:
    """Final value per seed (jobs sharing a seed are averaged); jobs without a seed are left out."""
    grouped: dict[Any, list[float]] = {}
    for job in jobs:
        value = final_value(job, metric)
        if job.seed is not None and value is not None and np.isfinite(value):
            grouped.setdefault(job.seed, []).append(value)
    return {s: float(np.mean(v)) for s, v in grouped.items()}


def arm_series(jobs: Sequence[Job], metric: str) -> pl.DataFrame | None:
    """Per window: ``day`` (t_end / 24, mean over the jobs), the mean across the jobs, the 95%
    t-interval ``low``/``high`` (null with fewer than 2 finite values) and ``n``.

    Jobs whose metrics lack the column are skipped; None when none has it.
    """
    frames = [
        pl.DataFrame(
            {
                "window": j.metrics["window"].cast(pl.Int64),
                "t_end": j.metrics["t_end"].cast(pl.Float64),
                "value": _metric_values(j, metric),
            }
        )
        for j in jobs
        if j.metrics is not None
        and {metric, "window", "t_end"} <= set(j.metrics.columns)
        and j.metrics.height
    ]
    if not frames:
        return None
    data = pl.concat(frames).filter(pl.col("value").is_not_nan())
    if data.height == 0:
        return None
    agg = (
        data.group_by("window")
        .agg(
            (pl.col("t_end").mean() / 24.0).alias("day"),
            pl.col("value").mean().alias("mean"),
            pl.col("value").std(ddof=1).alias("std"),
            pl.len().alias("n"),
        )
        .sort("window")
    )
    half = [
        t_halfwidth(s if s is not None else float("nan"), int(n))
        for s, n in zip(agg["std"].to_list(), agg["n"].to_list(), strict=True)
    ]
    agg = agg.with_columns(pl.Series("half", half, dtype=pl.Float64).fill_nan(None))
    return agg.with_columns(
        (pl.col("mean") - pl.col("half")).alias("low"),
        (pl.col("mean") + pl.col("half")).alias("high"),
    ).select("window", "day", "mean", "low", "high", "n")


def pooled_last_window_exposure(jobs: Sequence[Job]) -> tuple[np.ndarray | None, list[str]]:
    """Impressions per catalog item in each job's last window (``item_exposure.parquet``),
    summed over the jobs, items never shown included; plus notes on jobs that could not be
    used."""
    total: np.ndarray | None = None
    notes: list[str] = []
    for job in jobs:
        n_items = (job.summary or {}).get("catalog_size")
        if not isinstance(n_items, int) or n_items <= 0:
            notes.append(f"{job.name}: no catalog_size in summary.json")
            continue
        if not has_item_exposure(job.path) or job.metrics is None or job.metrics.height == 0:
            notes.append(f"{job.name}: no item_exposure.parquet")
            continue
        try:
            last_window = int(job.metrics["window"].max())
            counts = item_exposure(job.path, last_window, n_items)
        except Exception as exc:  # a broken log must not take the page down
            notes.append(f"{job.name}: {_first_line(str(exc)) or type(exc).__name__}")
            continue
        if total is not None and total.size != counts.size:
            notes.append(f"{job.name}: catalog of {counts.size} items, not {total.size}; left out")
            continue
        total = counts if total is None else total + counts
    return total, notes


# ---------------------------------------------------------------- formatting


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _nan(value: float | None) -> bool:
    return value is None or not np.isfinite(value)


def fmt_value(v: float | None, kind: str) -> str:
    """A metric value; NaN/None becomes an en dash."""
    return "–" if _nan(v) else format_metric(v, kind)


def fmt_spread(v: float, kind: str) -> str:
    """A half-width (unsigned): percentage points for shares."""
    if kind == "pct":
        return f"{v * 100:.1f} pp"
    if kind == "num1":
        return f"{v:,.1f}"
    return f"{v:.3f}"


def fmt_delta(v: float | None, kind: str) -> str:
    """A signed difference: percentage points for shares."""
    if _nan(v):
        return "–"
    if kind == "pct":
        return f"{v * 100:+.1f} pp"
    if kind == "num1":
        return f"{v:+,.1f}"
    return f"{v:+.3f}"


def fmt_mean_ci(ci: MeanCI, kind: str) -> str:
    if ci.n == 0:
        return "–"
    text = fmt_value(ci.mean, kind)
    if ci.n >= 2 and not _nan(ci.half):
        text += f" ± {fmt_spread(ci.half, kind)}"
    return text


def fmt_p(p: float) -> str:
    if _nan(p):
        return "–"
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def shell_command(overrides: Sequence[str], program: str = "recloop") -> str:
    """``recloop`` plus the overrides, each value shell-quoted (the whole override when its key
    is not a plain word)."""
    parts = [program]
    for o in overrides:
        key, sep, value = o.partition("=")
        if sep and key and shlex.quote(key) == key:
            parts.append(f"{key}={shlex.quote(value)}")
        else:
            parts.append(shlex.quote(o))
    return " ".join(parts)


def _color(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def _rgba(hex_color: str, alpha: float) -> str:
    h = hex_color.lstrip("#")
    r, g, b = (int(h[k : k + 2], 16) for k in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


def _layout(fig: go.Figure, height: int = FIG_HEIGHT) -> go.Figure:
    fig.update_layout(
        template="plotly_white",
        height=height,
        margin={"l": 60, "r": 30, "t": 20, "b": 50},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0},
    )
    return fig


# ---------------------------------------------------------------- page sections


def _final_table(sweep: Sweep) -> str:
    arms = sweep.finished_arms
    base = sweep.baseline
    base_jobs = sweep.jobs_of(base, FINISHED) if base else []
    rows = []
    for metric in TABLE_METRICS:
        if not any(j.metrics is not None and metric in j.metrics.columns for j in sweep.finished):
            continue  # older runs: a metric no job has
        info = metric_info(metric)
        kind = info.kind
        rows.append(
            f'<tr class="group"><th colspan="7">{_esc(info.title)} '
            f"<span>— {_esc(info.description)}</span></th></tr>"
        )
        base_by_seed = final_by_seed(base_jobs, metric)
        for arm in arms:
            jobs = sweep.jobs_of(arm, FINISHED)
            values = [final_value(j, metric) for j in jobs]
            ci = mean_ci(v for v in values if v is not None)
            cells = [f"<td>{_esc(arm)}</td>", f'<td class="num">{ci.n}</td>']
            cells.append(f'<td class="num">{fmt_mean_ci(ci, kind)}</td>')
            if arm == base:
                cells.append('<td colspan="4">baseline</td>')
                rows.append(f'<tr class="baseline">{"".join(cells)}</tr>')
                continue
            pair = paired_difference(final_by_seed(jobs, metric), base_by_seed)
            sig = ' sig"' if pair.significant else '"'
            if pair.n < 2:
                cells += ['<td class="num">–</td>'] * 3
            else:
                star = " *" if pair.significant else ""
                cells += [
                    f'<td class="num{sig}>{fmt_delta(pair.mean, kind)}</td>',
                    f'<td class="num{sig}>[{fmt_delta(pair.low, kind)}, '
                    f"{fmt_delta(pair.high, kind)}]</td>",
                    f'<td class="num{sig}>{_esc(fmt_p(pair.p))}{star}</td>',
                ]
            cells.append(f'<td class="num">{pair.n}</td>')
            rows.append(f"<tr>{''.join(cells)}</tr>")
    head = (
        "<tr><th>Arm</th><th>n</th><th>Mean ± 95% CI</th>"
        f"<th>Δ vs {_esc(base)}</th><th>95% CI of Δ</th><th>p (paired t)</th>"
        "<th>pairs</th></tr>"
    )
    caption = (
        '<p class="caption">Value in each job\'s last window. <b>Mean ± 95% CI</b>: mean across '
        "the arm's seeds with a t-interval (none with a single seed). <b>Δ</b>: the arm minus "
        f"the baseline <code>{_esc(base)}</code> on the same seed, averaged over the seeds both "
        "finished (<b>pairs</b>), with its 95% t-interval and the paired t-test p-value "
        "(scipy.stats.ttest_rel); – with fewer than 2 pairs. "
        '<span style="background:#fff3c4;font-weight:600">Highlighted *</span> cells: p &lt; 0.05 '
        "(not corrected for the number of comparisons). Shares are in percent; their "
        "differences and interval widths in percentage points (pp).</p>"
    )
    return (
        caption
        + f'<table class="final"><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table>'
    )


def _series_figure(sweep: Sweep, metric: str) -> go.Figure | None:
    info = metric_info(metric)
    label, kind = info.title, info.kind
    fig = go.Figure()
    fmt = ".1%" if kind == "pct" else ".3f"
    for i, arm in enumerate(sweep.arms):
        series = arm_series(sweep.jobs_of(arm, FINISHED), metric)
        if series is None:
            continue
        color, name = _color(i), _esc(arm)
        band = series.filter(pl.col("low").is_not_null())
        if band.height:
            x = band["day"].to_list()
            fig.add_trace(
                go.Scatter(
                    x=x + x[::-1],
                    y=band["high"].to_list() + band["low"].to_list()[::-1],
                    fill="toself",
                    fillcolor=_rgba(color, 0.18),
                    line={"width": 0},
                    mode="lines",
                    hoverinfo="skip",
                    showlegend=False,
                    legendgroup=f"arm{i}",
                    name=f"{name} 95% CI",
                )
            )
        fig.add_trace(
            go.Scatter(
                x=series["day"].to_list(),
                y=series["mean"].to_list(),
                customdata=series["n"].to_list(),
                name=name,
                legendgroup=f"arm{i}",
                mode="lines+markers" if series.height <= 60 else "lines",
                line={"color": color, "width": 2},
                hovertemplate=f"day %{{x:.2f}}: %{{y:{fmt}}} (n=%{{customdata}})",
            )
        )
    if not fig.data:
        return None
    fig.update_xaxes(title_text="simulated day (end of window)", rangemode="tozero")
    fig.update_yaxes(title_text=label, tickformat=".0%" if kind == "pct" else None)
    _layout(fig).update_layout(hovermode="x unified")
    return fig


def _series_section(sweep: Sweep) -> str:
    parts = [
        '<p class="caption">One line per arm: the mean across its seeds in each window; the '
        "shaded band is the 95% t-interval across seeds (no band with a single seed).</p>"
    ]
    for metric in SERIES_METRICS:
        fig = _series_figure(sweep, metric)
        if fig is None:
            continue
        info = metric_info(metric)
        parts.append(
            f'<section><h3>{_esc(info.title)}</h3><p class="caption">{_esc(info.description)}.</p>'
            f"{figure_html(fig, f'fig-ts-{metric}')}</section>"
        )
    return "".join(parts)


def _tradeoff_section(sweep: Sweep) -> str:
    fig = go.Figure()
    for i, arm in enumerate(sweep.arms):
        jobs = sweep.jobs_of(arm, FINISHED)
        cov = mean_ci(v for j in jobs if (v := final_value(j, "coverage_exposure")) is not None)
        util = mean_ci(v for j in jobs if (v := final_value(j, "cumulative_utility")) is not None)
        if cov.n == 0 or util.n == 0:
            continue
        name = _esc(arm)
        fig.add_trace(
            go.Scatter(
                x=[cov.mean],
                y=[util.mean],
                name=name,
                text=[name],
                mode="markers+text",
                textposition="top center",
                marker={"color": _color(i), "size": 11},
                error_x={"type": "data", "array": [cov.half], "visible": not _nan(cov.half)},
                error_y={"type": "data", "array": [util.half], "visible": not _nan(util.half)},
                customdata=[[cov.n, util.n]],
                hovertemplate="exposure coverage %{x:.1%}<br>cumulative utility %{y:,.1f}"
                "<br>seeds %{customdata[0]}",
            )
        )
    if not fig.data:
        return '<p class="caption">No arm has both final exposure coverage and utility.</p>'
    fig.update_xaxes(title_text="exposure coverage, final window", tickformat=".0%")
    fig.update_yaxes(title_text="cumulative utility, final")
    _layout(fig, FIG_HEIGHT + 100).update_layout(showlegend=False)
    caption = (
        '<p class="caption">One point per arm: mean across seeds, with 95% t-interval error bars '
        "(none with a single seed). Up and to the right is better on both: more of the catalog "
        "seen, more relevance delivered.</p>"
    )
    return caption + figure_html(fig, "fig-tradeoff")


def _lorenz_section(sweep: Sweep) -> str:
    fig = equality_figure()
    notes: list[str] = []
    for i, arm in enumerate(sweep.arms):
        jobs = sweep.jobs_of(arm, FINISHED)
        if not jobs:
            continue
        exposure, arm_notes = pooled_last_window_exposure(jobs)
        notes += [f"{arm}: {n}" for n in arm_notes]
        if exposure is None or exposure.sum() == 0:
            notes.append(f"{arm}: no impressions in the last window")
            continue
        xs, ys = lorenz(exposure, vertices_only=True)
        gini = mean_ci(v for j in jobs if (v := final_value(j, "gini_exposure")) is not None)
        name = f"{_esc(arm)}: Gini {fmt_value(gini.mean, 'num')}"
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=ys,
                name=name,
                mode="lines",
                line={"color": _color(i), "width": 2},
                hovertemplate="%{x:.1%} of items get %{y:.1%} of impressions",
            )
        )
    note_html = "".join(f'<p class="caption">{_esc(n)}</p>' for n in notes)
    if len(fig.data) == 1:
        return note_html + '<p class="caption">No impression logs to draw Lorenz curves.</p>'
    fig.update_xaxes(
        title_text="cumulative share of items (fewest impressions first)",
        tickformat=".0%",
        range=[-0.01, 1.01],
    )
    fig.update_yaxes(
        title_text="cumulative share of impressions", tickformat=".0%", range=[-0.01, 1.01]
    )
    _layout(fig, FIG_HEIGHT + 120).update_layout(
        legend={"x": 0.02, "y": 0.98, "orientation": "v", "bgcolor": "rgba(255,255,255,0.8)"}
    )
    caption = (
        '<p class="caption">Impressions per catalog item in the last window of each job, summed '
        "over the arm's seeds, items never shown included. The further a curve sags below the "
        "diagonal, the more exposure is concentrated on few items. The Gini in the legend is the "
        "arm's final-window exposure Gini, mean over its seeds (as in the table above).</p>"
    )
    return caption + note_html + figure_html(fig, "fig-lorenz")


def _problems_section(sweep: Sweep) -> str:
    bad = [j for j in sweep.jobs if j.status != FINISHED]
    if not bad:
        return f'<p class="ok">All {len(sweep.jobs)} jobs finished.</p>'
    rows = []
    for job in bad:
        detail = _esc(job.error or job.status)
        if job.traceback:
            detail += (
                f"<details><summary>traceback</summary><pre>{_esc(job.traceback)}</pre></details>"
            )
        rows.append(
            f"<tr><td><code>{_esc(job.name)}</code></td>"
            f"<td>{_esc(job.arm) if job.arm else 'unknown'}</td>"
            f"<td>{_esc(job.seed) if job.seed is not None else '?'}</td>"
            f'<td class="status-{job.status}">{job.status}</td><td>{detail}</td></tr>'
        )
    return (
        f"<p>{len(bad)} of {len(sweep.jobs)} jobs did not finish; they are left out of the "
        "comparison above.</p>"
        '<table class="problems"><thead><tr><th>Job folder</th><th>Arm</th><th>Seed</th>'
        f"<th>Status</th><th>Error</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _config_text(job: Job) -> str:
    for path in (job.path / "config.yaml", job.path / ".hydra" / "config.yaml"):
        if path.is_file():
            try:
                return path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                return f"(unreadable {path.name}: {exc})"
    return "(config.yaml missing)"


def _arms_section(sweep: Sweep) -> str:
    parts = []
    for arm in sweep.arms:
        jobs = sweep.jobs_of(arm)
        finished = [j for j in jobs if j.status == FINISHED]
        rep = (finished or jobs)[0]
        items = []
        for job in jobs:
            text = f"seed {_esc('?' if job.seed is None else job.seed)} — <code>{_esc(job.name)}</code> — "
            text += f'<span class="status-{job.status}">{job.status}</span>'
            if (job.path / REPORT_NAME).is_file():
                href = _esc(f"{quote(job.name)}/{REPORT_NAME}")
                text += f' — <a href="{href}">report</a>'
            items.append(f"<li>{text}</li>")
        if rep.overrides is None:
            command = '<p class="caption">No .hydra/overrides.yaml: command unknown.</p>'
        else:
            command = (
                f'<p class="caption">Command for seed {_esc("?" if rep.seed is None else rep.seed)}:</p>'
                f'<code class="cmd">{_esc(shell_command(rep.overrides))}</code>'
            )
        tag = " (baseline)" if arm == sweep.baseline else ""
        parts.append(
            f"<section><h3>{_esc(arm)}{tag}</h3>{command}"
            f'<ul class="jobs">{"".join(items)}</ul>'
            f"<details><summary>Resolved config (<code>{_esc(rep.name)}/config.yaml</code>)"
            f"</summary><pre>{_esc(_config_text(rep))}</pre></details></section>"
        )
    unknown = [j for j in sweep.jobs if j.arm is None]
    if unknown:
        names = ", ".join(f"<code>{_esc(j.name)}</code>" for j in unknown)
        parts.append(f'<p class="caption">Jobs with unknown arm (no policy recorded): {names}</p>')
    return "".join(parts)


def build_sweep_report(sweep_dir: Path, baseline: str | None = None) -> Path:
    """Write ``sweep_dir/report.html`` comparing the sweep's arms and return its path.

    Works on interrupted or partly failed sweeps: unfinished jobs are listed, never hidden; with
    no finished job the page lists the failures and has no figures.

    Raises
    ------
    SweepReportError
        When ``sweep_dir`` has no job sub-folders, or ``baseline`` is not an arm with finished
        jobs.
    """
    sweep_dir = Path(sweep_dir)
    sweep = load_sweep(sweep_dir, baseline)
    n_done = len(sweep.finished)
    n_failed = sum(j.status == FAILED for j in sweep.jobs)
    n_incomplete = sum(j.status == INCOMPLETE for j in sweep.jobs)
    title = f"recloop sweep report — {sweep_dir.name}"
    meta = (
        f"Sweep folder <code>{_esc(sweep_dir)}</code><br>"
        f"<b>{len(sweep.arms)}</b> arms · <b>{len(sweep.jobs)}</b> jobs: "
        f"<b>{n_done}</b> finished, <b>{n_failed}</b> failed, <b>{n_incomplete}</b> incomplete"
    )
    if sweep.baseline:
        meta += f" · baseline arm <code>{_esc(sweep.baseline)}</code>"
    if sweep.command is not None:
        meta += (
            "<br>Sweep command (multirun.yaml): "
            f"<code>{_esc(shell_command(sweep.command, 'recloop -m'))}</code>"
        )
    if sweep.shared_overrides:
        shared = ", ".join(f"<code>{_esc(o)}</code>" for o in sweep.shared_overrides)
        meta += f"<br>Shared by every job (not in the arm labels): {shared}"

    if n_done:
        body = (
            f'<h2 id="final">Final window: arms compared</h2>{_final_table(sweep)}'
            f'<h2 id="series">Over time</h2>{_series_section(sweep)}'
            f'<h2 id="tradeoff">Trade-off: utility vs exposure coverage</h2>'
            f"{_tradeoff_section(sweep)}"
            f'<h2 id="lorenz">Exposure concentration in the last window: Lorenz curves</h2>'
            f"{_lorenz_section(sweep)}"
        )
        nav = ["final", "series", "tradeoff", "lorenz"]
    else:
        body = (
            '<h2 id="final">Final window: arms compared</h2>'
            '<p class="status-failed">No job finished: nothing to compare.</p>'
        )
        nav = ["final"]
    titles = {
        "final": "Final window: arms compared",
        "series": "Over time",
        "tradeoff": "Trade-off: utility vs exposure coverage",
        "lorenz": "Lorenz curves",
        "problems": "Failed and incomplete jobs",
        "arms": "Arms: commands and configs",
    }
    nav_html = "".join(
        f'<li><a href="#{k}">{titles[k]}</a></li>' for k in [*nav, "problems", "arms"]
    )
    page_body = f"""<h1>{_esc(title)}</h1>
<p class="meta">{meta}</p>
<nav><ul>{nav_html}</ul></nav>
{body}
<h2 id="problems">Failed and incomplete jobs</h2>
{_problems_section(sweep)}
<h2 id="arms">Arms: commands and configs</h2>
{_arms_section(sweep)}
<footer>Produced by recloop-report: <code>recloop-report {_esc(sweep_dir)}</code> rebuilds this
page from the jobs' files (summary.json, metrics.parquet, status.json, .hydra/, logs/).</footer>
"""
    return write_page(sweep_dir / REPORT_NAME, title, CSS + SWEEP_CSS, page_body)
