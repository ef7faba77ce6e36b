"""Named studies: at the end of a sweep, its comparison and its report.

:class:`StudyComparison` is a hydra callback: when a multirun ends it writes the sweep folder's
``comparison.md`` / ``comparison.csv`` (:func:`reports.comparison.write_comparison`: per arm, the
final-window values across seeds with their intervals and the cumulative utility gain over the
baseline paired by seed) and the sweep's ``report.html`` (:mod:`reports.sweep_report`), both read
from the jobs' files.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from reports.comparison import write_comparison
from reports.sweep_report import SweepReportError, build_sweep_report

log = logging.getLogger("recloop")
# Failures while writing the sweep's comparison or report (this process): recloop's exit code
# and its one-line message (experiments.cli.sweep_exit) report them after the sweep.
OUTPUT_ERRORS: list[BaseException] = []


class StudyComparison(Callback):
    """Hydra callback: when the sweep ends, write its comparison table and its report."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            self._write(config)
        except Exception as exc:  # e.g. a full disk: one line, the sweep exits 1 (cli.sweep_exit)
            OUTPUT_ERRORS.append(exc)

    def _write(self, config: DictConfig) -> None:
        sweep_dir = Path(config.hydra.sweep.dir).resolve()  # the page and the terminal: absolute
        params = config.hydra.sweeper.get("params") or {}
        order = [p.strip() for p in str(params.get("policy", "")).split(",") if p.strip()]
        path = write_comparison(sweep_dir, str(config.get("study_name", "sweep")), order)
        if path is None:
            log.warning("no finished job under %s: no comparison written", sweep_dir)
        else:
            print(path.read_text())
            print(f"comparison: {path.resolve()}")
        try:
            print(f"sweep report: {build_sweep_report(sweep_dir).resolve()}")
        except SweepReportError as exc:
            log.warning("no sweep report: %s", exc)
