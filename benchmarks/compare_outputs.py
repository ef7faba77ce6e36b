"""Do two checkouts of recloop write the same results? Every policy preset and every study, tiny world.

    python benchmarks/compare_outputs.py --before /work/baseline --after /work/main
        [--out /tmp/recloop-compare] [--only greedy,softmax,ope] [--jobs 1] [--reuse-before]
        [--study-seeds 0] [--before-venv DIR] [--after-venv DIR]

Each side runs ``<venv>/bin/python -m experiments.cli`` (what the ``recloop`` entry point calls)
with its checkout as the working directory; the venv defaults to ``<checkout>/.venv``. The script
refuses a side whose packages are not imported from its checkout, so another venv works for a
bare checkout of a commit (``git worktree add /tmp/at-abc abc123``, ``--after /tmp/at-abc
--after-venv /work/main/.venv``) as long as the dependencies match.

The cases come from the BEFORE checkout's configs: one ``policy=<name>`` run per preset in
``configs/policy/`` (files starting with ``_`` are bases) and one ``+study=<name>`` command per
file in ``configs/study/`` (a sweep with ``-m`` when the study sets ``hydra.mode: MULTIRUN``; its
sweep is kept, seeds included, unless ``--study-seeds``), all on a tiny world (:data:`TINY`).
Reports are off; they are not compared.

Compared, in every run directory of a case (a sweep's jobs, the OPE study's seed*/ runs): every
file under ``logs/``, ``metrics.parquet``, ``examination.parquet``, ``ope.parquet``,
``ope_summary.csv``, ``summary.json`` without its ``timing_seconds`` and the sweep's
``comparison.csv`` (a table derived from the summaries). Bytes first; when a table's bytes
differ it is read with polars to say what differs. Verdicts:

    identical        same bytes (summary.json: same JSON once timing_seconds is dropped)
    added columns    equal after dropping columns only the AFTER side has (a deliberate addition)
    widened enum     equal values, but an Enum column's categories were appended to (a new
                     category such as a new retriever's ``source``; old codes unchanged)
    same values      equal values, dtypes and columns, yet different bytes (layout or metadata)
    DIFFERENT        anything else: values, dtypes, row counts, columns the AFTER side lost
    missing          a file only the BEFORE side wrote
    extra            a file only the AFTER side wrote (reported; not a failure)

A case is FAILED when its command fails, when a sweep job records a failure (``status.json``) or
when its checkout's code (HEAD plus uncommitted changes) changed while it ran. Exit code 1 when
anything is DIFFERENT, missing or FAILED. The summary goes to stdout and ``<out>/compare.txt``;
one line per compared file to ``<out>/compare_files.tsv``; each command's output to
``<out>/<side>/.status/``. Comparing a checkout with itself (``--after`` = ``--before``) checks
that the simulator is deterministic. Not a test: it runs ~150 simulations per side.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_REEXEC_MARK = "RECLOOP_COMPARE_REEXEC"

try:  # polars and PyYAML come with recloop's venv; a bare interpreter re-executes under it
    import polars as pl
    import yaml
except ImportError:  # pragma: no cover - depends on the calling interpreter
    pl = None  # type: ignore[assignment]
    yaml = None  # type: ignore[assignment]

# The tiny world of every case (tests/conftest.py's TINY, through the command line).
TINY_WORLD = (
    "world.n_users=300",
    "world.n_items=150",
    "sim.days=4",
    "metrics.homogenization_pairs=300",
    "report.enabled=false",
    "progress=false",
)
TINY_SLATE = ("policy.slate_size=5", "policy.n_candidates=12")
TINY = (*TINY_WORLD, *TINY_SLATE)

# Extra overrides of a preset that is not valid on the tiny world (keys that exist on both sides
# only). Empty: every preset shipped at 58ad118 runs with TINY as is.
PRESET_OVERRIDES: dict[str, tuple[str, ...]] = {}

# Files compared in a run directory besides everything under logs/.
RESULT_FILES = frozenset(
    {
        "metrics.parquet",
        "examination.parquet",
        "ope.parquet",
        "ope_summary.csv",
        "summary.json",
        "comparison.csv",
    }
)
TIMING_KEYS = ("timing_seconds",)  # summary.json: wall-clock seconds, never reproducible

IDENTICAL = "identical"
ADDED = "added columns"
WIDENED = "widened enum"
SAME_VALUES = "same values"
DIFFERENT = "DIFFERENT"
MISSING = "missing"
EXTRA = "extra"
VERDICTS = (IDENTICAL, ADDED, WIDENED, SAME_VALUES, DIFFERENT, MISSING, EXTRA)
MAX_KINDS = 40  # lines of differences in the summary; compare_files.tsv has every file
FAILING = frozenset({DIFFERENT, MISSING})


@dataclass(frozen=True)
class Case:
    """One command run on both sides: a policy preset or a study."""

    name: str  # policy-<preset> | study-<study>
    args: tuple[str, ...]  # recloop arguments except the output directory
    multirun: bool
    note: str = ""  # why its overrides differ from TINY


@dataclass(frozen=True)
class Side:
    label: str  # before | after
    checkout: Path
    python: Path  # a venv's interpreter; the checkout's own code wins (cwd is first on sys.path)
    commit: str
    dirty: bool
    fingerprint: str  # HEAD + uncommitted changes: equal fingerprints, equal code


@dataclass
class RunResult:
    returncode: int
    seconds: float
    reused: bool = False
    error: str = ""
    changed: bool = False  # the checkout's code changed while the command ran


@dataclass(frozen=True)
class FileVerdict:
    path: str  # relative to the case directory
    verdict: str
    detail: str = ""


@dataclass
class CaseReport:
    case: Case
    runs: dict[str, RunResult] = field(default_factory=dict)
    files: list[FileVerdict] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # failed commands or jobs

    def counts(self) -> Counter[str]:
        return Counter(f.verdict for f in self.files)


# --------------------------------------------------------------------------- cases


def _study_case(checkout: Path, name: str, study_seeds: str | None) -> Case:
    spec = yaml.safe_load((checkout / "configs" / "study" / f"{name}.yaml").read_text()) or {}
    hydra = spec.get("hydra") or {}
    multirun = str(hydra.get("mode", "")).upper() == "MULTIRUN"
    swept = set((hydra.get("sweeper") or {}).get("params") or {})
    # A command-line value replaces the study's sweep of that key (hydra's basic sweeper lets the
    # command line win), so the tiny overrides leave swept keys alone; a study that sweeps the
    # slate size also sets n_candidates to fit its largest slate.
    dropped = set(swept)
    if "policy.slate_size" in swept:
        dropped.add("policy.n_candidates")
    args = [f"+study={name}", *(o for o in TINY if o.partition("=")[0] not in dropped)]
    kept = sorted(dropped & {o.partition("=")[0] for o in TINY})
    notes = [f"no tiny {', '.join(kept)} (the study sweeps the slate size)"] if kept else []
    if multirun:
        args.insert(0, "-m")
        if study_seeds is not None and "seed" in swept:
            args.append(f"seed={study_seeds}")
            notes.append(f"seeds {study_seeds}")
    # A single-job study that loops over its own seed list (ope.seeds) runs two of them.
    for section, node in spec.items():
        seeds = node.get("seeds") if isinstance(node, dict) else None
        if isinstance(seeds, list) and len(seeds) > 2:
            args.append(f"{section}.seeds=[{seeds[0]},{seeds[1]}]")
            notes.append(f"{section}.seeds shrunk to {seeds[:2]}")
    return Case(f"study-{name}", tuple(args), multirun, "; ".join(notes))


def discover_cases(before: Path, only: set[str] | None, study_seeds: str | None) -> list[Case]:
    """Every policy preset and study of the BEFORE checkout, in name order."""
    cases: list[Case] = []
    for path in sorted((before / "configs" / "policy").glob("*.yaml")):
        name = path.stem
        if name.startswith("_"):
            continue
        extra = PRESET_OVERRIDES.get(name, ())
        cases.append(
            Case(f"policy-{name}", (f"policy={name}", *TINY, *extra), False, " ".join(extra))
        )
    for path in sorted((before / "configs" / "study").glob("*.yaml")):
        cases.append(_study_case(before, path.stem, study_seeds))
    if only:
        cases = [c for c in cases if c.name in only or c.name.split("-", 1)[1] in only]
        unknown = only - {c.name for c in cases} - {c.name.split("-", 1)[1] for c in cases}
        if unknown:
            raise SystemExit(f"--only: no such preset or study: {', '.join(sorted(unknown))}")
    return cases


# --------------------------------------------------------------------------- running


def _git(checkout: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(checkout), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def tree_fingerprint(checkout: Path) -> tuple[str, bool]:
    """A hash of HEAD and every uncommitted change (tracked diffs and untracked files), and
    whether there are such changes."""
    digest = hashlib.sha256(_git(checkout, "rev-parse", "HEAD").encode())
    status = _git(checkout, "status", "--porcelain=v1")
    digest.update(status.encode())
    digest.update(
        subprocess.run(
            ["git", "-C", str(checkout), "diff", "HEAD", "--binary"], capture_output=True
        ).stdout
    )
    for rel in _git(checkout, "ls-files", "--others", "--exclude-standard", "-z").split("\0"):
        path = checkout / rel
        if rel and path.is_file():
            digest.update(rel.encode() + path.read_bytes())
    return digest.hexdigest()[:16], bool(status)


def _packages(checkout: Path) -> list[str]:
    """The checkout's top-level packages (pyproject's wheel target)."""
    project = tomllib.loads((checkout / "pyproject.toml").read_text())
    return list(project["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"])


def make_side(label: str, checkout: Path, venv: Path | None) -> Side:
    checkout = checkout.resolve()
    python = (venv or checkout / ".venv") / "bin" / "python"
    if not python.is_file():
        raise SystemExit(f"{label}: {python} not found (pip install -e . in {checkout})")
    fingerprint, dirty = tree_fingerprint(checkout)
    side = Side(label, checkout, python, _git(checkout, "rev-parse", "HEAD"), dirty, fingerprint)
    # Every package must come from this checkout, run as the cases run (python -m from the
    # checkout): a venv that reaches another tree's code would make the comparison prove nothing.
    packages = _packages(checkout)
    probe = "import importlib, sys\nfor name in sys.argv[1:]: print(importlib.import_module(name).__file__)"
    found = subprocess.run(
        [str(python), "-c", probe, *packages], cwd=checkout, capture_output=True, text=True
    )
    where = found.stdout.split()
    stray = [w for w in where if not Path(w).resolve().is_relative_to(checkout)]
    if found.returncode != 0 or len(where) != len(packages) or stray:
        raise SystemExit(
            f"{label}: {python} does not import {', '.join(packages)} from {checkout}: "
            f"{stray or found.stderr.strip().splitlines()[-1:]}"
        )
    return side


def _status_path(out: Path, side: Side, case: Case) -> Path:
    return out / side.label / ".status" / f"{case.name}.json"


def _command(side: Side, case: Case, run_dir: Path) -> list[str]:
    """``recloop ARGS`` as ``python -m experiments.cli ARGS`` (pyproject's entry point)."""
    where = "hydra.sweep.dir" if case.multirun else "hydra.run.dir"
    return [str(side.python), "-m", "experiments.cli", *case.args, f"{where}={run_dir}"]


def run_case(out: Path, side: Side, case: Case, reuse: bool) -> RunResult:
    """Run ``case`` with ``side``'s recloop into ``<out>/<side>/<case>`` (replacing it)."""
    run_dir = out / side.label / case.name
    status_path = _status_path(out, side, case)
    command = _command(side, case, run_dir)
    if reuse and status_path.is_file() and run_dir.is_dir():
        status = json.loads(status_path.read_text())
        if (
            status.get("returncode") == 0
            and status.get("fingerprint") == side.fingerprint
            and status.get("command") == command
        ):
            return RunResult(0, status["seconds"], reused=True)
    if run_dir.exists():
        shutil.rmtree(run_dir)
    status_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    proc = subprocess.run(command, cwd=side.checkout, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    status_path.with_suffix(".log").write_text(
        f"$ cd {side.checkout} && {' '.join(command)}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
    )
    status = {
        "command": command,
        "commit": side.commit,
        "dirty": side.dirty,
        "fingerprint": side.fingerprint,
        "returncode": proc.returncode,
        "seconds": round(seconds, 2),
    }
    status_path.write_text(json.dumps(status, indent=2) + "\n")
    error = ""
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        error = lines[-1] if lines else f"exit code {proc.returncode}"
    # Someone editing the checkout meanwhile would make this case's outputs come from code that
    # is neither side's recorded state.
    changed = tree_fingerprint(side.checkout)[0] != side.fingerprint
    if changed:
        status["fingerprint"] = "changed during the run"
        status_path.write_text(json.dumps(status, indent=2) + "\n")
    return RunResult(proc.returncode, seconds, error=error, changed=changed)


# --------------------------------------------------------------------------- comparing


def result_files(case_dir: Path) -> set[str]:
    """Relative paths of the compared files under a case directory."""
    found: set[str] = set()
    if not case_dir.is_dir():
        return found
    for path in case_dir.rglob("*"):
        rel = path.relative_to(case_dir)
        if not path.is_file() or any(part.startswith(".") for part in rel.parts):
            continue
        if "logs" in rel.parts[:-1] or rel.name in RESULT_FILES:
            found.add(rel.as_posix())
    return found


def _read_table(path: Path) -> pl.DataFrame:
    if path.suffix == ".csv":
        return pl.read_csv(path, infer_schema_length=None)
    return pl.read_parquet(path)


def _first_difference(a: pl.Series, b: pl.Series) -> int | None:
    """Row of the first differing value (nulls equal nulls, NaN equals NaN), or None."""
    try:
        mask = a.ne_missing(b)
        if a.dtype.is_float():
            mask = mask & ~(a.is_nan() & b.is_nan())
        rows = mask.arg_true()
        return int(rows[0]) if len(rows) else None
    except Exception:  # nested or exotic dtypes: compare as Python values
        for i, (x, y) in enumerate(zip(a.to_list(), b.to_list(), strict=True)):
            if x != y and not (x != x and y != y):  # x != x: x is NaN
                return i
        return None


def _same_text(a: pl.Series, b: pl.Series) -> str:
    """' (same values as text)' when a retyped column still holds the same values, e.g. an Enum
    whose categories were extended."""
    try:
        return " (same values as text)" if a.cast(pl.String).equals(b.cast(pl.String)) else ""
    except Exception:
        return ""


def _sorted(df: pl.DataFrame) -> pl.DataFrame | None:
    try:
        return df.sort(df.columns, nulls_last=True)
    except Exception:  # unsortable (nested) columns
        return None


def diff_tables(before: pl.DataFrame, after: pl.DataFrame) -> tuple[str, str]:
    """Verdict and one-line detail for two tables whose bytes differ."""
    lost = [c for c in before.columns if c not in after.columns]
    added = [c for c in after.columns if c not in before.columns]
    common = [c for c in before.columns if c in after.columns]
    problems: list[str] = []
    if lost:
        problems.append(f"columns only before: {lost}")
    widened = [c for c in common if _widened_enum(before[c], after[c])]
    retyped = [
        f"{c}: {before[c].dtype} -> {after[c].dtype}{_same_text(before[c], after[c])}"
        for c in common
        if before[c].dtype != after[c].dtype and c not in widened
    ]
    if retyped:
        problems.append(f"dtype changes: {retyped}")
    if before.height != after.height:
        problems.append(f"rows {before.height} -> {after.height}")
    else:
        for c in common:
            if before[c].dtype != after[c].dtype:
                continue
            row = _first_difference(before[c], after[c])
            if row is not None:
                n = _first_difference_count(before[c], after[c])
                problems.append(
                    f"first difference at row {row}, column {c!r}: "
                    f"{before[c][row]!r} -> {after[c][row]!r} ({n} rows differ in {c!r})"
                )
                a, b = _sorted(before.select(common)), _sorted(after.select(common))
                if a is not None and b is not None and a.equals(b):
                    problems.append("the same rows in another order")
                break
    if problems:
        if added:
            problems.append(f"columns only after: {added}")
        return DIFFERENT, "; ".join(problems)
    if widened:
        grown = {c: _new_categories(before[c], after[c]) for c in widened}
        extra = f"; added columns {added}" if added else ""
        return WIDENED, f"equal except Enum categories appended {grown}{extra}"
    if added:
        return ADDED, f"equal except added columns {added}"
    order = "" if before.columns == after.columns else "; column order differs"
    return SAME_VALUES, f"equal values, dtypes and columns but different bytes{order}"


def _widened_enum(a: pl.Series, b: pl.Series) -> bool:
    """Both Enum, ``b``'s categories are ``a``'s with more appended, and the values are equal."""
    if not (isinstance(a.dtype, pl.Enum) and isinstance(b.dtype, pl.Enum)) or a.dtype == b.dtype:
        return False
    old, new = a.dtype.categories.to_list(), b.dtype.categories.to_list()
    return new[: len(old)] == old and a.cast(pl.String).equals(b.cast(pl.String))


def _new_categories(a: pl.Series, b: pl.Series) -> list[str]:
    return b.dtype.categories.to_list()[len(a.dtype.categories) :]


def _first_difference_count(a: pl.Series, b: pl.Series) -> int:
    try:
        mask = a.ne_missing(b)
        if a.dtype.is_float():
            mask = mask & ~(a.is_nan() & b.is_nan())
        return int(mask.sum())
    except Exception:
        return -1


def _json_difference(a: Any, b: Any, path: str = "") -> str | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in [*a, *(k for k in b if k not in a)]:
            if key not in a or key not in b:
                return f"{path}{key}: only {'after' if key not in a else 'before'}"
            found = _json_difference(a[key], b[key], f"{path}{key}.")
            if found:
                return found
        return None
    return None if a == b else f"{path.rstrip('.')}: {a!r} -> {b!r}"


def compare_file(before: Path, after: Path) -> tuple[str, str]:
    if before.read_bytes() == after.read_bytes():
        return IDENTICAL, ""
    if before.name == "summary.json":
        a, b = json.loads(before.read_text()), json.loads(after.read_text())
        for key in TIMING_KEYS:
            a.pop(key, None)
            b.pop(key, None)
        found = _json_difference(a, b)
        return (IDENTICAL, "without timing_seconds") if found is None else (DIFFERENT, found)
    if before.suffix in (".parquet", ".csv"):
        try:
            return diff_tables(_read_table(before), _read_table(after))
        except Exception as exc:
            return DIFFERENT, f"bytes differ; unreadable as a table: {exc}"
    return DIFFERENT, "bytes differ"


def compare_case(out: Path, case: Case) -> list[FileVerdict]:
    before_dir, after_dir = out / "before" / case.name, out / "after" / case.name
    in_before, in_after = result_files(before_dir), result_files(after_dir)
    verdicts = []
    for rel in sorted(in_before | in_after):
        if rel not in in_after:
            verdicts.append(FileVerdict(rel, MISSING, "only before"))
        elif rel not in in_before:
            verdicts.append(FileVerdict(rel, EXTRA, "only after"))
        else:
            verdicts.append(FileVerdict(rel, *compare_file(before_dir / rel, after_dir / rel)))
    return verdicts


def failed_jobs(case_dir: Path) -> list[str]:
    """Jobs of a sweep that recorded a failure (status.json), as 'job: error'."""
    found = []
    for path in sorted(case_dir.rglob("status.json")) if case_dir.is_dir() else []:
        status = json.loads(path.read_text())
        if status.get("status") == "failed":
            found.append(f"{path.parent.relative_to(case_dir)}: {status.get('error')}")
    return found


# --------------------------------------------------------------------------- report


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]

    def line(cells: list[str]) -> str:  # first column left-aligned, numbers right-aligned
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return [line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)]


def render(reports: list[CaseReport], sides: list[Side], elapsed: float) -> tuple[str, bool]:
    """The summary text and whether everything matched."""
    out = [
        f"{s.label}: {s.checkout} @ {s.commit[:10]}"
        + (f" + uncommitted changes (tree fingerprint {s.fingerprint})" if s.dirty else "")
        + f"; python {s.python}"
        for s in sides
    ]
    out.append("")
    rows = []
    for r in reports:
        c = r.counts()
        rows.append(
            [
                r.case.name,
                str(len(r.files)),
                *(str(c[v]) for v in VERDICTS),
                *(
                    f"{r.runs[s.label].seconds:.1f}{'*' if r.runs[s.label].reused else ''}"
                    if s.label in r.runs
                    else "-"
                    for s in sides
                ),
                "FAILED" if r.failures else "",
            ]
        )
    out += _table(["case", "files", *VERDICTS, "before s", "after s", ""], rows)
    if any(run.reused for r in reports for run in r.runs.values()):
        out.append("(* reused: an earlier run of the same command on the same code)")
    notes = [f"  {r.case.name}: {r.case.note}" for r in reports if r.case.note]
    if notes:
        out += ["", "overrides beyond the tiny world:", *notes]
    # One line per kind of difference across all cases (e.g. every candidates partition of
    # every run), with a count and an example; compare_files.tsv lists every file.
    details = [f"  {r.case.name}: FAILED {f}" for r in reports for f in r.failures]
    kinds: dict[tuple[str, str], list[str]] = {}
    for r in reports:
        for f in r.files:
            if f.verdict != IDENTICAL:
                kinds.setdefault((f.verdict, f.detail), []).append(f"{r.case.name}/{f.path}")
    for i, ((verdict, detail), paths) in enumerate(kinds.items()):
        if i == MAX_KINDS:
            details.append(f"  ... {len(kinds) - i} more kinds (compare_files.tsv)")
            break
        cases = len({p.split("/", 1)[0] for p in paths})
        where = (
            paths[0] if len(paths) == 1 else f"{len(paths)} files in {cases} cases, e.g. {paths[0]}"
        )
        details.append(f"  {verdict}: {where}: {detail}".rstrip(": "))
    if details:
        out += ["", "differences and failures:", *details]

    total: Counter[str] = Counter()
    for r in reports:
        total.update(r.counts())
    n_files = sum(total.values())
    n_timing = sum(1 for r in reports for f in r.files if f.detail == "without timing_seconds")
    n_comparison = sum(1 for r in reports for f in r.files if f.path.endswith("comparison.csv"))
    added = sorted(
        {
            f.detail.removeprefix("equal except added columns ")
            for r in reports
            for f in r.files
            if f.verdict == ADDED
        }
    )
    widened = sorted(
        {
            f.detail.removeprefix("equal except Enum categories appended ")
            for r in reports
            for f in r.files
            if f.verdict == WIDENED
        }
    )
    failed = [r.case.name for r in reports if r.failures]
    n_policy = sum(r.case.name.startswith("policy-") for r in reports)
    out += [
        "",
        f"{len(reports)} cases ({n_policy} policy presets, {len(reports) - n_policy} studies) "
        f"in {elapsed:.0f} s; {n_timing} summary.json compared without timing_seconds; "
        f"{n_comparison} of the files are sweep comparison.csv tables (derived from summaries)",
        f"compared {n_files} files: {total[IDENTICAL]} identical, "
        f"{total[ADDED]} equal except added columns {', '.join(added) if added else '[]'}, "
        f"{total[WIDENED]} equal except Enum categories appended "
        f"{', '.join(widened) if widened else '[]'}, "
        f"{total[SAME_VALUES]} same values with different bytes, {total[DIFFERENT]} DIFFERENT, "
        f"{total[MISSING]} missing after, {total[EXTRA]} extra after"
        + (f"; FAILED cases: {', '.join(failed)}" if failed else ""),
    ]
    ok = not failed and not any(total[v] for v in FAILING) and n_files > 0
    return "\n".join(out) + "\n", ok


# --------------------------------------------------------------------------- main


def _reexec_under_venv(candidates: list[Path | None]) -> None:
    """Run this script again with a recloop venv's Python (it has polars and PyYAML)."""
    if os.environ.get(_REEXEC_MARK):
        raise SystemExit("compare_outputs.py needs polars and PyYAML")
    for venv in candidates:
        python = venv / "bin" / "python" if venv else None
        if python and python.is_file():
            os.environ[_REEXEC_MARK] = "1"
            os.execv(str(python), [str(python), *sys.argv])
    raise SystemExit(
        "compare_outputs.py needs polars and PyYAML (run it with a recloop venv's python)"
    )


def main(argv: list[str] | None = None) -> int:
    here = Path(__file__).resolve().parent.parent
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", type=Path, required=True, help="checkout before the change")
    parser.add_argument("--after", type=Path, default=here, help=f"checkout after (default {here})")
    parser.add_argument(
        "--before-venv", type=Path, help="venv whose python runs BEFORE (default <before>/.venv)"
    )
    parser.add_argument(
        "--after-venv", type=Path, help="venv whose python runs AFTER (default <after>/.venv)"
    )
    parser.add_argument("--out", type=Path, default=Path("/tmp/recloop-compare"))
    parser.add_argument(
        "--only", default="", help="comma-separated presets/studies (e.g. greedy,ope)"
    )
    parser.add_argument("--jobs", type=int, default=1, help="commands run at once (default 1)")
    parser.add_argument(
        "--reuse-before",
        action="store_true",
        help="keep BEFORE outputs in --out made by the same command on the same code",
    )
    parser.add_argument(
        "--study-seeds", default=None, help="replace the studies' seed sweeps, e.g. 0 or 0,1"
    )
    args = parser.parse_args(argv)
    if pl is None or yaml is None:
        _reexec_under_venv([args.after_venv, args.after / ".venv", args.before / ".venv"])

    started = time.perf_counter()
    before = make_side("before", args.before, args.before_venv)
    after = make_side("after", args.after, args.after_venv)
    out = args.out.resolve()
    if out in (before.checkout, after.checkout) or before.checkout.is_relative_to(out):
        raise SystemExit(f"--out {out} would overwrite a checkout")
    only = {o.strip() for o in args.only.split(",") if o.strip()} or None
    cases = discover_cases(before.checkout, only, args.study_seeds)
    reports = {c.name: CaseReport(c) for c in cases}

    tasks = [(side, case) for side in (before, after) for case in cases]

    def work(task: tuple[Side, Case]) -> None:
        side, case = task
        result = run_case(out, side, case, reuse=args.reuse_before and side is before)
        reports[case.name].runs[side.label] = result
        tag = "reused" if result.reused else f"{result.seconds:.1f} s"
        state = "ok" if result.returncode == 0 else f"FAILED: {result.error}"
        if result.changed:
            state += " (the checkout changed meanwhile)"
        print(f"{side.label:6} {case.name:28} {tag:>8}  {state}", flush=True)

    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        list(pool.map(work, tasks))

    for case in cases:
        report = reports[case.name]
        for side in (before, after):
            result = report.runs[side.label]
            if result.returncode != 0:
                report.failures.append(
                    f"{side.label} command exited {result.returncode}: {result.error}"
                )
            if result.changed:
                report.failures.append(
                    f"{side.label} checkout {side.checkout} changed while this case ran"
                )
            report.failures += [
                f"{side.label} job {j}" for j in failed_jobs(out / side.label / case.name)
            ]
        report.files = compare_case(out, case)

    text, ok = render(list(reports.values()), [before, after], time.perf_counter() - started)
    print()
    print(text, end="")
    (out / "compare.txt").write_text(text)
    lines = ["case\tpath\tverdict\tdetail"]
    lines += [
        f"{r.case.name}\t{f.path}\t{f.verdict}\t{f.detail}"
        for r in reports.values()
        for f in r.files
    ]
    (out / "compare_files.tsv").write_text("\n".join(lines) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
