"""`pargan`: PAR-GAN (Chen, Wang, Gao, Shi, KDD 2021), ALGORITHMS.md section 2.5.

Procedure read in work-hard-play-harder/PAR-GAN MNIST/MNIST-PAR-DCGAN(k=5).ipynb (`train_step`): one
generator against k discriminators, D_i trained only on its own disjoint shard X_i of the members.
  1. n_d rounds of: for each i, one D_i step on shard i's batch and fresh fakes (independent z per i);
     the notebook reuses the same real batch in every round of a step, and so does this file;
  2. one G step on the mean over i of L_G(D_i), independent z per i.
loss "gan": BCE-with-logits, n_d = 2, Adam(1e-4, 0.5, 0.999) (the DCGAN notebooks);
loss "wgan-gp": critic loss + 10 * GP per D_i, n_d = 4, RMSprop(1e-5) (the WGAN-GP notebooks).
`discriminate` returns the max over the D_i (or the mean of their probabilities / scores).

Budget (digits, 8000 generator steps, batch 64 per shard): the notebooks train 1500 epochs of
1400/64 = 21 steps (31,500 generator steps) with k = 5 on 7000 MNIST members. Here k = 4, because each
shard must hold a whole batch (300/5 = 60 < 64; 300/4 = 75), and the k discriminators run as one batched
stack so the n_d * k discriminator updates per step cost about as much as n_d.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast

import torch
import torch.nn.functional as F

from mia_bench.data.datasets import DataInfo
from mia_bench.defenses.base import Defense, register
from mia_bench.nets.losses import gradient_penalty
from mia_bench.nets.mlp import MLPGenerator
from mia_bench.nets.stacked import StackedMLPDiscriminator, split_rows, stacked_bce


@dataclass
class PARGANConfig:
    n_discriminators: int = 4  # k disjoint shards, one discriminator each (notebooks: 5)
    loss: str = "gan"  # "gan" (BCE) | "wgan-gp"
    n_d: int = 1  # discriminator rounds per generator step (notebooks: 2 for gan, 4 for wgan-gp)
    gp_weight: float = 10.0
    optimizer: str = "adam"  # "adam" | "rmsprop" (the WGAN-GP notebooks)
    lr_g: float = 1e-4
    lr_d: float = 1e-4
    beta1: float = 0.5
    beta2: float = 0.999
    disc_reduce: str = "max"  # white-box score over the D_i: "max" | "mean"
    z_dim: int = 32
    g_hidden: list[int] = field(default_factory=lambda: [128, 256])
    d_hidden: list[int] = field(default_factory=lambda: [256, 128])


@register("pargan")
class PARGAN(Defense):
    """One generator against k discriminators, each trained only on its own shard of the members."""

    Config = PARGANConfig
    player_order = ("generator", "discriminators")

    def __init__(self, *, config: PARGANConfig, info: DataInfo, n_train: int) -> None:
        super().__init__(config=config, info=info, n_train=n_train)
        for key, value, allowed in (("loss", config.loss, ("gan", "wgan-gp")),
                                    ("optimizer", config.optimizer, ("adam", "rmsprop")),
                                    ("disc_reduce", config.disc_reduce, ("max", "mean"))):
            if value not in allowed:
                raise ValueError(f"defense.{key} must be one of {allowed}, got {value!r}")
        if config.n_discriminators < 1 or config.n_d < 1:
            raise ValueError("defense.n_discriminators and defense.n_d must be >= 1")
        self.players["generator"] = MLPGenerator(z_dim=config.z_dim, out_shape=info.shape, hidden=config.g_hidden)
        self.players["discriminators"] = StackedMLPDiscriminator(k=config.n_discriminators, in_shape=info.shape,
                                                                 hidden=config.d_hidden)

    @property
    def n_shards(self) -> int:
        return self.config.n_discriminators

    @property
    def discriminator_is_logit(self) -> bool:
        return self.config.loss == "gan"

    def discriminate(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """(N,) float, higher = more member-like: max over the D_i, or their mean (of probabilities for gan)."""
        scores = cast(StackedMLPDiscriminator, self.players["discriminators"]).every(x)  # (k, N)
        if self.config.disc_reduce == "max":
            return scores.max(0).values
        if self.config.loss == "gan":  # logit of the mean probability, in log space
            return torch.logsumexp(F.logsigmoid(scores), 0) - torch.logsumexp(F.logsigmoid(-scores), 0)
        return scores.mean(0)

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        c = self.config
        params = (self.players["generator"].parameters(), self.players["discriminators"].parameters())
        if c.optimizer == "rmsprop":
            return [torch.optim.RMSprop(params[0], lr=c.lr_g), torch.optim.RMSprop(params[1], lr=c.lr_d)]
        return [torch.optim.Adam(params[0], lr=c.lr_g, betas=(c.beta1, c.beta2)),
                torch.optim.Adam(params[1], lr=c.lr_d, betas=(c.beta1, c.beta2))]

    def fakes(self, k: int, b: int) -> torch.Tensor:
        """(k, B, *shape): an independent batch of fakes for each discriminator."""
        return self.players["generator"](self.draw_latent(k * b)).view(k, b, *self.info.shape)

    def critic_loss(self, x: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """Sum over the k members of each D_i's loss on (its shard's x_i, its fakes_i); x, fake: (k, B, ...)."""
        D = self.players["discriminators"]
        if self.config.loss == "gan":  # one pass over [real | fake] per member
            logits = D(torch.cat([x, fake], dim=1))
            b = x.shape[1]
            return stacked_bce(logits[:, :b], 1.0) + stacked_bce(logits[:, b:], 0.0)
        k, b = x.shape[:2]
        gp = gradient_penalty(lambda v: D(v.view(k, b, -1)).flatten(), x.flatten(0, 1), fake.flatten(0, 1),
                              reduce=False).view(k, b).mean(1).sum()
        return (D(fake).mean(1) - D(x).mean(1)).sum() + self.config.gp_weight * gp

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        k = self.config.n_discriminators
        x = split_rows(batch["x"], k)  # (k, B, *shape): slot i holds shard i's records, seen by D_i only
        b = x.shape[1]
        for _ in range(self.config.n_d):
            with self.playing("discriminators") as step:
                loss_d = self.critic_loss(x, self.fakes(k, b).detach())
                step(loss_d)
        with self.playing("generator") as step:
            scores = self.players["discriminators"](self.fakes(k, b))  # (k, B)
            per_d = F.softplus(-scores).mean(1) if self.config.loss == "gan" else -scores.mean(1)
            loss_g = per_d.mean()
            step(loss_g)
        if self.should_log(batch_idx):
            self.log_dict({"loss/d": loss_d.detach() / k, "loss/g": loss_g.detach()})
