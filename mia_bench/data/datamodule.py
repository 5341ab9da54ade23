"""LightningDataModule serving a defense its training records, cut from in-memory tensors by indexing.

Every loader batch is one discriminator round, a dict of tensors:
  x (B*k, *shape), y (B*k,), idx (B*k,) dataset record ids, shard (B*k,) in 0..k-1
and, for defenses that declare `needs_reference`, ref_x / ref_y / ref_idx (B, ...) from the split's
reference set. With k shards the batch holds B records of each shard, shard-major, so
`x.view(k, B, *shape)[i]` is shard i's batch. Batches are whole (drop-last passes, reshuffled each pass).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from mia_bench.data.datasets import ArrayDataset
from mia_bench.data.splits import MembershipSplit
from mia_bench.errors import ConfigError


@dataclass(frozen=True)
class BatchPlan:
    """Positions (into the train / reference tensors) of one loader batch."""

    train: np.ndarray
    reference: np.ndarray | None


class _PassSampler:
    """Endless reshuffled passes over `n` positions, served `size` at a time (a pass's remainder is dropped)."""

    def __init__(self, positions: np.ndarray, size: int, rng: np.random.Generator) -> None:
        if size > positions.size:
            raise ConfigError(f"batch size {size} exceeds the {positions.size} records it is drawn from; "
                              "lower trainer.batch_size")
        self.positions, self.size, self.rng = positions, size, rng
        self.order = rng.permutation(positions)
        self.cursor = 0

    def take(self) -> np.ndarray:
        if self.cursor + self.size > self.order.size:
            self.order, self.cursor = self.rng.permutation(self.positions), 0
        out = self.order[self.cursor:self.cursor + self.size]
        self.cursor += self.size
        return out


class RoundSampler(Sampler[BatchPlan]):
    """Yields `num_batches` BatchPlans: B positions from each shard (+ B reference positions)."""

    def __init__(self, *, shards: list[np.ndarray], n_reference: int, batch_size: int, num_batches: int,
                 seed: int) -> None:
        self.shards, self.n_reference = shards, n_reference
        self.batch_size, self.num_batches, self.seed = batch_size, num_batches, seed

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[BatchPlan]:
        rng = np.random.default_rng(self.seed)
        per_shard = [_PassSampler(s, self.batch_size, rng) for s in self.shards]
        ref = _PassSampler(np.arange(self.n_reference), self.batch_size, rng) if self.n_reference else None
        for _ in range(self.num_batches):
            train = np.concatenate([s.take() for s in per_shard])
            yield BatchPlan(train=train, reference=ref.take() if ref else None)


class _InMemory(Dataset):
    def __init__(self, x: torch.Tensor, y: torch.Tensor, ids: torch.Tensor, shard_of: torch.Tensor,
                 ref: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None) -> None:
        self.x, self.y, self.ids, self.shard_of, self.ref = x, y, ids, shard_of, ref

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def __getitem__(self, plan: BatchPlan) -> dict[str, torch.Tensor]:  # type: ignore[override]
        pos = torch.from_numpy(plan.train)
        batch = {"x": self.x[pos], "y": self.y[pos], "idx": self.ids[pos], "shard": self.shard_of[pos]}
        if self.ref is not None and plan.reference is not None:
            rpos = torch.from_numpy(plan.reference)
            batch.update(ref_x=self.ref[0][rpos], ref_y=self.ref[1][rpos], ref_idx=self.ref[2][rpos])
        return batch


class MembershipDataModule(L.LightningDataModule):
    def __init__(self, *, data: ArrayDataset, split: MembershipSplit, batch_size: int, num_batches: int,
                 train_role: str = "members", n_shards: int = 1, with_reference: bool = False) -> None:
        super().__init__()
        self.data, self.split, self.train_role = data, split, train_role
        self.batch_size, self.num_batches = batch_size, num_batches
        self.with_reference = with_reference
        ids = np.asarray(getattr(split, train_role))
        if n_shards < 1 or n_shards > ids.size:
            raise ConfigError(f"n_shards={n_shards} must be between 1 and the {ids.size} training records")
        # shard assignment: a seeded permutation of the training records cut into k near-equal parts
        perm = np.random.default_rng([split.seed, 1]).permutation(ids.size)
        self.shards: list[np.ndarray] = np.array_split(perm, n_shards)

    @property
    def train_ids(self) -> np.ndarray:
        """Dataset record ids of the training records, in the order of `train_tensors()`."""
        return np.asarray(getattr(self.split, self.train_role))

    def train_tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.data.take(self.train_ids)

    def shard_ids(self, shard: int) -> np.ndarray:
        return self.train_ids[self.shards[shard]]

    def train_dataloader(self) -> DataLoader:
        x, y = self.train_tensors()
        ids = torch.tensor(self.train_ids, dtype=torch.int64)
        shard_of = torch.empty(ids.numel(), dtype=torch.int64)
        for k, pos in enumerate(self.shards):
            shard_of[torch.from_numpy(pos)] = k
        ref = None
        if self.with_reference:
            if self.split.reference.size == 0:
                raise ConfigError("this defense needs reference data; set split.reference > 0 in the suite")
            ref = (*self.data.take(self.split.reference), torch.tensor(self.split.reference, dtype=torch.int64))
        sampler = RoundSampler(shards=self.shards, n_reference=0 if ref is None else int(ref[2].numel()),
                               batch_size=self.batch_size, num_batches=self.num_batches,
                               seed=int(np.random.default_rng([self.split.seed, 2]).integers(2**31)))
        return DataLoader(_InMemory(x, y, ids, shard_of, ref), sampler=sampler, batch_size=None, num_workers=0)
