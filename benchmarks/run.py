"""The regression guard: a 1–2 minute subset of the benchmarks, here or against another commit.

    python benchmarks/run.py                   # this checkout: print the subset's figures
    python benchmarks/run.py --compare REF     # REF (any git revision) then this checkout, ratios
    python benchmarks/run.py --compare REF --repeat 2   # alternate REF / here twice, keep the best

The subset, each case in a fresh process:

* ``import``: wall time of ``import experiments.cli`` (what every ``recloop`` pays first);
* ``tiny_run``: one 1-day run of a 300 × 150 world through ``recloop`` (imports, hydra, the run,
  metrics and report: the fixed costs);
* ``S10``: the S workload (10,000 users × 5,000 items, greedy ALS, 64 factors) for 10 days, with
  its fit and serve times;
* ``softmax``: 2,000 × 1,000 × 20 days with ``policy=softmax`` (an exploration policy's serving);
* ``tiny_study``: a 4-job sweep (``policy=greedy,softmax seed=0,1``, 300 × 150 × 5 days) through
  ``recloop -m`` with its sweep report.

With ``--compare REF`` the REF side runs from a temporary ``git worktree`` of REF with this
interpreter (the worktree's code is first on ``sys.path``), then this checkout; each pair runs
one right after the other, and the table gives ``here / REF`` per figure (below 1: faster).
Timings are only comparable on a quiet machine: it warns when the load average says otherwise.
Not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CASES = ("import", "tiny_run", "S10", "softmax", "tiny_study")
TINY = ["world.n_users=300", "world.n_items=150"]


def _compose(overrides: list[str]) -> dict:
    from hydra import compose, initialize_config_module
    from omegaconf import OmegaConf

    with initialize_config_module(config_module="configs", version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    return OmegaConf.to_container(cfg, resolve=True)


def _run_in_process(overrides: list[str]) -> dict:
    """One closed-loop run in this process: wall and the run's own time split."""
    from experiments.run import run

    cfg = _compose([*overrides, "report.enabled=false", "progress=false"])
    with tempfile.TemporaryDirectory(prefix="recloop-bench-") as tmp:
        start = time.perf_counter()
        summary = run(cfg, Path(tmp) / "run")
        wall = time.perf_counter() - start
    t = summary["timing_seconds"]
    return {
        "wall_s": wall,
        "fit_s": t["fit"],
        "serve_s": t["serve"],
        "serve_us_per_request": t["serve"] / max(summary["n_requests"], 1) * 1e6,
    }


def _recloop(args: list[str], cwd: Path) -> float:
    """Wall time of ``recloop ARGS`` (this interpreter, the code first on ``sys.path``)."""
    code = "import sys; from experiments.cli import main; sys.argv = ['recloop', *sys.argv[1:]]; sys.exit(main())"
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], cwd=cwd, capture_output=True, text=True
    )
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"recloop {' '.join(args)} failed in {cwd}:\n{proc.stderr[-2000:]}")
    return wall


def case(name: str) -> dict:
    """Run one case in this process (the code on ``sys.path`` is the side being measured)."""
    if name == "import":
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-c", "import experiments.cli"], check=True, cwd=os.getcwd()
        )
        return {"wall_s": time.perf_counter() - start}
    if name == "S10":
        return _run_in_process(
            [
                "world.n_users=10000",
                "world.n_items=5000",
                "policy=greedy",
                "policy.scorer.factors=64",
                "sim.days=10",
            ]
        )
    if name == "softmax":
        return _run_in_process(["policy=softmax", "sim.days=20"])
    with tempfile.TemporaryDirectory(prefix="recloop-bench-") as tmp:
        if name == "tiny_run":
            args = [*TINY, "sim.days=1", "progress=false", f"hydra.run.dir={tmp}/run"]
            return {"wall_s": _recloop(args, Path.cwd())}
        if name == "tiny_study":
            args = [
                "-m",
                "policy=greedy,softmax",
                "seed=0,1",
                *TINY,
                "sim.days=5",
                "progress=false",
                f"hydra.sweep.dir={tmp}/sweep",
            ]
            return {"wall_s": _recloop(args, Path.cwd())}
    raise SystemExit(f"unknown case {name!r}; known: {', '.join(CASES)}")


def measure(checkout: Path, cases: list[str]) -> dict[str, dict]:
    """Every case in its own process, with ``checkout``'s code first on ``sys.path``."""
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    out = {}
    for name in cases:
        proc = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--case", name],
            cwd=checkout,
            env=env,
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            raise SystemExit(f"case {name} failed at {checkout}:\n{proc.stderr[-3000:]}")
        out[name] = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"  {checkout.name or checkout}: {name} {out[name]['wall_s']:.1f} s", file=sys.stderr)
    return out


def _rev(checkout: Path, ref: str = "HEAD") -> str:
    return subprocess.run(
        ["git", "rev-parse", "--short", ref], cwd=checkout, capture_output=True, text=True
    ).stdout.strip()


def _best(runs: list[dict[str, dict]]) -> dict[str, dict]:
    """Per case and figure, the smallest over the repeats (the least disturbed)."""
    return {c: {k: min(r[c][k] for r in runs) for k in runs[0][c]} for c in runs[0]}


def table(here: dict[str, dict], ref: dict[str, dict] | None, ref_name: str, here_name: str) -> str:
    lines = []
    if ref is None:
        lines.append(f"{'case / figure':34s} {here_name:>12s}")
    else:
        lines.append(f"{'case / figure':34s} {ref_name:>12s} {here_name:>12s} {'ratio':>7s}")
    for c, figures in here.items():
        for k, v in figures.items():
            label = f"{c} {k}"
            if ref is None:
                lines.append(f"{label:34s} {v:12.2f}")
            else:
                r = ref[c][k]
                ratio = v / r if r else float("nan")
                lines.append(f"{label:34s} {r:12.2f} {v:12.2f} {ratio:7.2f}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--compare", metavar="REF", help="also measure this git revision, first")
    ap.add_argument("--repeat", type=int, default=1, help="alternate the sides this many times")
    ap.add_argument("--cases", nargs="+", default=list(CASES), choices=CASES)
    ap.add_argument("--json", type=Path, help="also write the figures here")
    ap.add_argument("--case", help=argparse.SUPPRESS)  # internal: run one case, print JSON
    args = ap.parse_args()
    if args.case:
        print(json.dumps(case(args.case)))
        return

    load = os.getloadavg()[0]
    if load > 0.5:
        print(
            f"warning: load average {load:.2f}: something else is running, timings will be off",
            file=sys.stderr,
        )
    here_name = _rev(ROOT) or "here"
    worktree = None
    try:
        if args.compare:
            ref_name = _rev(ROOT, args.compare)
            if not ref_name:
                raise SystemExit(f"--compare {args.compare}: not a git revision of {ROOT}")
            worktree = Path(tempfile.mkdtemp(prefix="recloop-ref-")) / ref_name
            subprocess.run(
                ["git", "worktree", "add", "--detach", str(worktree), args.compare],
                cwd=ROOT,
                check=True,
                capture_output=True,
            )
        here_runs, ref_runs = [], []
        for _ in range(args.repeat):
            if worktree is not None:
                ref_runs.append(measure(worktree, args.cases))
            here_runs.append(measure(ROOT, args.cases))
        here = _best(here_runs)
        ref = _best(ref_runs) if ref_runs else None
        print(table(here, ref, ref_name if worktree else "", here_name))
        if args.json:
            args.json.write_text(json.dumps({"here": here, "ref": ref}, indent=2))
    finally:
        if worktree is not None:
            subprocess.run(
                ["git", "worktree", "remove", "--force", str(worktree)], cwd=ROOT, check=False
            )
            shutil.rmtree(worktree.parent, ignore_errors=True)


if __name__ == "__main__":
    main()
