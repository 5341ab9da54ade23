"""`none`: the unprotected GAN baseline (ALGORITHMS.md section 1), and the `independent` control.

loss="gan": DCGAN-style non-saturating game, one D step then one G step per batch (same fake batch).
loss="wgan-gp": WGAN-GP critic with gradient penalty, `n_critic` critic batches per G step.
conditional=True: G(z, y) and a projection discriminator D(x, y); fake labels follow the class prior.
net: the players come from nets.factory.build_players ("auto": MLPs for 8x8 digits and tables, DCGAN-style
conv nets for images of side >= 28).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from mia_bench.data.datasets import DataInfo
from mia_bench.defenses.base import Defense, register
from mia_bench.nets.factory import build_players
from mia_bench.nets.losses import gradient_penalty, ns_d_loss, ns_g_loss, wgan_d_loss, wgan_g_loss


@dataclass
class GANConfig:
    loss: str = "gan"  # "gan" (non-saturating) | "wgan-gp"
    conditional: bool = False
    net: str = "auto"  # "auto" | "mlp" | "conv" (nets/factory.py)
    z_dim: int = 32
    g_hidden: list[int] = field(default_factory=lambda: [128, 256])
    d_hidden: list[int] = field(default_factory=lambda: [256, 128])
    g_channels: int = 64  # conv nets: DCGAN widths
    d_channels: int = 64
    d_norm: str = "none"  # "none" | "layer" (no BatchNorm in D: WGAN-GP and DP need per-sample independence)
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    n_critic: int = 5  # wgan-gp: critic batches per generator step
    gp_weight: float = 10.0  # wgan-gp
    real_label: float = 1.0  # gan: < 1 is one-sided label smoothing


@register("none")
class UnprotectedGAN(Defense):
    """Unprotected GAN baseline (non-saturating DCGAN-style or WGAN-GP, optionally conditional)."""

    Config = GANConfig

    def __init__(self, *, config: GANConfig, info: DataInfo, n_train: int) -> None:
        super().__init__(config=config, info=info, n_train=n_train)
        if config.loss not in ("gan", "wgan-gp"):
            raise ValueError(f"defense.loss must be 'gan' or 'wgan-gp', got {config.loss!r}")
        self.conditional = config.conditional
        c = info.n_classes if config.conditional else 0
        self.players["generator"], self.players["discriminator"] = build_players(info, config, n_classes=c)

    @property
    def batches_per_generator_step(self) -> int:
        return self.config.n_critic if self.config.loss == "wgan-gp" else 1

    @property
    def discriminator_is_logit(self) -> bool:
        return self.config.loss == "gan"

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        c = self.config
        betas = (c.beta1, c.beta2)
        return [torch.optim.Adam(self.players["generator"].parameters(), lr=c.lr_g, betas=betas),
                torch.optim.Adam(self.players["discriminator"].parameters(), lr=c.lr_d, betas=betas)]

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        D = self.players["discriminator"]
        x, n, y = batch["x"], batch["x"].shape[0], self.batch_labels(batch)
        fake, yf = self.draw_fakes(n)
        wgan = self.config.loss == "wgan-gp"
        with self.playing("discriminator") as step:
            if wgan:
                gp = gradient_penalty(D, x, fake, y)  # at (x_hat, y) with the real sample's label
                loss_d = wgan_d_loss(D(x, y), D(fake.detach(), yf)) + self.config.gp_weight * gp
            else:
                loss_d = ns_d_loss(D(x, y), D(fake.detach(), yf), self.config.real_label)
            step(loss_d)
        if wgan and (batch_idx + 1) % self.config.n_critic:
            return
        with self.playing("generator") as step:
            if wgan:  # fresh fakes after n_critic critic steps
                fake, yf = self.draw_fakes(n)
            loss_g = wgan_g_loss(D(fake, yf)) if wgan else ns_g_loss(D(fake, yf))
            step(loss_g)
        if self.should_log(batch_idx):
            self.log_dict({"loss/d": loss_d.detach(), "loss/g": loss_g.detach()})


@register("independent")
class IndependentControl(UnprotectedGAN):
    """The `none` recipe trained on the reference set, disjoint from members and non-members.

    It has seen neither, so every attack must score it near AUC 0.5."""

    train_role = "reference"
    is_control = True
