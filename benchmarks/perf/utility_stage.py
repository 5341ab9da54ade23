"""Cost of the runner's utility stage on the digits suite (it runs in every grid cell).

Times `evaluate_utility` with the suite's settings on 2,000 released samples: once with a cold evaluator
(the classifier is trained, as in the first run of a split) and `--repeats` times warm (cached, as in every
other defense of that split). Prints medians and their ratio; goal: warm stage <= 2 s on 2 idle cores.

    .venv/bin/python benchmarks/perf/utility_stage.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from mia_bench.config import load_run
from mia_bench.data import MembershipSplit, load_dataset
from mia_bench.defenses.base import Released
from mia_bench.metrics import evaluator
from mia_bench.metrics.utility import evaluate_utility


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    cfg = load_run(suite="digits_v1", defense="none").config
    data = load_dataset(cfg.dataset)
    split = MembershipSplit.make(n_records=len(data), sizes=cfg.split, seed=0, groups=data.groups)
    gen = torch.Generator().manual_seed(0)
    released = Released(x=torch.rand(cfg.release.n_samples, *data.info.shape, generator=gen) * 2 - 1, y=None)

    def timed() -> float:
        t = time.perf_counter()
        evaluate_utility(cfg.utility, released, data, split, seed=0, cache_dir=None)
        return time.perf_counter() - t

    cold = []
    for _ in range(max(1, args.repeats // 2)):
        evaluator._MEMORY.clear()
        cold.append(timed())
    warm = [timed() for _ in range(args.repeats)]
    c, w = statistics.median(cold), statistics.median(warm)
    print(f"utility stage, cold evaluator: {c:.2f} s; warm (cached): {w:.2f} s; warm/cold = {w / c:.2f}")


if __name__ == "__main__":
    main()
