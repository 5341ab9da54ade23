"""Drives a grid: submits its cells through submitit, shows rich progress, reports failures, and ends
with the leaderboard. The cells themselves, planning and executors live in mia_bench.grid."""

from __future__ import annotations

import time
from collections import deque
from pathlib import Path
from typing import Any

from rich import progress as rp
from rich.console import Console
from rich.table import Table

from mia_bench import grid as g
from mia_bench import leaderboard as lb
from mia_bench.results import RunPaths, RunRecord
from mia_bench.tables import entries_table

POLL_S = 0.5
CONTROLLERS_LOG = "controllers.err"  # the local job controllers' own stderr (the cells log elsewhere)


class GridProgress:
    """Overall bar (cells done / total, elapsed, ETA) plus one line per running cell with its stage."""

    def __init__(self, console: Console, total: int) -> None:
        self.progress = rp.Progress(rp.SpinnerColumn(), rp.TextColumn("{task.description}"), rp.BarColumn(),
                                    rp.MofNCompleteColumn(), rp.TimeElapsedColumn(), rp.TextColumn("ETA"),
                                    rp.TimeRemainingColumn(), console=console, disable=not console.is_terminal)
        self.console = console
        self.overall = self.progress.add_task("cells", total=total)
        self.rows: dict[g.Cell, Any] = {}

    def __enter__(self) -> GridProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def started(self, cell: g.Cell) -> None:
        self.rows[cell] = self.progress.add_task(f"  {cell.name}: queued", total=None)

    def stage(self, cell: g.Cell, text: str) -> None:
        if cell in self.rows:
            self.progress.update(self.rows[cell], description=f"  {cell.name}: {text}")

    def ended(self, out: g.Outcome) -> None:
        task = self.rows.pop(out.cell, None)
        if task is not None:
            self.progress.remove_task(task)
        self.progress.advance(self.overall)
        done = int(self.progress.tasks[self.overall].completed)
        total = self.progress.tasks[self.overall].total
        if out.status == "done":
            self.console.print(f"[green]✓[/] [{done}/{total}] {out.cell.name} ({out.seconds:.1f} s)")
        else:
            self.console.print(f"[red]✗[/] [{done}/{total}] {out.cell.name} {out.status}: {out.error}"
                               + (f"\n    log: {out.log}" if out.log else ""), highlight=False)
            if out.log and out.log.is_file():
                tail = out.log.read_text(errors="replace").strip().splitlines()[-12:]
                self.console.print("\n".join(f"    | {ln}" for ln in tail), highlight=False, markup=False)


def execute(cells: list[g.Cell], options: g.GridOptions, console: Console) -> list[g.Outcome]:
    """Run `cells`; local cells at most `options.parallel` at once, SLURM cells as one job array."""
    folder = Path(options.results_dir) / (cells[0].suite if cells else "grid") / "_grid" / "logs"
    executor = g.make_executor(options, folder)
    threads = g.threads_per_cell(options)
    queue = deque(cells)
    running: dict[Any, tuple[g.Cell, float]] = {}
    outcomes: list[g.Outcome] = []
    args = (str(options.results_dir), options.wandb, threads)
    with GridProgress(console, len(cells)) as ui, g.sigterm_stops() as stop:
        try:
            if options.executor == "slurm":  # the cluster schedules; array_parallelism limits it
                with executor.batch():
                    jobs = [executor.submit(g.run_cell, c, *args) for c in queue]
                running.update({j: (c, time.time()) for j, c in zip(jobs, queue, strict=True)})
                queue.clear()
                for c in cells:
                    ui.started(c)
            while queue or running:
                stop.check()
                while queue and len(running) < max(1, options.parallel):
                    cell = queue.popleft()
                    with g.stderr_into(folder / CONTROLLERS_LOG):  # what a cancelled controller prints
                        running[executor.submit(g.run_cell, cell, *args)] = (cell, time.time())
                    ui.started(cell)
                for job, (cell, t0) in list(running.items()):
                    if job.done():
                        del running[job]
                        out = g.collect(job, cell, t0)
                        outcomes.append(out)
                        ui.ended(out)
                    else:
                        ui.stage(cell, _read_stage(g.status_path(options.results_dir, cell)))
                time.sleep(POLL_S)
            stop.check()  # a SIGTERM after the last cell ended still stops the grid before its leaderboard
        except (g.GridInterrupted, KeyboardInterrupt):
            _interrupt(running, options, console)
            outcomes += [g.Outcome(c, "interrupted") for c, _ in running.values()]
            outcomes += [g.Outcome(c, "interrupted") for c in queue]
            raise
    return outcomes


def _interrupt(running: dict[Any, tuple[g.Cell, float]], options: g.GridOptions, console: Console) -> None:
    if options.executor == "local":
        g.cancel_local(list(running))
        console.print(f"[yellow]grid interrupted:[/] cancelled {len(running)} running cell(s); "
                      "finished cells are kept and a rerun skips them")
    else:
        console.print(f"[yellow]grid interrupted:[/] {len(running)} SLURM job(s) keep running "
                      f"({', '.join(str(j.job_id) for j in running)}); a rerun skips the cells they finish")


def _read_stage(path: Path) -> str:
    try:
        return path.read_text().strip() or "starting"
    except OSError:
        return "starting"


def grid_records(cells: list[g.Cell], results_dir: Path) -> list[RunRecord]:
    out = []
    for c in cells:
        path = RunPaths.for_run(results_dir, c.resolve(), c.seed).record
        if path.is_file():
            out.append(RunRecord.read(path))
    return out


def update_leaderboard(records: list[RunRecord], leaderboard_dir: Path) -> list[Path]:
    """Fold the official records into the committed entries and regenerate LEADERBOARD.md."""
    written = lb.update_entries(records, Path(leaderboard_dir) / "entries")
    lb.write_leaderboard(Path(leaderboard_dir) / "entries", Path(leaderboard_dir) / "LEADERBOARD.md")
    return written


def grid_table(records: list[RunRecord], title: str) -> Table:
    """The grid's cells folded like the leaderboard (mean ± 95% t-interval over seeds), ranked; one line
    per defense with its strongest attack (the per-attack columns are in LEADERBOARD.md)."""
    by_config: dict[tuple[str, int, str, str], list[RunRecord]] = {}
    for r in records:
        point = str((r.operating_point or {}).get("name") or "")
        by_config.setdefault((r.defense, r.suite_version, r.config_digest, point), []).append(r)
    return entries_table([lb.build_entry(rs) for rs in by_config.values()], title)


def failure_summary(outcomes: list[g.Outcome]) -> str:
    bad = [o for o in outcomes if o.status == "failed"]
    return "; ".join(f"{o.cell.name} ({o.log})" for o in bad)
