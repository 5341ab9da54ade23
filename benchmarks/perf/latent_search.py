"""White-box latent search (GAN-Leaks wb) for 512 queries: one batched search vs one query at a time.

Same generator (a digits `none` GAN briefly trained), same settings and starts; prints both times, the
ratio (goal: >= 10x) and the largest difference of the final losses (they should agree to float rounding).

    .venv/bin/python benchmarks/perf/latent_search.py [--queries 512] [--steps 200]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from mia_bench import shadows
from mia_bench.attacks import Recipe
from mia_bench.config import load_run
from mia_bench.data import MembershipSplit, load_dataset
from mia_bench.nets.latent import SearchConfig, reconstruct


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--queries", type=int, default=512)
    ap.add_argument("--steps", type=int, default=200)
    args = ap.parse_args()
    resolved = load_run(suite="digits_v1", defense="none", overrides=["trainer.max_steps=500"])
    data = load_dataset(resolved.config.dataset)
    split = MembershipSplit.make(n_records=len(data), sizes=resolved.config.split, seed=0)
    bank = shadows.train_bank(recipe=Recipe.of(resolved, data.info), data=data, ids=split.members, n_models=1,
                              size=shadows.EVERY_RECORD, seed=0, cache_dir=None)
    gen = shadows.owned_generator(bank.models[0])
    x, y = data.take(np.concatenate([split.members, split.non_members])[:args.queries])
    cfg = SearchConfig(method="adam", steps=args.steps, lr=0.05, init_draws=2000)
    t = time.perf_counter()
    batched = reconstruct(gen, x, y, cfg, seed=0)
    t_batched = time.perf_counter() - t
    t = time.perf_counter()
    single = torch.cat([reconstruct(gen, x[i:i + 1], y[i:i + 1], cfg, seed=0) for i in range(x.shape[0])])
    t_single = time.perf_counter() - t
    diff = float((batched - single).abs().max())
    print(f"{x.shape[0]} queries, Adam {args.steps} steps, threads={torch.get_num_threads()}")
    print(f"  batched:             {t_batched:8.2f} s   mean final loss {batched.mean():.6f}")
    print(f"  one query at a time: {t_single:8.2f} s   mean final loss {single.mean():.6f}")
    print(f"  ratio {t_single / t_batched:.1f}x   max |loss difference| {diff:.2e}")


if __name__ == "__main__":
    main()
