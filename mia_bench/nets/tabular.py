"""Generator for tables: an MLP trunk with BatchNorm (medGAN's generator normalises its hidden layers) and
one output head per column type.

Numeric columns (and binary 0/1 codes, encoded as -1/1) get tanh; each one-hot categorical block
(DataInfo.categorical span) gets a softmax at temperature `tau`, mapped to 2p - 1 so that it lives on the
same [-1, 1] scale as the real one-hot vectors. The output stays differentiable (latent-search attacks need
gradients); a low `tau` pushes the blocks towards one-hot. Why BatchNorm: on ±1 codes the plain tanh MLP
saturates and collapses to a single record (measured: 1 distinct row of 600 after 2,000 steps on a
40-code table, against 589 with BatchNorm). It sits in G only; discriminators stay per-sample.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from mia_bench.nets.mlp import with_labels


class TabularGenerator(nn.Module):
    """G(z, y): (B, z_dim) [+ (B, n_classes) label vector] -> (B, dim) in [-1, 1], one-hot blocks as 2p - 1."""

    def __init__(self, *, z_dim: int, dim: int, categorical: Sequence[tuple[int, int]] = (), n_classes: int = 0,
                 hidden: Sequence[int] = (128, 256), tau: float = 0.5) -> None:
        super().__init__()
        spans = sorted((int(a), int(b)) for a, b in categorical)
        if any(b < 1 or a < 0 or a + b > dim for a, b in spans):
            raise ValueError(f"categorical spans {spans} do not fit a record of {dim} columns")
        self.z_dim, self.n_classes, self.out_shape, self.tau = z_dim, n_classes, (dim,), tau
        self.spans = spans
        # the record as consecutive segments (start, size, is_categorical), in column order
        self.segments: list[tuple[int, int, bool]] = []
        pos = 0
        for a, b in spans:
            if a < pos:
                raise ValueError(f"categorical spans {spans} overlap")
            if a > pos:
                self.segments.append((pos, a - pos, False))
            self.segments.append((a, b, True))
            pos = a + b
        if pos < dim:
            self.segments.append((pos, dim - pos, False))
        layers: list[nn.Module] = []
        width = z_dim + n_classes
        for h in hidden:
            layers += [nn.Linear(width, h), nn.BatchNorm1d(h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, dim))
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        z = with_labels(z, y, self.n_classes)
        h = self.net(z)
        return torch.cat([2 * torch.softmax(h[:, a:a + b] / self.tau, dim=1) - 1 if cat else torch.tanh(h[:, a:a + b])
                          for a, b, cat in self.segments], dim=1)
