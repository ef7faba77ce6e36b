"""The off-policy evaluation study: estimates from one policy's logs, checked against the truth.

For each seed:

1. **Logging run** — the logging policy (``ope.logging``) runs the closed loop; every slate it
   serves from a model is also *replayed* under each target (``ope.targets``): the target's
   marginal and prefix probabilities of the logged slate on the logged context are logged to
   ``logs/targets`` (:mod:`policies.replay`).
2. **Truth runs** — for each target, the same world, seed and logging policy up to the start of
   the evaluation window, then the target's selector serves the same deployed model: the same
   users, requests and response coin flips (common random numbers), so the target's realized
   value over the window is the ground truth an estimate should hit.
3. **Estimates** — on the logging run's window: item level (slot 0 as a bandit: IPS, SNIPS) and
   slate level (standard, independent and reward-interaction IPS and their self-normalized forms)
   of the expected reward per request, each with a bootstrap interval and weight diagnostics.

The reward is the click (``ope.reward: click``, the default) or a conversion within a stated
label horizon (``ope.reward: conversion``, :mod:`experiments.ope_reward`): then every run goes on
past the window until each window click's label is complete, and the window is also scored as
it would be at several times after its end (``ope.elapsed_hours``), with the conversions logged by
then — the bias of estimating before the labels are in. That adds ``ope_delay.parquet`` (one row
per estimator × target × seed × elapsed time) and ``ope_delay_summary.csv`` (means over seeds).

The window is the last retrain period: from the last deployment to the horizon (``sim.days``),
so one model serves all of it and the truth runs share the logging run's models. Writes
``ope.parquet`` (one row per estimator × target × seed; with conversions, at complete labels),
``ope_summary.csv`` (bias, RMSE, relative error, interval coverage, Kendall τ of the target
ranking, per estimator), ``ope.json`` (the logging policy and the window; with conversions also
the reward, its label horizon and the evaluation times) and ``ope.html``
(:mod:`reports.ope_report`, from those files).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from omegaconf import OmegaConf

from experiments.config import ConfigError, compose_policy, instantiate, parse_config, parse_policy
from experiments.ope_reward import (
    CLICKS,
    OpeReward,
    label_shares,
    read_conversions,
    slot_rewards,
)
from experiments.run import run
from policies.constrained_rerank import ConstrainedRerank
from policies.ope import (
    DM,
    DR,
    IPS,
    SNDR,
    SNIPS,
    BanditData,
    SelfNormalizedSlateIndependentIPS,
    SelfNormalizedSlateRewardInteractionIPS,
    SelfNormalizedSlateStandardIPS,
    SlateData,
    SlateIndependentIPS,
    SlateRewardInteractionIPS,
    SlateStandardIPS,
    SwitchDR,
)
from policies.policy import PolicyConfig, Target
from policies.selection import Selector
from reports.ope_report import build_ope_report
from sim.event_log import scan_table

ITEM_ESTIMATORS = {
    "IPS": IPS(),
    "SNIPS": SNIPS(),
    "DM": DM(),
    "DR": DR(),
    "SNDR": SNDR(),
    "SwitchDR": SwitchDR(tau=5.0),
}
SLATE_ESTIMATORS = {
    "slate_standard_IPS": SlateStandardIPS(),
    "slate_independent_IPS": SlateIndependentIPS(),
    "slate_reward_interaction_IPS": SlateRewardInteractionIPS(),
    "SN_slate_standard_IPS": SelfNormalizedSlateStandardIPS(),
    "SN_slate_independent_IPS": SelfNormalizedSlateIndependentIPS(),
    "SN_slate_reward_interaction_IPS": SelfNormalizedSlateRewardInteractionIPS(),
}
OPE_COLUMNS = (
    "estimator",
    "level",
    "target",
    "seed",
    "estimate",
    "ci_low",
    "ci_high",
    "truth",
    "ess_share",
    "clipped_share",
    "support_warning",
)
# ope_delay.parquet (conversion reward): the estimate as known ``elapsed_hours`` after the window.
DELAY_COLUMNS = (
    *OPE_COLUMNS[:4],
    "elapsed_hours",
    "labels_complete",
    *OPE_COLUMNS[4:],
    "open_share",
    "seen_share",
)


def check_ope(cfg: dict[str, Any]) -> tuple[PolicyConfig, dict[str, Target], list[int]]:
    """The logging policy (the composed ``policy`` node), the targets (``ope.targets``: policy
    presets whose selector reranks the logging policy's model) and the seeds; or one error line."""
    ope = cfg.get("ope") or {}
    targets = list(ope.get("targets") or [])
    seeds = list(ope.get("seeds") or [cfg.get("seed", 0)])
    if "logging" in ope or "logging_params" in ope:
        raise ConfigError(
            "ope.logging: the logging policy is the run's own policy now; choose it with "
            "policy=<preset> and tune it with policy.selector.<key>=..."
        )
    if not targets or not all(isinstance(t, str) for t in targets):
        raise ConfigError(f"ope.targets={targets!r}: name at least one target policy preset")
    if not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise ConfigError(f"ope.seeds={seeds!r}: must be integers")
    OpeReward.parse(cfg)
    logging = parse_policy(cfg.get("policy"))
    if isinstance(logging.rerank, ConstrainedRerank):
        raise ConfigError(
            "policy.rerank='constrained': runner=ope cannot replay it (its slates depend on "
            "exposure multipliers that the target's own traffic would move); use another "
            "reranker for the logging policy"
        )
    if not parse_config({k: v for k, v in cfg.items() if k != "ope"}).serving.is_default:
        raise ConfigError(
            "serving: runner=ope needs the default serving system (unlimited servers, no "
            "budget, no cache); use serving=default"
        )
    logging_scorer = (cfg["policy"].get("scorer") or {}).get("_target_")
    resolved = {}
    for name in targets:
        node = compose_policy(name)
        scorer = (node.get("scorer") or {}).get("_target_")
        if (node.get("rerank") or {}).get("_target_", "").endswith(".ConstrainedRerank"):
            raise ConfigError(
                f"ope.targets: {name!r} uses policy.rerank='constrained', which cannot be "
                "replayed on a logged slate (its multipliers depend on its own traffic)"
            )
        rerank, logging_rerank = node.get("rerank") or {}, cfg["policy"].get("rerank") or {}
        if rerank != logging_rerank:
            same_class = rerank.get("_target_") == logging_rerank.get("_target_")
            mine = _rerank_keys(rerank) if same_class else repr(rerank.get("_target_"))
            theirs = (
                _rerank_keys(logging_rerank) if same_class else repr(logging_rerank.get("_target_"))
            )
            raise ConfigError(
                f"ope.targets: {name!r} reranks with {mine} but the logging policy "
                f"{logging.name!r} with {theirs}; a target's selector is replayed on the logging "
                "policy's reranked candidates, so it must share its reranker"
            )
        if scorer != logging_scorer:
            raise ConfigError(
                f"ope.targets: {name!r} scores with {scorer!r} but the logging policy "
                f"{logging.name!r} with {logging_scorer!r}; a target reranks the logging "
                "policy's model"
            )
        try:
            selector = instantiate(
                node["selector"],
                Selector,
                f"ope.targets[{name}].selector",
                slate_size=logging.slate_size,
            )
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        if not selector.replayable:
            raise ConfigError(
                f"ope.targets: {name!r} uses selector {selector.label!r}, which cannot be "
                "replayed on a logged slate"
            )
        resolved[name] = Target(name, selector)
    return logging, resolved, seeds


def _rerank_keys(node: dict[str, Any]) -> str:
    """A reranker node's settings, short, for an error line."""
    keys = {k: v for k, v in node.items() if k != "_target_"}
    return ", ".join(f"{k}={v}" for k, v in keys.items()) or "no settings"


def window_start(sim: dict[str, Any]) -> float:
    """Hour of the last deployment: from there to the horizon one model serves."""
    horizon = 24.0 * sim["days"]
    every = float(sim["retrain_every_hours"])
    n_retrains = math.ceil(horizon / every) - 1
    if n_retrains < 1:
        raise ConfigError(
            f"sim.days={sim['days']}: the OPE window needs at least one retrain before the horizon"
        )
    return n_retrains * every + float(sim["train_hours"])


def run_ope(cfg: Any, out_dir: Path) -> pl.DataFrame:
    """Run the study (see the module docstring); returns the ``ope.parquet`` table."""
    base = OmegaConf.to_container(cfg, resolve=True) if not isinstance(cfg, dict) else dict(cfg)
    base.pop("hydra", None)
    logging, targets, seeds = check_ope(base)
    reward = OpeReward.parse(base)
    base = {k: v for k, v in base.items() if k not in ("ope", "runner")}
    base["report"] = {"enabled": False}
    base["progress"] = False
    n_items = parse_config(base).world.n_items  # and fail before any run starts
    t0 = window_start(base["sim"])
    t_end = 24.0 * base["sim"]["days"]
    if reward.tail_days:  # every run goes on until each window click's label is complete
        base["sim"] = {**base["sim"], "days": base["sim"]["days"] + reward.tail_days}
    shadow = {name: t.selector for name, t in targets.items()}
    out_dir = Path(out_dir)
    rows: list[dict[str, Any]] = []
    for seed in seeds:
        cfg_s = {**base, "seed": seed}
        log_dir = out_dir / f"seed{seed}" / "logging"
        run(cfg_s, log_dir, shadow_targets=shadow)
        for name, target in targets.items():
            truth_dir = out_dir / f"seed{seed}" / f"truth_{name}"
            run(cfg_s, truth_dir, switch=(t0, target))
            truth = window_values(truth_dir / "logs", t0, reward, t_end)
            rows += estimate_target(
                log_dir / "logs", t0, target, seed, truth, n_items, reward, t_end
            )
    meta: dict[str, Any] = {"logging": logging.name, "window_start_hour": t0}
    if reward.is_click:
        table = pl.DataFrame(rows).select(OPE_COLUMNS)
    else:
        delay = pl.DataFrame(rows).select(DELAY_COLUMNS)
        delay.write_parquet(out_dir / "ope_delay.parquet")
        summarize_delay(delay).write_csv(out_dir / "ope_delay_summary.csv")
        complete = pl.col("elapsed_hours") == reward.label_horizon_hours
        table = delay.filter(complete).select(OPE_COLUMNS)
        meta |= {
            "window_end_hour": t_end,
            "reward": reward.kind,
            "reward_unit": reward.unit,
            "label_horizon_hours": reward.label_horizon_hours,
            "conversion_value": reward.conversion_value,
            "elapsed_hours": list(reward.evaluation_hours),
            "label_tail_days": reward.tail_days,
        }
    table.write_parquet(out_dir / "ope.parquet")
    summary = summarize(table)
    summary.write_csv(out_dir / "ope_summary.csv")
    (out_dir / "ope.json").write_text(json.dumps(meta, indent=2) + "\n")
    build_ope_report(out_dir)
    return table


def _window(logs: Path, t0: float, t_end: float = math.inf) -> pl.DataFrame:
    return (
        scan_table(logs, "impressions")
        .filter((pl.col("t") >= t0) & (pl.col("t") < t_end))
        .drop("round")
        .collect()
        .sort("request_id", "position")
    )


def window_values(
    logs: Path, t0: float, reward: OpeReward = CLICKS, t_end: float = math.inf
) -> dict[str, float]:
    """Realized value over the window ``[t0, t_end)`` with complete labels: reward per request
    (slate) and slot-0 mean reward (item); with the click reward, clicks per request and CTR."""
    imp = _window(logs, t0, t_end)
    n_requests = imp["request_id"].n_unique()
    r = slot_rewards(imp, read_conversions(logs, reward), reward, math.inf)
    first = (imp["position"] == 0).to_numpy()
    return {
        "slate": float(r.sum()) / max(n_requests, 1),
        "item": float(r[first].mean()) if first.any() else float("nan"),
    }


def estimate_target(
    logs: Path,
    t0: float,
    target: Target,
    seed: int,
    truth: dict[str, float],
    n_items: int,
    reward: OpeReward = CLICKS,
    t_end: float = math.inf,
) -> list[dict[str, Any]]:
    """Every estimator's rows for one target (:data:`OPE_COLUMNS`); with the conversion reward,
    once per evaluation time ``t_end + Δ`` (:data:`DELAY_COLUMNS`), each estimator with the same
    seed at every ``Δ`` (the same folds and resamples: the estimates differ by their labels)."""
    imp = _window(logs, t0, t_end).filter(pl.col("model_version") >= 0)
    tgt = (
        scan_table(logs, "targets")
        .filter(pl.col("target").cast(pl.String) == target.name)
        .select("request_id", "position", "target_marginal", "target_prefix")
        .collect()
    )
    df = imp.join(tgt, on=["request_id", "position"], how="inner").sort("request_id", "position")
    if df.height != imp.height:
        raise RuntimeError(
            f"{logs}: {imp.height - df.height} window rows lack target {target.name!r}"
        )
    first_rows = (df["position"] == 0).to_numpy()
    first = df.filter(pl.col("position") == 0)
    # The reward-model estimators need the target's slot-1 distribution over every candidate
    # (Selector.first_slot): closed-form for greedy, ε-greedy, softmax and uniform; UCB and
    # Thompson would need the model's posterior at analysis time, so they get the weighting
    # estimators only.
    logged_x, cand_x, target_p = slot0_model_inputs(logs, t0, first, target.selector, n_items)
    model_based = target_p is not None
    item_estimators = {
        k: v
        for k, v in ITEM_ESTIMATORS.items()
        if model_based or k not in ("DM", "DR", "SNDR", "SwitchDR")
    }
    conversions = read_conversions(logs, reward)
    # The click reward is known at once: one evaluation, at complete labels.
    elapsed_hours = (None,) if reward.is_click else reward.evaluation_hours
    rows = []
    for elapsed in elapsed_hours:
        seen_before = math.inf if elapsed is None else t_end + elapsed
        r = slot_rewards(df, conversions, reward, seen_before)
        slate = SlateData(
            request=df["request_id"].to_numpy(),
            position=df["position"].to_numpy(),
            reward=r,
            logging_marginal=df["propensity"].to_numpy(),
            target_marginal=df["target_marginal"].to_numpy(),
            logging_prefix=df["prefix_propensity"].to_numpy(),
            target_prefix=df["target_prefix"].to_numpy(),
        )
        item = BanditData(
            reward=r[first_rows],
            logging_propensity=first["propensity"].to_numpy(),
            target_propensity=first["target_marginal"].to_numpy(),
            logged_features=logged_x,
            candidate_features=cand_x,
            target_probabilities=target_p,
        )
        delay: dict[str, Any] = {}
        if elapsed is not None:
            open_share, seen_share = label_shares(df, conversions, reward, seen_before)
            delay = {
                "elapsed_hours": elapsed,
                "labels_complete": elapsed >= reward.label_horizon_hours,
                "open_share": open_share,
                "seen_share": seen_share,
            }
        for level, data, estimators in (
            ("item", item, item_estimators),
            ("slate", slate, SLATE_ESTIMATORS),
        ):
            for name, est in estimators.items():
                e = est.estimate(data, seed)
                rows.append(
                    {
                        "estimator": name,
                        "level": level,
                        "target": target.name,
                        "seed": seed,
                        "estimate": e.value,
                        "ci_low": e.ci_low,
                        "ci_high": e.ci_high,
                        "truth": truth[level],
                        "ess_share": float(e.diagnostics.get("ess_share", float("nan"))),
                        "clipped_share": float(e.diagnostics.get("clipped_share", 0.0)),
                        "support_warning": e.diagnostics.get("support_warning") or "",
                    }
                    | delay
                )
    return rows


def slot0_model_inputs(
    logs: Path, t0: float, first: pl.DataFrame, target: Selector, n_items: int
) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """Reward-model inputs for slot 1 as a bandit (DM, DR, SNDR, Switch-DR).

    Actions: the request's retrieved candidates plus one aggregate "anything else" action.
    Features a platform has: ``1/(rank+1)`` of a candidate (0 outside), a candidate flag and the
    item's log popularity (impressions before the window); the aggregate action carries the
    mean features of the non-candidate items, which is exact for a linear (ridge) reward model.
    The target's slot-1 distribution over those actions is its selector's ``first_slot``
    (``None`` for a selector without one: then no inputs).
    """
    if not target.has_first_slot:
        return None, None, None
    past = (
        scan_table(logs, "impressions")
        .filter(pl.col("t") < t0)
        .select("item_id")
        .collect()["item_id"]
        .to_numpy()
    )
    logpop = np.log1p(np.bincount(past, minlength=n_items).astype(np.float64))
    cands = (
        scan_table(logs, "candidates")
        .filter(pl.col("request_id").is_in(first["request_id"].implode()))
        .select("request_id", "item_id", "rank", "score")
        .collect()
        .sort("request_id", "rank")
    )
    n = first.height
    c = cands.height // max(n, 1)
    # Rows are reshaped to (n, c) below, so each request of ``first`` (in its order) must hold
    # ranks 0..c-1: a total that merely divides by n can hide a request without candidates.
    aligned = (
        c > 0
        and cands.height == n * c
        and np.array_equal(
            cands["request_id"].to_numpy(), np.repeat(first["request_id"].to_numpy(), c)
        )
        and np.array_equal(cands["rank"].to_numpy(), np.tile(np.arange(c), n))
    )
    if not aligned:
        raise RuntimeError(f"{logs}: every window request needs its retrieved candidates")
    items = cands["item_id"].to_numpy().reshape(n, c).astype(np.int64)
    scores = cands["score"].to_numpy().reshape(n, c).astype(np.float64)
    rank_feature = np.broadcast_to(1.0 / (np.arange(c) + 1.0), (n, c))
    cand_x = np.stack([rank_feature, np.ones((n, c)), logpop[items]], axis=2)
    outside_pop = (logpop.sum() - logpop[items].sum(axis=1)) / max(n_items - c, 1)
    outside = np.stack([np.zeros(n), np.zeros(n), outside_pop], axis=1)[:, None, :]
    cand_x = np.concatenate([cand_x, outside], axis=1)  # (n, C + 1, 3)
    shown = first["item_id"].to_numpy().astype(np.int64)
    hit = items == shown[:, None]
    rank = np.where(hit.any(axis=1), hit.argmax(axis=1), c)  # c: the aggregate action
    logged_x = cand_x[np.arange(n), rank]
    versions = first["model_version"].unique().to_list()
    if len(versions) != 1:  # the window starts at the last deployment: one model serves it
        raise RuntimeError(f"{logs}: the window is served by model versions {versions}, not one")
    probs = target.first_slot(scores, n_items, int(versions[0]))
    probs /= probs.sum(axis=1, keepdims=True)
    return logged_x, cand_x, probs


def summarize(table: pl.DataFrame) -> pl.DataFrame:
    """Per estimator: bias, RMSE, mean relative error, CI coverage, Kendall τ over targets."""
    err = table.with_columns(
        (pl.col("estimate") - pl.col("truth")).alias("error"),
        ((pl.col("ci_low") <= pl.col("truth")) & (pl.col("truth") <= pl.col("ci_high"))).alias(
            "covered"
        ),
    )
    out = err.group_by("estimator", "level", maintain_order=True).agg(
        pl.col("error").mean().alias("bias"),
        (pl.col("error") ** 2).mean().sqrt().alias("rmse"),
        (pl.col("error").abs() / pl.col("truth")).mean().alias("relative_error"),
        pl.col("covered").mean().alias("ci_coverage"),
        (pl.col("support_warning") != "").any().alias("support_warning"),
    )
    taus = []
    for (_name, _level), part in err.group_by("estimator", "level", maintain_order=True):
        per_seed = []
        for _, s in part.group_by("seed"):
            if s.height >= 2:
                from scipy.stats import kendalltau  # lazily: start-up time

                tau = kendalltau(s["estimate"].to_numpy(), s["truth"].to_numpy()).statistic
                per_seed.append(tau)
        finite = [t for t in per_seed if np.isfinite(t)]  # τ is undefined when all values tie
        taus.append(float(np.mean(finite)) if finite else float("nan"))
    return out.with_columns(pl.Series("kendall_tau", taus))


def summarize_delay(delay: pl.DataFrame) -> pl.DataFrame:
    """Per estimator × target × elapsed time, means over seeds: estimate, truth, bias
    (estimate − truth), relative bias (bias / mean truth), open and seen label shares."""
    keys = ["level", "target", "estimator", "elapsed_hours"]
    out = delay.group_by(keys, maintain_order=True).agg(
        pl.col("labels_complete").first(),
        pl.col("estimate").mean(),
        pl.col("truth").mean(),
        (pl.col("estimate") - pl.col("truth")).mean().alias("bias"),
        pl.col("open_share").mean(),
        pl.col("seen_share").mean(),
        pl.len().cast(pl.Int64).alias("n_seeds"),
    )
    relative = pl.when(pl.col("truth") != 0).then(pl.col("bias") / pl.col("truth"))
    out = out.with_columns(relative.alias("relative_bias")).select(
        *keys,
        "labels_complete",
        "estimate",
        "truth",
        "bias",
        "relative_bias",
        "open_share",
        "seen_share",
        "n_seeds",
    )
    # per level, rows in the order the study made them (targets and estimators as listed)
    return out.sort("level", maintain_order=True)
