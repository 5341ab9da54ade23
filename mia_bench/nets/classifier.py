"""FeatureClassifier: the utility evaluator's network (feature extractor for classifier FID, labeller of
unconditional releases, and the fixed downstream-accuracy recipe), plus its training loop.

Architecture from the record shape (ALGORITHMS.md section 4.2):
  tables and images smaller than 16 px (8x8 digits): MLP  dim -> 256 -> F (=64) -> classes
  images of 16+ px: LeNet-5-style CNN, Conv(5x5, 32) + ReLU + MaxPool, Conv(5x5, 64) + ReLU + MaxPool,
                    then Conv(3x3, 128) + ReLU + MaxPool until the side is <= 8; Linear -> F (=128) -> classes
`forward(x)` returns the penultimate ReLU features (B, F), as torchmetrics' FID expects of a custom
extractor (with `num_features` = F); `logits(x)` adds the class head.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class TrainRecipe:
    """The fixed training recipe (Adam, full passes over shuffled data, no augmentation)."""

    epochs: int = 30
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0


def _cnn_trunk(channels: int, side: int) -> tuple[nn.Sequential, int]:
    layers: list[nn.Module] = []
    specs = [(channels, 32, 5), (32, 64, 5)]
    s = side // 4
    while s > 8:
        specs.append((specs[-1][1], 128, 3))
        s //= 2
    for c_in, c_out, k in specs:
        layers += [nn.Conv2d(c_in, c_out, k, padding=k // 2), nn.ReLU(), nn.MaxPool2d(2)]
    return nn.Sequential(*layers, nn.Flatten()), specs[-1][1] * s * s


class FeatureClassifier(nn.Module):
    """x (B, *shape) in [-1, 1] -> features (B, num_features); logits(x) -> (B, n_classes)."""

    def __init__(self, *, shape: Sequence[int], n_classes: int, num_features: int | None = None) -> None:
        super().__init__()
        self.shape, self.n_classes = tuple(int(s) for s in shape), int(n_classes)
        self.arch = "cnn" if len(self.shape) == 3 and min(self.shape[1:]) >= 16 else "mlp"
        self.num_features = int(num_features or (128 if self.arch == "cnn" else 64))
        if self.arch == "cnn":
            trunk, width = _cnn_trunk(self.shape[0], min(self.shape[1:]))
        else:
            width = 256
            trunk = nn.Sequential(nn.Flatten(), nn.Linear(int(torch.tensor(self.shape).prod()), width), nn.ReLU())
        self.trunk = nn.Sequential(trunk, nn.Linear(width, self.num_features), nn.ReLU())
        self.head = nn.Linear(self.num_features, max(self.n_classes, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(x.to(self.head.weight.dtype))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward(x))

    def describe(self) -> dict:
        return {"shape": list(self.shape), "n_classes": self.n_classes, "num_features": self.num_features,
                "arch": self.arch}


def fit_classifier(net: FeatureClassifier, x: torch.Tensor, y: torch.Tensor, *, recipe: TrainRecipe, seed: int,
                   device: str = "cpu") -> FeatureClassifier:
    """Train `net` on (x (N, *shape), y (N,) int) with cross-entropy; shuffling from a seeded generator."""
    if x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise ValueError(f"need matching non-empty x {tuple(x.shape)} and y {tuple(y.shape)}")
    gen = torch.Generator().manual_seed(seed)
    net.to(device).train()
    opt = torch.optim.Adam(net.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    x_dev, y_dev = x.to(device), y.to(device)
    for _ in range(recipe.epochs):
        order = torch.randperm(x.shape[0], generator=gen).to(device)
        for start in range(0, x.shape[0], recipe.batch_size):
            idx = order[start:start + recipe.batch_size]
            loss = F.cross_entropy(net.logits(x_dev[idx]), y_dev[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return net.eval()


@torch.no_grad()
def predict(net: FeatureClassifier, x: torch.Tensor, *, batch_size: int = 1024) -> torch.Tensor:
    """(N,) int64 predicted classes, computed on the net's device; returned on CPU."""
    device = net.head.weight.device
    return torch.cat([net.logits(x[i:i + batch_size].to(device)).argmax(1).cpu()
                      for i in range(0, x.shape[0], batch_size)])


def accuracy(net: FeatureClassifier, x: torch.Tensor, y: torch.Tensor) -> float:
    return float((predict(net, x) == y.cpu()).double().mean())


def seeded_classifier(*, shape: Sequence[int], n_classes: int, seed: int) -> FeatureClassifier:
    """A freshly initialised FeatureClassifier whose weights depend only on `seed`."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return FeatureClassifier(shape=shape, n_classes=n_classes)
