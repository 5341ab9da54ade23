"""What keeps a run from losing or silently replacing anything: writable outputs checked before any work,
one run per directory at a time, bad files moved aside (never overwritten), training stopped as soon as a
loss or a weight is no longer finite, and Ctrl-C turned back into KeyboardInterrupt (Lightning exits 1)."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import math
import os
import signal
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import lightning as L
import torch

from mia_bench.errors import MiaBenchError


class TrainingDiverged(MiaBenchError):
    """A loss or a weight of a player became NaN or infinite: nothing is saved."""


def notice(message: str) -> None:
    """A line the user must see (a file moved aside, a reused result) on stderr; never a traceback."""
    print(f"note: {message}", file=sys.stderr, flush=True)


def move_aside(path: Path, suffix: str = ".rejected") -> Path:
    """Rename `path` to `<path><suffix>` (or `<suffix>.1`, `.2`, ... when taken); returns the new path."""
    path = Path(path)
    target = path.with_name(path.name + suffix)
    i = 0
    while target.exists():
        i += 1
        target = path.with_name(f"{path.name}{suffix}.{i}")
    os.replace(path, target)
    return target


def check_writable(*folders: Path) -> None:
    """Create each folder and write a probe file into it, before any work; a ConfigError-like stop otherwise."""
    for folder in folders:
        folder = Path(folder)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-probe-"):
                pass
        except OSError as e:
            reason = os.strerror(e.errno) if e.errno else str(e)
            raise MiaBenchError(f"cannot write to {folder} ({reason}): make it writable or choose another "
                                "folder with --results-dir; nothing was run") from None


def is_disk_full(e: OSError) -> bool:
    return e.errno in (errno.ENOSPC, errno.EDQUOT)


@contextlib.contextmanager
def run_lock(folder: Path, *, on_wait: Callable[[], None] | None = None) -> Iterator[bool]:
    """Hold an exclusive lock on `folder` (its `.lock` file) for the block; yields True when another process
    held it first and this one waited (so the caller can reuse what that run wrote)."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "a+") as f:
        waited = False
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            waited = True
            if on_wait is not None:
                on_wait()
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield waited
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def nonfinite_players(model: torch.nn.Module) -> dict[str, tuple[int, int]]:
    """{player: (non-finite weights, weights)} for every player (or top module) holding a NaN or inf."""
    players = getattr(model, "players", None)
    parts = dict(players.items()) if isinstance(players, torch.nn.ModuleDict) else {"model": model}
    bad = {}
    for name, part in parts.items():
        tensors = [t for t in list(part.parameters()) + list(part.buffers()) if t.is_floating_point()]
        n_bad = sum(int((~torch.isfinite(t.detach())).sum()) for t in tensors)
        if n_bad:
            bad[name] = (n_bad, sum(t.numel() for t in tensors))
    return bad


def _fix_hint(model: Any) -> str:
    cfg = getattr(model, "config", None)
    rates = [f"defense.{k}={v:g}" for k, v in sorted(vars(cfg).items())
             if k.startswith("lr") and isinstance(v, (int, float))] if cfg is not None else []
    return (f"lower the learning rates ({', '.join(rates)})" if rates else "lower the learning rates") + \
        " or shorten trainer.max_steps; nothing was saved, so the next run trains afresh"


class TrainingGuard(L.Callback):
    """Stops training at the first non-finite logged loss or weight (weights checked every `every` batches),
    naming the player, the generator step and a fix; remembers whether fit ended by Ctrl-C."""

    def __init__(self, *, batches_per_step: int = 1, warmup_batches: int = 0, every: int = 10) -> None:
        self.per_step, self.warmup, self.every = max(1, batches_per_step), warmup_batches, max(1, every)
        self.interrupted = False

    def _step(self, batch_idx: int) -> str:
        if batch_idx < self.warmup:
            return f"warm-up batch {batch_idx + 1}"
        return f"generator step {(batch_idx - self.warmup) // self.per_step + 1}"

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        losses = {k: float(v) for k, v in trainer.callback_metrics.items()
                  if torch.is_tensor(v) and v.numel() == 1 and not math.isfinite(float(v))}
        bad = nonfinite_players(pl_module) if (losses or batch_idx % self.every == 0) else {}
        if not (losses or bad):
            return
        where = self._step(batch_idx)
        what = "; ".join([f"player '{p}' has {n:,} of {m:,} weights non-finite" for p, (n, m) in bad.items()]
                         + [f"{k}={v}" for k, v in losses.items()])
        raise TrainingDiverged(f"training diverged at {where} of defense '{getattr(pl_module, 'name', '?')}': "
                               f"{what}. Fix: {_fix_hint(pl_module)}")

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self.interrupted = isinstance(exception, KeyboardInterrupt)


@contextlib.contextmanager
def interruptible(guard: TrainingGuard) -> Iterator[None]:
    """Lightning answers Ctrl-C inside fit with sys.exit(1) and ignores SIGINT from then on: turn that back
    into KeyboardInterrupt, with the default handler restored, so the CLI can stop with one line and 130."""
    try:
        yield
    except SystemExit:
        if not guard.interrupted:
            raise
        signal.signal(signal.SIGINT, signal.default_int_handler)
        raise KeyboardInterrupt from None


def load_cache(path: Path) -> Any:
    """A cache file's content (safe_torch_load), or None when it is missing or unreadable; an unreadable one
    is moved aside (`.rejected`) with a note, so the caller rebuilds it and nothing is overwritten."""
    from mia_bench.errors import CheckpointError
    from mia_bench.io import safe_torch_load

    if not Path(path).is_file():
        return None
    try:
        return safe_torch_load(path)
    except CheckpointError as e:
        moved = move_aside(path)
        notice(f"{e}; moved it to {moved} and rebuilding this cache (delete {moved} once you have looked at it)")
        return None
