"""What round checkpoints (``sim.checkpoint``) cost on a benchmark workload: their number, the
size of each ``state.pkl`` and the seconds spent writing them, against the simulation's time.

    python benchmarks/checkpoint_cost.py --workload S [--out DIR]

Runs the workload of ``benchmarks/loop.py`` (its config) the way ``recloop`` does — paused at
every round boundary, the state saved — but records each checkpoint's size before the next one
replaces it. The metrics pass and the report are left out (checkpoints do not touch them).
Prints one JSON object. Not a test.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from loop import WORKLOADS, config


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--workload", choices=sorted(WORKLOADS), default="S")
    ap.add_argument("--out", type=Path, default=None, help="keep the run here (default: temp)")
    args = ap.parse_args()

    from experiments.config import parse_config
    from experiments.run import build_simulation
    from sim.checkpoint import save_checkpoint

    rc = parse_config(config(args.workload))
    out = args.out or Path(tempfile.mkdtemp(prefix=f"recloop-ckpt-{args.workload}-"))
    started = time.perf_counter()
    simulation = build_simulation(rc, out / "logs")
    state = simulation.state
    sizes, seconds = [], []
    while not state.done:
        simulation.run(until=state.now)
        if not state.done:
            clock = time.perf_counter()
            path = save_checkpoint(state, out)
            seconds.append(time.perf_counter() - clock)
            sizes.append(path.stat().st_size / 2**20)
    wall = time.perf_counter() - started
    mb = [round(s, 2) for s in sizes]
    print(
        json.dumps(
            {
                "workload": args.workload,
                **WORKLOADS[args.workload],
                "checkpoints": len(sizes),
                "size_mb": {"first": mb[0], "median": statistics.median(mb), "last": mb[-1]},
                "size_mb_each": mb,
                "checkpoint_s": round(sum(seconds), 2),
                "checkpoint_s_max": round(max(seconds), 3),
                "simulation_s": round(wall, 1),
                "share_of_simulation": round(sum(seconds) / wall, 4),
            },
            indent=1,
        )
    )
    if args.out is None:
        shutil.rmtree(out)


if __name__ == "__main__":
    main()
