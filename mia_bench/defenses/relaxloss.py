"""`relaxloss`: RelaxLoss (Chen, Yu, Fritz, ICLR 2022) on a GAN discriminator's real-sample loss, ALGORITHMS.md 2.6.

The classifier schedule is read in the official code (DingfanChen/RelaxLoss,
source/nonimage/defense/relaxloss.py); moving it onto D's real-sample loss is our adaptation [rec], since
the mixup paper uses "RelaxLoss" as a GAN baseline without details. With L_real = mean BCE(l(x), 1) over the
member batch and L_fake = mean BCE(l(G(z)), 0):

    even phase:               L_D = |L_real - alpha| + L_fake   (descent above alpha, ascent below)
    odd phase, L_real > alpha: L_D = L_real + L_fake
    odd phase, L_real <= alpha: L_D = BCE(l(x), t) + L_fake,  t = min(sigmoid(l(x)), upper) detached
                                (posterior flattening: only members judged more real than `upper` move)

so D's loss on members hovers around `alpha` instead of falling towards 0. The generator is unchanged.

Alternation (`alternate`, stored in the run's config): "epoch" (default, as the official code) flips the
phase once per epoch-equivalent, i.e. every time the discriminator has seen as many member records as the
training set holds (counted over all processes); "step" flips it on every discriminator step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from mia_bench.data.datasets import DataInfo
from mia_bench.defenses.base import register
from mia_bench.defenses.mlp_game import MLPGame, MLPGameConfig
from mia_bench.nets.losses import ns_g_loss, real_loss


def relaxed_member_loss(logits: torch.Tensor, phase: int | torch.Tensor, alpha: float, upper: float) -> torch.Tensor:
    """RelaxLoss on member logits (..., B) -> (...): |L - alpha| in phase 0; in phase 1 L while L > alpha, else
    posterior flattening towards min(sigmoid(l), upper). L = mean BCE(l, 1); `phase` broadcasts to (...)."""
    loss = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits), reduction="none").mean(-1)
    target = torch.sigmoid(logits).detach().clamp(max=upper)
    flat = F.binary_cross_entropy_with_logits(logits, target, reduction="none").mean(-1)
    return torch.where(torch.as_tensor(phase) == 0, (loss - alpha).abs(), torch.where(loss > alpha, loss, flat))


@dataclass
class RelaxLossConfig(MLPGameConfig):
    alpha: float = 0.5  # target member BCE (nats); digits pilot (`none`, seed 0): 0.33 members, 1.59 held out
    upper: float = 0.7  # flattening bound on sigmoid(l(x)); 1 would make flattening a no-op
    alternate: str = "epoch"  # "epoch" (epoch-equivalents, as the official code) | "step"


@register("relaxloss")
class RelaxLossGAN(MLPGame):
    """Non-saturating GAN whose discriminator follows RelaxLoss's schedule on its member loss."""

    Config = RelaxLossConfig

    def __init__(self, *, config: RelaxLossConfig, info: DataInfo, n_train: int) -> None:
        super().__init__(config=config, info=info, n_train=n_train)
        if config.alternate not in ("epoch", "step"):
            raise ValueError(f"defense.alternate must be 'epoch' or 'step', got {config.alternate!r}")
        if config.alpha <= 0 or not 0 < config.upper <= 1:
            raise ValueError(f"need defense.alpha > 0 and 0 < defense.upper <= 1, got {config.alpha}, {config.upper}")

    def phase(self, batch_idx: int, batch_rows: int) -> int:
        """0 (even: |L - alpha|) or 1 (odd: descent or flattening) for discriminator step `batch_idx`."""
        if self.config.alternate == "step":
            return batch_idx % 2
        world = self.trainer.world_size if self._trainer is not None else 1
        return (batch_idx * batch_rows * world // self.n_train) % 2

    def relaxed_real_loss(self, real_logits: torch.Tensor, phase: int) -> torch.Tensor:
        """RelaxLoss on (B,) member logits: a scalar whose gradient keeps mean BCE(l, 1) near alpha."""
        return relaxed_member_loss(real_logits, phase, self.config.alpha, self.config.upper)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        D = self.players["discriminator"]
        x, n, y = batch["x"], batch["x"].shape[0], self.batch_labels(batch)
        fake, yf = self.draw_fakes(n)
        with self.playing("discriminator") as step:
            real_logits = D(x, y)
            loss_real = self.relaxed_real_loss(real_logits, self.phase(batch_idx, n))
            loss_d = loss_real + F.softplus(D(fake.detach(), yf)).mean()
            step(loss_d)
        with self.playing("generator") as step:
            loss_g = ns_g_loss(D(fake, yf))
            step(loss_g)
        if self.should_log(batch_idx):
            self.log_dict({"loss/d": loss_d.detach(), "loss/g": loss_g.detach(),
                           "relaxloss/real_bce": real_loss(real_logits.detach())})
