"""k independent MLP generators or discriminators evaluated as one batched stack (privGAN, PAR-GAN).

Member i of a stack is the same network as `MLPGenerator` / `MLPDiscriminator` (same layers, same init
law), with its own parameters held in slice i of each (k, ...) weight. One batched matmul runs all k
members at once, which is what makes k-player games affordable on 2 CPU cores. Training a stack with a
single Adam on the summed losses sum_i L_i is exactly k independent Adams, one per member: Adam is
elementwise, and slice i's gradient comes from L_i alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from math import prod

import torch
import torch.nn.functional as F
from torch import nn

from mia_bench.nets.mlp import projection_logit, with_labels


class StackedLinear(nn.Module):
    """k independent linear maps: x (k, B, in) -> (k, B, out). Slice i is initialised like nn.Linear."""

    def __init__(self, k: int, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(k, out_features, in_features))
        self.bias = nn.Parameter(torch.empty(k, out_features)) if bias else None
        bound = 1 / math.sqrt(in_features)
        for i in range(k):
            nn.init.kaiming_uniform_(self.weight[i], a=math.sqrt(5))
            if self.bias is not None:
                nn.init.uniform_(self.bias[i], -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.bmm(x, self.weight.transpose(1, 2))
        return out if self.bias is None else out + self.bias.unsqueeze(1)


def _mlp(k: int, width: int, hidden: Sequence[int], act: nn.Module) -> tuple[nn.Sequential, int]:
    layers: list[nn.Module] = []
    for h in hidden:
        layers += [StackedLinear(k, width, h), act]
        width = h
    return nn.Sequential(*layers), width


class StackedMLPGenerator(nn.Module):
    """k generators: z (k, B, z_dim) [+ y (k, B, C) label vectors] -> (k, B, *out_shape) in [-1, 1]."""

    def __init__(self, *, k: int, z_dim: int, out_shape: Sequence[int], n_classes: int = 0,
                 hidden: Sequence[int] = (128, 256)) -> None:
        super().__init__()
        self.k, self.z_dim, self.n_classes, self.out_shape = k, z_dim, n_classes, tuple(out_shape)
        self.body, width = _mlp(k, z_dim + n_classes, hidden, nn.ReLU())
        self.out = StackedLinear(k, width, prod(self.out_shape))

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        z = with_labels(z, y, self.n_classes)
        return torch.tanh(self.out(self.body(z))).view(self.k, z.shape[1], *self.out_shape)


class StackedMLPDiscriminator(nn.Module):
    """k discriminators: x (k, B, *shape) [+ y (k, B, C)] -> (k, B) logits; higher = judged more real.

    Conditioning is the projection term <W_i y, phi_i(x)>, as in `MLPDiscriminator`. No normalisation.
    """

    def __init__(self, *, k: int, in_shape: Sequence[int], n_classes: int = 0,
                 hidden: Sequence[int] = (256, 128)) -> None:
        super().__init__()
        self.k, self.n_classes = k, n_classes
        self.body, width = _mlp(k, prod(in_shape), hidden, nn.LeakyReLU(0.2))
        self.head = StackedLinear(k, width, 1)
        self.embed_y = StackedLinear(k, n_classes, width, bias=False) if n_classes else None

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        phi = self.body(x.flatten(2))
        logit = self.head(phi).squeeze(2)
        return projection_logit(logit, self.embed_y, phi, y)

    def every(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """All k members on the same records: x (N, *shape) [+ y (N, C)] -> (k, N)."""
        xs = x.flatten(1).unsqueeze(0).expand(self.k, -1, -1)
        ys = None if y is None else y.unsqueeze(0).expand(self.k, -1, -1)
        return self(xs, ys)


def split_rows(x: torch.Tensor, k: int) -> torch.Tensor:
    """(k*B, ...) shard-major rows -> (k, B, ...), the layout the data module serves sharded batches in."""
    return x.view(k, x.shape[0] // k, *x.shape[1:])


def stacked_bce(logits: torch.Tensor, target: float) -> torch.Tensor:
    """Sum over the k members of each member's mean BCE against `target`: (k, B) -> scalar."""
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target), reduction="none").mean(1).sum()
