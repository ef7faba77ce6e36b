"""``recloop-report DIR``: (re)build ``report.html`` of a finished run, of a sweep folder (and
the sweep's ``comparison.md`` / ``comparison.csv``), or ``ope.html`` of an off-policy evaluation
study. Prints the absolute path of every file written, one a line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from reports.comparison import write_comparison
from reports.files import ReportError
from reports.ope_report import TABLE as OPE_TABLE
from reports.ope_report import build_ope_report
from reports.run_report import build_run_report
from reports.sweep_report import build_sweep_report, is_sweep_dir

PROG = "recloop-report"


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
    """Run the CLI; return 0 on success, 2 when DIR is neither a finished run nor a sweep.

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
        return 2
    for path in paths:
        print(path.resolve())
    return 0


def _sweep_files(sweep_dir: Path, baseline: str | None) -> list[Path]:
    """The sweep's report.html, then comparison.md and .csv (none when no job finished)."""
    report = build_sweep_report(sweep_dir, baseline=baseline)
    md = write_comparison(sweep_dir, baseline=baseline)
    return [report] if md is None else [report, md, md.with_suffix(".csv")]


if __name__ == "__main__":
    raise SystemExit(main())
