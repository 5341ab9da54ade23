"""`gswgan`: gradient-sanitized WGAN (Chen, Orekondy, Fritz, NeurIPS 2020), ALGORITHMS.md section 2.8.

Procedure read in DingfanChen/GS-WGAN source/main.py, pretrain.py and evaluation/privacy_analysis.py:
  K discriminators D_k, each on its own disjoint shard of the members (never released, trained on raw
  data); one conditional generator whose exponential moving average (alpha = 0.999, warmed up as
  min(1 - 1/(t+1), alpha)) is the released model. Per iteration:
  1. pick k uniformly (the data module's "random_shard" mode serves shard k for the whole iteration);
  2. `critic_iters` WGAN-GP steps of D_k: D(fake) - D(x) + 10 * GP + 0.001 * D(x)^2 (fakes use the real
     labels, as in the code);
  3. one generator step on -mean D_k(G(z, y), y), y uniform: only the gradient flowing from D_k into each
     generated sample is sanitized, by an autograd function on the generated batch: clipped to norm C/B
     (B because the loss is a batch mean) plus N(0, (2 sigma C / B)^2) (the code's SENSITIVITY = 2).
Accounting: the subsampled Gaussian with rate 1/K composed iterations * B times (privacy_analysis.py),
computed with Opacus's RDP functions (opacus.accountants.analysis.rdp: Poisson-subsampling RDP; the paper
uses autodp, so numbers differ slightly). The guarantee covers the generator and its samples; the
discriminators are trained on raw shards, so white-box scores (`discriminate`: max over the D_k, or mean)
are outside it.
Pre-training: the code warm-starts every D_k for 2000 iterations against its own throw-away non-private
generator (pretrain.py). Here `warmup` (a fraction of the budget) iterations run the same schedule
(random shard, critic_iters D_k steps) against one shared throw-away `warmup_generator`, served before
the budgeted steps (Defense.warmup_steps); it is never released, and the released generator starts from
scratch as in the code.

Budget (digits: 300 members, 8000 generator steps, B = 64 generated samples per step):
- K = 100: the paper's K = 1000 shards of 60 records cannot be cut from 300 members; 100 shards of 3
  records (each D_k batch is its whole shard) keep the sampling rate 1/K small.
- epsilon: the paper's sigma = 1.07 would spend epsilon ~ 74 over 8000 * 64 compositions at q = 1/100,
  so the default asks for the paper's epsilon = 10 at delta = 1e-5 and Opacus solves sigma (~3.9).
- critic_iters = 2 (code: 5) and warm-up 1000 iterations (0.125 of the budget; 10 per D_k against the
  code's 2000, whose K * 2000 warm-up iterations dwarf its 20,000 main ones): a D step costs about as
  much as a generator step here, so 5 critic steps would more than double the run. Each D_k still takes
  ~180 updates on its 3 records.
Randomness the guarantee rests on: the sanitizer's noise and the choice of shard k must be unknown to the
attacker, and the run's seed is published. By default (`deterministic_noise: false`) the noise comes
from a torch.Generator seeded with 64 bits from os.urandom and the data module's shard stream is re-seeded
from os.urandom before its loader is built, so two runs with one seed differ (the shard partition itself
stays seeded: it may be public). torchcsprng cannot be installed for this torch: the generator is seeded
from, not itself, a CSPRNG. `deterministic_noise: true` (tests) seeds both from the run seed: reproducible,
and no privacy against anyone who knows it. `privacy_report()` says which. Training runs on one process
only (multi-process strategies are refused before training starts).
Banks (protocol v2's T targets, the attacker's reference and local models) train GS-WGAN as one stack,
nets/stacked_gswgan.py, which plays this training_step per model (a single model too, as every stackable
game's); this module's Lightning loop serves `fit_defense`.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, cast

import torch
from opacus.accountants.analysis.rdp import compute_rdp, get_privacy_spent
from opacus.accountants.rdp import RDPAccountant
from opacus.accountants.utils import get_noise_multiplier
from torch import nn
from torch.optim.swa_utils import AveragedModel

from mia_bench.data.datamodule import MembershipDataModule
from mia_bench.data.datasets import DataInfo
from mia_bench.defenses.base import Defense, register
from mia_bench.errors import ConfigError
from mia_bench.nets.losses import gradient_penalty, wgan_g_loss
from mia_bench.nets.mlp import MLPDiscriminator, MLPGenerator

SEEDED = "run seed (deterministic_noise=true): reproducible, no privacy against whoever knows the seed"
NOISE_SOURCE = "os.urandom (64-bit seed of a torch.Generator; not torchcsprng)"
SAMPLING_SOURCE = "os.urandom (re-seeds the data module's shard stream, whose sampler seed keeps 31 bits)"
SENSITIVITY = 2.0  # replace-one adjacency: two clipped gradients differ by up to 2 C (the code's constant)


def sanitize(grad: torch.Tensor, clip: float, sigma: float,
             generators: Sequence[torch.Generator | None]) -> torch.Tensor:
    """grad (R, B, ...): R models' gradients into their B generated samples. Each sample's gradient is
    clipped to norm C/B (B because the loss is a batch mean), and row r gets N(0, (SENSITIVITY * sigma * C /
    B)^2) noise drawn from generators[r] (one model's noise stream)."""
    r, b = grad.shape[:2]
    bound = clip / b
    flat = grad.reshape(r, b, -1)
    flat = flat * (bound / (flat.norm(dim=2, keepdim=True) + 1e-10)).clamp(max=1.0)
    if sigma > 0:
        noise = torch.stack([torch.randn(flat.shape[1:], generator=g, device=flat.device, dtype=flat.dtype)
                             for g in generators])
        flat = flat + SENSITIVITY * sigma * bound * noise
    return flat.view_as(grad)


class SanitizeGrad(torch.autograd.Function):
    """Identity forward on x (B, ...); backward clips each sample's gradient to norm C/B and adds
    N(0, (SENSITIVITY * sigma * C / B)^2) noise drawn from `generator` (`sanitize`, one model)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, clip: float, sigma: float, generator: torch.Generator | None) -> torch.Tensor:
        ctx.clip, ctx.sigma, ctx.generator = clip, sigma, generator
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None, None]:
        return sanitize(grad.unsqueeze(0), ctx.clip, ctx.sigma, [ctx.generator])[0], None, None, None


class SanitizeStack(torch.autograd.Function):
    """SanitizeGrad for R stacked models: x (R, B, ...), model r's noise from generators[r]."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, clip: float, sigma: float,
                generators: Sequence[torch.Generator | None]) -> torch.Tensor:
        ctx.clip, ctx.sigma, ctx.generators = clip, sigma, generators
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None, None]:
        return sanitize(grad, ctx.clip, ctx.sigma, ctx.generators), None, None, None


@dataclass
class GSWGANConfig:
    n_discriminators: int = 100  # K disjoint shards (paper 1000 on 60k records)
    noise_multiplier: float | None = None  # sigma; null: solved from target_epsilon
    target_epsilon: float | None = 10.0
    delta: float = 1e-5
    clip_bound: float = 1.0  # C
    critic_iters: int = 2  # the code: 5
    gp_weight: float = 10.0
    drift_weight: float = 0.001  # the code's L_epsilon * D(x)^2
    warmup: float = 0.125  # non-private D warm-up iterations before the budget, as a fraction of it
    ema: float = 0.999
    conditional: bool = True
    disc_reduce: str = "max"  # white-box score over the D_k: "max" | "mean"
    z_dim: int = 32
    g_hidden: list[int] = field(default_factory=lambda: [128, 256])
    d_hidden: list[int] = field(default_factory=lambda: [256, 128])
    lr: float = 1e-4
    beta1: float = 0.5
    beta2: float = 0.9
    deterministic_noise: bool = False  # true: noise and shard draws from the run seed (tests only: not private)


@register("gswgan")
class GSWGAN(Defense):
    """K shard discriminators; only the gradient from D into the generated samples is clipped and noised."""

    Config = GSWGANConfig
    single_process: ClassVar[bool] = True  # refused under multi-process strategies (setup)
    player_order = ("generator", "discriminators", "warmup_generator")

    def __init__(self, *, config: GSWGANConfig, info: DataInfo, n_train: int) -> None:
        super().__init__(config=config, info=info, n_train=n_train)
        if (config.noise_multiplier is None) == (config.target_epsilon is None):
            raise ConfigError("gswgan: set exactly one of defense.noise_multiplier and defense.target_epsilon")
        if config.disc_reduce not in ("max", "mean"):
            raise ValueError(f"defense.disc_reduce must be 'max' or 'mean', got {config.disc_reduce!r}")
        if not 0 < config.delta < 1 / n_train:
            raise ConfigError(f"gswgan: defense.delta={config.delta} must be in (0, 1/n) = (0, {1 / n_train:.2g})")
        self.conditional = config.conditional
        c = info.n_classes if config.conditional else 0

        def gen() -> MLPGenerator:
            return MLPGenerator(z_dim=config.z_dim, out_shape=info.shape, n_classes=c, hidden=config.g_hidden)

        self.players["generator"] = gen()
        self.players["discriminators"] = nn.ModuleList(
            MLPDiscriminator(in_shape=info.shape, n_classes=c, hidden=config.d_hidden)
            for _ in range(config.n_discriminators))
        self.players["warmup_generator"] = gen()
        alpha = config.ema

        def ema(avg: torch.Tensor, cur: torch.Tensor, n: torch.Tensor | int) -> torch.Tensor:
            decay = min(float(n) / (float(n) + 1.0), alpha)  # the code's min(1 - 1/(t+1), alpha)
            return decay * avg + (1 - decay) * cur

        self.released = AveragedModel(self.players["generator"], avg_fn=ema)
        self.released.requires_grad_(False)
        self.sigma = config.noise_multiplier
        self.g_batch = 0  # generated samples per generator step (B): set from the data module
        self.done_steps = 0  # sanitized generator steps
        self.noise_gen: torch.Generator | None = None

    @property
    def critics(self) -> nn.ModuleList:
        """The K shard discriminators D_k."""
        return cast(nn.ModuleList, self.players["discriminators"])

    @property
    def n_shards(self) -> int:
        return self.config.n_discriminators

    @property
    def batch_sampling(self) -> str:
        return "random_shard"

    @property
    def batches_per_generator_step(self) -> int:
        return self.config.critic_iters

    @property
    def discriminator_is_logit(self) -> bool:
        return False  # WGAN critics

    def warmup_steps(self, *, batch_size: int, max_steps: int) -> int:
        return round(self.config.warmup * max_steps)

    def prepare(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Keep the uniform label prior (the code draws labels uniformly): no member statistic escapes."""

    def generate(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """The released generator, the EMA copy: (B, z_dim) [+ (B, C)] -> (B, *shape)."""
        return self.released(z, y)

    def discriminate(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """(N,) critic score, higher = more real: max (or mean) over the K discriminators (not DP)."""
        yv = self.label_vector(y) if self.conditional else None
        scores = torch.stack([D(x, yv) for D in self.critics])  # (K, N)
        return scores.max(0).values if self.config.disc_reduce == "max" else scores.mean(0)

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        c = self.config
        dm = getattr(self.trainer, "datamodule", None)
        if not isinstance(dm, MembershipDataModule):
            raise ConfigError("gswgan needs a MembershipDataModule (its batch_size and num_batches set B and T)")
        self.set_budget(g_batch=int(dm.batch_size), steps=(int(dm.num_batches) - self.warmup_batches) // c.critic_iters)
        seed = torch.initial_seed() if c.deterministic_noise else secrets.randbits(64)
        self.noise_gen = torch.Generator(device=self.device).manual_seed(seed)
        return [torch.optim.Adam(self.players[p].parameters(), lr=c.lr, betas=(c.beta1, c.beta2))
                for p in self.player_order]

    def set_budget(self, *, g_batch: int, steps: int) -> None:
        """B generated samples per step over `steps` sanitized generator steps: sets B and, when the config
        asks for an epsilon, the noise multiplier Opacus solves for it (q = 1/K, steps * B compositions)."""
        c = self.config
        self.g_batch = int(g_batch)
        if c.noise_multiplier is None:
            self.sigma = float(get_noise_multiplier(target_epsilon=c.target_epsilon, target_delta=c.delta,
                                                    sample_rate=1 / c.n_discriminators,
                                                    steps=max(steps, 1) * self.g_batch, accountant="rdp"))

    def sanitized_critic(self, fake: torch.Tensor, y: torch.Tensor | None, k: int) -> torch.Tensor:
        """D_k(fake, y) -> (B,), with fake's gradient sanitized on the way back (the privacy barrier)."""
        safe = SanitizeGrad.apply(fake, self.config.clip_bound, float(self.sigma or 0.0), self.noise_gen)
        return self.critics[k](safe, y)

    def update(self, player: str, params: Iterable[nn.Parameter], loss: torch.Tensor) -> None:
        """One optimizer step of `player` on `loss`, whose graph reaches no other trainable parameters;
        `params` (the ones the loss reaches) are left without gradients, so the next step starts clean.

        Stands in for `playing()`: toggling every parameter of K discriminators costs ~2 ms a call at
        K = 100, while each step here touches one D_k, so the freezing is spelled out for D_k alone."""
        opt = self.optimizers()[self.player_order.index(player)]  # type: ignore[index]
        self.manual_backward(loss)
        opt.step()
        for p in params:  # set_to_none on this player only: Adam skips parameters without a gradient
            p.grad = None

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        c = self.config
        k = int(batch["shard"][0])  # the whole iteration's batches come from shard k
        D = self.critics[k]
        position = batch_idx % c.critic_iters
        warm = batch_idx < self.warmup_batches
        G = self.players["warmup_generator" if warm else "generator"]
        x, y = batch["x"], self.label_vector(batch["y"]) if self.conditional else None
        with torch.no_grad():
            fake = G(self.draw_latent(x.shape[0]), y)  # with the real labels, as in the code
        real = D(x, y)
        loss_d = (D(fake, y).mean() - real.mean() + c.gp_weight * gradient_penalty(D, x, fake, y)
                  + c.drift_weight * (real**2).mean())
        self.update("discriminators", D.parameters(), loss_d)
        if position < c.critic_iters - 1:
            return
        b = self.g_batch
        yf = self.label_vector(self.draw_labels(b)) if self.conditional else None
        D.requires_grad_(False)
        try:
            if warm:  # throw-away generator: plain, unsanitized gradients
                self.update("warmup_generator", G.parameters(), wgan_g_loss(D(G(self.draw_latent(b), yf), yf)))
                return
            loss_g = wgan_g_loss(self.sanitized_critic(G(self.draw_latent(b), yf), yf, k))
            self.update("generator", G.parameters(), loss_g)
        finally:
            D.requires_grad_(True)
        self.released.update_parameters(G)
        self.done_steps += 1
        if self.should_log(batch_idx):
            self.log_dict({"loss/d": loss_d.detach(), "loss/g": loss_g.detach()})

    def privacy_report(self) -> dict[str, Any]:
        """epsilon at delta of the sanitized generator (Opacus RDP functions), with its inputs; empty when
        there is no finite guarantee (sigma = 0: clipping alone is not differential privacy)."""
        c = self.config
        q, compositions = 1 / c.n_discriminators, self.done_steps * self.g_batch
        eps, order = 0.0, 0.0
        if compositions:
            if not self.sigma:
                return {}
            orders = RDPAccountant.DEFAULT_ALPHAS
            rdp = compute_rdp(q=q, noise_multiplier=self.sigma, steps=compositions, orders=orders)
            eps, order = get_privacy_spent(orders=orders, rdp=rdp, delta=c.delta)
        return {"epsilon": float(eps), "delta": c.delta, "accountant": "opacus.rdp (subsampled Gaussian)",
                "rdp_order": float(order), "noise_multiplier": float(self.sigma or 0.0), "sample_rate": q,
                "steps": self.done_steps, "compositions": compositions, "clip_bound": c.clip_bound,
                "unit": "one member record (replace-one), generator and released samples only",
                "deterministic_noise": c.deterministic_noise,
                "noise_source": SEEDED if c.deterministic_noise else NOISE_SOURCE,
                "sampling_source": SEEDED if c.deterministic_noise else SAMPLING_SOURCE}

    def checkpoint_extra(self) -> dict[str, Any]:
        return {"sigma": self.sigma, "g_batch": self.g_batch, "done_steps": self.done_steps}

    def load_checkpoint_extra(self, extra: dict[str, Any]) -> None:
        self.sigma = extra.get("sigma")
        self.g_batch, self.done_steps = int(extra.get("g_batch", 0)), int(extra.get("done_steps", 0))
