"""The MLP generator/discriminator pair and its Adam optimizers, shared by the defenses that change only
the game (megan, mimgan, mpgan, mixup, relaxloss); each adds its own fields, players and optimizers."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from mia_bench.data.datasets import DataInfo
from mia_bench.defenses.base import Defense
from mia_bench.nets.mlp import MLPDiscriminator, MLPGenerator


@dataclass
class MLPGameConfig:
    conditional: bool = False
    z_dim: int = 32
    g_hidden: list[int] = field(default_factory=lambda: [128, 256])
    d_hidden: list[int] = field(default_factory=lambda: [256, 128])
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999


class MLPGame(Defense):
    """A defense whose "generator" and "discriminator" are nets/mlp.py's pair (conditional on label vectors
    when `config.conditional`), each trained by Adam with the config's rates and betas."""

    def __init__(self, *, config: MLPGameConfig, info: DataInfo, n_train: int) -> None:
        super().__init__(config=config, info=info, n_train=n_train)
        self.conditional = config.conditional
        c = info.n_classes if config.conditional else 0
        self.players["generator"] = MLPGenerator(z_dim=config.z_dim, out_shape=info.shape, n_classes=c,
                                                 hidden=config.g_hidden)
        self.players["discriminator"] = MLPDiscriminator(in_shape=info.shape, n_classes=c, hidden=config.d_hidden)

    def adam(self, player: str, lr: float) -> torch.optim.Adam:
        return torch.optim.Adam(self.players[player].parameters(), lr=lr, betas=(self.config.beta1, self.config.beta2))

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        """Generator then discriminator; a defense with more players appends theirs in `player_order`."""
        return [self.adam("generator", self.config.lr_g), self.adam("discriminator", self.config.lr_d)]
