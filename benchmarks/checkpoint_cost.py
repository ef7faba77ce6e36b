"""What round checkpoints cost: their number, size and time on a benchmark workload.

    python benchmarks/checkpoint_cost.py --workload M [--keep DIR]
    python benchmarks/checkpoint_cost.py --resave DIR/state.pkl [--repeat 3]

The first form runs the workload (benchmarks/loop.py's S, M or L config) with checkpoints on and
records every checkpoint's size and write time (``sim.checkpoint.save_checkpoint`` timed around
each call); ``--keep`` copies the largest checkpoint there. The second form times writing a kept
checkpoint's state again, ``--repeat`` times, so the write time can be measured on a quiet
machine without repeating the run. Prints one JSON object. Not a test.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def measure_run(workload: str, keep: Path | None) -> dict:
    from loop import WORKLOADS, config

    import sim.checkpoint as checkpoint
    from experiments.run import run

    records: list[dict] = []
    save = checkpoint.save_checkpoint
    largest: list[Path] = []

    def timed_save(state, run_dir):  # type: ignore[no-untyped-def]
        start = time.perf_counter()
        path = save(state, run_dir)
        seconds = time.perf_counter() - start
        size = path.stat().st_size
        records.append({"round": state.counters.log_round, "bytes": size, "seconds": seconds})
        if keep is not None and size >= max(r["bytes"] for r in records):
            keep.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, keep / "state.pkl")
            largest[:] = [keep / "state.pkl"]
        return path

    checkpoint.save_checkpoint = timed_save
    out = Path(tempfile.mkdtemp(prefix=f"recloop-ckpt-{workload}-"))
    try:
        start = time.perf_counter()
        summary = run(config(workload), out / "run", checkpoint=True)
        wall = time.perf_counter() - start
    finally:
        checkpoint.save_checkpoint = save
        shutil.rmtree(out, ignore_errors=True)
    sizes = [r["bytes"] for r in records]
    total = sum(r["seconds"] for r in records)
    return {
        "workload": workload,
        **WORKLOADS[workload],
        "wall_s": round(wall, 1),
        "checkpoints": len(records),
        "size_mb_first": round(sizes[0] / 2**20, 1),
        "size_mb_median": round(sorted(sizes)[len(sizes) // 2] / 2**20, 1),
        "size_mb_last": round(sizes[-1] / 2**20, 1),
        "size_mb_max": round(max(sizes) / 2**20, 1),
        "seconds_total": round(total, 2),
        "seconds_max": round(max(r["seconds"] for r in records), 2),
        "share_of_wall": round(total / wall, 4),
        "summary_checkpoint_seconds": round(summary["timing_seconds"].get("checkpoint", 0.0), 2),
        "kept": str(largest[0]) if largest else None,
    }


def measure_resave(path: Path, repeat: int) -> dict:
    import pickle

    from sim.checkpoint import save_checkpoint

    with open(path, "rb") as f:
        data = pickle.load(f)
    seconds = []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeat):
            start = time.perf_counter()
            written = save_checkpoint(data.state, Path(tmp))
            seconds.append(time.perf_counter() - start)
        size = written.stat().st_size
    return {
        "checkpoint": str(path),
        "bytes": size,
        "size_mb": round(size / 2**20, 1),
        "seconds": [round(s, 3) for s in seconds],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--workload", choices=["S", "M", "L"], default="S")
    ap.add_argument("--keep", type=Path, default=None, help="copy the largest checkpoint here")
    ap.add_argument("--resave", type=Path, default=None, help="time writing this checkpoint")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    if args.resave is not None:
        print(json.dumps(measure_resave(args.resave, args.repeat)))
    else:
        print(json.dumps(measure_run(args.workload, args.keep)))


if __name__ == "__main__":
    main()
