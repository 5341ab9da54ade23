"""`mpgan`: membership-privacy-preserving GAN (Ha, Hwang, Jang, Bae, Yoon; BMVC 2022), ALGORITHMS.md 2.1.

RECONSTRUCTED from the poster, which states only: a three-player game "(G, D) vs. M"; M is a membership
inference network whose input Q(x) is "a response from the internal activation of D"; a reference set
X_re serves as pseudo non-members. The losses below are adversarial regularisation in the style of Nasr
et al. (CCS 2018) moved onto D [rec]; records carry the `reconstructed` label.

    Q(x)  = concat of D's hidden-block activations (blocks `q_layers`; MLP features need no pooling)
    L_M   = E_{x in X_tr} log M(Q(x)) + E_{x in X_re} log(1 - M(Q(x)))           (M maximises, D frozen)
    L_D   = softplus(-l(x)) + softplus(l(G(z))) + lambda_m * L_M                  (D minimises, M frozen)
            m_term="gain": only Nasr's one-sided gain lambda_m * E_{x in X_tr} log M(Q(x))
    L_G   = softplus(-l(G(z)))                                                    (G never sees M)

Per loader batch (members x, reference ref_x, equal sizes): `k_m` M steps, one D step, one G step.
`discriminate()` stays D's logit: M is the defender's internal adversary and is never released.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from mia_bench.data.datasets import DataInfo
from mia_bench.defenses.base import register
from mia_bench.defenses.mlp_game import MLPGame, MLPGameConfig
from mia_bench.nets.losses import ns_d_loss, ns_g_loss
from mia_bench.nets.mlp import MLPDiscriminator


@dataclass
class MPGANConfig(MLPGameConfig):
    lambda_m: float = 1.0  # weight of M's log-likelihood in D's loss; sweep {0.1, 1, 3}
    k_m: int = 1  # M steps per D step
    m_term: str = "both"  # "both": full L_M in D's loss | "gain": Nasr's members-only gain term
    q_layers: list[int] = field(default_factory=lambda: [-2, -1])  # D blocks whose activations form Q(x)
    m_hidden: list[int] = field(default_factory=lambda: [128, 64])
    lr_m: float = 2e-4


def _mlp_head(width: int, hidden: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for h in hidden:
        layers += [nn.Linear(width, h), nn.LeakyReLU(0.2)]
        width = h
    return nn.Sequential(*layers, nn.Linear(width, 1))


@register("mpgan")
class MPGAN(MLPGame):
    """Three players: G, D, and a membership network M on D's activations that D is trained to defeat.

    Reconstructed from the BMVC 2022 poster (see the module docstring)."""

    Config = MPGANConfig
    player_order = ("generator", "discriminator", "membership")
    needs_reference = True
    reconstructed = True

    def __init__(self, *, config: MPGANConfig, info: DataInfo, n_train: int) -> None:
        super().__init__(config=config, info=info, n_train=n_train)
        if config.m_term not in ("both", "gain"):
            raise ValueError(f"defense.m_term must be 'both' or 'gain', got {config.m_term!r}")
        if config.k_m < 1 or config.lambda_m < 0:
            raise ValueError(f"need defense.k_m >= 1 and defense.lambda_m >= 0, got {config.k_m}, {config.lambda_m}")
        depth = len(config.d_hidden)
        if not config.q_layers or any(not -depth <= i < depth for i in config.q_layers):
            raise ValueError(f"defense.q_layers {config.q_layers} must index the {depth} blocks of defense.d_hidden")
        q_dim = sum(config.d_hidden[i] for i in config.q_layers)
        self.players["membership"] = _mlp_head(q_dim, config.m_hidden)

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        return [*super().configure_optimizers(), self.adam("membership", self.config.lr_m)]

    def q(self, x: torch.Tensor) -> torch.Tensor:
        """Q(x): (B, *shape) -> (B, sum of the chosen block widths), D's internal activations."""
        D: MLPDiscriminator = self.players["discriminator"]  # type: ignore[assignment]
        feats = D.features(x)
        return torch.cat([feats[i] for i in self.config.q_layers], dim=1)

    def membership_logits(self, x: torch.Tensor) -> torch.Tensor:
        """(B,) M's pre-sigmoid logit on D's activations, higher = judged a member (training record)."""
        return self.players["membership"](self.q(x)).squeeze(1)

    def membership_log_likelihood(self, x: torch.Tensor, ref_x: torch.Tensor) -> torch.Tensor:
        """L_M on a balanced batch (members x, reference ref_x): M maximises it, D minimises it."""
        gain = -F.softplus(-self.membership_logits(x)).mean()  # E log M(Q(x)), x in X_tr
        if self.config.m_term == "gain":
            return gain
        return gain - F.softplus(self.membership_logits(ref_x)).mean()  # + E log(1 - M(Q(x))), X_re

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        D = self.players["discriminator"]
        x, n, ref_x, y = batch["x"], batch["x"].shape[0], batch["ref_x"], self.batch_labels(batch)
        for _ in range(self.config.k_m):
            with self.playing("membership") as step:  # D frozen: Q carries no gradient into D
                m_x, m_ref = self.membership_logits(x), self.membership_logits(ref_x)
                loss_m = F.softplus(-m_x).mean() + F.softplus(m_ref).mean()  # = -L_M (full, balanced)
                step(loss_m)
        fake, yf = self.draw_fakes(n)  # M's steps draw nothing random: same stream as drawing the labels first
        with self.playing("discriminator") as step:  # M frozen
            loss_gan = ns_d_loss(D(x, y), D(fake.detach(), yf))
            loss_d = loss_gan + self.config.lambda_m * self.membership_log_likelihood(x, ref_x)
            step(loss_d)
        with self.playing("generator") as step:
            loss_g = ns_g_loss(D(fake, yf))
            step(loss_g)
        if self.should_log(batch_idx):
            acc = ((m_x > 0).float().mean() + (m_ref <= 0).float().mean()) / 2
            self.log_dict({"loss/d": loss_d.detach(), "loss/g": loss_g.detach(), "loss/m": loss_m.detach(),
                           "mpgan/m_accuracy": acc.detach()})
