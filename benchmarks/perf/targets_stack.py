"""Protocol v2's T targets of one defense trained as one vectorised stack vs one after another.

For `none`, `megan` and `mixup` by default (any stackable defense with --defenses: mpgan, mimgan, relaxloss,
privgan, pargan, gswgan; digits suite, its design of seed 0): T targets on their IN halves,
  stacked      nets/stacked_gan.py over all T (what protocol v2 runs)
  K=1          the same stacked trainer with one model (the stack's own code, one model at a time)
  PyTorch      a plain PyTorch loop: the defense's own training_step over the data module's batches, each
               player's step a plain zero_grad / backward / optimizer step (its configure_optimizers), no
               Lightning Trainer. Same seed, same batches: the same weights as Lightning's, bit for bit
               (tests/test_stacked_games.py)
  Lightning    runner.fit_defense for one model (what an unstackable recipe costs)
the last three timed on one model and multiplied by T (every model of a design has the same shapes and
budget), `--steps` generator steps each. The columns run in turn, `--repeats` times, and the script prints
each column's median seconds and the median of each repeat's own ratios (goal: stacked >= 4x a plain
PyTorch loop on 2 CPU cores, >= 15x on a GPU): this machine's speed drifts by tens of percent within a run,
and a ratio of neighbouring timings keeps the drift out. K=1 is the stricter baseline: it already has the
stack's fused Adam and its single discriminator call on real and fake rows.

Then the achieved GFLOP/s of the stack and of K=1 (FlopCounterMode over a whole untimed training of each:
a WGAN-GP critic's rounds without a G step and GS-WGAN's warm-up are counted as they run), each as a share
of one large sgemm timed just before it in the same repeat (goal for the stack: >= 50%), and the ceiling on
the stacked / K=1 ratio that K=1's share leaves: both do the same FLOPs, so no stack can beat K=1 by more
than 1 / K=1's share.

With --device cuda (a GPU machine) every column trains on the GPU (Lightning with
trainer.accelerator=gpu) and the sgemm is the GPU's: that is the GPU ratio (goal >= 15x). Every draw
is still made on the CPU, as on a CPU run (nets/stacked_gan.py).

    .venv/bin/python benchmarks/perf/targets_stack.py [--steps 300] [--targets 16] [--defenses none megan mixup]
                                                      [--device cpu|cuda] [--threads 0] [--repeats 3]

--threads 1 is the grid's setting (one torch thread per cell, two cells at a time on 2 cores).
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


def one_defense(defense: str, steps: int, targets: int, device: str = "cpu", repeats: int = 3) -> dict[str, float]:
    """Seconds of each column (median over `repeats`), the stack's speed-ups (median of the repeats' own
    ratios) and the achieved GFLOP/s of the stack and of K=1, each as a share of the sgemm timed just before
    it in the same repeat (the median of those shares): a shared machine's speed drifts by tens of percent
    within a run, and pairing each timing with its neighbour keeps the drift out of the ratios."""
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
    # the FLOPs of the whole training, counted on an untimed copy: rounds differ (a WGAN-GP critic's rounds
    # without a G step, GS-WGAN's warm-up), so one round times the rounds would miscount them
    with FlopCounterMode(display=False) as counter:
        probe.fit(rounds)
    with FlopCounterMode(display=False) as one:
        shadows.stacked_trainer(recipe, data, subsets[:1], seeds[:1], refs[:1], device).fit(rounds)
    flops, flops_one = counter.get_total_flops(), one.get_total_flops()
    n = 8192 if gpu else 1024

    def timed(train) -> float:  # seconds of building the trainer (models, stacks) and training it
        sync()
        t = time.perf_counter()
        train()
        sync()
        return time.perf_counter() - t

    runs = []
    for _ in range(repeats):  # the columns in turn, every repeat; one model times T but for the stack
        r = {"sgemm": sgemm_flops_per_s(n, device=device)}
        r["stacked"] = timed(lambda: shadows.stacked_trainer(recipe, data, subsets, seeds, refs, device).fit(rounds))
        r["sgemm_1"] = sgemm_flops_per_s(n, device=device)
        r["plain"] = targets * timed(lambda: shadows.stacked_trainer(recipe, data, subsets[:1], seeds[:1], refs[:1],
                                                                     device).fit(rounds))
        r["pytorch"] = targets * timed(lambda: pytorch_loop(defense, resolved.defense_params,
                                                            single_process(resolved.config.trainer), data,
                                                            subsets[0], seeds[0], design.reference, device))
        r["lightning"] = targets * timed(lambda: fit_defense(defense=defense, params=resolved.defense_params,
                                                             trainer=single_process(resolved.config.trainer),
                                                             data=data, train_ids=subsets[0], seed=seeds[0],
                                                             reference_ids=design.reference))
        runs.append(r)

    def median(f) -> float:
        return float(np.median([f(r) for r in runs]))

    out = {c: median(lambda r, c=c: r[c]) for c in ("stacked", "plain", "pytorch", "lightning")}
    out |= {f"vs_{c}": median(lambda r, c=c: r[c] / r["stacked"]) for c in ("plain", "pytorch", "lightning")}
    out["gflops"] = flops / out["stacked"] / 1e9
    out["plain_gflops"] = flops_one * targets / out["plain"] / 1e9
    out["share"] = median(lambda r: flops / r["stacked"] / r["sgemm"])
    out["plain_share"] = median(lambda r: flops_one * targets / r["plain"] / r["sgemm_1"])
    out["sgemm"] = [x / 1e9 for r in runs for x in (r["sgemm"], r["sgemm_1"])]
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--targets", type=int, default=16)
    ap.add_argument("--defenses", nargs="+", default=["none", "megan", "mixup"])
    ap.add_argument("--device", default="cpu", help="cpu | cuda (a GPU machine: the GPU ratio)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--repeats", type=int, default=3, help="times each column is timed, in turn")
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    gpu = torch.device(args.device).type == "cuda"
    if gpu and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device here; run it on a GPU machine")
    where = torch.cuda.get_device_name() if gpu else f"{torch.get_num_threads()} torch threads"
    print(f"T={args.targets} targets, {args.steps} generator steps each, {where}, "
          f"medians of {args.repeats} repeats")
    rows = {}
    for d in args.defenses:
        rows[d] = one_defense(d, args.steps, args.targets, args.device, args.repeats)
        print(f"  {d}: done", flush=True)
    sgemm = [x for r in rows.values() for x in r["sgemm"]]
    print(f"one large sgemm, timed beside each stack and each K=1: {min(sgemm):.0f}-{max(sgemm):.0f} GFLOP/s")
    print(f"\n{'seconds':<8} {'stacked':>8} {'K=1':>8} {'PyTorch':>8} {'Lightn.':>8}   "
          f"{'vs K=1':>7} {'vs PyT.':>7} {'vs Ltn.':>7}")
    for d, r in rows.items():
        print(f"{d:<8} {r['stacked']:8.1f} {r['plain']:8.1f} {r['pytorch']:8.1f} {r['lightning']:8.1f}   "
              f"{r['vs_plain']:6.2f}x {r['vs_pytorch']:6.2f}x {r['vs_lightning']:6.2f}x")
    print(f"\n{'GFLOP/s':<8} {'stacked':>8} {'K=1':>8}   {'stack':>6} {'K=1':>6}   {'ceiling':>8}")
    print(f"{'':<8} {'':>8} {'':>8}   {'sgemm':>6} {'sgemm':>6}   {'vs K=1':>8}")
    for d, r in rows.items():
        print(f"{d:<8} {r['gflops']:8.1f} {r['plain_gflops']:8.1f}   {r['share']:6.0%} "
              f"{r['plain_share']:6.0%}   {1 / r['plain_share']:7.2f}x")
    print("\nK=1: the stacked trainer with one model. PyTorch: the defense's own\n"
          "training_step in a plain loop. Lightning: runner.fit_defense. Those three are\n"
          "timed on one model, times T. Ratios and shares are medians of each repeat's\n"
          "own (a share: against the sgemm timed just before it). ceiling: 1 / K=1's\n"
          "share, the most any stack can gain over K=1.")


if __name__ == "__main__":
    main()
