"""`mixup`: mixup training for GANs (Ji, Hu, Xiang, Zhou; IEEE INFOCOM 2023), ALGORITHMS.md 2.3.

The algorithm follows the paper's slides [seed]: a conditional WGAN whose critic never sees a raw member.
For each loader batch of members (x, y):

    x_mix = lam x1 + (1 - lam) x2,   y_mix = lam onehot(y1) + (1 - lam) onehot(y2),   lam ~ Beta(alpha, alpha)
    fake  = G(z, y_mix)
    L_D   = -D(x_mix, y_mix) + D(fake, y_mix) + gp_weight * GP(x_hat, y_mix),  x_hat = e x_mix + (1 - e) fake
    every n_g critic batches:  L_G = -D(G(z', y_mix), y_mix)   (fresh fakes, with gradient)

Not in the slides [rec]: the WGAN-GP penalty (the slides show no Lipschitz constraint); lam drawn per
sample; x2 = the batch cyclically shifted by a random offset in 1..B-1, a random pairing (the loader
shuffles) with no record paired with itself, so every critic input is a genuine mix. Conditioning goes
through linear maps on the (B, C) label vector, so soft labels work; released samples use one-hot labels
(Defense.sample). conditional=False drops y (the unconditional case).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from mia_bench.data.datasets import DataInfo
from mia_bench.defenses.base import register
from mia_bench.defenses.mlp_game import MLPGame, MLPGameConfig
from mia_bench.nets.losses import gradient_penalty, wgan_d_loss, wgan_g_loss


@dataclass
class MixupConfig(MLPGameConfig):
    alpha: float = 1.0  # Beta(alpha, alpha) mixing weights; sweep {0.2, 0.5, 1}
    n_g: int = 2  # critic batches per generator step (slides: unstated; 5 triples the digits run time)
    gp_weight: float = 10.0
    conditional: bool = True  # the slides' conditional WGAN; its rates and betas (WGAN-GP's usual ones):
    lr_g: float = 1e-4
    lr_d: float = 1e-4
    beta2: float = 0.9


def mix_batch(x: torch.Tensor, y: torch.Tensor | None, lam: torch.Tensor,
              shift: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Mix each record with the one `shift` places later: x (B, *shape), y (B, C) label vectors or None,
    lam (B,) weights of the record itself -> (x_mix (B, *shape), y_mix (B, C) or None)."""
    partner = torch.roll(torch.arange(x.shape[0], device=x.device), -shift)
    w = lam.view(-1, *([1] * (x.dim() - 1))).to(x.dtype)
    x_mix = w * x + (1 - w) * x[partner]
    y_mix = None if y is None else lam[:, None].to(y.dtype) * y + (1 - lam[:, None].to(y.dtype)) * y[partner]
    return x_mix, y_mix


@register("mixup")
class MixupGAN(MLPGame):
    """Conditional WGAN-GP trained only on mixed pairs of members with mixed soft labels."""

    Config = MixupConfig

    def __init__(self, *, config: MixupConfig, info: DataInfo, n_train: int) -> None:
        super().__init__(config=config, info=info, n_train=n_train)
        if config.alpha <= 0 or config.n_g < 1:
            raise ValueError(f"need defense.alpha > 0 and defense.n_g >= 1, got {config.alpha}, {config.n_g}")
        if config.conditional and info.n_classes < 1:
            raise ValueError("mixup with conditional=true needs a labelled dataset; set defense.conditional=false")

    @property
    def batches_per_generator_step(self) -> int:
        return self.config.n_g

    @property
    def discriminator_is_logit(self) -> bool:
        return False  # a WGAN critic: unbounded scores, not probability logits

    def draw_mix(self, n: int) -> tuple[torch.Tensor, int]:
        """(n,) weights lam ~ Beta(alpha, alpha) on self.device, and a partner shift in 1..n-1."""
        if n < 2:
            raise ValueError("mixup needs batches of at least 2 records; raise trainer.batch_size")
        a = torch.full((n,), float(self.config.alpha), device=self.device)
        lam = torch.distributions.Beta(a, a).sample()
        return lam, int(torch.randint(1, n, ()).item())

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        G, D = self.players["generator"], self.players["discriminator"]
        x, n = batch["x"], batch["x"].shape[0]
        y = F.one_hot(batch["y"], self.info.n_classes).to(x.dtype) if self.conditional else None
        lam, shift = self.draw_mix(n)
        x_mix, y_mix = mix_batch(x, y, lam, shift)
        with self.playing("discriminator") as step:
            fake = G(self.draw_latent(n), y_mix).detach()
            gp = gradient_penalty(D, x_mix, fake, y_mix)  # at (x_hat, y_mix)
            loss_d = wgan_d_loss(D(x_mix, y_mix), D(fake, y_mix)) + self.config.gp_weight * gp
            step(loss_d)
        if (batch_idx + 1) % self.config.n_g:
            return
        with self.playing("generator") as step:  # fresh fakes, conditioned on the last batch's mixed labels
            loss_g = wgan_g_loss(D(G(self.draw_latent(n), y_mix), y_mix))
            step(loss_g)
        if self.should_log(batch_idx // self.config.n_g):  # counted in generator steps
            self.log_dict({"loss/d": loss_d.detach(), "loss/g": loss_g.detach(), "mixup/gp": gp.detach()})
