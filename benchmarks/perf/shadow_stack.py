"""K shadow GANs (the digits `none` recipe) trained as one vectorised stack vs one after another.

"One after another" is what the bank falls back to for recipes it cannot stack: runner.fit_defense
(Lightning) per model; a plain single-model loop (the stack with K=1, no Lightning) is printed as well.
Same recipe, steps and subsets for every variant; prints seconds and the ratios (goal: >= 6x).

    .venv/bin/python benchmarks/perf/shadow_stack.py [--k 16] [--steps 400] [--threads 0]
"""

from __future__ import annotations

import argparse
import time

import torch

from mia_bench import shadows
from mia_bench.attacks import Recipe
from mia_bench.config import load_run
from mia_bench.data import MembershipSplit, load_dataset


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--k", type=int, default=16)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave the default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    resolved = load_run(suite="digits", defense="none", overrides=[f"trainer.max_steps={args.steps}",
                                                                    "trainer.progress_bar=false"])
    data = load_dataset(resolved.config.dataset)
    split = MembershipSplit.make(n_records=len(data), sizes=resolved.config.split, seed=0)
    recipe = Recipe.of(resolved, data.info)
    kw = dict(recipe=recipe, data=data, ids=split.shadow_pool, n_models=args.k, seed=0, cache_dir=None)

    t = time.perf_counter()
    shadows.train_bank(**kw)
    stacked = time.perf_counter() - t
    t = time.perf_counter()
    for k in range(args.k):  # the plain loop, one model at a time (a stack of one)
        sub = shadows.draw_subsets(split.shadow_pool.size, args.k, size=shadows.HALVES, seed=0)[k]
        shadows._train_stacked(recipe, data, [split.shadow_pool[sub]], [shadows.model_seed(0, k)])
    plain = time.perf_counter() - t
    t = time.perf_counter()
    shadows.train_bank(**kw, stack=False)
    sequential = time.perf_counter() - t

    print(f"K={args.k} steps={args.steps} batch={recipe.trainer.batch_size} threads={torch.get_num_threads()}")
    print(f"  one stack:                        {stacked:8.2f} s")
    print(f"  one after another, plain loop:    {plain:8.2f} s   ratio {plain / stacked:.2f}x")
    print(f"  one after another, fit_defense:   {sequential:8.2f} s   ratio {sequential / stacked:.2f}x")


if __name__ == "__main__":
    main()
