"""Protocol v2's T targets of one defense trained as one vectorised stack vs one after another.

For `none`, `megan` and `mixup` by default (any stackable defense with --defenses: mpgan, mimgan, relaxloss,
privgan, pargan, gswgan; digits suite, its design of seed 0): T targets on their IN halves,
  stacked      nets/stacked_gan.py over all T (what protocol v2 runs)
  plain loop   the same trainer with one model, T times (a plain PyTorch loop: no Lightning)
  Lightning    runner.fit_defense for one model, times T (what an unstackable recipe costs)
side by side in one run, `--steps` generator steps each; prints seconds and the ratios (goal: stacked
>= 4x the plain loop on 2 CPU cores, >= 15x on a GPU). Then the achieved GFLOP/s of the stack and of the
plain loop (FlopCounterMode over one round, times the rounds), each as a share of one large sgemm timed in
the same run (goal for the stack: >= 50%), and the ceiling on the stacked/plain ratio that the plain
loop's share leaves: both do the same FLOPs, so no stack can beat the plain loop by more than
sgemm rate / plain loop's rate.

With --device cuda (a GPU machine) all three columns train on the GPU (Lightning with
trainer.accelerator=gpu) and the sgemm is the GPU's: that is the GPU ratio (goal >= 15x). Every draw
is still made on the CPU, as on a CPU run (nets/stacked_gan.py).

    .venv/bin/python benchmarks/perf/targets_stack.py [--steps 300] [--targets 16] [--defenses none megan mixup]
                                                      [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import time

import torch
from shadow_stack import sgemm_flops_per_s, synchronizer  # noqa: E402 - the sibling script (benchmarks/perf/ is on sys.path)
from torch.utils.flop_counter import FlopCounterMode

from mia_bench import shadows
from mia_bench.attacks import Recipe
from mia_bench.config import load_run
from mia_bench.distributed import single_process
from mia_bench.protocol import make_design
from mia_bench.runner import fit_defense


def one_defense(defense: str, steps: int, targets: int, device: str = "cpu") -> dict[str, float]:
    gpu = torch.device(device).type == "cuda"
    sync = synchronizer(device)
    resolved = load_run(suite="digits", defense=defense, overrides=[f"trainer.max_steps={steps}",
                                                                    f"design.targets={targets}",
                                                                    "trainer.progress_bar=false",
                                                                    *(["trainer.accelerator=gpu"] if gpu else [])])
    data, design = make_design(resolved, 0)
    recipe = Recipe.of(resolved, data.info)
    subsets = [design.population[row] for row in design.inside]
    seeds = [shadows.model_seed(0, k) for k in range(targets)]
    refs = [design.reference] * targets  # the defender's reference data (MP-GAN, MIMGAN; ignored otherwise)
    probe = shadows.stacked_trainer(recipe, data, subsets, seeds, refs, device)
    rounds = steps * probe.models[0].batches_per_generator_step
    served = rounds + probe.warmup_rounds(rounds)  # GS-WGAN's warm-up rounds count too
    with FlopCounterMode(display=False) as counter:
        probe.round(0)
    with FlopCounterMode(display=False) as one:
        shadows.stacked_trainer(recipe, data, subsets[:1], seeds[:1], refs[:1], device).round(0)
    sync()
    t = time.perf_counter()  # both columns time building the trainer (models, stacks) and training it
    shadows.stacked_trainer(recipe, data, subsets, seeds, refs, device).fit(rounds)
    sync()
    stacked = time.perf_counter() - t
    t = time.perf_counter()
    for ids, s in zip(subsets, seeds, strict=True):
        shadows.stacked_trainer(recipe, data, [ids], [s], refs[:1], device).fit(rounds)
    sync()
    plain = time.perf_counter() - t
    t = time.perf_counter()
    fit_defense(defense=defense, params=resolved.defense_params, trainer=single_process(resolved.config.trainer),
                data=data, train_ids=subsets[0], seed=seeds[0], reference_ids=design.reference)
    lightning = (time.perf_counter() - t) * targets
    return {"stacked": stacked, "plain": plain, "lightning": lightning,
            "gflops": counter.get_total_flops() * served / stacked / 1e9,
            "plain_gflops": one.get_total_flops() * served * targets / plain / 1e9}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--targets", type=int, default=16)
    ap.add_argument("--defenses", nargs="+", default=["none", "megan", "mixup"])
    ap.add_argument("--device", default="cpu", help="cpu | cuda (a GPU machine: the GPU ratio)")
    args = ap.parse_args()
    gpu = torch.device(args.device).type == "cuda"
    if gpu and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device here; run it on a GPU machine")
    peak = sgemm_flops_per_s(8192 if gpu else 1024, device=args.device) / 1e9
    where = torch.cuda.get_device_name() if gpu else f"{torch.get_num_threads()} torch threads"
    print(f"T={args.targets} targets, {args.steps} generator steps each, {where}; "
          f"one large sgemm: {peak:.0f} GFLOP/s")
    print(f"{'defense':<8} {'stacked':>7} {'plain':>7} {'Lightn.':>7} {'vs plain':>8} {'vs Ltn.':>7} "
          f"{'stack':>6} {'plain':>6} {'ceiling':>8}")
    print(f"{'':<8} {'s':>7} {'s':>7} {'s':>7} {'':>8} {'':>7} {'sgemm':>6} {'sgemm':>6} {'vs plain':>8}")
    for d in args.defenses:
        r = one_defense(d, args.steps, args.targets, args.device)
        print(f"{d:<8} {r['stacked']:7.1f} {r['plain']:7.1f} {r['lightning']:7.1f} "
              f"{r['plain'] / r['stacked']:7.2f}x {r['lightning'] / r['stacked']:6.2f}x "
              f"{r['gflops'] / peak:6.0%} {r['plain_gflops'] / peak:6.0%} {peak / r['plain_gflops']:7.2f}x")
    print("Lightning: one model through runner.fit_defense, times T. sgemm: achieved GFLOP/s as a share of\n"
          "the large sgemm's. ceiling: sgemm rate / plain loop's rate, the most any stack can gain over it.")


if __name__ == "__main__":
    main()
