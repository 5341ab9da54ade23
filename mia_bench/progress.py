"""Progress lines for the long stages (training, each attack, each shadow model), shown when the CLI
installs a reporter (`mia-bench run` without --no-progress) and silent everywhere else (tests, grid cells).

    with progress.task("attacks", total=17) as t:
        t.update(description="attacks: lira_wb")
        ...
        t.advance()
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

import lightning as L
from rich import progress as rp
from rich.console import Console

_REPORTER: ContextVar[rp.Progress | None] = ContextVar("mia_bench_progress", default=None)


class Task:
    """One progress line (a no-op without a reporter)."""

    def __init__(self, bar: rp.Progress | None, task_id: Any) -> None:
        self.bar, self.id = bar, task_id

    def advance(self, n: float = 1) -> None:
        if self.bar is not None:
            self.bar.advance(self.id, n)

    def update(self, **fields: Any) -> None:
        if self.bar is not None:
            self.bar.update(self.id, **fields)


@contextlib.contextmanager
def reporting(console: Console, *, enabled: bool = True) -> Iterator[None]:
    """Show every task opened inside the block as a rich progress line on `console` (80 columns wide)."""
    if not enabled:
        yield
        return
    bar = rp.Progress(rp.TextColumn("{task.description}"), rp.BarColumn(bar_width=20), rp.MofNCompleteColumn(),
                      rp.TimeElapsedColumn(), rp.TextColumn("eta"), rp.TimeRemainingColumn(), console=console,
                      transient=True)
    token = _REPORTER.set(bar)
    try:
        with bar:
            yield
    finally:
        _REPORTER.reset(token)


@contextlib.contextmanager
def task(description: str, total: float | None) -> Iterator[Task]:
    bar = _REPORTER.get()
    if bar is None:
        yield Task(None, None)
        return
    task_id = bar.add_task(description, total=total)
    try:
        yield Task(bar, task_id)
    finally:
        bar.remove_task(task_id)


class StepProgress(L.Callback):
    """Training progress in generator steps of the budget (not loader batches), warm-up shown apart."""

    def __init__(self, name: str, *, max_steps: int, batches_per_step: int, warmup_batches: int) -> None:
        self.name, self.max_steps = name, max_steps
        self.per_step, self.warmup = max(1, batches_per_step), warmup_batches
        self._ctx: Any = None
        self._task: Task = Task(None, None)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            label = f"train {self.name}" + (" (warm-up first)" if self.warmup else "") + ": generator steps"
            self._ctx = task(label, total=self.max_steps)
            self._task = self._ctx.__enter__()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        done = batch_idx + 1 - self.warmup
        if done > 0 and done % self.per_step == 0:
            self._task.advance()

    def _close(self) -> None:
        if self._ctx is not None:
            self._ctx.__exit__(None, None, None)
            self._ctx, self._task = None, Task(None, None)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._close()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._close()
