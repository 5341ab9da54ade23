"""`memorizer` control: a perfectly overfit "model" (TAPAS's raw generator, with noise).

It releases every member (round-robin, when n >= members) plus Gaussian noise (`noise` std, in data units of the [-1, 1] scale), and its
"discriminator" scores closeness to the nearest member. Its "generator" maps a latent point in data space
to a softmax-weighted blend of the members near it (temperature `tau`), so latent-search attacks can
reconstruct members exactly. Every attack whose access allows it must score this control near AUC 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mia_bench.data.datasets import DataInfo
from mia_bench.defenses.base import Defense, Released, register
from mia_bench.nets.distance import nearest_distance, pairwise_sq_dist


@dataclass
class MemorizerConfig:
    noise: float = 0.05
    tau: float = 0.05


@register("memorizer")
class Memorizer(Defense):
    """Releases noisy copies of its members; its discriminator scores closeness to the nearest member."""

    Config = MemorizerConfig
    player_order = ()
    trainable = False
    is_control = True
    memory: torch.Tensor  # buffer (n_train, *shape)
    memory_y: torch.Tensor  # buffer (n_train,)

    def __init__(self, *, config: MemorizerConfig, info: DataInfo, n_train: int) -> None:
        super().__init__(config=config, info=info, n_train=n_train)
        self.register_buffer("memory", torch.zeros(n_train, *info.shape))
        self.register_buffer("memory_y", torch.zeros(n_train, dtype=torch.int64))

    @property
    def discriminator_is_logit(self) -> bool:
        return False  # minus the distance to the nearest member

    @property
    def z_dim(self) -> int:
        return self.info.dim

    def prepare(self, x: torch.Tensor, y: torch.Tensor) -> None:
        super().prepare(x, y)
        self.memory.copy_(x)
        self.memory_y.copy_(y)

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        return []

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        return None

    def generate(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        weights = torch.softmax(-pairwise_sq_dist(z.flatten(1), self.memory.flatten(1)) / self.config.tau, dim=1)
        return (weights @ self.memory.flatten(1)).view(z.shape[0], *self.info.shape)

    def discriminate(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        dist, _ = nearest_distance(x, self.memory)
        return -dist.to(x.device)

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator, labels: torch.Tensor | None = None) -> Released:
        # round-robin over shuffled members: with n >= n_train every member is released at least once
        reps = -(-n // self.n_train)
        idx = torch.cat([torch.randperm(self.n_train, generator=generator) for _ in range(reps)])[:n]
        noise = torch.randn(n, *self.info.shape, generator=generator) * self.config.noise
        return Released(x=(self.memory.cpu()[idx] + noise).clamp(-1, 1), y=self.memory_y.cpu()[idx])
