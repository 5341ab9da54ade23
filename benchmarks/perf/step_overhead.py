"""Lightning overhead of one `none` training step vs a plain PyTorch loop (same nets, data, batch 128).

Both loops run in this process, interleaved, on the digits members; the script prints the median time
per step of each and their ratio (goal: Lightning / plain <= 1.10).

    .venv/bin/python benchmarks/perf/step_overhead.py [--steps 3000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import lightning as L
import torch

from mia_bench.config import load_run
from mia_bench.data import MembershipSplit, load_dataset
from mia_bench.data.datamodule import MembershipDataModule
from mia_bench.defenses import DEFENSES
from mia_bench.nets.losses import ns_d_loss, ns_g_loss
from mia_bench.runner import build_trainer

WARMUP = 100


class Timer(L.Callback):
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == WARMUP:
            self.t0 = time.perf_counter()

    def on_train_end(self, trainer, pl_module):
        self.per_step = (time.perf_counter() - self.t0) / (trainer.num_training_batches - WARMUP)


def lightning_step(resolved, data, split, steps: int, progress: bool) -> float:
    L.seed_everything(0, verbose=False)
    model = DEFENSES.get("none")(config=resolved.defense_params, info=data.info, n_train=split.members.size)
    dm = MembershipDataModule(data=data, train_ids=split.members, seed=0, batch_size=128, num_batches=steps)
    model.prepare(*dm.train_tensors())
    timer = Timer()
    cfg = copy.deepcopy(resolved.config.trainer)
    cfg.progress_bar = progress
    build_trainer(cfg, callbacks=[timer]).fit(model, datamodule=dm)
    return timer.per_step


def plain_step(resolved, data, split, steps: int) -> float:
    L.seed_everything(0, verbose=False)
    model = DEFENSES.get("none")(config=resolved.defense_params, info=data.info, n_train=split.members.size)
    G, D = model.players["generator"], model.players["discriminator"]
    c = resolved.defense_params
    opt_g = torch.optim.Adam(G.parameters(), lr=c.lr_g, betas=(c.beta1, c.beta2))
    opt_d = torch.optim.Adam(D.parameters(), lr=c.lr_d, betas=(c.beta1, c.beta2))
    x_all = data.take(split.members)[0]
    n = x_all.shape[0]
    for i in range(steps):
        if i == WARMUP:
            t0 = time.perf_counter()
        x = x_all[torch.randint(n, (128,))]
        fake = G(torch.randn(128, c.z_dim))
        opt_d.zero_grad(set_to_none=True)
        ns_d_loss(D(x), D(fake.detach())).backward()
        opt_d.step()
        opt_g.zero_grad(set_to_none=True)
        for p in D.parameters():
            p.requires_grad_(False)
        ns_g_loss(D(fake)).backward()
        for p in D.parameters():
            p.requires_grad_(True)
        opt_g.step()
    return (time.perf_counter() - t0) / (steps - WARMUP)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    resolved = load_run(suite="digits_v1", defense="none", overrides=["trainer.batch_size=128"])
    data = load_dataset(resolved.config.dataset)
    split = MembershipSplit.make(n_records=len(data), sizes=resolved.config.split, seed=0)
    times: dict[str, list[float]] = {"plain": [], "lightning": [], "lightning+progress": []}
    for _ in range(args.repeats):  # interleaved, so drifts in machine load hit every variant alike
        times["plain"].append(plain_step(resolved, data, split, args.steps))
        times["lightning"].append(lightning_step(resolved, data, split, args.steps, progress=False))
        times["lightning+progress"].append(lightning_step(resolved, data, split, args.steps, progress=True))
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"threads={torch.get_num_threads()} steps={args.steps} repeats={args.repeats} batch=128")
    for k, v in med.items():
        print(f"{k:>20}: {v * 1e3:.3f} ms/step   ratio vs plain {v / med['plain']:.3f}x")


if __name__ == "__main__":
    main()
