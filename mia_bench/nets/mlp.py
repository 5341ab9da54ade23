"""MLP generator and discriminator for small images (flattened) and tables, optionally class-conditional.

Conditioning takes a label *vector* (B, C) through a linear map, never an embedding lookup, so soft labels
(mixup) work: the generator concatenates y to z; the discriminator adds a projection term <W y, phi(x)>.
No normalisation in D by default: WGAN-GP and DP-SGD both need per-sample independence.
"""

from __future__ import annotations

from collections.abc import Sequence
from math import prod

import torch
from torch import nn


def _act(kind: str) -> nn.Module:
    return nn.LeakyReLU(0.2) if kind == "leaky_relu" else nn.ReLU()


def with_labels(z: torch.Tensor, y: torch.Tensor | None, n_classes: int) -> torch.Tensor:
    """A conditional net's input: z (..., d) with its label vectors y (..., n_classes) appended on the last
    axis; z itself when the net is unconditional (n_classes 0)."""
    if not n_classes:
        return z
    if y is None:
        raise ValueError("conditional generator needs a (..., n_classes) label vector per row")
    return torch.cat([z, y.to(z.dtype)], dim=-1)


def projection_logit(logit: torch.Tensor, embed_y: nn.Module | None, phi: torch.Tensor,
                     y: torch.Tensor | None) -> torch.Tensor:
    """A projection discriminator's logit: logit + <W y, phi(x)> over the last axis (unchanged when
    unconditional, embed_y None)."""
    if embed_y is None:
        return logit
    if y is None:
        raise ValueError("conditional discriminator needs a (..., n_classes) label vector per row")
    return logit + (embed_y(y.to(phi.dtype)) * phi).sum(-1)


class MLPGenerator(nn.Module):
    """G(z, y): (B, z_dim) [+ (B, C) label vector] -> (B, *out_shape) in [-1, 1] (tanh)."""

    def __init__(self, *, z_dim: int, out_shape: Sequence[int], n_classes: int = 0,
                 hidden: Sequence[int] = (128, 256), activation: str = "relu") -> None:
        super().__init__()
        self.z_dim, self.n_classes, self.out_shape = z_dim, n_classes, tuple(out_shape)
        layers: list[nn.Module] = []
        width = z_dim + n_classes
        for h in hidden:
            layers += [nn.Linear(width, h), _act(activation)]
            width = h
        layers += [nn.Linear(width, prod(self.out_shape)), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        z = with_labels(z, y, self.n_classes)
        return self.net(z).view(z.shape[0], *self.out_shape)


class MLPDiscriminator(nn.Module):
    """D(x, y) -> (B,) pre-sigmoid logit (or critic value); higher = judged more real."""

    def __init__(self, *, in_shape: Sequence[int], n_classes: int = 0, hidden: Sequence[int] = (256, 128),
                 norm: str = "none", dropout: float = 0.0) -> None:
        super().__init__()
        if norm not in ("none", "layer"):
            raise ValueError(f"norm must be 'none' or 'layer', got {norm!r}")
        self.n_classes = n_classes
        blocks: list[nn.Module] = []
        width = prod(in_shape)
        for h in hidden:
            block: list[nn.Module] = [nn.Linear(width, h)]
            if norm == "layer":
                block.append(nn.LayerNorm(h))
            block.append(nn.LeakyReLU(0.2))
            if dropout:
                block.append(nn.Dropout(dropout))
            blocks.append(nn.Sequential(*block))
            width = h
        self.blocks = nn.ModuleList(blocks)
        self.head = nn.Linear(width, 1)
        self.embed_y = nn.Linear(n_classes, width, bias=False) if n_classes else None
        self.feature_dim = width

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Activations after each hidden block: list of (B, hidden_i)."""
        h = x.flatten(1)
        out = []
        for block in self.blocks:
            h = block(h)
            out.append(h)
        return out

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        phi = self.features(x)[-1]
        logit = self.head(phi).squeeze(1)
        return projection_logit(logit, self.embed_y, phi, y)
