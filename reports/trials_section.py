"""The sweep report's "Trials" section for an Optuna sweep (:mod:`reports.optuna_study`).

The chosen parameters (the best trial that meets the revenue floor) with their measured
outcomes, Optuna's own record of the best trial beside it, the objective of every trial in order,
the table of trials, and how sensitive the objective (and revenue) is to each searched key.
"""

from __future__ import annotations

import html
import math
import shlex
from typing import Any

import numpy as np
import plotly.graph_objects as go
import polars as pl
from plotly.subplots import make_subplots

from reports.metric_catalog import CATALOG, format_metric
from reports.optuna_study import (
    RESULTS_FILE,
    OptunaStudy,
    best_feasible,
    fmt_param,
    sensitivity,
)
from reports.page import FIG_HEIGHT, figure_html
from reports.sweep_folder import FINISHED, override_key

TRIALS_CSS = """
tr.best td { background: #e3f4e3; font-weight: 600; }
tr.infeasible td { color: #777; }
table.trials { font-size: 0.86rem; }
"""
# the best trial's measured outcomes shown in the headline, when the run measured them
OUTCOMES = (
    "cumulative_utility",
    "utility",
    "ctr",
    "revenue_per_request",
    "coverage_exposure",
    "gini_exposure",
    "creator_gini_exposure",
    "content_diversity",
)
RECHECK_SEEDS = "0,1,2"


def _esc(value: Any) -> str:
    return html.escape(str(value))


def _fmt(metric: str, value: Any) -> str:
    info = CATALOG.get(metric)
    if info is None:
        return (
            "–"
            if value is None or (isinstance(value, float) and math.isnan(value))
            else f"{float(value):.4g}"
        )
    return format_metric(value, info.kind)


def _label(metric: str) -> str:
    info = CATALOG.get(metric)
    return info.title if info is not None else metric.replace("_", " ")


def _feasible_text(value: Any) -> str:
    return {True: "yes", False: "no"}.get(value, "not checked")


def recheck_command(study: OptunaStudy, best: dict[str, Any]) -> str:
    """``recloop -m`` re-running the chosen parameters on more seeds with the basic sweeper (the
    trials shared one seed: the best of n trials on one seed is optimistic). Works when the
    study keeps its Optuna search in a sweeper config (``configs/hydra/sweeper/tune_weights.yaml``),
    which ``hydra/sweeper=basic`` replaces."""
    job = study.jobs[best["trial"]]
    keys = {p.key for p in study.space} | {"seed"}
    rest = [o for o in job.overrides or () if override_key(o) not in keys]
    chosen = [
        f"{p.key}={best[p.key]!r}" if isinstance(best[p.key], float) else f"{p.key}={best[p.key]}"
        for p in study.space
    ]
    parts = ["recloop", "-m", *rest, "hydra/sweeper=basic", *chosen, f"seed={RECHECK_SEEDS}"]
    return " ".join(shlex.quote(p) for p in parts)


def _headline(study: OptunaStudy, metric: str, floor: float | None, on: str) -> str:
    t = study.trials
    n_done = t.filter(pl.col("status") == FINISHED).height
    n_feasible = t.filter(
        (pl.col("status") == FINISHED) & pl.col("feasible").fill_null(False)
    ).height
    unchecked = t.filter((pl.col("status") == FINISHED) & pl.col("feasible").is_null()).height
    planned = f" of {study.n_trials} planned" if study.n_trials is not None else ""
    seed = f", seed {study.sampler_seed}" if study.sampler_seed is not None else ""
    constraint = (
        f" subject to mean {_label(on)} over windows ≥ {floor:g}"
        if floor is not None
        else " (no floor)"
    )
    fixed = ", ".join(f"<code>{_esc(k)}={_esc(v)}</code>" for k, v in study.fixed.items())
    text = (
        f"<p><b>{t.height}</b> trials{planned} ({_esc(study.sampler)}{_esc(seed)}), "
        f"<b>{n_done}</b> finished, <b>{n_feasible}</b> feasible; each maximizes "
        f"<b>{_esc(_label(metric))}</b> in the run's last window{_esc(constraint)}. "
        f"Every trial runs with the same fixed settings{': ' + fixed if fixed else ''} "
        "(common random numbers: the trials differ only in the searched keys).</p>"
    )
    if floor is not None and unchecked:
        text += (
            f'<p class="status-incomplete">{unchecked} finished trial(s) measured no '
            f"{_esc(on)}: the floor was not applied to them.</p>"
        )
    best = best_feasible(t)
    if best is None:
        return text + '<p class="status-failed answer">No finished trial meets the floor.</p>'
    chosen = ", ".join(
        f"<code>{_esc(p.key)}={_esc(fmt_param(best[p.key]))}</code>" for p in study.space
    )
    job = study.jobs[best["trial"]]
    final = (job.summary or {}).get("final") or {}
    means = (job.summary or {}).get("mean") or {}
    rows = []
    for m in (*OUTCOMES, *((on,) if on not in OUTCOMES else ())):
        if m == on:
            value = best["constraint"]
            where = "mean over windows"
        elif m in final:
            value, where = final[m], "last window"
        else:
            continue
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        extra = ""
        if m in means and m not in ("cumulative_utility", on) and means[m] is not None:
            extra = f" (mean over windows {_fmt(m, means[m])})"
        rows.append(
            f"<tr><td>{_esc(_label(m))}</td><td class='num'>{_fmt(m, value)}</td>"
            f"<td>{where}{extra}</td></tr>"
        )
    text += (
        f'<p class="answer">Chosen: trial <b>{best["trial"]}</b> — {chosen}. Its measured '
        f"outcomes (job <code>{_esc(job.name)}</code>):</p>"
        f"<table><tr><th>metric</th><th>value</th><th></th></tr>{''.join(rows)}</table>"
    )
    results = study.results
    if results is not None and "best_params" in results:
        same = all(_close(results["best_params"].get(p.key), best[p.key]) for p in study.space)
        in_folder = any(
            all(_close(results["best_params"].get(p.key), r[p.key]) for p in study.space)
            for r in t.filter(pl.col("status") == FINISHED).iter_rows(named=True)
        )
        if same:
            verdict = '<span class="ok">the same trial</span>'
        elif not in_folder and study.storage is not None:
            verdict = (
                f"not a trial of this folder: the study's storage ({_esc(study.storage)}) holds "
                "trials of earlier sweeps"
            )
        else:
            verdict = "a different trial (Optuna ranks by the returned value; see the table)"
        params = ", ".join(
            f"{_esc(k)}={_esc(fmt_param(_maybe_float(v)))}"
            for k, v in results["best_params"].items()
        )
        text += (
            f'<p class="caption">Optuna\'s {RESULTS_FILE}: best value '
            f"{_esc(fmt_param(_maybe_float(results.get('best_value'))))} at {params} — {verdict}.</p>"
        )
    elif results is None:
        text += f'<p class="caption">No {RESULTS_FILE}: the sweep did not end (interrupted or still running).</p>'
    text += (
        '<p class="caption">The best of many trials on one seed is an optimistic estimate of the '
        "chosen setting. Re-measure it on more seeds (basic sweeper, same study settings):</p>"
        f'<code class="cmd">{_esc(recheck_command(study, best))}</code>'
    )
    return text


def _maybe_float(value: Any) -> Any:
    try:
        return float(value)
    except (TypeError, ValueError):
        return value


def _close(a: Any, b: Any) -> bool:
    a, b = _maybe_float(a), _maybe_float(b)
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return str(a) == str(b)


def trials_figure(study: OptunaStudy, metric: str) -> go.Figure:
    """Objective per trial (feasible filled, infeasible hollow) and the running best feasible."""
    t = study.trials.filter(pl.col("status") == FINISHED)
    fig = go.Figure()
    feasible = t.filter(pl.col("feasible").is_null() | pl.col("feasible"))
    infeasible = t.filter(pl.col("feasible").fill_null(True).not_())
    for part, name, symbol in (
        (feasible, "feasible", "circle"),
        (infeasible, "below the floor", "circle-open"),
    ):
        if part.height:
            fig.add_trace(
                go.Scatter(
                    x=part["trial"].to_list(),
                    y=part["objective"].to_list(),
                    mode="markers",
                    name=name,
                    marker={"symbol": symbol, "size": 9},
                    customdata=[[fmt_param(c)] for c in part["constraint"].to_list()],
                    hovertemplate="trial %{x}<br>objective %{y:.4g}<br>revenue/request %{customdata[0]}<extra></extra>",
                )
            )
    if feasible.height:
        order = feasible.sort("trial")
        best = np.maximum.accumulate(order["objective"].to_numpy())
        fig.add_trace(
            go.Scatter(
                x=order["trial"].to_list(),
                y=best.tolist(),
                mode="lines",
                line={"shape": "hv", "color": "#2ca02c"},
                name="best feasible so far",
            )
        )
    fig.update_layout(
        template="plotly_white",
        height=FIG_HEIGHT,
        margin={"l": 60, "r": 30, "t": 20, "b": 50},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0},
        xaxis_title="trial",
        xaxis={"tickformat": "d", "dtick": 1 if study.trials.height <= 30 else None},
        yaxis_title=_label(metric),
    )
    return fig


def dependence_figure(study: OptunaStudy, metric: str) -> go.Figure | None:
    """The objective against each searched numeric key, one panel per key."""
    t = study.trials.filter(pl.col("status") == FINISHED)
    keys = [p for p in study.space if t[p.key].dtype == pl.Float64]
    if not keys or t.height == 0:
        return None
    fig = make_subplots(rows=1, cols=len(keys), shared_yaxes=True, horizontal_spacing=0.04)
    for j, p in enumerate(keys, start=1):
        feasible = t["feasible"].fill_null(True).to_list()
        fig.add_trace(
            go.Scatter(
                x=t[p.key].to_list(),
                y=t["objective"].to_list(),
                mode="markers",
                marker={
                    "symbol": ["circle" if f else "circle-open" for f in feasible],
                    "size": 8,
                    "color": "#1f77b4",
                },
                text=[f"trial {n}" for n in t["trial"].to_list()],
                showlegend=False,
                hovertemplate="%{text}<br>%{x:.4g} → %{y:.4g}<extra></extra>",
            ),
            row=1,
            col=j,
        )
        fig.update_xaxes(title_text=p.key.rpartition(".")[2], row=1, col=j)
    fig.update_yaxes(title_text=_label(metric), row=1, col=1)
    fig.update_layout(
        template="plotly_white", height=FIG_HEIGHT, margin={"l": 60, "r": 30, "t": 20, "b": 50}
    )
    return fig


def _trial_rows(study: OptunaStudy, best: dict[str, Any] | None, on: str) -> str:
    head = (
        "<tr><th>trial</th>"
        + "".join(f"<th>{_esc(p.key)}</th>" for p in study.space)
        + f"<th>objective</th><th>{_esc(_label(on))} (mean over windows)</th><th>feasible</th>"
        "<th>returned to Optuna</th><th>status</th><th>job</th></tr>"
    )
    rows = []
    for r in study.trials.iter_rows(named=True):
        cls = ""
        if best is not None and r["trial"] == best["trial"]:
            cls = ' class="best"'
        elif r["feasible"] is False:
            cls = ' class="infeasible"'
        cells = "".join(f"<td class='num'>{_esc(fmt_param(r[p.key]))}</td>" for p in study.space)
        rows.append(
            f"<tr{cls}><td class='num'>{r['trial']}</td>{cells}"
            f"<td class='num'>{_esc(fmt_param(r['objective']))}</td>"
            f"<td class='num'>{_esc(fmt_param(r['constraint']))}</td>"
            f"<td>{_feasible_text(r['feasible']) if r['status'] == FINISHED else '–'}</td>"
            f"<td class='num'>{_esc(fmt_param(r['returned']))}</td>"
            f"<td>{_esc(r['status'])}</td><td><code>{_esc(r['job'])}</code></td></tr>"
        )
    return f'<div class="table-scroll"><table class="trials">{head}{"".join(rows)}</table></div>'


def _sensitivity_table(study: OptunaStudy, metric: str, on: str) -> str:
    outcomes = [("objective", _label(metric))]
    if study.trials["constraint"].is_not_nan().any():
        outcomes.append(("constraint", f"{_label(on)} (mean)"))
    tables = {o: sensitivity(study.trials, study.space, o) for o, _ in outcomes}
    first = tables["objective"]
    if first.height == 0:
        return '<p class="caption">No numeric searched key: no sensitivity.</p>'
    head = (
        "<tr><th>key</th><th>range</th>"
        + "".join(
            f"<th>{_esc(label)}: effect low→high</th><th>share</th><th>Spearman ρ</th>"
            for _, label in outcomes
        )
        + "</tr>"
    )
    rows = []
    for i, key in enumerate(first["key"].to_list()):
        p = next(p for p in study.space if p.key == key)
        rng = f"{p.low:g} – {p.high:g}" if p.low is not None else "observed"
        cells = ""
        for o, _ in outcomes:
            row = tables[o].row(i, named=True)
            cells += (
                f"<td class='num'>{_signed(row['effect'])}</td>"
                f"<td class='num'>{format_metric(row['share'], 'pct')}</td>"
                f"<td class='num'>{format_metric(row['spearman'], 'num2')}</td>"
            )
        rows.append(f"<tr><td><code>{_esc(key)}</code></td><td>{_esc(rng)}</td>{cells}</tr>")
    n = int(first["n"][0]) if first.height else 0
    caption = (
        f'<p class="caption">Over the {n} finished trials (feasible or not). <b>Effect</b>: the '
        "coefficient of one least-squares fit of the outcome on every searched key, each scaled "
        "to its search range — the change from the low to the high end of that key with the "
        "others held fixed (needs more trials than keys + 1). <b>Share</b>: its part of the "
        "summed absolute effects. <b>Spearman ρ</b>: rank correlation of the key with the "
        "outcome alone. Computed here from the trials (not Optuna's fANOVA: the sweeper keeps "
        "its study in memory, and fANOVA needs scikit-learn). Rough with few trials; TPE "
        "concentrates trials near the best region, so the fit is local there.</p>"
    )
    return f'<div class="table-scroll"><table>{head}{"".join(rows)}</table></div>{caption}'


def _signed(value: float) -> str:
    if value is None or not math.isfinite(value):
        return "–"
    return f"{value:+,.0f}" if abs(value) >= 1000 else f"{value:+.4g}"


def trials_section(study: OptunaStudy) -> str:
    """The HTML of the Trials section."""
    metric, floor, on = study.objective_metric, study.floor, study.floor_metric
    best = best_feasible(study.trials)
    parts = [_headline(study, metric, floor, on)]
    if study.trials.filter(pl.col("status") == FINISHED).height:
        parts.append("<h3>Objective by trial</h3>")
        parts.append(figure_html(trials_figure(study, metric), "trials-objective"))
    parts.append("<h3>Every trial</h3>")
    parts.append(
        '<p class="caption">Objective: the metric in the run\'s last window, unpenalized. '
        "Returned to Optuna: the objective when the trial meets the floor, else minus "
        "its relative shortfall (floor − value) / floor of the floored metric, below every feasible trial. The "
        "chosen trial is highlighted; trials below the floor are grey.</p>"
    )
    parts.append(_trial_rows(study, best, on))
    parts.append("<h3>Sensitivity to each searched key</h3>")
    parts.append(_sensitivity_table(study, metric, on))
    dep = dependence_figure(study, metric)
    if dep is not None:
        parts.append(figure_html(dep, "trials-dependence"))
        parts.append(
            '<p class="caption">The objective of every finished trial against each key '
            "(hollow: below the floor).</p>"
        )
    return "".join(parts)
