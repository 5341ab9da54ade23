"""LightningDataModule serving a defense its training records, cut from in-memory tensors by indexing.

Every loader batch is one discriminator round, a dict of tensors:
  x (B*k, *shape), y (B*k,), idx (B*k,) dataset record ids, shard (B*k,) in 0..k-1
and, for defenses that declare `needs_reference`, ref_x / ref_y / ref_idx (B, ...) from the split's
reference set. With k shards the batch holds B records of each shard, shard-major, so
`x.view(k, B, *shape)[i]` is shard i's batch. Batches are whole (drop-last passes, reshuffled each pass).

Two other sampling modes serve the defenses whose privacy argument depends on how records are drawn:
  poisson       every record independently with probability B/n (DP-SGD's Poisson sampling; variable size,
                possibly empty); needs a single shard.
  random_shard  one shard drawn uniformly at random per group of `group_size` consecutive batches (one
                generator step of GS-WGAN), min(B, shard size) records of it per batch.

Under DDP with W processes, B is the per-process batch: every rank draws the same global batch of W*B
records per shard (one seeded stream) and keeps its own slice, so the ranks see disjoint records at every
step and W=1 is exactly the single-process stream. Lightning's distributed sampler is therefore switched
off (`use_distributed_sampler=False` in the runner's Trainer): wrapping this sampler would deal whole
batches round-robin to the ranks and cut every rank's number of steps by W.
The poisson and random_shard modes split their (global) draw among the ranks by stride.
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
            raise ConfigError(f"batch size {size} (trainer.batch_size x DDP processes) exceeds the {positions.size} "
                              "records it is drawn from; lower trainer.batch_size or trainer.devices")
        self.positions, self.size, self.rng = positions, size, rng
        self.order = rng.permutation(positions)
        self.cursor = 0

    def take(self) -> np.ndarray:
        if self.cursor + self.size > self.order.size:
            self.order, self.cursor = self.rng.permutation(self.positions), 0
        out = self.order[self.cursor:self.cursor + self.size]
        self.cursor += self.size
        return out


SAMPLING_MODES = ("rounds", "poisson", "random_shard")


class RoundSampler(Sampler[BatchPlan]):
    """Yields `num_batches` BatchPlans (+ B reference positions each), by `mode`:
    rounds: B positions from each shard; poisson: each position with probability B/n;
    random_shard: min(B, shard size) positions of one shard, redrawn uniformly every `group_size` batches."""

    def __init__(self, *, shards: list[np.ndarray], n_reference: int, batch_size: int, num_batches: int,
                 seed: int, mode: str = "rounds", group_size: int = 1, rank: int = 0, world_size: int = 1) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside a world of {world_size} processes")
        self.shards, self.n_reference = shards, n_reference
        self.batch_size, self.num_batches, self.seed = batch_size, num_batches, seed
        self.mode, self.group_size = mode, group_size
        self.rank, self.world_size = rank, world_size

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[BatchPlan]:
        # same stream on every rank, so the global batches agree; each rank keeps its own part of them
        rng = np.random.default_rng(self.seed)
        w, r = self.world_size, self.rank
        mine = slice(r * self.batch_size, (r + 1) * self.batch_size)
        if self.mode == "random_shard":
            per_shard = [_PassSampler(s, min(self.batch_size, s.size), rng) for s in self.shards]
        elif self.mode == "rounds":
            per_shard = [_PassSampler(s, self.batch_size * w, rng) for s in self.shards]
        ref = _PassSampler(np.arange(self.n_reference), self.batch_size * w, rng) if self.n_reference else None
        shard = 0
        for i in range(self.num_batches):
            if self.mode == "poisson":
                positions = self.shards[0]
                train = positions[rng.random(positions.size) < self.batch_size / positions.size][r::w]
            elif self.mode == "random_shard":
                if i % self.group_size == 0:
                    shard = int(rng.integers(len(self.shards)))
                train = per_shard[shard].take()[r::w]
            else:
                train = np.concatenate([s.take()[mine] for s in per_shard])
            yield BatchPlan(train=train, reference=ref.take()[mine] if ref else None)


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
    """Serves `train_ids` (dataset record ids; a split role, or a shadow model's subset) in batches.

    Shards: a seeded permutation of the training records cut into `n_shards` near-equal parts; with
    `reference_ids`, every batch also carries a reference batch (for defenses that declare the need).
    `sampling` picks how batches are drawn (module docstring); `group_size` is the random_shard group.
    """

    def __init__(self, *, data: ArrayDataset, train_ids: np.ndarray, batch_size: int, num_batches: int,
                 seed: int, n_shards: int = 1, reference_ids: np.ndarray | None = None,
                 sampling: str = "rounds", group_size: int = 1) -> None:
        super().__init__()
        if sampling not in SAMPLING_MODES:
            raise ConfigError(f"sampling must be one of {', '.join(SAMPLING_MODES)}, got {sampling!r}")
        if sampling == "poisson" and n_shards != 1:
            raise ConfigError("poisson sampling draws from the whole training set; it needs n_shards=1")
        if sampling == "poisson" and batch_size > len(train_ids):
            raise ConfigError(f"batch size {batch_size} exceeds the {len(train_ids)} training records; "
                              "lower trainer.batch_size")
        if group_size < 1:
            raise ConfigError(f"group_size must be >= 1, got {group_size}")
        self.sampling, self.group_size = sampling, group_size
        self.data = data
        self.train_ids = np.asarray(train_ids, dtype=np.int64)
        self.reference_ids = None if reference_ids is None else np.asarray(reference_ids, dtype=np.int64)
        self.batch_size, self.num_batches, self.seed = batch_size, num_batches, seed
        if n_shards < 1 or n_shards > self.train_ids.size:
            raise ConfigError(f"n_shards={n_shards} must be between 1 and the {self.train_ids.size} training records")
        perm = np.random.default_rng([seed, 1]).permutation(self.train_ids.size)
        self.shards: list[np.ndarray] = np.array_split(perm, n_shards)  # positions into train_ids

    @classmethod
    def for_split(cls, *, data: ArrayDataset, split: MembershipSplit, train_role: str = "members",
                  with_reference: bool = False, **kw) -> MembershipDataModule:
        if with_reference and split.reference.size == 0:
            raise ConfigError("this defense needs reference data; set split.reference > 0 in the suite")
        return cls(data=data, train_ids=getattr(split, train_role), seed=split.seed,
                   reference_ids=split.reference if with_reference else None, **kw)

    def train_tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All training records, in the order of `train_ids`: x (n, *shape), y (n,)."""
        return self.data.take(self.train_ids)

    @property
    def sample_rate(self) -> float:
        """Probability that a record is in a batch under poisson sampling: B / n."""
        return self.batch_size / self.train_ids.size

    def shard_ids(self, shard: int) -> np.ndarray:
        """Dataset record ids of shard `shard`."""
        return self.train_ids[self.shards[shard]]

    def train_dataloader(self) -> DataLoader:
        x, y = self.train_tensors()
        ids = torch.tensor(self.train_ids)
        shard_of = torch.empty(ids.numel(), dtype=torch.int64)
        for k, pos in enumerate(self.shards):
            shard_of[torch.from_numpy(pos)] = k
        ref = None
        if self.reference_ids is not None:
            ref = (*self.data.take(self.reference_ids), torch.tensor(self.reference_ids))
        trainer = self.trainer  # None outside a Trainer (tests that read the loader directly)
        sampler = RoundSampler(shards=self.shards, n_reference=0 if ref is None else int(ref[2].numel()),
                               batch_size=self.batch_size, num_batches=self.num_batches,
                               seed=int(np.random.default_rng([self.seed, 2]).integers(2**31)),
                               mode=self.sampling, group_size=self.group_size,
                               rank=trainer.global_rank if trainer else 0,
                               world_size=trainer.world_size if trainer else 1)
        return DataLoader(_InMemory(x, y, ids, shard_of, ref), sampler=sampler, batch_size=None, num_workers=0)
