"""DCGAN-style convolutional generator and discriminator for square images (8 to 64+ px), optionally
class-conditional (ALGORITHMS.md section 1.1).

The image side S is reached from a start side s0 in 4..7 by stride-2 steps: 28 = 7*2^2, 32 = 4*2^3,
64 = 4*2^4 (and 8 = 4*2). G: Linear(z [+ y]) -> (C0, s0, s0), then ConvTranspose2d(4, 2, 1) + BatchNorm +
ReLU blocks halving the channels, a last ConvTranspose2d to the image channels and tanh. D mirrors it with
Conv2d(4, 2, 1) + LeakyReLU(0.2) blocks doubling the channels and a linear head. D has no BatchNorm
(WGAN-GP and DP-SGD need per-sample independence); `norm="layer"` adds GroupNorm(1, C), i.e. LayerNorm
over (C, H, W) per sample. Conditioning takes a label vector (B, C) through linear maps (soft labels
work): concatenated to z in G, a projection term <W y, phi(x)> in D. Weights start at N(0, 0.02).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from mia_bench.nets.mlp import projection_logit, with_labels


def conv_plan(side: int) -> tuple[int, int]:
    """(s0, n): start side s0 in 4..7 and number of stride-2 steps n >= 1 with s0 * 2**n == side."""
    s, n = side, 0
    while s > 7 and s % 2 == 0:
        s, n = s // 2, n + 1
    if not (4 <= s <= 7) or n == 0:
        raise ValueError(f"conv nets need a square side s0 * 2^n with s0 in 4..7 (8, 28, 32, 64, ...), got {side}")
    return s, n


def _square(shape: Sequence[int]) -> tuple[int, int]:
    if len(shape) != 3 or shape[1] != shape[2]:
        raise ValueError(f"conv nets need square (C, H, H) images, got shape {tuple(shape)}")
    return int(shape[0]), int(shape[1])


def dcgan_init(module: nn.Module) -> None:
    """DCGAN initialisation: conv/linear weights N(0, 0.02), norm scales N(1, 0.02), biases 0."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d | nn.GroupNorm):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


class ConvGenerator(nn.Module):
    """G(z, y): (B, z_dim) [+ (B, n_classes) label vector] -> (B, C, S, S) in [-1, 1]."""

    def __init__(self, *, z_dim: int, out_shape: Sequence[int], n_classes: int = 0, channels: int = 64) -> None:
        super().__init__()
        c_out, side = _square(out_shape)
        s0, n = conv_plan(side)
        self.z_dim, self.n_classes, self.out_shape = z_dim, n_classes, (c_out, side, side)
        widths = [channels * 2 ** (n - 1 - i) for i in range(n)]  # e.g. 64 px: 512, 256, 128, 64
        self.s0, self.c0 = s0, widths[0]
        self.project = nn.Sequential(nn.Linear(z_dim + n_classes, widths[0] * s0 * s0))
        blocks: list[nn.Module] = [nn.BatchNorm2d(widths[0]), nn.ReLU()]
        for a, b in zip(widths[:-1], widths[1:], strict=True):
            blocks += [nn.ConvTranspose2d(a, b, 4, 2, 1, bias=False), nn.BatchNorm2d(b), nn.ReLU()]
        blocks += [nn.ConvTranspose2d(widths[-1], c_out, 4, 2, 1), nn.Tanh()]
        self.net = nn.Sequential(*blocks)
        dcgan_init(self)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        z = with_labels(z, y, self.n_classes)
        h = self.project(z).view(z.shape[0], self.c0, self.s0, self.s0)
        return self.net(h)


class ConvDiscriminator(nn.Module):
    """D(x, y): (B, C, S, S) [+ (B, n_classes)] -> (B,) pre-sigmoid logit (or critic value); higher = real."""

    def __init__(self, *, in_shape: Sequence[int], n_classes: int = 0, channels: int = 64, norm: str = "none") -> None:
        super().__init__()
        if norm not in ("none", "layer"):
            raise ValueError(f"norm must be 'none' or 'layer', got {norm!r}")
        c_in, side = _square(in_shape)
        s0, n = conv_plan(side)
        widths = [channels * 2**i for i in range(n)]
        blocks, prev = [], c_in
        for i, w in enumerate(widths):
            layers: list[nn.Module] = [nn.Conv2d(prev, w, 4, 2, 1)]
            if norm == "layer" and i > 0:  # no normalisation on the input layer (DCGAN)
                layers.append(nn.GroupNorm(1, w))
            layers.append(nn.LeakyReLU(0.2))
            blocks.append(nn.Sequential(*layers))
            prev = w
        self.blocks = nn.ModuleList(blocks)
        self.n_classes = n_classes
        self.feature_dim = widths[-1] * s0 * s0
        self.head = nn.Linear(self.feature_dim, 1)
        self.embed_y = nn.Linear(n_classes, self.feature_dim, bias=False) if n_classes else None
        dcgan_init(self)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Per conv block its globally average-pooled activation (B, C_i), then the head's input phi
        (B, feature_dim) flattened; the last entry is phi, as for MLPDiscriminator."""
        h, out = x, []
        for block in self.blocks:
            h = block(h)
            out.append(h.mean(dim=(2, 3)))
        out.append(h.flatten(1))
        return out

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = x
        for block in self.blocks:
            h = block(h)
        phi = h.flatten(1)
        logit = self.head(phi).squeeze(1)
        return projection_logit(logit, self.embed_y, phi, y)
