"""The grid: every (defense, operating point, seed) cell of a suite as an independent job sharing one results folder.

    mia-bench grid --suite digits --defenses all --seeds 0 1 2 [--executor local|slurm] [key=value ...]

Jobs go through submitit (LocalExecutor on this machine, SlurmExecutor on a cluster); mia_bench only
decides which cells to submit and how many local cells run at once. A cell writes its record last and
atomically (runner.run), so a killed grid loses at most the cells in flight, and a rerun skips every
finished cell: a readable record whose config digest matches the cell's (and that is official exactly when
the cell is). A trained checkpoint with a matching digest is reused, so a cell killed after training
resumes at its attacks. A failing cell is reported with its log and does not stop the others.
"""

from __future__ import annotations

import os
import re
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L

from mia_bench.config import REPO_ROOT, defense_sweep, load_run, suite_path
from mia_bench.errors import ConfigError, MiaBenchError
from mia_bench.io import atomic_write_text
from mia_bench.results import RunPaths, RunRecord


@dataclass(frozen=True)
class Cell:
    """One run of the grid: suite x defense x operating point x seed, with the grid's overrides.
    operating_point: a point of the defense's sweep ("": its default point, or a defense without one)."""

    suite: str
    defense: str
    seed: int
    overrides: tuple[str, ...] = ()
    config_dir: str | None = None
    operating_point: str = ""

    @property
    def name(self) -> str:
        at = f"@{self.operating_point}" if self.operating_point else ""
        return f"{self.defense}{at}/seed{self.seed}"

    def resolve(self) -> Any:
        return load_run(suite=self.suite, defense=self.defense, overrides=list(self.overrides),
                        config_dir=Path(self.config_dir) if self.config_dir else None,
                        operating_point=self.operating_point or None)


@dataclass
class GridOptions:
    results_dir: Path
    executor: str = "local"  # local | slurm
    parallel: int = 1  # local: cells at once; slurm: array parallelism
    threads: int = 0  # torch threads per local cell (0: one; see threads_per_cell)
    wandb: str = "offline"
    slurm: dict[str, Any] = field(default_factory=dict)  # partition, gpus_per_node, cpus_per_task, mem_gb, ...


@dataclass
class Outcome:
    cell: Cell
    status: str  # done | failed | skipped | interrupted
    seconds: float = 0.0
    error: str = ""
    log: Path | None = None


def _suite_node(suite: str, config_dir: Path | None) -> dict[str, Any]:
    from omegaconf import OmegaConf

    node = OmegaConf.to_container(OmegaConf.load(suite_path(suite, Path(config_dir) if config_dir
                                                             else REPO_ROOT / "benchmarks")))
    return node if isinstance(node, dict) else {}


def _suite_list(suite: str, key: str, config_dir: Path | None) -> list[Any]:
    return list(_suite_node(suite, config_dir).get(key) or [])


def suite_defenses(suite: str, config_dir: Path | None = None) -> list[str]:
    """The suite's `defenses:` list (what `--defenses all` runs)."""
    names = _suite_list(suite, "defenses", config_dir)
    if not names:
        raise ConfigError(f"suite '{suite}' lists no `defenses:`; name them with --defenses NAME ...")
    return [str(n) for n in names]


def suite_seeds(suite: str, config_dir: Path | None = None) -> list[int]:
    """The suite's `seeds:` list (what a grid runs by default); [] when it names none."""
    return [int(s) for s in _suite_list(suite, "seeds", config_dir)]


def published_sweeps(suite: str, config_dir: Path | None = None) -> list[str] | None:
    """The defenses whose every operating point is in the suite's published grid (`leaderboard.sweeps`; the
    others are there at their default point); None: every point of every defense is."""
    node = _suite_node(suite, config_dir)
    sweeps = (node.get("leaderboard") or {}).get("sweeps")
    if sweeps is None:
        return None
    named = [str(d) for d in node.get("defenses") or []]
    if unknown := [str(d) for d in sweeps if str(d) not in named]:
        raise ConfigError(f"suite '{suite}': leaderboard.sweeps names {unknown}, not in its `defenses:` "
                          f"({', '.join(named) or 'none'}); fix the name or add the defense there")
    return [str(d) for d in sweeps]


def in_published(defense: str, default_point: bool, sweeps: list[str] | None) -> bool:
    """Whether a (defense, operating point) is a cell of the published grid (see published_sweeps)."""
    return sweeps is None or default_point or defense in sweeps


def plan(*, suite: str, defenses: list[str], seeds: list[int], overrides: list[str], results_dir: Path,
         config_dir: Path | None = None, points: str = "published") -> tuple[list[Cell], list[Cell]]:
    """(cells to run, cells already finished), at every seed: `points="published"` the suite's published
    grid (published_sweeps: each defense's default point, every point of the named ones); "all" every
    operating point of every sweep; "default" each defense's default point only. Every cell's config is
    resolved here, so a typo fails the whole grid before anything is submitted."""
    from mia_bench.defenses import DEFENSES

    names = suite_defenses(suite, config_dir) if defenses == ["all"] else defenses
    for n in names:
        DEFENSES.get(n)  # unknown names fail with "did you mean"
    if points not in ("published", "all", "default"):
        raise ConfigError(f"points must be 'published', 'all' or 'default', got {points!r}")
    sweeps = published_sweeps(suite, config_dir) if points == "published" else None
    todo: list[Cell] = []
    done: list[Cell] = []
    for defense in dict.fromkeys(names):
        sweep = defense_sweep(defense, config_dir)
        every = [("" if p.is_default else p.name) for p in sweep.points] if sweep is not None else [""]
        # the default point's cell is named without it, and every sweep has one
        wanted = [""] if points == "default" else [n for n in every if in_published(defense, not n, sweeps)]
        for point in wanted:
            for seed in dict.fromkeys(seeds):
                cell = Cell(suite, defense, seed, tuple(overrides), str(config_dir) if config_dir else None, point)
                (done if finished(cell, results_dir) else todo).append(cell)
    return todo, done


def finished(cell: Cell, results_dir: Path) -> bool:
    resolved = cell.resolve()
    path = RunPaths.for_run(results_dir, resolved, cell.seed).record
    if not path.is_file():
        return False
    try:
        record = RunRecord.read(path)
    except MiaBenchError:
        return False  # unreadable: run it again (the rewrite is atomic)
    return record.config_digest == resolved.digest() and record.official == (not cell.overrides)


def status_path(results_dir: Path, cell: Cell) -> Path:
    at = f"@{cell.operating_point}" if cell.operating_point else ""
    return Path(results_dir) / cell.suite / "_grid" / "status" / f"{cell.defense}{at}-seed{cell.seed}"


class _StageFile(L.Callback):
    """Writes the cell's current stage (and training step) for the grid's progress display."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, text: str) -> None:
        with suppress(OSError):  # progress is cosmetic: never fail a cell over it
            atomic_write_text(self.path, text)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        total, i = int(trainer.num_training_batches), batch_idx + 1
        if trainer.is_global_zero and (i % max(1, total // 50) == 0 or i == total):
            self.write(f"train {i}/{total}")


def run_cell(cell: Cell, results_dir: str, wandb: str = "offline", threads: int = 0) -> dict[str, Any] | None:
    """The job: one benchmark run with tracking. Returns a summary, or None on DDP ranks other than 0."""
    import torch

    from mia_bench.runner import run
    from mia_bench.tracking import for_run

    if threads > 0:
        torch.set_num_threads(threads)
    resolved = cell.resolve()
    stage = _StageFile(status_path(Path(results_dir), cell))
    try:
        with for_run(wandb, resolved, cell.seed, results_dir=Path(results_dir)) as tracker:
            record = run(resolved, cell.seed, results_dir=Path(results_dir), tracker=tracker, callbacks=[stage],
                         on_stage=stage.write)
    finally:
        stage.path.unlink(missing_ok=True)
    if record is None:
        return None
    return {"wall_time_s": record.wall_time_s, "wandb_run_id": record.wandb_run_id,
            "record": str(RunPaths.for_run(Path(results_dir), resolved, record.seed).record)}


def make_executor(options: GridOptions, folder: Path) -> Any:
    """A submitit executor for `options.executor` (logs and job pickles go to `folder`)."""
    import submitit

    if options.executor == "local":
        local = submitit.LocalExecutor(folder=folder)
        local.update_parameters(timeout_min=int(options.slurm.get("timeout_min", 24 * 60)))
        return local
    if options.executor != "slurm":
        raise ConfigError(f"executor '{options.executor}' is not one of local, slurm")
    s = options.slurm
    gpus = int(s.get("gpus_per_node") or 0)
    ex = submitit.SlurmExecutor(folder=folder, max_num_timeout=int(s.get("max_num_timeout", 3)))
    params: dict[str, Any] = dict(
        job_name=f"mia_bench-{s.get('job_name', 'grid')}", time=int(s.get("timeout_min", 120)),
        # one task per device: under SLURM each task is a DDP rank (Lightning reads SLURM's variables)
        nodes=int(s.get("nodes", 1)), ntasks_per_node=int(s.get("tasks_per_node", 1)),
        cpus_per_task=int(s.get("cpus_per_task", 4)), mem=f"{int(s.get('mem_gb', 16))}GB",
        array_parallelism=max(1, options.parallel), signal_delay_s=int(s.get("signal_delay_s", 120)))
    if gpus:
        params["gpus_per_node"] = gpus
    for key in ("partition", "account", "qos", "constraint", "exclude"):
        if s.get(key):
            params[key] = s[key]
    ex.update_parameters(**params)
    return ex


def threads_per_cell(options: GridOptions) -> int:
    """Torch threads of a local cell (0: torch's default, for SLURM cells sized by cpus_per_task).

    One by default: the suite's MLP steps are too small to gain from intra-op threads, and with every core
    busy, two OpenMP threads per process made training 10-50x slower here (1000 `none` steps: 4-6 s on
    one thread, 68-328 s on two, on 2 shared cores); run more cells in parallel instead."""
    if options.threads > 0:
        return options.threads
    return 1 if options.executor == "local" else 0


class GridInterrupted(Exception):
    """SIGTERM reached the grid: in-flight local cells are cancelled, finished ones are kept."""


class Stop:
    """What SIGTERM sets; the grid's loop calls check() and raises GridInterrupted there. The handler itself
    raises nothing: an exception raised in a signal handler surfaces in whatever code the signal lands in,
    and there it can be lost (measured: in submitit's LocalJob.__del__, which swallowed it and let the grid
    run on) or cut the grid's own cancelling short (a second SIGTERM, as `timeout` forwarding one and
    `pkill` sending another do, left two digits cells running, orphaned)."""

    def __init__(self) -> None:
        self.signum = 0

    def check(self) -> None:
        if self.signum:
            raise GridInterrupted(f"signal {self.signum}")


@contextmanager
def sigterm_stops() -> Iterator[Stop]:
    """A Stop that SIGTERM sets (in the main thread) for the block, so the grid can cancel its jobs; the
    handler in place before is restored after."""
    stop = Stop()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum: int, frame: Any) -> None:
        stop.signum = signum

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGTERM, old)


def collect(job: Any, cell: Cell, t0: float) -> Outcome:
    """The outcome of a finished job: done, or failed with its error and log."""
    log = Path(job.paths.stderr)
    try:
        job.results()
    except Exception as e:  # submitit's FailedJobError / UncompletedJobError carry the traceback
        return Outcome(cell, "failed", time.time() - t0, error=_exception_line(str(e)) or type(e).__name__, log=log)
    return Outcome(cell, "done", time.time() - t0, log=log)


def _exception_line(trace: str) -> str:
    """The last `SomeError: message` line of a traceback (what a reader needs first)."""
    found = [ln for ln in trace.splitlines() if re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b", ln)]
    return found[-1].strip() if found else ""


@contextmanager
def stderr_into(path: Path) -> Iterator[None]:
    """File descriptor 2 pointed at `path` (appended) for the block, the grid's own stderr restored after.

    A process started inside inherits it: submitit's local job controllers, which are started with the
    grid's stderr, so that a controller cancelled with SIGINT prints its KeyboardInterrupt traceback into
    this log and not over the grid's terminal (seen once per cancelled cell before this). The cells
    themselves write to their own logs, as before."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(path, "ab") as log:
            os.dup2(log.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def cancel_local(jobs: list[Any]) -> None:
    """Stop running local jobs and wait (bounded) until they are gone, so a rerun never races them.

    submitit cancels with SIGINT (its controller then stops the cell), but a grid started in the background
    or under nohup inherits SIGINT as ignored; SIGTERM, which the controller forwards to its cell, follows.
    A LocalJob's id is its controller's pid. The cell processes under each controller are noted first and
    stopped too: a controller killed outright leaves its cell running, orphaned."""
    tree = [pid for job in jobs for pid in _descendants(_pid(job))]
    for job in jobs:
        job.cancel()
    for sig, wait_s in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 10.0)):
        if _wait_done(jobs, wait_s):
            break
        for job in jobs:
            if not job.done():
                tree += _descendants(_pid(job))  # a cell may have started since
                with suppress(ProcessLookupError, ValueError):
                    os.kill(int(job.job_id), sig)
    else:
        _wait_done(jobs, 5.0)
    for sig, wait_s in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 5.0)):
        alive = [pid for pid in tree if _running(pid)]
        for pid in alive:
            with suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        end = time.time() + wait_s
        while any(_running(pid) for pid in alive) and time.time() < end:
            time.sleep(0.1)


def _pid(job: Any) -> int:
    try:
        return int(job.job_id)
    except (TypeError, ValueError):
        return -1


def _descendants(pid: int) -> list[int]:
    """The live descendants of process `pid` (read from Linux's /proc; none where there is no /proc)."""
    children: dict[int, list[int]] = {}
    proc = Path("/proc")
    if pid < 0 or not proc.is_dir():
        return []
    for entry in proc.iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _running(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _wait_done(jobs: list[Any], timeout_s: float) -> bool:
    end = time.time() + timeout_s
    while not all(j.done() for j in jobs):
        if time.time() > end:
            return False
        time.sleep(0.1)
    return True
