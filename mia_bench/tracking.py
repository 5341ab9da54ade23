"""Weights & Biases tracking: one W&B run per benchmark run, through Lightning's WandbLogger.

A run logs: the training losses of every player (the defenses' `self.log_dict`, every
`trainer.log_every_n_steps`, x-axis `trainer/global_step`), the resolved config, per-attack ROC curves
(a W&B line chart per attack, and one figure with every attack on linear and log-log axes), the metrics
table, a grid of released samples, and the record (record.json + scores.npz) as an artifact. The
leaderboard command logs the leaderboard as a table in a run of its own.

Modes: `offline` (default: everything is written under <results>/wandb/ and uploaded later with
`wandb sync <results>/wandb/offline-run-*`), `online`, `off`. Tracking never blocks or fails a run: online
mode falls back to offline when the W&B host cannot be reached (checked with a short probe before
wandb.init), and any W&B error turns tracking off for the rest of the run with a warning.
"""

from __future__ import annotations

import enum
import logging
import os
import shutil
import socket
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlparse

from mia_bench.distributed import is_global_zero
from mia_bench.errors import ConfigError

log = logging.getLogger(__name__)
PROBE_TIMEOUT_S = 3.0


class WandbMode(str, enum.Enum):
    ONLINE = "online"
    OFFLINE = "offline"
    OFF = "off"

    @classmethod
    def of(cls, value: str | WandbMode) -> WandbMode:
        try:
            return cls(value)
        except ValueError:
            raise ConfigError(f"wandb mode {value!r} is not one of online, offline, off") from None


def wandb_dir(results_dir: Path) -> Path:
    """Where W&B writes its run folders: <results>/wandb/ (never the repository root)."""
    return Path(results_dir).resolve() / "wandb"


def reachable(url: str | None = None, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Can a TCP connection to the W&B host be opened within `timeout` s (name lookup included)?"""
    parsed = urlparse(url or os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai")
    host, port = parsed.hostname or "api.wandb.ai", parsed.port or (443 if parsed.scheme != "http" else 80)
    ok: list[bool] = []

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            ok.append(True)
        except OSError:
            pass

    t = threading.Thread(target=probe, daemon=True)  # getaddrinfo ignores socket timeouts
    t.start()
    t.join(timeout)
    return bool(ok)


class Tracker:
    """A W&B run (or nothing, when off). Every method is safe to call and never raises."""

    def __init__(self, run: Any = None, mode: WandbMode = WandbMode.OFF) -> None:
        self.run, self.mode = run, mode
        self._logger: Any = None

    @classmethod
    def start(cls, mode: str | WandbMode, *, results_dir: Path, name: str, group: str | None = None,
              job_type: str = "run", config: dict[str, Any] | None = None, tags: list[str] | None = None,
              project: str = "mia_bench", entity: str | None = None) -> Tracker:
        """Open a W&B run in `mode` on global rank zero only (other DDP ranks get an inactive Tracker)."""
        mode = WandbMode.of(mode)
        if mode is WandbMode.OFF or not is_global_zero():
            return cls()
        if mode is WandbMode.ONLINE and not reachable():
            log.warning("W&B host unreachable: logging offline instead (upload later with `wandb sync`)")
            mode = WandbMode.OFFLINE
        save_dir = wandb_dir(results_dir)
        save_dir.mkdir(parents=True, exist_ok=True)
        kwargs = dict(dir=str(save_dir.parent),  # wandb.init(dir=D) writes D/wandb/ project=project, entity=entity, name=name, group=group, job_type=job_type,
                      config=config or {}, tags=tags, reinit="finish_previous")
        for attempt in ((mode,) if mode is WandbMode.OFFLINE else (mode, WandbMode.OFFLINE)):
            try:
                return cls(_init(attempt, kwargs), attempt)
            except Exception as e:  # wandb raises many kinds (UsageError, CommError, timeouts)
                log.warning("W&B %s init failed (%s: %s)", attempt.value, type(e).__name__, str(e).splitlines()[:1])
        log.warning("W&B tracking is off for this run")
        return cls()

    @property
    def active(self) -> bool:
        return self.run is not None

    @property
    def run_id(self) -> str | None:
        return self.run.id if self.run is not None else None

    @property
    def run_dir(self) -> Path | None:
        """The run's folder (<results>/wandb/offline-run-<date>-<id>/)."""
        return Path(self.run.dir).parent if self.run is not None else None

    @property
    def logger(self) -> Any:
        """Lightning's WandbLogger on this run (False when tracking is off), for Trainer(logger=...)."""
        if self.run is None:
            return False
        if self._logger is None:
            from lightning.pytorch.loggers import WandbLogger

            self._logger = WandbLogger(experiment=self.run, save_dir=str(Path(self.run.dir).parent))
            # what WandbLogger does for runs it creates itself: training curves use the trainer's step
            self.run.define_metric("trainer/global_step")
            self.run.define_metric("*", step_metric="trainer/global_step", step_sync=True)
        return self._logger

    def guard(self, what: str, fn: Callable[[], None]) -> None:
        """Run `fn`; a W&B error turns tracking off (with a warning) instead of failing the run."""
        if self.run is None:
            return
        try:
            fn()
        except Exception as e:
            log.warning("W&B: could not log %s (%s: %s); tracking off for this run", what, type(e).__name__, e)
            self.finish(exit_code=1)

    def log_run(self, record: Any, paths: Any, info: Any = None) -> None:
        """After the record is written: ROC curves, metrics table, samples grid, the record artifact."""
        from mia_bench.report import media

        self.guard("the results", lambda: media.log_results(self.run, record, paths, info))
        self.guard("the record artifact", lambda: self._log_record_artifact(record, paths))

    def _log_record_artifact(self, record: Any, paths: Any) -> None:
        import wandb

        # copies live inside the offline run folder, so `wandb sync` finds them even after a rerun rewrites
        # the results; "immutable" stops W&B from staging another copy in ~/.local/share
        keep = self.run_dir / "artifact"  # type: ignore[operator]
        keep.mkdir(exist_ok=True)
        art = wandb.Artifact(f"record-{record.suite}-{record.defense}-seed{record.seed}", type="mia-bench-record",
                             metadata={"config_digest": record.config_digest, "split_digest": record.split_digest})
        for src in (paths.record, paths.scores):
            shutil.copy2(src, keep / Path(src).name)
            art.add_file(str(keep / Path(src).name), name=Path(src).name, policy="immutable")
        self.run.log_artifact(art)

    def finish(self, exit_code: int = 0) -> None:
        run, self.run = self.run, None
        if run is not None:
            try:
                run.finish(exit_code=exit_code)
            except Exception as e:
                log.warning("W&B finish failed (%s: %s)", type(e).__name__, e)

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        orphan = self.run_dir if exc_type is not None and issubclass(exc_type, KeyboardInterrupt) else None
        self.finish(exit_code=0 if exc_type is None else 1)
        if orphan is not None and self.mode is WandbMode.OFFLINE:
            shutil.rmtree(orphan, ignore_errors=True)  # an interrupted run has no result: leave no half a run


def _init(mode: WandbMode, kwargs: dict[str, Any]) -> Any:
    import wandb

    # no console capture, system stats, git or code snapshot: a run's record already holds its environment
    options: dict[str, Any] = dict(mode=mode.value, silent=True, console="off", save_code=False, disable_git=True,
                                   x_disable_stats=True, x_disable_machine_info=True, init_timeout=30)
    settings = wandb.Settings(**options)
    return wandb.init(settings=settings, **kwargs)


def _at(resolved: Any) -> str:
    point = getattr(resolved, "point_name", "")
    return f"@{point}" if point else ""


def for_run(mode: str | WandbMode, resolved: Any, seed: int, *, results_dir: Path) -> Tracker:
    """The tracker of one benchmark run: name <suite>/<defense>/seed<k>, grouped by suite and defense."""
    cfg = resolved.config
    return Tracker.start(mode, results_dir=results_dir, name=f"{cfg.suite}/{resolved.defense_name}{_at(resolved)}/seed{seed}",
                         group=f"{cfg.suite}/{resolved.defense_name}", job_type="run",
                         config={**resolved.to_dict(), "seed": seed, "overrides": list(resolved.overrides),
                                 "config_digest": resolved.digest()},
                         tags=[cfg.suite, resolved.defense_name], project=cfg.tracking.project,
                         entity=cfg.tracking.entity)


def log_leaderboard(mode: str | WandbMode, entries: list[dict[str, Any]], *, results_dir: Path,
                    project: str = "mia_bench", figures: Sequence[Path] = ()) -> str | None:
    """Log the leaderboard (one W&B table per suite) and its figures (the frontier PNGs, keyed
    `figures/<file stem>`) in a run of its own; returns the run id."""
    from mia_bench.report import media

    with Tracker.start(mode, results_dir=results_dir, name="leaderboard", job_type="leaderboard",
                       project=project) as tracker:
        tracker.guard("the leaderboard", lambda: media.log_leaderboard_tables(tracker.run, entries))
        tracker.guard("the leaderboard's figures", lambda: media.log_figures(tracker.run, figures))
        return tracker.run_id
