"""Protocol v2's T targets of one defense trained as one vectorised stack vs one after another.

For `none`, `megan` and `mixup` by default (any stackable defense with --defenses: mpgan, mimgan, relaxloss,
privgan, pargan, gswgan; digits suite, its design of seed 0): T targets on their IN halves,
  stacked      nets/stacked_gan.py over all T (what protocol v2 runs)
  K=1          the same stacked trainer with one model, T times (the stack's own code, one model at a time)
  PyTorch      a plain PyTorch loop: the defense's own training_step over the data module's batches, each
               player's step a plain zero_grad / backward / optimizer step (its configure_optimizers), no
               Lightning Trainer; one model, times T. Same seed, same batches: the same weights as
               Lightning's, bit for bit (tests/test_stacked_games.py)
  Lightning    runner.fit_defense for one model, times T (what an unstackable recipe costs)
side by side in one run, `--steps` generator steps each; prints seconds and the ratios (goal: stacked
>= 4x a plain PyTorch loop on 2 CPU cores, >= 15x on a GPU). K=1 is the stricter baseline: it already has
the stack's fused Adam and its single discriminator call on real and fake rows. Then the achieved GFLOP/s
of the stack and of K=1 (FlopCounterMode over one round, times the rounds), each as a share of one large
sgemm timed in the same run (goal for the stack: >= 50%), and the ceiling on the stacked / K=1 ratio that
K=1's share leaves: both do the same FLOPs, so no stack can beat K=1 by more than sgemm rate / K=1's rate.

With --device cuda (a GPU machine) every column trains on the GPU (Lightning with
trainer.accelerator=gpu) and the sgemm is the GPU's: that is the GPU ratio (goal >= 15x). Every draw
is still made on the CPU, as on a CPU run (nets/stacked_gan.py).

    .venv/bin/python benchmarks/perf/targets_stack.py [--steps 300] [--targets 16] [--defenses none megan mixup]
                                                      [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import time
from contextlib import contextmanager

import numpy as np
import torch
from shadow_stack import sgemm_flops_per_s, synchronizer  # noqa: E402 - the sibling script (benchmarks/perf/ is on sys.path)
from torch.utils.flop_counter import FlopCounterMode

from mia_bench import shadows
from mia_bench.attacks import Recipe
from mia_bench.config import load_run
from mia_bench.distributed import single_process
from mia_bench.protocol import make_design
from mia_bench.runner import fit_defense, seeded_model


def pytorch_loop(defense: str, params, trainer, data, train_ids: np.ndarray, seed: int,
                 reference_ids: np.ndarray, device: str) -> torch.nn.Module:
    """One model of `defense` trained in a plain PyTorch loop: the model and batches fit_defense would train
    (runner.seeded_model), its own training_step, with `playing` (the one Lightning-specific part of a step)
    replaced by a plain zero_grad / backward / step of that player's optimizer, the other players frozen
    meanwhile, as toggle_optimizer does."""
    model, dm = seeded_model(defense=defense, params=params, trainer=trainer, data=data, train_ids=train_ids,
                             seed=seed, reference_ids=reference_ids)
    model = model.to(device)
    opts = model.configure_optimizers()

    @contextmanager
    def playing(player: str):
        opt = opts[model.player_order.index(player)]
        own = {id(p) for group in opt.param_groups for p in group["params"]}
        frozen = [p for p in model.parameters() if p.requires_grad and id(p) not in own]
        for p in frozen:
            p.requires_grad_(False)

        def step(loss: torch.Tensor) -> None:
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        try:
            yield step
        finally:
            for p in frozen:
                p.requires_grad_(True)

    model.playing = playing
    model.train()
    for i, batch in enumerate(dm.train_dataloader()):
        model.training_step({k: v.to(device) for k, v in batch.items()}, i)
    return model


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
    pytorch_loop(defense, resolved.defense_params, single_process(resolved.config.trainer), data, subsets[0], seeds[0],
                 design.reference, device)
    sync()
    pytorch = (time.perf_counter() - t) * targets
    t = time.perf_counter()
    fit_defense(defense=defense, params=resolved.defense_params, trainer=single_process(resolved.config.trainer),
                data=data, train_ids=subsets[0], seed=seeds[0], reference_ids=design.reference)
    lightning = (time.perf_counter() - t) * targets
    return {"stacked": stacked, "plain": plain, "pytorch": pytorch, "lightning": lightning,
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
    rows = {d: one_defense(d, args.steps, args.targets, args.device) for d in args.defenses}
    print(f"\n{'seconds':<8} {'stacked':>8} {'K=1':>8} {'PyTorch':>8} {'Lightn.':>8}   "
          f"{'vs K=1':>7} {'vs PyT.':>7} {'vs Ltn.':>7}")
    for d, r in rows.items():
        print(f"{d:<8} {r['stacked']:8.1f} {r['plain']:8.1f} {r['pytorch']:8.1f} {r['lightning']:8.1f}   "
              f"{r['plain'] / r['stacked']:6.2f}x {r['pytorch'] / r['stacked']:6.2f}x "
              f"{r['lightning'] / r['stacked']:6.2f}x")
    print(f"\n{'GFLOP/s':<8} {'stacked':>8} {'K=1':>8}   {'stack':>6} {'K=1':>6}   {'ceiling':>8}")
    print(f"{'':<8} {'':>8} {'':>8}   {'sgemm':>6} {'sgemm':>6}   {'vs K=1':>8}")
    for d, r in rows.items():
        print(f"{d:<8} {r['gflops']:8.1f} {r['plain_gflops']:8.1f}   {r['gflops'] / peak:6.0%} "
              f"{r['plain_gflops'] / peak:6.0%}   {peak / r['plain_gflops']:7.2f}x")
    print("\nK=1: the stacked trainer with one model, T times. PyTorch: the defense's training_step\n"
          "in a plain loop, one model, times T. Lightning: runner.fit_defense for one model, times T.\n"
          "sgemm: achieved GFLOP/s as a share of the large sgemm's. ceiling: sgemm rate / K=1's rate,\n"
          "the most any stack can gain over K=1.")


if __name__ == "__main__":
    main()
