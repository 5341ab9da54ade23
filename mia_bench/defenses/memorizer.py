"""`memorizer` control: a perfectly overfit "model" (TAPAS's raw generator, with noise).

Release: every member (round-robin over shuffled members, so n >= members releases each at least once) plus
Gaussian noise, clamped to [-1, 1]. The noise is scaled to the data, not fixed per feature [rec]: its
expected L2 norm is `noise` times the median distance from a member to its nearest *other* member
(leave-one-out over the members, measured in `prepare`). That distance is, in distribution, the distance
from a record outside the training set to the training set (members and non-members are drawn alike), so
it is the nearest-neighbour scale measured on data outside the members without the model holding any
(a model trained inside a shadow bank has no reference role); a noisy copy then stays much closer to its
member than any non-member is, on 64-pixel digits (noise 0.15 of 2.5) and on a 108-feature one-hot table
(0.15 of 0.4) alike. A fixed per-feature std would grow with sqrt(width) and swamp wide tables.

Generator: a real latent, searched like any other target's. z = (u, v) ~ N(0, I), u in R^k (k =
`latent_dim`) selects a member and v in R^d (d = record size) is its noise:
  G(u, v) = clamp(sum_j softmax_j(-||u - a_j||^2 / tau) m_j + sigma v, -1, 1)   (B, *shape)
The anchors a_j are the members' whitened PCA coordinates (top k components of the members), so nearby
latents hold similar members and a latent search can walk towards a record by optimisation; the softmax
(temperature `tau` times the anchors' median squared nearest-anchor distance) is the smooth relaxation of
"the member of the nearest anchor", low enough that G(a_j, 0) is m_j up to near-duplicate anchors, and
smooth enough that gradients (and an evolution strategy's steps) cross from one member's region into the
next. The release is that map at the members' own anchors: member idx plus sigma v, v ~ N(0, I).
Discriminator: minus the L2 distance to the nearest member (higher = member).
Every attack whose access allows it must score this control near AUC 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mia_bench.data.datasets import DataInfo
from mia_bench.defenses.base import Defense, Released, register
from mia_bench.nets.distance import nearest_distance, pairwise_sq_dist

_PCA_SEED = 20240601  # the randomised PCA of the anchors is deterministic


@dataclass
class MemorizerConfig:
    noise: float = 0.15  # release noise: expected L2 norm / median leave-one-out nearest-member distance
    latent_dim: int = 8  # k: size of the latent part that selects the member (z_dim = k + record size)
    tau: float = 0.1  # softmax temperature / median squared nearest-anchor distance


def loo_nearest_distance(x: torch.Tensor, *, chunk: int = 1024) -> torch.Tensor:
    """(n,) float64 distance from each record of x (n, ...) to its nearest *other* record."""
    flat = x.flatten(1).double()
    out = []
    for start in range(0, flat.shape[0], chunk):
        d2 = pairwise_sq_dist(flat[start:start + chunk], flat)
        rows = torch.arange(d2.shape[0])
        d2[rows, rows + start] = torch.inf
        out.append(d2.min(1).values.sqrt())
    return torch.cat(out)


@register("memorizer")
class Memorizer(Defense):
    """Releases noisy copies of its members; G maps a latent to a member through smooth anchor regions;
    its discriminator scores closeness to the nearest member."""

    Config = MemorizerConfig
    player_order = ()
    trainable = False
    is_control = True
    memory: torch.Tensor  # buffer (n_train, *shape)
    memory_y: torch.Tensor  # buffer (n_train,)
    anchors: torch.Tensor  # buffer (n_train, k): the members' whitened PCA coordinates
    noise_std: torch.Tensor  # buffer (): sigma, per feature
    temperature: torch.Tensor  # buffer (): tau in squared latent units

    def __init__(self, *, config: MemorizerConfig, info: DataInfo, n_train: int) -> None:
        super().__init__(config=config, info=info, n_train=n_train)
        if config.latent_dim < 1 or config.tau <= 0 or config.noise < 0:
            raise ValueError("memorizer: latent_dim must be >= 1, tau > 0 and noise >= 0")
        self.k = min(config.latent_dim, info.dim, n_train)
        self.register_buffer("memory", torch.zeros(n_train, *info.shape))
        self.register_buffer("memory_y", torch.zeros(n_train, dtype=torch.int64))
        self.register_buffer("anchors", torch.zeros(n_train, self.k))
        self.register_buffer("noise_std", torch.tensor(0.0))
        self.register_buffer("temperature", torch.tensor(1.0))

    @property
    def discriminator_is_logit(self) -> bool:
        return False  # minus the distance to the nearest member

    @property
    def z_dim(self) -> int:
        return self.k + self.info.dim

    def prepare(self, x: torch.Tensor, y: torch.Tensor) -> None:
        super().prepare(x, y)
        self.memory.copy_(x)
        self.memory_y.copy_(y)
        flat = x.flatten(1).double()
        if flat.shape[0] > 1:
            scale = float(loo_nearest_distance(x).median())
            self.noise_std.fill_(self.config.noise * scale / self.info.dim ** 0.5)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_PCA_SEED)
            q = min(self.k + 8, *flat.shape)
            mean = flat.mean(0, keepdim=True)
            _, s, v = torch.pca_lowrank(flat - mean, q=q, center=False, niter=4)
        spread = (s[:self.k] / max(flat.shape[0] - 1, 1) ** 0.5).clamp_min(1e-8)
        coords = (flat - mean) @ v[:, :self.k] / spread  # whitened: unit variance per latent axis
        self.anchors.zero_()
        self.anchors[:, :coords.shape[1]] = coords.float()
        if flat.shape[0] > 1:
            nn2 = pairwise_sq_dist(self.anchors, self.anchors).fill_diagonal_(torch.inf).min(1).values
            positive = nn2[torch.isfinite(nn2) & (nn2 > 0)]
            self.temperature.fill_(self.config.tau * (float(positive.median()) if positive.numel() else 1.0))

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        return []

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        return None

    def generate(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """(B, k + d) latents -> (B, *shape): the softmax blend of members over anchors, plus sigma v."""
        u, v = z[:, :self.k], z[:, self.k:]
        a = self.anchors.to(u.dtype)
        # -||u - a_j||^2 / tau up to the per-row constant ||u||^2 / tau, which the softmax ignores: one addmm
        logits = torch.addmm(-(a * a).sum(1) / self.temperature, u, a.T, alpha=float(2 / self.temperature))
        out = torch.softmax(logits, dim=1) @ self.memory.flatten(1).to(u.dtype) + self.noise_std * v
        return out.clamp(-1, 1).view(z.shape[0], *self.info.shape)

    def discriminate(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        dist, _ = nearest_distance(x, self.memory)
        return -dist.to(x.device)

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator, labels: torch.Tensor | None = None) -> Released:
        """n records (n, *shape): member idx (round-robin over shuffled members) plus sigma v, clamped; the
        generator's map at the members' own anchors, with a hard choice of member."""
        reps = -(-n // self.n_train)
        idx = torch.cat([torch.randperm(self.n_train, generator=generator) for _ in range(reps)])[:n]
        noise = torch.randn(n, *self.info.shape, generator=generator) * self.noise_std.cpu()
        return Released(x=(self.memory.cpu()[idx] + noise).clamp(-1, 1), y=self.memory_y.cpu()[idx])
