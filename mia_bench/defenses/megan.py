"""`megan`: maximum-entropy GAN (Shateri, Messina, Labeau, Piantanida; arXiv 2311.03172), ALGORITHMS.md 2.2.

RECONSTRUCTED from the paper's abstract only: the abstract says MEGAN is "inspired by Fano's inequality"
and "requires only a simple modification in the loss function"; the loss below is our most plausible
reading, not the paper's verified equation (records carry the `reconstructed` label).

Fano for the binary membership variable observed through T = D(x) gives h_b(P_e) >= H(M | T): the more
uncertain D is on its training records, the higher the error floor of any attack that reads D. So the
discriminator pays for confident outputs on members:

    L_D = softplus(-l(x)) + softplus(l(G(z)))  -  lambda_h * H_b(sigmoid(l(x))),   x in D_mem
    L_G = softplus(-l(G(z)))                                                       (unchanged)

With lambda_h = 1 the real-sample term becomes -l (1 - sigmoid(l)), minimised at sigmoid(l) ~ 0.78, so D
can no longer grow its member logits without bound. One D step then one G step per batch (same fakes).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mia_bench.data.datasets import DataInfo
from mia_bench.defenses.base import register
from mia_bench.defenses.mlp_game import MLPGame, MLPGameConfig
from mia_bench.nets.losses import binary_entropy_from_logits, ns_d_loss, ns_g_loss


@dataclass
class MEGANConfig(MLPGameConfig):
    lambda_h: float = 1.0  # weight of the entropy bonus on D's member outputs; sweep {0.1, 0.5, 1}


@register("megan")
class MEGAN(MLPGame):
    """Non-saturating GAN whose discriminator maximises the binary entropy of its outputs on members.

    Reconstructed from the abstract of arXiv 2311.03172 (see the module docstring)."""

    Config = MEGANConfig
    reconstructed = True

    def __init__(self, *, config: MEGANConfig, info: DataInfo, n_train: int) -> None:
        super().__init__(config=config, info=info, n_train=n_train)
        if config.lambda_h < 0:
            raise ValueError(f"defense.lambda_h must be >= 0, got {config.lambda_h}")

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        D = self.players["discriminator"]
        x, n, y = batch["x"], batch["x"].shape[0], self.batch_labels(batch)
        fake, yf = self.draw_fakes(n)
        with self.playing("discriminator") as step:
            real_logits = D(x, y)
            entropy = binary_entropy_from_logits(real_logits).mean()  # nats, at most log 2
            loss_d = ns_d_loss(real_logits, D(fake.detach(), yf)) - self.config.lambda_h * entropy
            step(loss_d)
        with self.playing("generator") as step:
            loss_g = ns_g_loss(D(fake, yf))
            step(loss_g)
        if self.should_log(batch_idx):
            self.log_dict({"loss/d": loss_d.detach(), "loss/g": loss_g.detach(), "megan/entropy": entropy.detach()})
