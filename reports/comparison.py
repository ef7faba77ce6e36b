"""Arms compared: each arm's final-window values across its seeds, and each arm minus the
baseline paired by seed. Written as ``comparison.md`` / ``comparison.csv`` and shown by the
sweep report: one definition for every place that compares arms.

- A job's value of a metric is its value in the job's **last window** of ``metrics.parquet``. A
  cumulative metric (``Metric.per_window`` False) is a running total, so its last window is the
  run's total; nothing here averages over windows.
- An arm's value is the mean across its seeds with the interval of :mod:`reports.intervals`
  (Student-t across seeds, cut to the metric's range; none with one seed).
- A difference to the baseline arm is paired by seed: the mean of (arm − baseline) over the seeds
  both finished, its t-interval cut to the range a difference can take, and the paired t-test
  (``scipy.stats.ttest_rel``). With a single common seed it is that seed's difference, with no
  interval and no test.

Reads files only (through :mod:`reports.sweep_folder`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from reports.atomic_write import atomic_path
from reports.intervals import METHOD, Domain, Interval, difference_domain, mean_interval
from reports.markdown import md_cell, md_line, md_text
from reports.metric_catalog import format_metric, metric_info
from reports.optuna_study import TRIALS_CSV, chosen_arm, load_optuna_study, trials_markdown
from reports.sweep_folder import (
    Sweep,
    SweepReportError,
    choose_baseline,
    final_value,
    load_sweep,
)

ALPHA = 0.05  # a paired difference with p below this is marked significant (uncorrected)
FINAL = "final window"
GAIN = "cumulative_utility"  # comparison.md's paired column: utility delivered vs the baseline
# the metrics of comparison.md/.csv (all final window)
COMPARED: tuple[str, ...] = (
    "cumulative_utility",
    "coverage_exposure",
    "gini_exposure",
    "popularity_drift",
    "homogenization",
    "ctr",
    "model_ndcg",
    "cum_revenue",
    "creator_gini_exposure",
    "content_diversity",
    "cum_fallback_share",
    "cache_hit_rate",
    "latency_p99_ms",
)
# comparison.md shows these only when some arm served requests by the fallback or the cache (every
# run measures latency; a sweep without serving shortcuts would get columns of zeros)
SERVING_COMPARED: tuple[str, ...] = ("cum_fallback_share", "cache_hit_rate", "latency_p99_ms")
JOB_COLUMNS = ("job", "arm", "policy", "seed")


def final_label(metric: str) -> str:
    """The metric's catalog label marked as a final-window value: "CTR (final window)"."""
    return f"{metric_info(metric).label} ({FINAL})"


# ---------------------------------------------------------------- statistics


@dataclass(frozen=True)
class Paired:
    """Arm minus baseline over the seeds both have a finite value for.

    ``mean`` is the single difference when ``n == 1`` (``low``/``high``/``p`` NaN) and NaN when
    ``n == 0``; ``p`` is NaN too when the differences do not vary (the t statistic is undefined).
    """

    n: int
    mean: float
    low: float
    high: float
    p: float
    seeds: tuple[Any, ...]

    @property
    def significant(self) -> bool:
        return bool(math.isfinite(self.p) and self.p < ALPHA)


def paired_difference(
    arm: Mapping[Any, float], base: Mapping[Any, float], domain: Domain = (None, None)
) -> Paired:
    """Arm minus baseline paired by seed; ``domain`` is the metric's (the interval is cut to
    :func:`reports.intervals.difference_domain` of it)."""
    seeds = tuple(s for s in arm if s in base and _finite(arm[s]) and _finite(base[s]))
    nan = math.nan
    if not seeds:
        return Paired(0, nan, nan, nan, nan, seeds)
    a = np.array([arm[s] for s in seeds], dtype=np.float64)
    b = np.array([base[s] for s in seeds], dtype=np.float64)
    d = mean_interval(a - b, difference_domain(domain))
    p = nan
    if len(seeds) >= 2 and np.ptp(a - b) > 0:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            from scipy import stats  # lazily: start-up time

            p = float(stats.ttest_rel(a, b).pvalue)
    return Paired(len(seeds), d.mean, d.low, d.high, p, seeds)


def _finite(value: Any) -> bool:
    return value is not None and math.isfinite(float(value))


@dataclass(frozen=True)
class ArmValue:
    """One arm's value of one metric across its seeds, and its paired difference to the
    baseline (None for the baseline itself, or when the sweep has none)."""

    value: Interval
    diff: Paired | None


@dataclass(frozen=True)
class Comparison:
    """Every arm's values of ``metrics``, in ``arms`` order (the baseline first)."""

    arms: list[str]
    baseline: str | None
    n_seeds: dict[str, int]
    values: dict[str, dict[str, ArmValue]]  # metric -> arm -> value

    @property
    def metrics(self) -> list[str]:
        return list(self.values)

    def shown(self, metric: str) -> bool:
        """Has any arm a finite value of ``metric``? (A model metric of a model-free sweep has
        none: its row and panel are left out.)"""
        return any(math.isfinite(v.value.mean) for v in self.values[metric].values())

    @property
    def max_pairs(self) -> int:
        """The most seeds any arm shares with the baseline (< 2: no interval, no test)."""
        return max(
            (v.diff.n for per_arm in self.values.values() for v in per_arm.values() if v.diff),
            default=0,
        )


def job_finals(sweep: Sweep, metrics: Sequence[str]) -> pl.DataFrame:
    """One row per finished job: ``job, arm, policy, seed`` and each metric's final-window value
    (null when the job's metrics lack it or it is not finite there)."""
    jobs = [j for j in sweep.finished if j.arm is not None]
    seeds = [j.seed for j in jobs]
    integer = all(isinstance(s, int) and not isinstance(s, bool) for s in seeds if s is not None)
    data: dict[str, pl.Series] = {
        "job": pl.Series([j.name for j in jobs], dtype=pl.String),
        "arm": pl.Series([j.arm for j in jobs], dtype=pl.String),
        "policy": pl.Series([j.policy for j in jobs], dtype=pl.String),
        "seed": pl.Series(
            seeds if integer else [None if s is None else str(s) for s in seeds],
            dtype=pl.Int64 if integer else pl.String,
        ),
    }
    for metric in metrics:
        values = [final_value(j, metric) for j in jobs]
        data[metric] = pl.Series([v if _finite(v) else None for v in values], dtype=pl.Float64)
    return pl.DataFrame(data)


def _by_seed(finals: pl.DataFrame, arm: str, metric: str) -> dict[Any, float]:
    """The arm's final value per seed (jobs sharing a seed averaged; no seed: left out)."""
    rows = finals.filter(
        (pl.col("arm") == arm) & pl.col("seed").is_not_null() & pl.col(metric).is_not_null()
    )
    grouped = rows.group_by("seed").agg(pl.col(metric).mean())
    return dict(zip(grouped["seed"].to_list(), grouped[metric].to_list(), strict=True))


def compare(
    finals: pl.DataFrame, arms: Sequence[str], baseline: str | None, metrics: Sequence[str]
) -> Comparison:
    """The comparison of ``arms`` on ``metrics`` from :func:`job_finals`' table."""
    values: dict[str, dict[str, ArmValue]] = {}
    for metric in metrics:
        domain = metric_info(metric).domain
        column = finals[metric] if metric in finals.columns else None
        base = _by_seed(finals, baseline, metric) if baseline and column is not None else {}
        per_arm = {}
        for arm in arms:
            own = [] if column is None else column.filter(finals["arm"] == arm).to_list()
            diff = None
            if baseline is not None and arm != baseline:
                mine = _by_seed(finals, arm, metric) if column is not None else {}
                diff = paired_difference(mine, base, domain)
            per_arm[arm] = ArmValue(mean_interval(own, domain), diff)
        values[metric] = per_arm
    n_seeds = {arm: finals.filter(pl.col("arm") == arm).height for arm in arms}
    return Comparison(list(arms), baseline, n_seeds, values)


# ---------------------------------------------------------------- writing numbers


def interval_text(
    iv: Interval, fmt: Callable[[float], str], bound: Callable[[float], str] | None = None
) -> str:
    """``mean [low, high]`` (cut intervals are asymmetric), the mean alone with one seed, "–"
    without a value; ``bound`` formats the ends (default ``fmt``)."""
    if iv.n == 0 or not math.isfinite(iv.mean):
        return "–"
    if not iv.has_interval:
        return fmt(iv.mean)
    bound = bound or fmt
    return f"{fmt(iv.mean)} [{bound(iv.low)}, {bound(iv.high)}]"


def fmt_interval(iv: Interval, kind: str) -> str:
    """``mean [low, high]`` in the page's format of the metric kind ``kind`` (the mean alone with
    one seed)."""
    return interval_text(iv, lambda v: format_metric(v, kind))


def difference_text(
    pair: Paired, fmt: Callable[[float], str], bound: Callable[[float], str] | None = None
) -> str:
    """``+Δ [low, high]`` over ≥ 2 seeds, ``+Δ (seed s)`` for one, "–" for none in common."""
    if pair.n == 0:
        return "–"
    if pair.n == 1:
        return f"{fmt(pair.mean)} (seed {pair.seeds[0]})"
    iv = Interval(pair.mean, pair.low, pair.high, pair.n)
    return interval_text(iv, fmt, bound)


def p_text(p: float) -> str:
    """``p = 0.031``, ``p < 0.001``, or "–" without a test."""
    if not math.isfinite(p):
        return "–"
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def signed_text(metric: str, value: float) -> str:
    """A difference of ``metric`` in its terminal format with a sign; shares in points (pp)."""
    info = metric_info(metric)
    if info.kind == "pct":
        return f"{value * 100:+.1f} pp"
    return info.text_format.replace("{:", "{:+", 1).format(value)


# ---------------------------------------------------------------- comparison.md / .csv


def collect_summaries(sweep_dir: Path) -> pl.DataFrame:
    """One row per finished job under ``sweep_dir`` with the final-window value of every
    :data:`COMPARED` metric (empty when the folder is not a sweep)."""
    try:
        sweep = load_sweep(sweep_dir)
    except SweepReportError:
        return pl.DataFrame()
    return job_finals(sweep, COMPARED)


def comparison_table(
    jobs: pl.DataFrame, order: Sequence[str] | None = None, baseline: str | None = None
) -> Comparison:
    """The :data:`COMPARED` metrics of :func:`collect_summaries`' jobs. The baseline is
    ``baseline`` or the rule of :func:`reports.sweep_folder.choose_baseline`, and comes first;
    the other arms follow their policy's place in ``order`` (the sweep's ``policy=`` list), then
    the order of the jobs."""
    policies = dict(jobs.select("arm", "policy").unique(keep="first", maintain_order=True).rows())
    base = choose_baseline(list(policies), policies, baseline) if policies else None
    rank = {name: i for i, name in enumerate(order or [])}
    appearance = {arm: i for i, arm in enumerate(policies)}
    arms = sorted(
        policies, key=lambda a: (a != base, rank.get(policies[a], len(rank)), appearance[a])
    )
    return compare(jobs, arms, base, [m for m in COMPARED if m in jobs.columns])


def to_markdown(comparison: Comparison, title: str, question: str | None = None) -> str:
    """``comparison.md``: one row per arm, every value of its final window with its interval,
    and the cumulative utility gain over the baseline paired by seed. Arm labels, the title and
    the question come from the sweep's overrides and config: escaped (:mod:`reports.markdown`),
    so a ``|`` or a line break in an override value cannot split a row."""
    base = comparison.baseline
    metrics = [m for m in comparison.metrics if comparison.shown(m)]
    if not uses_shortcuts(comparison):
        metrics = [m for m in metrics if m not in SERVING_COMPARED]
    paired = base is not None and GAIN in comparison.values and len(comparison.arms) > 1
    header = ["arm", "seeds", *[final_label(m) for m in metrics]]
    if paired:
        header.append(f"{metric_info(GAIN).label} gain vs {base} ({FINAL}, paired by seed)")
    lines = [f"# {md_line(title)}", ""]
    if question:
        lines += [md_text(question), ""]
    lines += ["| " + " | ".join(map(md_cell, header)) + " |", "|" + " --- |" * len(header)]
    for arm in comparison.arms:
        cells = [md_cell(arm), str(comparison.n_seeds[arm])]
        for metric in metrics:
            cells.append(
                interval_text(comparison.values[metric][arm].value, metric_info(metric).text)
            )
        if paired:
            diff = comparison.values[GAIN][arm].diff
            if diff is None:
                cells.append("baseline")
            else:
                text = difference_text(diff, lambda v: signed_text(GAIN, v))
                if diff.n >= 2:
                    text += f", {p_text(diff.p)}{' *' if diff.significant else ''}"
                cells.append(text)
        lines.append("| " + " | ".join(cells) + " |")
    notes = [
        "",
        f"Values: each job's last snapshot window ({FINAL}); a cumulative metric's last window is "
        "the run's total. Each cell is the mean across the arm's seeds with its interval: "
        f"{METHOD}.",
    ]
    if paired:
        notes.append(
            f"Gain: the arm's {metric_info(GAIN).label} minus {md_line(base)}'s on the same seed, averaged "
            "over the seeds both finished, with its interval and the paired t-test "
            f"(scipy.stats.ttest_rel); * p < {ALPHA} (not corrected for the number of "
            "comparisons); with one common seed, that seed's difference (no interval, no test)."
        )
    notes.append("The sweep's report.html shows every metric over time.")
    return "\n".join([*lines, *notes]) + "\n"


def uses_shortcuts(comparison: Comparison) -> bool:
    """Did any arm serve requests by the fallback or from the slate cache (a mean above 0)?"""
    return any(
        math.isfinite(v.value.mean) and v.value.mean > 0
        for metric in ("cum_fallback_share", "cache_hit_rate")
        if metric in comparison.values
        for v in comparison.values[metric].values()
    )


def with_gain(jobs: pl.DataFrame, baseline: str | None) -> pl.DataFrame:
    """``jobs`` plus ``baseline`` and each job's ``cumulative_utility_gain``: its cumulative
    utility minus the baseline arm's on the same seed (null without one)."""
    column = f"{GAIN}_gain"
    if baseline is None or GAIN not in jobs.columns:
        return jobs.with_columns(pl.lit(baseline, pl.String).alias("baseline"))
    base = (
        jobs.filter((pl.col("arm") == baseline) & pl.col(GAIN).is_not_null())
        .group_by("seed")
        .agg(pl.col(GAIN).mean().alias("_base"))
    )
    return (
        jobs.join(base, on="seed", how="left")
        .with_columns(
            pl.lit(baseline, pl.String).alias("baseline"),
            (pl.col(GAIN) - pl.col("_base")).alias(column),
        )
        .drop("_base")
    )


def write_comparison(
    sweep_dir: Path,
    title: str | None = None,
    order: Sequence[str] | None = None,
    baseline: str | None = None,
) -> Path | None:
    """Write ``comparison.csv`` (one row per finished job; metric columns are final-window
    values) and ``comparison.md`` (:func:`to_markdown`; ``title`` defaults to the study's name,
    the question is the study's ``study_question`` when its config has one) into
    ``sweep_dir``; return the ``.md``'s path, or None (nothing written) when no job finished.

    Raises
    ------
    SweepReportError
        When ``baseline`` is given and is not an arm with finished jobs.
    """
    sweep_dir = Path(sweep_dir)
    try:
        sweep = load_sweep(sweep_dir)
    except SweepReportError:
        return None
    jobs = job_finals(sweep, COMPARED)
    if jobs.is_empty():
        return None
    if baseline is None and sweep.study_baseline is not None:
        baseline = sweep.baseline  # the study's reference arm (load_sweep resolved it)
    if baseline is None:
        baseline = chosen_arm(sweep)  # an Optuna sweep's chosen trial (else None: the rule)
    comparison = comparison_table(jobs, order, baseline)
    csv = with_gain(jobs, comparison.baseline).sort("arm", "seed", "job")
    with atomic_path(sweep_dir / "comparison.csv") as tmp:
        csv.rename({m: f"{m}_final_window" for m in COMPARED if m in csv.columns}).write_csv(tmp)
    path = sweep_dir / "comparison.md"
    text = to_markdown(comparison, title or sweep.name, sweep.question)
    study = load_optuna_study(sweep)
    if study is not None:  # trials are jobs: their table too, and trials.csv
        text += trials_markdown(study)
        with atomic_path(sweep_dir / TRIALS_CSV) as tmp:
            study.trials.write_csv(tmp)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path
