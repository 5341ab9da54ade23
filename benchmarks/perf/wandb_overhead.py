"""Per-cell cost of W&B offline tracking: one `none` run (digits) with --wandb off vs offline.

Runs alternate in this process (so drifts in machine load hit both alike), each in a fresh results folder;
the script prints the median wall time of each variant, the overhead per cell and its parts (init, results
+ artifact, finish), and the ratio offline / off (goal: <= 1.05 at the suite's budget).

    .venv/bin/python benchmarks/perf/wandb_overhead.py [--steps 8000] [--repeats 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from mia_bench import tracking
from mia_bench.config import load_run
from mia_bench.runner import run


def one(resolved, mode: str) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        tracker = tracking.for_run(mode, resolved, 0, results_dir=Path(tmp))
        t1 = time.perf_counter()
        parts = {"init": t1 - t0}
        log_run = tracker.log_run

        def timed(*args, **kwargs) -> None:
            t = time.perf_counter()
            log_run(*args, **kwargs)
            parts["results"] = time.perf_counter() - t

        tracker.log_run = timed  # type: ignore[method-assign]
        record = run(resolved, 0, results_dir=Path(tmp), tracker=tracker)
        t2 = time.perf_counter()
        tracker.finish()
        parts.update(finish=time.perf_counter() - t2, total=time.perf_counter() - t0,
                     train=record.timings["train"] if record else float("nan"))
    return parts


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=8000)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    resolved = load_run(suite="digits_v1", defense="none",
                        overrides=[f"trainer.max_steps={args.steps}", "trainer.progress_bar=false"])
    one(load_run(suite="digits_v1", defense="memorizer"), "offline")  # warm-up: imports, the wandb service
    runs: dict[str, list[dict[str, float]]] = {"off": [], "offline": []}
    for _ in range(args.repeats):
        for mode in runs:
            runs[mode].append(one(resolved, mode))
    med = {m: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for m, rs in runs.items()}
    n_logs = args.steps // resolved.config.trainer.log_every_n_steps
    print(f"threads={torch.get_num_threads()} steps={args.steps} repeats={args.repeats} "
          f"training-loss logs per run={n_logs}")
    for m, v in med.items():
        print(f"{m:>8}: {v['total']:.2f} s per cell (train {v['train']:.2f} s)")
    off, on = med["off"], med["offline"]
    print(f"overhead: {on['total'] - off['total']:+.2f} s per cell (ratio {on['total'] / off['total']:.3f}x); "
          f"init {on['init']:.2f} s, results+artifact {on.get('results', 0.0):.2f} s, finish {on['finish']:.2f} s, "
          f"training-curve logging {on['train'] - off['train']:+.2f} s")


if __name__ == "__main__":
    main()
