"""T GS-WGAN models trained at once as one stack (defenses/gswgan.py, ALGORITHMS.md 2.8).

GS-WGAN keeps no Opacus machinery: its privacy barrier is an autograd function on the generated batch (the
gradient from D_k into each generated sample is clipped and noised), so T models of one recipe stack like
the other MLP games. Each model holds K shard critics; the T * K critics are kept as (T * K, ...) leaves, row
t * K + k being model t's D_k. An iteration of model t touches only its own D_{k_t}, so every round gathers
the T rows in play, runs them as one batched stack of T critics, and writes them back; their Adam state is
gathered and written back with them (PerModelAdam.step_rows: each critic keeps its own step count, as one
torch.optim.Adam over K critics of which only D_k has a gradient does). The generators, the throw-away
warm-up generators and the released EMA copies stack as (T, ...) leaves.

The game is GSWGAN.training_step's, per model and loader batch:
  - every `critic_iters` batches a shard k drawn uniformly (the data module's random_shard mode), whose
    batches are min(B, shard size) of its records in reshuffled passes;
  - one WGAN-GP step of D_k: D(fake) - D(x) + gp * GP + drift * D(x)^2, fakes with the real labels;
  - after the last batch of the group, one generator step on -mean D_k(G(z, y), y), y uniform: during the
    warm-up the throw-away generator's plain step, afterwards the released generator's step through
    `SanitizeStack` (per sample clipped to C/B, noise from the model's own stream), then the EMA update.
Shards of one model can differ in size by one record (np.array_split) and so do their batches: rows are
padded to the longest batch and the padding is masked out of every mean. Every random draw of model t (shard
cut, shard choice, batch positions, latents, labels, GP weights, the sanitizer's noise) comes from model t's
own streams, so a stack of T equals T stacks of one, model by model, up to float rounding
(tests/test_stacked_games.py). Unless `deterministic_noise` is set, the shard choice and the noise are
seeded from os.urandom, as the Lightning path does (GSWGAN.configure_optimizers, Defense.setup).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from mia_bench.nets.stacked_gan import (
    Params,
    Records,
    StackedGANTrainer,
    _batched,
    _Passes,
    _stack,
    write_back,
)
from mia_bench.nets.stacked_shards import PerModelAdam


class StackedGSWGANTrainer:
    """Trains `models` (GSWGAN instances of one recipe) in place, each on its own records.

    train_sets[t]: (x (n_t, *shape), y (n_t,)); seeds[t]: the seed of model t's shard cut and draws;
    batch_size: B, the critic's batch (at most a shard) and the generated samples per generator step.
    """

    def __init__(self, *, models: Sequence[Any], train_sets: Sequence[tuple[torch.Tensor, torch.Tensor]],
                 batch_size: int, seeds: Sequence[int]) -> None:
        from mia_bench.defenses.gswgan import GSWGAN

        if not (len(models) == len(train_sets) == len(seeds)) or not models:
            raise ValueError("models, train_sets and seeds must be non-empty and of equal length")
        self.models, self.B, self.T = list(models), int(batch_size), len(models)
        first = self.models[0]
        if not all(type(m) is GSWGAN for m in self.models):
            raise ValueError("StackedGSWGANTrainer trains GS-WGAN models of one recipe")
        c = self.cfg = first.config
        self.K, self.ci = int(c.n_discriminators), int(c.critic_iters)
        self.conditional, self.n_classes, self.z_dim = bool(c.conditional), first.info.n_classes, int(c.z_dim)
        self.data = [(x.float(), y.long()) for x, y in train_sets]
        self.records = Records(self.data)  # shards differ in size by one record: padded rows, masked
        draw_seed = [int(s) if c.deterministic_noise else secrets.randbits(63) for s in seeds]
        noise_seed = [int(s) if c.deterministic_noise else secrets.randbits(64) for s in seeds]
        self.gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
        self.noise_gens = [torch.Generator().manual_seed(s) for s in noise_seed]
        self.rngs = [np.random.default_rng(s) for s in draw_seed]
        self.shards = []
        for s, rng, (x, _) in zip(seeds, self.rngs, self.data, strict=True):  # the data module's cut
            if x.shape[0] < self.K:
                raise ValueError(f"gswgan: {self.K} shards cannot be cut from {x.shape[0]} records; "
                                 "lower defense.n_discriminators")
            cut = np.array_split(np.random.default_rng([int(s), 1]).permutation(x.shape[0]), self.K)
            self.shards.append([(part, _Passes(part.size, min(self.B, part.size), rng, "records of a shard"))
                                for part in cut])
        self.priors = [m.label_prior.detach().float().cpu() for m in self.models]
        self.G_t, self.pG = _stack([m.players["generator"] for m in self.models])
        _, self.pW = _stack([m.players["warmup_generator"] for m in self.models])
        self.G = _batched(self.G_t)
        D_t, pD = _stack([D for m in self.models for D in m.critics])
        self.D = _batched(D_t)
        if self.G is None or self.D is None:
            raise ValueError("StackedGSWGANTrainer needs nets/mlp.py's plain MLP players")
        self.pD = {n: p.detach() for n, p in pD.items()}  # (T*K, ...): rows are gathered, never differentiated
        betas = (c.beta1, c.beta2)
        self.opt_g = torch.optim.Adam(list(self.pG.values()), lr=c.lr, betas=betas, fused=True)
        self.opt_w = torch.optim.Adam(list(self.pW.values()), lr=c.lr, betas=betas, fused=True)
        self.opt_d = PerModelAdam(list(self.pD.values()), lr=c.lr, betas=betas)
        self.ema: Params = {}
        self.n_averaged = 0
        self.done_steps = 0
        self.rows = torch.zeros(self.T, dtype=torch.int64)  # the critic in play per model: t * K + k_t
        self.sigma = 0.0

    # ---- per-model draws ---------------------------------------------------------------------------
    def _pick_shards(self) -> None:
        self.rows = torch.tensor([t * self.K + int(rng.integers(self.K)) for t, rng in enumerate(self.rngs)])

    def _real(self) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """Each model's next batch of its current shard, padded: x (T, b, ...), y (T, b, C) or None, and
        the mask (T, b) of real rows."""
        picks = []
        for t, row in enumerate(self.rows.tolist()):
            part, passes = self.shards[t][row - t * self.K]
            picks.append(part[passes.take()])
        x, y, mask = self.records.gather(picks)
        return x, F.one_hot(y, self.n_classes).float() if self.conditional else None, mask

    def _per_row(self, mask: torch.Tensor, draw: Callable[[int, torch.Generator], torch.Tensor]) -> torch.Tensor:
        """(T, b, ...) of draw(n_t, generator of model t), n_t = model t's real rows, zero-padded to b."""
        rows = []
        for t, g in enumerate(self.gens):
            n = int(mask[t].sum())
            v = draw(n, g)
            rows.append(torch.cat([v, v.new_zeros(mask.shape[1] - n, *v.shape[1:])]))
        return torch.stack(rows)

    def _fake_inputs(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """B latents and (conditional) uniformly drawn label vectors per model, labels drawn first."""
        yf = None
        if self.conditional:
            labels = [torch.multinomial(p, self.B, replacement=True, generator=g)
                      for p, g in zip(self.priors, self.gens, strict=True)]
            yf = F.one_hot(torch.stack(labels), self.n_classes).float()
        return torch.stack([torch.randn(self.B, self.z_dim, generator=g) for g in self.gens]), yf

    # ---- the critics in play -----------------------------------------------------------------------
    def _critics(self) -> Params:
        """The T critics in play, (T, ...) leaves gathered from their rows."""
        return {n: p.index_select(0, self.rows).requires_grad_(True) for n, p in self.pD.items()}

    @staticmethod
    def _masked_mean(v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return (v * mask).sum(1) / mask.sum(1)

    def critic_loss(self, pD: Params, x: torch.Tensor, y: torch.Tensor | None, fake: torch.Tensor,
                    mask: torch.Tensor) -> torch.Tensor:
        """(T,) D_k's loss D(fake) - D(x) + gp * GP + drift * D(x)^2 of each model (GSWGAN.training_step)."""
        c = self.cfg
        real = self.D(pD, x, y)
        eps = self._per_row(mask, lambda n, g: torch.rand(n, *([1] * (x.dim() - 2)), generator=g))
        xhat = (eps * x + (1 - eps) * fake).requires_grad_(True)
        (grad,) = torch.autograd.grad(self.D(pD, xhat, y).sum(), xhat, create_graph=True)
        gp = (grad.flatten(2).norm(2, dim=2) - 1) ** 2
        mean = self._masked_mean
        return (mean(self.D(pD, fake, y), mask) - mean(real, mask) + c.gp_weight * mean(gp, mask)
                + c.drift_weight * mean(real**2, mask))

    # ---- one round -----------------------------------------------------------------------------------
    def round(self, batch_idx: int, warm: bool = False) -> None:
        """Loader batch `batch_idx` of every model (warm: a warm-up batch, before the budget)."""
        if batch_idx % self.ci == 0:
            self._pick_shards()
        x, y, mask = self._real()
        pG = self.pW if warm else self.pG
        with torch.no_grad():  # the fakes take the real labels, as in the code
            fake = self.G(pG, self._per_row(mask, lambda n, g: torch.randn(n, self.z_dim, generator=g)), y)
        pD = self._critics()
        loss_d = self.critic_loss(pD, x, y, fake, mask)
        grads = torch.autograd.grad(loss_d.sum(), list(pD.values()))
        pD = {n: p.detach() for n, p in pD.items()}
        self.opt_d.step_rows(grads, self.rows, list(pD.values()))  # pD now holds the stepped critics
        if batch_idx % self.ci < self.ci - 1:
            return
        z, yf = self._fake_inputs()
        if warm:  # the throw-away generator: plain gradients
            StackedGANTrainer._step(self.opt_w, self.pW, -self.D(pD, self.G(self.pW, z, yf), yf).mean(1))
            return
        from mia_bench.defenses.gswgan import SanitizeStack

        safe = SanitizeStack.apply(self.G(self.pG, z, yf), self.cfg.clip_bound, self.sigma, self.noise_gens)
        StackedGANTrainer._step(self.opt_g, self.pG, -self.D(pD, safe, yf).mean(1))
        self._average()
        self.done_steps += 1

    @torch.no_grad()
    def _average(self) -> None:
        """The released EMA (AveragedModel's update with GSWGAN's avg_fn): a copy at the first update,
        then decay min(n / (n + 1), alpha) with n the updates so far."""
        if not self.n_averaged:
            self.ema = {n: p.detach().clone() for n, p in self.pG.items()}
        else:
            decay = min(self.n_averaged / (self.n_averaged + 1.0), self.cfg.ema)
            for n, p in self.pG.items():
                self.ema[n].mul_(decay).add_(p.detach(), alpha=1 - decay)
        self.n_averaged += 1

    def warmup_rounds(self, num_batches: int) -> int:
        """Warm-up loader batches served before a budget of `num_batches` (GSWGAN.warmup_steps)."""
        steps = num_batches // self.ci
        return self.models[0].warmup_steps(batch_size=self.B, max_steps=steps) * self.ci

    def fit(self, num_batches: int, on_round: Callable[[], None] | None = None) -> list[Any]:
        """The warm-up, then `num_batches` budgeted loader batches (calling on_round() after each of both);
        then each model's players, released EMA and privacy bookkeeping are written back; returns the models
        (eval)."""
        for m in self.models:
            m.set_budget(g_batch=self.B, steps=num_batches // self.ci)
        self.sigma = float(self.models[0].sigma or 0.0)
        warm = self.warmup_rounds(num_batches)
        for i in range(warm + num_batches):
            self.round(i, warm=i < warm)
            if on_round is not None:
                on_round()
        for t, m in enumerate(self.models):
            write_back(m.players["generator"], self.pG, t)
            write_back(m.players["warmup_generator"], self.pW, t)
            for k, D in enumerate(m.critics):
                write_back(D, self.pD, t * self.K + k)
            if self.n_averaged:
                write_back(m.released.module, self.ema, t)
                m.released.n_averaged.fill_(self.n_averaged)
            m.done_steps = self.done_steps
        return [m.eval() for m in self.models]
