"""``recloop-report DIR``: (re)build ``report.html`` of a finished run, of a sweep folder (and
the sweep's ``comparison.md`` / ``comparison.csv``), or ``ope.html`` of an off-policy evaluation
study. Prints the absolute path of every file written, one a line."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import traceback
from pathlib import Path

from reports.atomic_write import WriteError
from reports.comparison import write_comparison
from reports.files import ReportError, UnreadableFile, check_log_partitions, find_unreadable
from reports.ope_report import TABLE as OPE_TABLE
from reports.ope_report import build_ope_report
from reports.run_report import build_run_report
from reports.sweep_report import build_sweep_report, is_sweep_dir

PROG = "recloop-report"
EXIT_FAILED = 1  # a file of the run cannot be read (truncated, corrupt) or the page not written
EXIT_BAD_INPUT = 2  # DIR is neither a finished run, a sweep nor an OPE study; a bad --baseline


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Build DIR/report.html, a self-contained offline HTML page, from the files of a "
            "finished run (summary.json, metrics.parquet, config.yaml, logs/) or of a sweep "
            "folder (one sub-folder per job: arms compared across seeds, failed and incomplete "
            "jobs listed; also DIR/comparison.md and DIR/comparison.csv); DIR/ope.html for an "
            "off-policy evaluation study (ope.parquet). Prints the absolute paths written. Safe "
            "to re-run."
        ),
    )
    parser.add_argument(
        "run_dir", metavar="DIR", type=Path, help="a finished run directory or a sweep folder"
    )
    parser.add_argument(
        "--baseline",
        metavar="ARM",
        default=None,
        help=(
            "sweeps only: the arm the others are compared with, paired by seed (an arm label "
            "such as 'softmax [policy.temperature=0.1]', or a policy with a single arm); "
            "default greedy if present, else the first arm"
        ),
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return 0 on success, 2 when DIR is neither a finished run nor a sweep, 1
    when one of its files cannot be read or the page cannot be written (one line naming the
    file, the traceback in the run's ``cli.log`` or a temp file).

    The console-script wrapper calls ``sys.exit(main())``, so the return value is the exit code.
    """
    args = _parser().parse_args(argv)
    run_dir: Path = args.run_dir
    paths: list[Path] = []
    try:
        if not run_dir.is_dir():
            raise ReportError(f"no such run directory: {run_dir}")
        if (run_dir / "summary.json").is_file():
            if args.baseline is not None:
                raise ReportError(f"--baseline applies to sweep folders; {run_dir} is a run")
            check_log_partitions(run_dir)
            paths = [build_run_report(run_dir)]
        elif (run_dir / OPE_TABLE).is_file():
            if args.baseline is not None:
                raise ReportError(f"--baseline applies to sweep folders; {run_dir} is an OPE study")
            paths = [build_ope_report(run_dir)]
        elif is_sweep_dir(run_dir):
            paths = _sweep_files(run_dir, args.baseline)
        else:
            try:
                build_run_report(run_dir)  # raises: summary.json is missing
            except ReportError as exc:
                raise ReportError(
                    f"{exc} (nor a sweep folder: no multirun.yaml and no job sub-folders)"
                ) from None
    except ReportError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as exc:  # one line; the traceback in the run's cli.log or a temp file
        print(f"{PROG}: error: {_failure_line(exc, run_dir)}", file=sys.stderr)
        return EXIT_FAILED
    for path in paths:
        print(path.resolve())
    return 0


def _failure_line(exc: Exception, run_dir: Path) -> str:
    """The one line for a report that failed: the file that could not be written, else the
    input file that cannot be read (truncated, corrupt), else the error; and where the
    traceback went."""
    where = _keep_traceback(exc, run_dir)
    if isinstance(exc, WriteError) and exc.filename:
        return f"cannot write {exc.filename}: {exc.strerror} (traceback in {where})"
    if isinstance(exc, UnreadableFile):
        broken: tuple[Path, BaseException] | None = (exc.path, exc.error)
    else:
        broken = find_unreadable(run_dir) if run_dir.is_dir() else None
    if broken is not None:
        path, why = broken
        return f"{path}: cannot be read, truncated or corrupt ({_first_line(why)}; traceback in {where})"
    return f"{type(exc).__name__}: {_first_line(exc)} (traceback in {where})"


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def _keep_traceback(exc: BaseException, run_dir: Path) -> str:
    """Append the traceback to the run's ``cli.log`` when it has one (a run started by
    ``recloop``), else to a new temp file: nothing new in the run's folder. Returns where."""
    text = "".join(traceback.format_exception(exc))
    log = run_dir / "cli.log"
    try:
        if log.is_file():
            with open(log, "a", encoding="utf-8") as f:
                f.write(text)
            return str(log)
    except OSError:
        pass
    try:
        fd, name = tempfile.mkstemp(prefix=f"{PROG}-error-", suffix=".log")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        return name
    except OSError as err:
        return f"nowhere: {err.strerror or err}"


def _sweep_files(sweep_dir: Path, baseline: str | None) -> list[Path]:
    """The sweep's report.html, then comparison.md and .csv (none when no job finished)."""
    report = build_sweep_report(sweep_dir, baseline=baseline)
    md = write_comparison(sweep_dir, baseline=baseline)
    return [report] if md is None else [report, md, md.with_suffix(".csv")]


if __name__ == "__main__":
    raise SystemExit(main())
