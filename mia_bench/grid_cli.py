"""`mia-bench grid`: its options and command (the grid itself is mia_bench.grid / mia_bench.grid_driver)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from rich.console import Console


def _int_at_least(low: int, what: str) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not an integer; {what}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{value} is below {low}; {what}")
        return value

    return parse


seed_value = _int_at_least(0, "seeds are integers >= 0, e.g. --seed 0 1 2")
positive_int = _int_at_least(1, "use an integer >= 1, e.g. --parallel 2")
nonnegative_int = _int_at_least(0, "use an integer >= 0, e.g. --threads 1 (0: one thread per cell)")


def add_grid_parser(sub: Any, *, results: Path, leaderboard: Path, wandb_modes: tuple[str, ...]) -> None:
    """The `grid` subcommand; overrides (key=value) apply to every cell, SLURM options to every job."""
    grid = sub.add_parser("grid", help="every defense x operating point x seed of a suite as jobs (local or SLURM); skips "
                               "finished cells")
    grid.add_argument("--suite", default="digits")
    grid.add_argument("--defenses", nargs="+", default=["all"], help="'all' (the suite's defenses list) or names")
    grid.add_argument("--points", choices=("published", "all", "default"), default="published",
                      help="operating points: the suite's published grid (default: each defense's default point "
                           "and every point of the suite's leaderboard.sweeps), every point of every sweep, or "
                           "each defense's default point only")
    grid.add_argument("--seeds", type=seed_value, nargs="+", default=None, help="default: the suite's seeds")
    grid.add_argument("--executor", choices=("local", "slurm"), default="local")
    grid.add_argument("--parallel", type=positive_int, default=os.cpu_count() or 1,
                      help="local: cells at once (default: one per CPU); slurm: array parallelism")
    grid.add_argument("--threads", type=nonnegative_int, default=0, help="torch threads per local cell (default 1)")
    grid.add_argument("--results-dir", type=Path, default=results)
    grid.add_argument("--leaderboard-dir", type=Path, default=leaderboard)
    grid.add_argument("--config-dir", type=Path, default=None)
    grid.add_argument("--wandb", choices=wandb_modes, default=None)
    for opt, kind, help_ in (("--partition", str, "SLURM partition"), ("--gpus-per-node", int, "GPUs per job"),
                             ("--cpus-per-task", int, "CPUs per task"), ("--mem-gb", int, "memory per job"),
                             ("--timeout-min", int, "wall-clock limit per job"), ("--nodes", int, "nodes per job"),
                             ("--account", str, "SLURM account"), ("--qos", str, "SLURM QoS"),
                             ("--constraint", str, "SLURM constraint")):
        grid.add_argument(opt, type=kind, default=None, help=help_)
    grid.add_argument("overrides", nargs="*", help="key=value overrides applied to every cell")


def cmd_grid(args: argparse.Namespace, console: Console) -> int:
    """Plan, run the unfinished cells, fold every record into the leaderboard; 1 if a cell failed."""
    from mia_bench.config import load_run
    from mia_bench.grid import GridInterrupted, GridOptions, plan, suite_defenses
    from mia_bench.grid_driver import execute, failure_summary, grid_records, grid_table, update_leaderboard

    defenses = args.defenses if args.defenses != ["all"] else suite_defenses(args.suite, args.config_dir)
    base = load_run(suite=args.suite, defense=defenses[0], overrides=args.overrides, config_dir=args.config_dir)
    seeds = args.seeds if args.seeds is not None else list(base.config.seeds)
    todo, done = plan(suite=args.suite, defenses=defenses, seeds=seeds, overrides=args.overrides,
                      results_dir=args.results_dir, config_dir=args.config_dir, points=args.points)
    slurm = {k: v for k in ("partition", "gpus_per_node", "cpus_per_task", "mem_gb", "timeout_min", "nodes",
                            "account", "qos", "constraint") if (v := getattr(args, k)) is not None}
    trainer = base.config.trainer
    slurm = {"tasks_per_node": trainer.devices, "nodes": trainer.num_nodes, **slurm}
    options = GridOptions(results_dir=args.results_dir, executor=args.executor, parallel=args.parallel,
                          threads=args.threads, wandb=args.wandb or base.config.tracking.wandb, slurm=slurm)
    points = len({(c.defense, c.operating_point) for c in todo + done})
    console.print(f"grid {base.config.suite}: {len(todo) + len(done)} cells ({len(defenses)} defenses at {points} "
                  f"operating points x {len(seeds)} seeds)")
    console.print(f"{len(done)} already finished, {len(todo)} to run on {args.executor}")
    try:
        outcomes = execute(todo, options, console) if todo else []
    except GridInterrupted:
        return 143  # 128 + SIGTERM
    except KeyboardInterrupt:
        return 130
    records = grid_records(todo + done, args.results_dir)
    update_leaderboard(records, args.leaderboard_dir)
    console.print(grid_table(records, f"{base.config.suite}: {len(records)} run(s)"
                             + (" with overrides (not published)" if args.overrides else "")))
    failed = failure_summary(outcomes)
    if failed:
        Console(stderr=True).print(f"[bold red]failed cells:[/] {failed}", highlight=False)
        return 1
    return 0
