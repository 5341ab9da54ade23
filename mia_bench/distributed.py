"""Lightning strategies for defenses: DDP-correct strategy names, per-rank seeding, rank-zero hand-off.

A run under `trainer.strategy=ddp*` and `trainer.devices=N` trains on N processes; everything after
training (release, attacks, metrics, record) runs once, in the global-rank-zero process.

What each launcher leaves in the calling process after `trainer.fit`:
  ddp_spawn / ddp_fork  the caller is not a rank: Lightning's multiprocessing launcher saves local rank 0's
                        `state_dict()` and loads it back into the caller's module (non-strict), so the caller
                        holds the trained weights. Values outside the state dict (`checkpoint_extra`, e.g. a
                        privacy accountant) do not travel: `RankSetup` writes them from rank 0 and
                        `RankSetup.restore` loads them into the caller.
  ddp (subprocess) / SLURM srun tasks
                        the caller is a rank itself; ranks other than 0 must stop after training
                        (`is_global_zero()`).
"""

from __future__ import annotations

import json
import os
import tempfile
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.fabric.utilities.rank_zero import rank_zero_only

from mia_bench.config import TrainerConfig
from mia_bench.errors import ConfigError

# strategies whose DDP wrapper expects every parameter to get a gradient in every backward pass
_STRICT_DDP = ("ddp", "ddp_spawn", "ddp_fork", "ddp_notebook")


def defense_strategy(strategy: str, n_players: int) -> str:
    """The strategy to run a defense with. A multi-player game steps one player at a time (the others are
    frozen by `toggle_optimizer`), so each backward leaves parameters without gradients and DDP must look
    for unused parameters: plain `ddp*` names become their `*_find_unused_parameters_true` variant."""
    if n_players > 1 and strategy in _STRICT_DDP:
        return f"{strategy}_find_unused_parameters_true"
    return strategy


def refuse_multiprocess(defense: str, trainer: TrainerConfig | L.Trainer) -> None:
    """Raise a ConfigError naming the fix when `trainer` (the run's config, or a Trainer being set up)
    would train `defense` on more than one process. For the DP defenses: their Poisson / shard sampling
    and their privacy accountant are written for one stream of batches on one process."""
    if isinstance(trainer, L.Trainer):
        from lightning.pytorch.strategies import SingleDeviceStrategy

        single = trainer.world_size == 1 and isinstance(trainer.strategy, SingleDeviceStrategy)
        asked = [f"trainer.strategy=... (a {type(trainer.strategy).__name__})", f"trainer.devices={trainer.num_devices}"]
    else:
        asked = [f"trainer.{key}={value}" for key, value, ok in (
            ("strategy", trainer.strategy, not trainer.strategy.startswith(("ddp", "fsdp", "deepspeed"))),
            ("devices", trainer.devices, trainer.devices == 1), ("num_nodes", trainer.num_nodes, trainer.num_nodes == 1))
            if not ok]
        single = not asked
    if not single:
        raise ConfigError(f"{defense}: DP defenses train on one process: drop {' / '.join(asked)} "
                          "(their sampling and privacy accounting assume one stream of batches)")


def single_process(trainer: TrainerConfig) -> TrainerConfig:
    """The same training recipe on one process (for shadow/reference models trained inside an attack,
    which runs on rank zero only and must not start another process group)."""
    return replace(trainer, strategy="auto", devices=1, num_nodes=1)


def is_global_zero() -> bool:
    """True in the process that must release, attack and write the record (always, without DDP)."""
    return int(getattr(rank_zero_only, "rank", 0)) == 0


def rank_seed(seed: int, rank: int) -> int:
    """Seed of rank `rank`: distinct per rank, fixed by the run's seed."""
    return int(np.random.SeedSequence([seed, rank]).generate_state(1)[0])


class RankSetup(L.Callback):
    """Makes a defense DDP-correct on every rank, and hands rank 0's extra state back to the caller.

    - fork launcher: the child inherits the parent's OpenMP thread pool, and the first parallel torch op
      deadlocks when the parent used more than one thread (measured here); the child drops to one thread
      before touching any tensor.
    - seeding: `seed_everything` gave every rank the same global RNG, so every rank would draw the same
      latents and the fake half of the global batch would be one batch repeated; each rank reseeds with
      `rank_seed(seed, rank)`.
    - extra state: on local rank 0, `checkpoint_extra()` is written to a file the caller reads back.
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed
        # a path only: the file exists only when some rank-0 process wrote it
        self.handoff = Path(tempfile.gettempdir()) / f"mia_bench_rank0_{uuid.uuid4().hex}.json"

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if trainer.world_size > 1 and getattr(trainer.strategy, "_start_method", None) in ("fork", "forkserver"):
            torch.set_num_threads(1)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.world_size > 1:
            L.seed_everything(rank_seed(self.seed, trainer.global_rank), workers=True, verbose=False)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        extra = getattr(pl_module, "checkpoint_extra", None)
        if trainer.world_size > 1 and trainer.local_rank == 0 and extra is not None:
            tmp = self.handoff.with_suffix(".tmp")
            tmp.write_text(json.dumps(extra()))
            os.replace(tmp, self.handoff)

    def restore(self, model: Any) -> None:
        """In the caller, after fit: load the extra state rank 0 wrote (nothing when no rank wrote it)."""
        try:
            if self.handoff.is_file():
                model.load_checkpoint_extra(json.loads(self.handoff.read_text()))
        finally:
            self.handoff.unlink(missing_ok=True)
