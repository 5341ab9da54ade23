"""`privgan`: privGAN (Mukherjee et al., PoPETs 2021), ALGORITHMS.md section 2.4.

Procedure read in microsoft/privGAN privacygan/privacy_gan.py (`privGAN`):
  members cut into N disjoint shards X_j; generator/discriminator pairs (G_j, D_j), D_j sees only X_j;
  a privacy discriminator D_p (N-way softmax) guesses which generator made a sample.
  0. pre-train D_p on the real members, label = shard index, for `disc_epochs` epochs;
  per batch, with one noise z shared by all generators:
  1. each D_j: BCE(D_j(x_j), lSmooth=0.95) + BCE(D_j(G_j(z)), 0);
  2. once past `dp_delay`, one D_p step on the concatenated fakes with labels j;
  3. one joint step of all G_j on sum_j BCE(D_j(G_j(z)), 1) + privacy_ratio * sum_j CE(D_p(G_j(z)), y~_j),
     y~_j drawn uniformly from the other generators' indices (the non-saturating form).
Released samples come from all generators evenly. `discriminate` returns the max over the D_j (the
strongest white-box view, `WBattack_priv` max); `disc_reduce: mean` gives the mean of their probabilities.

Budget (digits, 8000 generator steps, B = 64 per shard): the code's 200 epochs of 7000/2/128 = 27 steps
are 5,400 generator steps, so 8000 steps is the same order. `disc_epochs` keeps the paper's 50 epochs
(over 300 members, 2 x 64 records per batch: 118 pre-training batches, served before the budget, see
`warmup_steps`); `dp_delay` is 100 of 200 epochs in the code, i.e. half of training, so it is a fraction
of the generator steps here (0.5).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from mia_bench.data.datasets import DataInfo
from mia_bench.defenses.base import Defense, register
from mia_bench.nets.stacked import StackedMLPDiscriminator, StackedMLPGenerator, split_rows, stacked_bce


@dataclass
class PrivGANConfig:
    n_generators: int = 2  # N generator/discriminator pairs, one member shard each
    privacy_ratio: float = 1.0  # lambda: weight of the privacy discriminator in the generators' loss
    disc_epochs: int = 50  # D_p pre-training epochs over the members (before the budgeted game)
    dp_delay: float = 0.5  # fraction of the generator steps before D_p trains on fakes
    real_label: float = 0.95  # lSmooth: one-sided label smoothing of the D_j
    disc_reduce: str = "max"  # white-box score over the D_j: "max" | "mean" (of probabilities)
    z_dim: int = 32
    g_hidden: list[int] = field(default_factory=lambda: [128, 256])
    d_hidden: list[int] = field(default_factory=lambda: [256, 128])
    p_hidden: list[int] = field(default_factory=lambda: [256, 128])  # privacy discriminator
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999


def _classifier(in_dim: int, hidden: list[int], n_out: int) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Flatten()]
    for h in hidden:
        layers += [nn.Linear(in_dim, h), nn.LeakyReLU(0.2)]
        in_dim = h
    return nn.Sequential(*layers, nn.Linear(in_dim, n_out))


@register("privgan")
class PrivGAN(Defense):
    """N generator/discriminator pairs on disjoint shards plus a privacy discriminator (privGAN)."""

    Config = PrivGANConfig
    player_order = ("generators", "discriminators", "privacy_discriminator")

    def __init__(self, *, config: PrivGANConfig, info: DataInfo, n_train: int) -> None:
        super().__init__(config=config, info=info, n_train=n_train)
        if config.n_generators < 2:
            raise ValueError("privGAN needs defense.n_generators >= 2 (one pair is a plain GAN)")
        if config.disc_reduce not in ("max", "mean"):
            raise ValueError(f"defense.disc_reduce must be 'max' or 'mean', got {config.disc_reduce!r}")
        if not 0.0 <= config.dp_delay <= 1.0:
            raise ValueError(f"defense.dp_delay is a fraction of the generator steps, got {config.dp_delay}")
        n = config.n_generators
        self.players["generators"] = StackedMLPGenerator(k=n, z_dim=config.z_dim, out_shape=info.shape,
                                                         hidden=config.g_hidden)
        self.players["discriminators"] = StackedMLPDiscriminator(k=n, in_shape=info.shape, hidden=config.d_hidden)
        self.players["privacy_discriminator"] = _classifier(info.dim, config.p_hidden, n)

    @property
    def n_shards(self) -> int:
        return self.config.n_generators

    @property
    def z_dim(self) -> int:
        return self.config.z_dim

    def warmup_steps(self, *, batch_size: int, max_steps: int) -> int:
        """D_p pre-training batches: `disc_epochs` passes over the members, N * B records a batch."""
        return math.ceil(self.config.disc_epochs * self.n_train / (self.config.n_generators * batch_size))

    def generate(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Row r of z (B, z_dim) goes to generator r mod N, so any batch of latents covers all generators
        evenly (the released mixture). -> (B, *shape)."""
        n, k = z.shape[0], self.config.n_generators
        m = -(-n // k)
        zp = torch.cat([z, z.new_zeros(m * k - n, z.shape[1])]).view(m, k, -1).transpose(0, 1)
        x = self.players["generators"](zp)  # (k, m, *shape)
        return x.transpose(0, 1).reshape(m * k, *self.info.shape)[:n]

    def discriminate(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """(N,) logit, higher = more member-like: max over the D_j, or logit of the mean probability."""
        logits = cast(StackedMLPDiscriminator, self.players["discriminators"]).every(x)  # (k, N)
        if self.config.disc_reduce == "max":
            return logits.max(0).values
        # logit(mean_j sigmoid(l_j)), computed in log space so saturated logits keep their order
        return torch.logsumexp(F.logsigmoid(logits), 0) - torch.logsumexp(F.logsigmoid(-logits), 0)

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        c = self.config
        return [torch.optim.Adam(self.players[p].parameters(), lr=c.lr, betas=(c.beta1, c.beta2))
                for p in self.player_order]

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        k, warmup = self.config.n_generators, self.warmup_batches
        Dp = self.players["privacy_discriminator"]
        if batch_idx < warmup:  # step 0: D_p learns which shard a real member comes from
            with self.playing("privacy_discriminator") as step:
                step(F.cross_entropy(Dp(batch["x"]), batch["shard"]))
            return
        G, D = self.players["generators"], self.players["discriminators"]
        x = split_rows(batch["x"], k)  # (k, B, *shape): shard j's records for D_j only
        b = x.shape[1]
        fake = G(self.draw_latent(b).unsqueeze(0).expand(k, -1, -1))  # one z shared by every G_j
        with self.playing("discriminators") as step:
            logits = D(torch.cat([x, fake.detach()], dim=1))  # one pass over [real | fake] per member
            loss_d = stacked_bce(logits[:, :b], self.config.real_label) + stacked_bce(logits[:, b:], 0.0)
            step(loss_d)
        source = torch.arange(k, device=self.device).repeat_interleave(b)  # (k*B,) which G_j made it
        total = self.trainer.num_training_batches - warmup
        if batch_idx - warmup >= self.config.dp_delay * total:
            with self.playing("privacy_discriminator") as step:
                step(F.cross_entropy(Dp(fake.detach().flatten(0, 1)), source))
        with self.playing("generators") as step:
            # a target drawn uniformly from the *other* generators' indices
            wrong = (source + torch.randint(1, k, source.shape, device=self.device)) % k
            ce = F.cross_entropy(Dp(fake.flatten(0, 1)), wrong, reduction="none").view(k, b).mean(1).sum()
            loss_g = stacked_bce(D(fake), 1.0) + self.config.privacy_ratio * ce
            step(loss_g)
        if self.should_log(batch_idx):
            self.log_dict({"loss/d": loss_d.detach(), "loss/g": loss_g.detach(), "loss/privacy": ce.detach()})
