"""Datasets: one registered loader per dataset, each returning every record in memory.

A loader takes a `DatasetConfig` and returns an `ArrayDataset`: features scaled to [-1, 1] (the range of
a tanh generator), integer labels, and optional group ids (e.g. CelebA identities) that splits keep whole.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from mia_bench.errors import DataError
from mia_bench.registry import Registry
from mia_bench.schema import DatasetConfig


class DataKind(str, enum.Enum):
    IMAGE = "image"
    TABULAR = "tabular"


@dataclass(frozen=True)
class DataInfo:
    """What a model needs to know about its data: record shape, classes, kind, and training-set size."""

    name: str
    shape: tuple[int, ...]
    n_classes: int
    kind: DataKind = DataKind.IMAGE
    binary: bool = False  # tabular 0/1 codes (DWP/DWpre apply)
    # tabular one-hot blocks as (start, size) column spans; every other column is numeric in [-1, 1]
    categorical: tuple[tuple[int, int], ...] = ()

    @property
    def dim(self) -> int:
        return int(np.prod(self.shape))

    def to_dict(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "n_classes": self.n_classes,
                "kind": self.kind.value, "binary": self.binary, "categorical": [list(c) for c in self.categorical]}

    @classmethod
    def from_dict(cls, d: dict) -> DataInfo:
        return cls(name=d["name"], shape=tuple(d["shape"]), n_classes=int(d["n_classes"]),
                   kind=DataKind(d["kind"]), binary=bool(d.get("binary", False)),
                   categorical=tuple((int(a), int(b)) for a, b in d.get("categorical", [])))


@dataclass
class ArrayDataset:
    """All records of a dataset. x: (N, *shape) float32 in [-1, 1]; y: (N,) int64; groups: (N,) or None."""

    x: torch.Tensor
    y: torch.Tensor
    info: DataInfo
    groups: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.x.shape[0] != self.y.shape[0]:
            raise DataError(f"{self.info.name}: {self.x.shape[0]} records but {self.y.shape[0]} labels")
        if tuple(self.x.shape[1:]) != self.info.shape:
            raise DataError(f"{self.info.name}: records have shape {tuple(self.x.shape[1:])}, "
                            f"expected {self.info.shape}")

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def take(self, ids: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Records with dataset ids `ids`: x (n, *shape), y (n,)."""
        t = torch.tensor(np.asarray(ids), dtype=torch.int64)  # copies: split arrays are read-only
        return self.x[t], self.y[t]


Loader = Callable[[DatasetConfig], ArrayDataset]
DATASETS: Registry[Loader] = Registry("dataset")


def load_dataset(cfg: DatasetConfig) -> ArrayDataset:
    return DATASETS.get(cfg.name)(cfg)


def reject_options(cfg: DatasetConfig, allowed: set[str]) -> None:
    unknown = sorted(set(cfg.options) - allowed)
    if unknown:
        raise DataError(f"dataset '{cfg.name}' has no option(s) {unknown}; allowed: {sorted(allowed) or 'none'}")


@DATASETS.register("digits")
def load_digits(cfg: DatasetConfig) -> ArrayDataset:
    """scikit-learn's 8x8 handwritten digits (1,797 records, 10 classes), embedded: nothing to download."""
    from sklearn.datasets import load_digits as sk_load_digits

    reject_options(cfg, set())
    bunch = sk_load_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 8.0 - 1.0  # 0..16 -> [-1, 1]
    y = torch.tensor(bunch.target, dtype=torch.int64)
    return ArrayDataset(x=x, y=y, info=DataInfo(name="digits", shape=(1, 8, 8), n_classes=10))
