"""K shadow GANs (the digits `none` recipe) trained as one vectorised stack vs one after another.

"One after another" is what the bank falls back to for recipes it cannot stack: runner.fit_defense
(Lightning) per model; a plain single-model loop (the stack with K=1, no Lightning) is printed as well.
Same recipe, steps and subsets for every variant; prints seconds and the ratios (goal: >= 6x).

Then a roofline check of the stack: the share of a stacked round spent in GEMM kernels (torch.profiler), the
GEMMs' throughput (FlopCounterMode) next to one large sgemm's, and the ratio the stack would reach if every
other op were free (and if its GEMMs ran as fast as a large one). On a 2-core CPU the stack is GEMM-bound,
and that ceiling, not overhead, caps the ratio.

    .venv/bin/python benchmarks/perf/shadow_stack.py [--k 16] [--steps 400] [--threads 0]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

from mia_bench import shadows
from mia_bench.attacks import Recipe
from mia_bench.config import load_run
from mia_bench.data import MembershipSplit, load_dataset

GEMM_OPS = {"aten::mm", "aten::bmm", "aten::addmm", "aten::baddbmm", "aten::addbmm"}


def gemm_profile(trainer: object, rounds: int) -> tuple[float, float]:
    """(share of the rounds' self CPU time spent in GEMM kernels, FLOPs of one round)."""
    with FlopCounterMode(display=False) as counter:
        trainer.round(0)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for b in range(rounds):
            trainer.round(b)
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    return sum(e.self_cpu_time_total for e in events if e.key in GEMM_OPS) / total, counter.get_total_flops()


def synchronizer(device: str) -> Callable[[], None]:
    """What waits for `device`'s queued work before a clock is read (nothing on the CPU)."""
    return torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)


def sgemm_flops_per_s(n: int = 1024, repeats: int = 20, device: str = "cpu") -> float:
    """FLOP/s of a (2n x n) @ (n x n) float32 matmul on `device` (synchronised on a GPU)."""
    a, b = torch.randn(2 * n, n, device=device), torch.randn(n, n, device=device)
    sync = synchronizer(device)
    a @ b
    sync()
    t = time.perf_counter()
    for _ in range(repeats):
        a @ b
    sync()
    return 2 * 2 * n * n * n * repeats / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--k", type=int, default=16)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave the default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    resolved = load_run(suite="digits_v1", defense="none", overrides=[f"trainer.max_steps={args.steps}",
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

    subsets = shadows.draw_subsets(split.shadow_pool.size, args.k, size=shadows.HALVES, seed=0)
    trainer = shadows.stacked_trainer(recipe, data, [split.shadow_pool[s] for s in subsets],
                                      [shadows.model_seed(0, k) for k in range(args.k)])
    share, flops = gemm_profile(trainer, rounds=50)
    per_round = stacked / (args.steps * trainer.models[0].batches_per_generator_step)
    gemm_rate = flops / (per_round * share)
    ceiling = sequential / (stacked * share)
    print(f"roofline of the stack: {flops / 1e9:.2f} GFLOP a round, {per_round * 1e3:.1f} ms a round, "
          f"{share:.0%} of it in GEMM kernels")
    peak = sgemm_flops_per_s()
    print(f"  its GEMMs run at {gemm_rate / 1e9:.0f} GFLOP/s; one large sgemm here: {peak / 1e9:.0f} GFLOP/s")
    print(f"  ceiling with every non-GEMM op free: {ceiling:.2f}x vs fit_defense, {plain / (stacked * share):.2f}x "
          f"vs the plain loop; with the GEMMs at the large-sgemm rate too: {ceiling * peak / gemm_rate:.2f}x "
          "vs fit_defense")


if __name__ == "__main__":
    main()
