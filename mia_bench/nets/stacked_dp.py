"""T DP-GAN models (defenses/dpgan.py, ALGORITHMS.md 2.7) trained at once as one stack.

DP-SGD needs every record's own gradient norm. For an MLP discriminator these come without materialising
per-sample gradients, by the ghost-clipping identity Opacus's GradSampleModuleFastGradientClipping uses: a
linear map z = W a + b gives record i the weight gradient d_i a_i^T and the bias gradient d_i, of squared
norm ||d_i||^2 (||a_i||^2 + 1), where d_i = dl_i/dz_i; the projection term <W_y y, phi> is a linear map of y
without bias. The stacked D runs each model's rows through that model's slice only, so one gradient of
sum_i l_i with respect to the linear maps' outputs holds every d_i of every model at once.

Per model and D step, as DPGAN.training_step does with Opacus:
  1. a Poisson draw of the model's records (each with probability q = B/n, from the model's own stream),
     padded to the longest draw of the round and masked; an empty draw is a noise-only step;
  2. sum_i min(1, C / (||g_i|| + 1e-6)) g_i over the real term BCE(l(x_i, y_i), 1) (Opacus's clipping
     coefficient), plus N(0, sigma^2 C^2) from the model's noise stream (Opacus's own sampler, secure mode
     unless `deterministic_noise`), divided by the expected batch round(q n);
  3. plus the plain gradient of the fake term mean softplus(l(G(z))) over that many fakes (post-processing,
     uncharged), then one Adam step;
  4. every n_d D steps a generator step on ns_g_loss, reusing the D step's fakes when n_d = 1.
sigma is the model's noise multiplier, or Opacus's solution for (target epsilon, delta, q, D steps); each
model's RDP accountant gets the (sigma, q, steps) composition Opacus's step hook records, so its
privacy_report() is the Lightning path's. Every random draw of model t comes from model t's own streams, so
a stack of T equals T stacks of one, model by model (tests/test_stacked_games.py); unless
`deterministic_noise` is set the Poisson and noise streams are seeded from os.urandom (Defense.setup,
DPGAN.make_private). Discriminators with LayerNorm train one after another through Opacus (stack_game).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from opacus.accountants.utils import get_noise_multiplier
from opacus.optimizers.optimizer import _generate_noise
from torch import nn

from mia_bench.nets.stacked_gan import Records, StackedGANTrainer, _batched, _linear, _stack, write_back

Tap = tuple[torch.Tensor, torch.Tensor, bool]  # a linear map's (input, output, has a bias)


class StackedDPGANTrainer:
    """Trains `models` (DPGAN instances of one recipe) in place, each on its own records.

    train_sets[t]: (x (n_t, *shape), y (n_t,)); seeds[t]: the seed of model t's latents and labels (and, with
    deterministic_noise, of its Poisson draws and noise); batch_size: B, the expected Poisson batch.
    """

    def __init__(self, *, models: Sequence[Any], train_sets: Sequence[tuple[torch.Tensor, torch.Tensor]],
                 batch_size: int, seeds: Sequence[int]) -> None:
        from mia_bench.defenses.dpgan import DPGAN

        if not (len(models) == len(train_sets) == len(seeds)) or not models:
            raise ValueError("models, train_sets and seeds must be non-empty and of equal length")
        self.models, self.B, self.T = list(models), int(batch_size), len(models)
        if not all(type(m) is DPGAN for m in self.models):
            raise ValueError("StackedDPGANTrainer trains DP-GAN models of one recipe")
        first = self.models[0]
        c = self.cfg = first.config
        self.conditional, self.n_classes, self.z_dim = bool(c.conditional), first.info.n_classes, int(c.z_dim)
        self.data = [(x.float(), y.long()) for x, y in train_sets]
        self.n = np.array([x.shape[0] for x, _ in self.data])
        if (self.n < self.B).any():
            raise ValueError(f"batch size {self.B} exceeds the {int(self.n.min())} records a model trains on; "
                             "lower trainer.batch_size or give the models more data")
        self.q = [self.B / int(n) for n in self.n]  # the data module's sample_rate B / n
        self.expected = torch.tensor([max(1, round(q * int(n))) for q, n in zip(self.q, self.n, strict=True)],
                                     dtype=torch.float32)  # DPGAN.expected_batch
        self.records = Records(self.data)  # Poisson draws differ in size: padded rows, masked
        draw_seed = [int(s) if c.deterministic_noise else secrets.randbits(63) for s in seeds]
        noise_seed = [int(s) if c.deterministic_noise else secrets.randbits(64) for s in seeds]
        self.rngs = [np.random.default_rng(s) for s in draw_seed]
        self.noise_gens = [torch.Generator().manual_seed(s) for s in noise_seed]
        self.gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
        self.priors = [m.label_prior.detach().float().cpu() for m in self.models]
        self.G_t, self.pG = _stack([m.players["generator"] for m in self.models])
        self.D_t, self.pD = _stack([m.players["discriminator"] for m in self.models])
        self.G, self.D = _batched(self.G_t), _batched(self.D_t)
        if self.G is None or self.D is None or not _ghost_clippable(self.D_t):
            raise ValueError("StackedDPGANTrainer needs nets/mlp.py's MLP players without LayerNorm or dropout")
        betas = (c.beta1, c.beta2)
        self.opt_g = torch.optim.Adam(list(self.pG.values()), lr=c.lr_g, betas=betas, fused=True)
        self.opt_d = torch.optim.Adam(list(self.pD.values()), lr=c.lr_d, betas=betas, fused=True)
        self.sigma = [0.0] * self.T

    # ---- per-model draws ---------------------------------------------------------------------------
    def _poisson(self) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """Every model's Poisson draw, padded: x (T, b, ...), y (T, b, C) or None, and the mask (T, b)."""
        x, y, mask = self.records.gather([np.flatnonzero(rng.random(int(n)) < q)
                                          for rng, n, q in zip(self.rngs, self.n, self.q, strict=True)])
        return x, F.one_hot(y, self.n_classes).float() if self.conditional else None, mask

    def _fake_inputs(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """B latents and (conditional) label vectors from the model's prior (uniform: DPGAN.prepare keeps
        it) per model, labels drawn first (Defense.draw_fakes)."""
        yf = None
        if self.conditional:
            labels = [torch.multinomial(p, self.B, replacement=True, generator=g)
                      for p, g in zip(self.priors, self.gens, strict=True)]
            yf = F.one_hot(torch.stack(labels), self.n_classes).float()
        return torch.stack([torch.randn(self.B, self.z_dim, generator=g) for g in self.gens]), yf

    # ---- the private discriminator step --------------------------------------------------------------
    def _d_forward(self, x: torch.Tensor, y: torch.Tensor | None) -> tuple[torch.Tensor, list[Tap]]:
        """Logits (T, b) of every model's D on its rows, and the (input, output, bias) of each linear map."""
        p, taps = self.pD, []
        h = x.flatten(2)
        for i, block in enumerate(self.D_t.blocks):
            for j, m in enumerate(block.children()):
                if isinstance(m, nn.Linear):
                    z = _linear(h, p[f"blocks.{i}.{j}.weight"], p.get(f"blocks.{i}.{j}.bias"))
                    taps.append((h, z, m.bias is not None))
                    h = z
                else:
                    h = m(h)  # elementwise (LeakyReLU)
        head = _linear(h, p["head.weight"], p.get("head.bias"))
        taps.append((h, head, self.D_t.head.bias is not None))
        logit = head.squeeze(2)
        if self.D_t.embed_y is not None:
            if y is None:
                raise ValueError("conditional discriminator needs a (..., n_classes) label vector per row")
            proj = torch.bmm(y, p["embed_y.weight"].transpose(1, 2))  # the projection <W_y y, phi(x)>
            taps.append((y, proj, False))
            logit = logit + (proj * h).sum(-1)
        return logit, taps

    def clip_coefficients(self, losses: torch.Tensor, taps: list[Tap], mask: torch.Tensor) -> torch.Tensor:
        """(T, b) min(1, C / (||g_i|| + 1e-6)) for each real row i (0 on padding), g_i the gradient of its
        own loss losses[t, i] in model t's D parameters (ghost norms: module docstring)."""
        b = losses.shape[1]
        deltas = torch.autograd.grad((losses * mask).sum(), [z for _, z, _ in taps], retain_graph=True)
        with torch.no_grad():
            sq = torch.zeros_like(losses)
            for (a, _, bias), d in zip(taps, deltas, strict=True):
                sq += d[:, :b].pow(2).sum(-1) * (a[:, :b].pow(2).sum(-1) + float(bias))
            coef = (self.cfg.max_grad_norm / (sq.sqrt() + 1e-6)).clamp(max=1.0)
        return coef * mask

    def d_gradients(self, x: torch.Tensor, y: torch.Tensor | None, mask: torch.Tensor, fake: torch.Tensor,
                    yf: torch.Tensor | None) -> list[torch.Tensor]:
        """D's gradient per parameter, (T, ...) each: (sum_i clip(g_i) + N(0, sigma^2 C^2)) / B_t plus the
        fake term's plain gradient (DPGAN.private_real_term, then the fake term's backward)."""
        b = x.shape[1]
        logit, taps = self._d_forward(torch.cat([x, fake.detach()], 1),
                                      None if y is None else torch.cat([y, yf], 1))  # type: ignore[list-item]
        losses = F.binary_cross_entropy_with_logits(logit[:, :b], torch.ones_like(logit[:, :b]), reduction="none")
        coef = self.clip_coefficients(losses, taps, mask)
        loss = (coef * losses).sum(1) / self.expected + F.softplus(logit[:, b:]).mean(1)
        grads = list(torch.autograd.grad(loss.sum(), list(self.pD.values())))
        secure = not self.cfg.deterministic_noise
        for t, (sigma, gen) in enumerate(zip(self.sigma, self.noise_gens, strict=True)):
            std = sigma * self.cfg.max_grad_norm
            if std:
                for g in grads:
                    g[t] += _generate_noise(std=std, reference=g[t], generator=gen, secure_mode=secure) / self.expected[t]
        return grads

    # ---- one round -----------------------------------------------------------------------------------
    def round(self, batch_idx: int) -> None:
        x, y, mask = self._poisson()
        z, yf = self._fake_inputs()
        fake = self.G(self.pG, z, yf)
        for p, g in zip(self.pD.values(), self.d_gradients(x, y, mask, fake, yf), strict=True):
            p.grad = g.contiguous()
        self.opt_d.step()
        if (batch_idx + 1) % self.cfg.n_d:
            return
        if self.cfg.n_d > 1:  # fresh fakes after n_d private D steps
            z, yf = self._fake_inputs()
            fake = self.G(self.pG, z, yf)
        StackedGANTrainer._step(self.opt_g, self.pG, F.softplus(-self.D(self.pD, fake, yf)).mean(1))

    def warmup_rounds(self, num_batches: int) -> int:
        """Rounds served before a budget of `num_batches`: none in this game."""
        return 0

    def set_budget(self, num_batches: int) -> None:
        """Each model's sigma for `num_batches` private D steps (DPGAN.make_private: the config's noise
        multiplier, or Opacus's solution for its target epsilon at the model's q)."""
        c, solved = self.cfg, {}
        for t, q in enumerate(self.q):
            if c.noise_multiplier is not None:
                self.sigma[t] = float(c.noise_multiplier)
            else:
                if q not in solved:
                    solved[q] = float(get_noise_multiplier(target_epsilon=c.target_epsilon, target_delta=c.delta,
                                                           sample_rate=q, steps=num_batches, accountant="rdp"))
                self.sigma[t] = solved[q]

    def fit(self, num_batches: int, on_round: Callable[[], None] | None = None) -> list[Any]:
        """`num_batches` D steps per model (calling on_round() after each), then each model's players and
        privacy bookkeeping are written back; returns the models (eval)."""
        self.set_budget(num_batches)
        for b in range(num_batches):
            self.round(b)
            if on_round is not None:
                on_round()
        for t, m in enumerate(self.models):
            write_back(m.players["generator"], self.pG, t)
            write_back(m.players["discriminator"], self.pD, t)
            m.sigma, m.sample_rate = self.sigma[t], self.q[t]
            m.accountant.history = [(self.sigma[t], self.q[t], num_batches)] if num_batches else []
        return [m.eval() for m in self.models]


def _ghost_clippable(template: nn.Module) -> bool:
    """nets/mlp.MLPDiscriminator whose blocks are Linear maps and LeakyReLUs only (LayerNorm and dropout
    would need their own per-sample terms)."""
    from mia_bench.nets.mlp import MLPDiscriminator

    return isinstance(template, MLPDiscriminator) and all(
        isinstance(m, (nn.Linear, nn.LeakyReLU)) for block in template.blocks for m in block.children())

