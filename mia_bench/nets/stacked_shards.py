"""T privGAN or PAR-GAN models trained at once as one stack (ALGORITHMS.md 2.4, 2.5).

Each of these models already holds k generator and/or discriminator members as one (k, ...) stack
(nets/stacked.py), one per disjoint shard of its training records. T models of one recipe therefore stack
into (T * k, ...) leaves: slice [t*k, (t+1)*k) is model t, and the same batched matmuls run all T * k
members at once. A privGAN's privacy discriminator and a PAR-GAN's single generator stack into (T, ...)
leaves like nets/stacked_gan.py's players. Model t only touches its own slices and every random draw of
model t (its shard cut, batches, latents, GP weights, the privacy targets) comes from its own generators,
seeded by seeds[t]: a stack of T equals T stacks of one, model by model, up to float rounding
(tests/test_stacked_games.py).

The games are the defenses' `training_step`s:
  PAR-GAN  n_d rounds of one step of every D_i on (shard i's batch, fresh fakes, independent z per i),
           the same real batch in every round of a step; then one G step on the mean over i of L_G(D_i).
  privGAN  first `warmup` batches of D_p pre-training on real members labelled by shard (the count depends
           on the model's training-set size, so models pre-train for different numbers of batches: D_p's
           Adam keeps one step count per model and steps only the models still pre-training); then per
           batch one step of every D_j on (shard j's batch, G_j(z)) with one z shared by the G_j, one D_p
           step on the fakes once past `dp_delay` of the budget, and one joint G step on
           sum_j BCE(D_j(G_j(z)), 1) + privacy_ratio * sum_j CE(D_p(G_j(z)), a wrong index).
Shards are cut as the data module cuts them (a seeded permutation of the model's records in k near-equal
parts) and served B per shard per round in reshuffled passes, a pass's remainder dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.optim.adam import adam

from mia_bench.nets.stacked_gan import (
    Params,
    StackedGANTrainer,
    _batched,
    _layers,
    _linear,
    _Passes,
    _stack,
    write_back,
)

SHARD_GAMES = ("privgan", "pargan")


def _cat(modules: Sequence[torch.nn.Module]) -> Params:
    """The (k, ...) parameters of T stacked modules concatenated into (T * k, ...) leaves."""
    names = [n for n, _ in modules[0].named_parameters()]
    return {n: torch.cat([dict(m.named_parameters())[n].detach() for m in modules]).clone().requires_grad_(True)
            for n in names}


class PerModelAdam:
    """Adam over (T, ...) stacked leaves with one step count per model; `step` updates only the models
    marked active (the update of an active model is torch.optim.Adam's, elementwise)."""

    def __init__(self, params: Sequence[torch.Tensor], *, lr: float, betas: tuple[float, float],
                 eps: float = 1e-8) -> None:
        self.params, self.lr, self.betas, self.eps = list(params), lr, betas, eps
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]
        self.t = torch.zeros(self.params[0].shape[0])

    @torch.no_grad()
    def step(self, grads: Sequence[torch.Tensor], active: torch.Tensor) -> None:
        b1, b2 = self.betas
        self.t += active.float()
        t = self.t.clamp_min(1.0)
        bc1, bc2 = 1 - b1 ** t, 1 - b2 ** t
        for p, g, m, v in zip(self.params, grads, self.m, self.v, strict=True):
            shape = (-1,) + (1,) * (p.dim() - 1)
            on = active.view(shape)
            m.copy_(torch.where(on, b1 * m + (1 - b1) * g, m))
            v.copy_(torch.where(on, b2 * v + (1 - b2) * g * g, v))
            denom = v.sqrt() / bc2.sqrt().view(shape) + self.eps
            p.sub_(torch.where(on, (self.lr / bc1).view(shape) * m / denom, torch.zeros_like(p)))

    @torch.no_grad()
    def step_rows(self, grads: Sequence[torch.Tensor], rows: torch.Tensor,
                  gathered: Sequence[torch.Tensor] | None = None) -> None:
        """Adam steps of the distinct rows `rows` only, grads[i] (len(rows), ...): gathers those rows of the
        parameters and their moments, steps each row as its own parameter with its own step count through
        torch.optim.adam.adam (fused), and writes them back (GS-WGAN's critics: each round moves T of T * K).
        gathered: the parameters' rows already gathered (params[i][rows]); they are stepped in place."""
        # index_select, not p[rows]: the same rows without advanced indexing's general kernel (a (1600, 256,
        # 64) gather: 223 vs 49 us here; those gathers were 17% of a profiled GS-WGAN round)
        params = [p.index_select(0, rows) for p in self.params] if gathered is None else list(gathered)
        sel = [(p, m.index_select(0, rows), v.index_select(0, rows))
               for p, m, v in zip(params, self.m, self.v, strict=True)]
        steps = self.t[rows].repeat(len(sel), 1)  # one step tensor per (parameter, row): adam adds 1 to each
        lists: tuple[list[torch.Tensor], ...] = ([], [], [], [])
        for (p, m, v), g in zip(sel, grads, strict=True):
            for store, rows_of in zip(lists, (p, g.contiguous(), m, v), strict=True):
                store.extend(rows_of.unbind())
        b1, b2 = self.betas
        adam(*lists, [], list(steps.flatten().unbind()), fused=True, amsgrad=False, beta1=b1,
             beta2=b2, lr=self.lr, weight_decay=0.0, eps=self.eps, maximize=False)
        self.t[rows] = steps[0]
        for (p, m, v), dst_p, dst_m, dst_v in zip(sel, self.params, self.m, self.v, strict=True):
            for dst, src in ((dst_p, p), (dst_m, m), (dst_v, v)):
                dst.index_copy_(0, rows, src)


class StackedShardGANTrainer:
    """Trains `models` (PrivGAN or PARGAN instances of one recipe) in place, each on its own records.

    train_sets[t]: (x (n_t, *shape), y (n_t,)); seeds[t]: the seed of model t's shard cut, batches and noise.
    """

    def __init__(self, *, models: Sequence[Any], train_sets: Sequence[tuple[torch.Tensor, torch.Tensor]],
                 batch_size: int, seeds: Sequence[int]) -> None:
        from mia_bench.defenses.pargan import PARGAN
        from mia_bench.defenses.privgan import PrivGAN

        if not (len(models) == len(train_sets) == len(seeds)) or not models:
            raise ValueError("models, train_sets and seeds must be non-empty and of equal length")
        self.models, self.B, self.T = list(models), batch_size, len(models)
        first = self.models[0]
        if not all(type(m) is type(first) for m in self.models) or not isinstance(first, (PrivGAN, PARGAN)):
            raise ValueError("StackedShardGANTrainer trains privGAN or PAR-GAN models of one recipe")
        self.privgan = isinstance(first, PrivGAN)
        self.cfg, self.k = first.config, first.n_shards
        self.shape = tuple(first.info.shape)
        c = self.cfg
        self.data = [x.float() for x, _ in train_sets]
        self.gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
        self.shard_passes = []
        for s, x in zip(seeds, self.data, strict=True):  # the data module's cut: permutation, k near-equal parts
            cut = np.array_split(np.random.default_rng([int(s), 1]).permutation(x.shape[0]), self.k)
            rng = np.random.default_rng([int(s), 7])
            self.shard_passes.append([(part, _Passes(part.size, batch_size, rng, "records of a shard"))
                                      for part in cut])
        if self.privgan:
            self.pG = _cat([m.players["generators"] for m in self.models])
            self.G_body = first.players["generators"].body
            self.pD = _cat([m.players["discriminators"] for m in self.models])
            self.P_t, self.pP = _stack([m.players["privacy_discriminator"] for m in self.models])
            betas = (c.beta1, c.beta2)
            self.opt_g = torch.optim.Adam(list(self.pG.values()), lr=c.lr, betas=betas, fused=True)
            self.opt_d = torch.optim.Adam(list(self.pD.values()), lr=c.lr, betas=betas, fused=True)
            self.opt_p = PerModelAdam(list(self.pP.values()), lr=c.lr, betas=betas)
            self.warmup = torch.tensor([m.warmup_steps(batch_size=batch_size, max_steps=0) for m in self.models])
        else:
            self.G_t, self.pG = _stack([m.players["generator"] for m in self.models])
            self.G = _batched(self.G_t)
            self.pD = _cat([m.players["discriminators"] for m in self.models])
            if c.optimizer == "rmsprop":
                self.opt_g = torch.optim.RMSprop(list(self.pG.values()), lr=c.lr_g)
                self.opt_d = torch.optim.RMSprop(list(self.pD.values()), lr=c.lr_d)
            else:
                betas = (c.beta1, c.beta2)
                self.opt_g = torch.optim.Adam(list(self.pG.values()), lr=c.lr_g, betas=betas, fused=True)
                self.opt_d = torch.optim.Adam(list(self.pD.values()), lr=c.lr_d, betas=betas, fused=True)
        self.D_body = first.players["discriminators"].body

    # ---- the stacked members -----------------------------------------------------------------------
    def _members(self, x: torch.Tensor) -> torch.Tensor:
        """Every D member on its own rows: x (T*k, B, ...) -> (T*k, B) logits (or critic values)."""
        h = _layers(self.D_body, "body", self.pD, x.flatten(2))
        return _linear(h, self.pD["head.weight"], self.pD["head.bias"]).squeeze(2)

    def _privgan_generators(self, z: torch.Tensor) -> torch.Tensor:
        """z (T, B, z_dim), one latent batch per model shared by its k generators -> (T*k, B, *shape)."""
        h = _layers(self.G_body, "body", self.pG, z.repeat_interleave(self.k, dim=0))
        h = _linear(h, self.pG["out.weight"], self.pG["out.bias"])
        return torch.tanh(h).view(self.T * self.k, z.shape[1], *self.shape)

    def _shard_batch(self, t: int) -> torch.Tensor:
        """(k, B, ...): the next B records of each of model t's shards (the data module's shard-major batch)."""
        return torch.stack([self.data[t][torch.from_numpy(part[p.take()])] for part, p in self.shard_passes[t]])

    def _real(self) -> torch.Tensor:
        """(T*k, B, ...): row t*k + i holds B records of model t's shard i."""
        return torch.cat([self._shard_batch(t) for t in range(self.T)])

    def _randn(self, n: int, dim: int) -> torch.Tensor:
        return torch.stack([torch.randn(n, dim, generator=g) for g in self.gens])

    _step = staticmethod(StackedGANTrainer._step)

    @staticmethod
    def _step_some(opt: PerModelAdam, params: Params, loss: torch.Tensor, active: torch.Tensor) -> None:
        """A PerModelAdam step of the `active` models only."""
        opt.step(torch.autograd.grad(loss.sum(), list(params.values())), active)

    def _per_model(self, per_member: torch.Tensor) -> torch.Tensor:
        """(T*k,) member terms -> (T, k)."""
        return per_member.view(self.T, self.k)

    # ---- PAR-GAN -------------------------------------------------------------------------------------
    def _pargan_fakes(self) -> torch.Tensor:
        """(T*k, B, ...): an independent batch of fakes for each discriminator (PARGAN.fakes)."""
        z = self._randn(self.k * self.B, self.cfg.z_dim)
        return self.G(self.pG, z).reshape(self.T * self.k, self.B, *self.shape)

    def pargan_critic_loss(self, x: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """(T,) sum over each model's k members of D_i's loss (PARGAN.critic_loss); x, fake (T*k, B, ...)."""
        if self.cfg.loss == "gan":
            logits = self._members(torch.cat([x, fake], dim=1))
            real = F.softplus(-logits[:, :self.B]).mean(1)  # BCE against 1
            return self._per_model(real + F.softplus(logits[:, self.B:]).mean(1)).sum(1)
        eps = torch.stack([torch.rand(self.k * self.B, 1, generator=g) for g in self.gens])  # (T, k*B, 1)
        eps = eps.view(self.T * self.k, self.B, *([1] * len(self.shape)))
        xhat = (eps * x + (1 - eps) * fake).requires_grad_(True)
        (grad,) = torch.autograd.grad(self._members(xhat).sum(), xhat, create_graph=True)
        gp = ((grad.flatten(2).norm(2, dim=2) - 1) ** 2).mean(1)
        per = self._members(fake).mean(1) - self._members(x).mean(1) + self.cfg.gp_weight * gp
        return self._per_model(per).sum(1)

    def _pargan_round(self) -> None:
        x = self._real()
        for _ in range(self.cfg.n_d):
            self._step(self.opt_d, self.pD, self.pargan_critic_loss(x, self._pargan_fakes().detach()))
        scores = self._members(self._pargan_fakes())
        per_d = F.softplus(-scores).mean(1) if self.cfg.loss == "gan" else -scores.mean(1)
        self._step(self.opt_g, self.pG, self._per_model(per_d).mean(1))

    # ---- privGAN -------------------------------------------------------------------------------------
    def _privacy_logits(self, x: torch.Tensor) -> torch.Tensor:
        """D_p of every model: x (T, N, ...) -> (T, N, k)."""
        return _layers(self.P_t, "", self.pP, x.flatten(2))

    def _privgan_warmup(self) -> None:
        """Each model's D_p pre-training on its real members labelled by shard, for its own number of
        batches (models that are done draw nothing and do not move)."""
        labels = torch.arange(self.k).repeat_interleave(self.B)
        for r in range(int(self.warmup.max()) if self.T else 0):
            active = r < self.warmup
            rows = [self._shard_batch(t).flatten(0, 1) if active[t] else torch.zeros(self.k * self.B, *self.shape)
                    for t in range(self.T)]
            logits = self._privacy_logits(torch.stack(rows))  # (T, k*B, k)
            ce = F.cross_entropy(logits.flatten(0, 1), labels.repeat(self.T), reduction="none").view(self.T, -1)
            self._step_some(self.opt_p, self.pP, ce.mean(1), active)

    def privgan_d_loss(self, x: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """(T,) sum over each model's D_j of BCE(D_j(x_j), real_label) + BCE(D_j(G_j(z)), 0); x, fake (T*k, B, ...)."""
        b = self.B
        logits = self._members(torch.cat([x, fake.detach()], dim=1))
        real_l = F.binary_cross_entropy_with_logits(logits[:, :b], torch.full_like(logits[:, :b], self.cfg.real_label),
                                                    reduction="none").mean(1)
        return self._per_model(real_l + F.softplus(logits[:, b:]).mean(1)).sum(1)

    def privgan_p_loss(self, fake: torch.Tensor) -> torch.Tensor:
        """(T,) D_p's cross-entropy on each model's detached fakes, labelled by the generator that made them."""
        source = torch.arange(self.k).repeat_interleave(self.B).repeat(self.T)
        logits = self._privacy_logits(fake.detach().reshape(self.T, self.k * self.B, *self.shape))
        return F.cross_entropy(logits.flatten(0, 1), source, reduction="none").view(self.T, -1).mean(1)

    def privgan_g_loss(self, fake: torch.Tensor, wrong: torch.Tensor) -> torch.Tensor:
        """(T,) sum_j BCE(D_j(G_j(z)), 1) + privacy_ratio * sum_j CE(D_p(G_j(z)), wrong), wrong (T, k*B)."""
        logits = self._privacy_logits(fake.reshape(self.T, self.k * self.B, *self.shape))
        ce = F.cross_entropy(logits.flatten(0, 1), wrong.flatten(), reduction="none").view(self.T, self.k, self.B)
        bce = self._per_model(F.softplus(-self._members(fake)).mean(1)).sum(1)
        return bce + self.cfg.privacy_ratio * ce.mean(2).sum(1)

    def _privgan_round(self, j: int, total: int) -> None:
        """One batch of PrivGAN.training_step: D, then (past dp_delay) D_p, then G against the updated both."""
        x = self._real()
        fake = self._privgan_generators(self._randn(self.B, self.cfg.z_dim))  # one z shared by every G_j
        self._step(self.opt_d, self.pD, self.privgan_d_loss(x, fake))
        if j >= self.cfg.dp_delay * total:
            self._step_some(self.opt_p, self.pP, self.privgan_p_loss(fake), torch.ones(self.T, dtype=torch.bool))
        source = torch.arange(self.k).repeat_interleave(self.B)
        wrong = torch.stack([(source + torch.randint(1, self.k, source.shape, generator=g)) % self.k
                             for g in self.gens])
        self._step(self.opt_g, self.pG, self.privgan_g_loss(fake, wrong))

    def round(self, batch_idx: int, total: int = 1) -> None:
        """One round of the game (no pre-training): batch `batch_idx` of a budget of `total` rounds."""
        if self.privgan:
            self._privgan_round(batch_idx, total)
        else:
            self._pargan_round()

    # ---- fit -----------------------------------------------------------------------------------------
    warmup_rounds = StackedGANTrainer.warmup_rounds  # privGAN's D_p pre-training calls no on_round

    def fit(self, num_batches: int, on_round: Callable[[], None] | None = None) -> list[Any]:
        """privGAN's D_p pre-training, then `num_batches` rounds of the game (calling on_round() after each);
        then each model's slices are copied back into it; returns the models (eval)."""
        if self.privgan:
            self._privgan_warmup()
        for j in range(num_batches):
            self.round(j, num_batches)
            if on_round is not None:
                on_round()
        k = self.k
        for t, m in enumerate(self.models):
            if self.privgan:
                players = [("generators", self.pG, slice(t * k, (t + 1) * k)),
                           ("discriminators", self.pD, slice(t * k, (t + 1) * k)),
                           ("privacy_discriminator", self.pP, t)]
            else:
                players = [("generator", self.pG, t), ("discriminators", self.pD, slice(t * k, (t + 1) * k))]
            for player, params, rows in players:
                write_back(m.players[player], params, rows)
        return [m.eval() for m in self.models]

