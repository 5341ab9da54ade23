"""`build_players(info, cfg)`: the generator and discriminator a defense's config asks for, fitted to the data.

`cfg` is any defense Config; these attributes are read when present (defaults otherwise):
  net         "auto" | "mlp" | "conv"   auto: conv for images of side >= 28, MLP below (8x8 digits);
                                        tables always get TabularGenerator (BatchNorm trunk, tanh and
                                        one-hot heads) and an MLP discriminator
  z_dim (32), g_hidden ([128, 256]), d_hidden ([256, 128])          MLP widths
  g_channels (64), d_channels (64)                                  conv widths (DCGAN: 64)
  d_norm ("none" | "layer")                                          discriminator normalisation
Defenses that build their players by hand keep working; switching to this factory gives them every
dataset of the benchmark.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from mia_bench.data.datasets import DataInfo, DataKind
from mia_bench.nets.dcgan import ConvDiscriminator, ConvGenerator
from mia_bench.nets.mlp import MLPDiscriminator, MLPGenerator
from mia_bench.nets.tabular import TabularGenerator

NETS = ("auto", "mlp", "conv")
CONV_MIN_SIDE = 28  # below this (8x8 digits) MLPs train faster and as well


def resolve_net(info: DataInfo, net: str = "auto") -> str:
    """The architecture family ("mlp" | "conv") for `net` on this data; raises on impossible choices."""
    if net not in NETS:
        raise ValueError(f"defense.net must be one of {NETS}, got {net!r}")
    image = info.kind is DataKind.IMAGE and len(info.shape) == 3
    if net == "conv" and not image:
        raise ValueError(f"defense.net=conv needs (C, H, W) images; dataset '{info.name}' has records {info.shape}")
    if net == "auto":
        return "conv" if image and min(info.shape[1:]) >= CONV_MIN_SIDE else "mlp"
    return net


def build_players(info: DataInfo, cfg: Any, *, n_classes: int = 0) -> tuple[nn.Module, nn.Module]:
    """(generator, discriminator) for `info`; n_classes > 0 makes both class-conditional."""
    kind = resolve_net(info, getattr(cfg, "net", "auto"))
    z_dim = int(getattr(cfg, "z_dim", 32))
    norm = str(getattr(cfg, "d_norm", "none"))
    if kind == "conv":
        return (ConvGenerator(z_dim=z_dim, out_shape=info.shape, n_classes=n_classes,
                              channels=int(getattr(cfg, "g_channels", 64))),
                ConvDiscriminator(in_shape=info.shape, n_classes=n_classes,
                                  channels=int(getattr(cfg, "d_channels", 64)), norm=norm))
    g_hidden = list(getattr(cfg, "g_hidden", [128, 256]))
    d_hidden = list(getattr(cfg, "d_hidden", [256, 128]))
    generator: nn.Module
    if info.kind is DataKind.TABULAR:
        generator = TabularGenerator(z_dim=z_dim, dim=info.dim, categorical=info.categorical, n_classes=n_classes,
                                     hidden=g_hidden)
    else:
        generator = MLPGenerator(z_dim=z_dim, out_shape=info.shape, n_classes=n_classes, hidden=g_hidden)
    return generator, MLPDiscriminator(in_shape=info.shape, n_classes=n_classes, hidden=d_hidden, norm=norm)
