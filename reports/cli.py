"""``recloop-report RUN_DIR``: (re)build a finished run's ``report.html`` from its files."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from reports.run_report import ReportError, build_run_report

PROG = "recloop-report"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Build RUN_DIR/report.html, a self-contained offline HTML page, from a finished "
            "run's files (summary.json, metrics.parquet, config.yaml, logs/). Safe to re-run."
        ),
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", type=Path, help="a finished run directory")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return 0 on success, 2 when RUN_DIR is not a finished run.

    The console-script wrapper calls ``sys.exit(main())``, so the return value is the exit code.
    """
    args = _parser().parse_args(argv)
    run_dir: Path = args.run_dir
    try:
        if not run_dir.is_dir():
            raise ReportError(f"no such run directory: {run_dir}")
        path = build_run_report(run_dir)
    except ReportError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
