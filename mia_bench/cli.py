"""`mia-bench run|audit|grid|leaderboard|list`: the command-line front of the runner, the controls' audit,
the grid and the leaderboard."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from mia_bench.errors import MiaBenchError
from mia_bench.grid_cli import add_grid_parser, cmd_grid

DEFAULT_RESULTS = Path("results")
DEFAULT_LEADERBOARD = Path("leaderboard")
WANDB_MODES = ("online", "offline", "off")
OVERRIDABLE = ("run", "audit", "grid")  # commands that take key=value overrides


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mia-bench", description="Membership-inference benchmark for generative models.")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="train a defense, attack it, score it, write a record")
    run.add_argument("--suite", default="digits", help="suite name (benchmarks/<suite>.yaml) or a YAML path")
    run.add_argument("--defense", required=True, help="registered defense name (see `mia-bench list`)")
    run.add_argument("--seed", type=int, nargs="+", default=[0], help="one or more seeds")
    run.add_argument("--results-dir", type=Path, default=DEFAULT_RESULTS)
    run.add_argument("--config-dir", type=Path, default=None, help="folder holding suite YAMLs (default: benchmarks/)")
    run.add_argument("--no-progress", action="store_true", help="hide the training progress bar")
    run.add_argument("--wandb", choices=WANDB_MODES, default=None,
                     help="Weights & Biases mode (default: the suite's tracking.wandb, offline)")
    run.add_argument("overrides", nargs="*", help="key=value config overrides, e.g. trainer.max_steps=500")

    audit = sub.add_parser("audit", help="run the suite's controls (memorizer, independent) and check every attack "
                                         "against them; exit 1 when one fails")
    audit.add_argument("--suite", default="digits", help="suite name (benchmarks/<suite>.yaml) or a YAML path")
    audit.add_argument("--seed", type=int, nargs="+", default=[0], help="one or more seeds")
    audit.add_argument("--results-dir", type=Path, default=DEFAULT_RESULTS)
    audit.add_argument("--config-dir", type=Path, default=None, help="folder holding suite YAMLs (default: benchmarks/)")
    audit.add_argument("--tolerance", type=float, default=None,
                       help="largest |AUC - 0.5| allowed on the independent control (default 0.1)")
    audit.add_argument("--no-progress", action="store_true", help="hide the training progress bar")
    audit.add_argument("--wandb", choices=WANDB_MODES, default="off", help="Weights & Biases mode for the control runs")
    audit.add_argument("overrides", nargs="*", help="key=value config overrides, applied to both controls")

    add_grid_parser(sub, results=DEFAULT_RESULTS, leaderboard=DEFAULT_LEADERBOARD, wandb_modes=WANDB_MODES)

    lb = sub.add_parser("leaderboard", help="fold records into leaderboard entries and render LEADERBOARD.md")
    lb.add_argument("--results-dir", type=Path, default=DEFAULT_RESULTS)
    lb.add_argument("--leaderboard-dir", type=Path, default=DEFAULT_LEADERBOARD)
    lb.add_argument("--wandb", choices=WANDB_MODES, default="off", help="also log the leaderboard as a W&B table")

    sub.add_parser("list", help="registered datasets, defenses, attacks and metrics")
    return p


def cmd_run(args: argparse.Namespace, console: Console) -> None:
    from mia_bench.config import load_run

    for seed in args.seed:
        record = _run_one(args, console, load_run(suite=args.suite, defense=args.defense, overrides=_overrides(args),
                                                  config_dir=args.config_dir), seed)
        if record is None:  # a DDP rank other than 0: it only trained
            continue
        console.print(run_table(record))
        if record.utility:
            console.print("utility: " + ", ".join(f"{k} {v:.4g}" for k, v in record.utility["metrics"].items()))
        console.print(f"record: {args.results_dir / record.suite / record.defense / f'seed{seed}' / 'record.json'}"
                      f"  ({record.wall_time_s:.1f} s)")


def _overrides(args: argparse.Namespace) -> list[str]:
    return list(args.overrides) + (["trainer.progress_bar=false"] if args.no_progress else [])


def _run_one(args: argparse.Namespace, console: Console, resolved, seed: int):  # noqa: ANN001, ANN202
    """runner.run for one seed, with the run's W&B tracker and stage printer; the RunRecord or None."""
    from mia_bench.runner import run
    from mia_bench.tracking import for_run

    if args.no_progress:  # cosmetic: keep the record "official"
        resolved.overrides.remove("trainer.progress_bar=false")
    mode = args.wandb or resolved.config.tracking.wandb
    with for_run(mode, resolved, seed, results_dir=args.results_dir) as tracker:
        return run(resolved, seed, results_dir=args.results_dir, tracker=tracker,
                   on_stage=None if args.no_progress else _stage_printer(console, resolved.defense_name, seed))


def cmd_audit(args: argparse.Namespace, console: Console) -> int:
    from mia_bench.audit import CHANCE_TOLERANCE, CONTROLS, check_controls
    from mia_bench.config import load_run

    checks = []
    for seed in args.seed:
        records = [_run_one(args, console, load_run(suite=args.suite, defense=control, overrides=_overrides(args),
                                                    config_dir=args.config_dir), seed)
                   for control in CONTROLS]
        if any(r is None for r in records):  # a DDP rank other than 0: it only trained
            return 0
        checks += check_controls(*records, tolerance=CHANCE_TOLERANCE if args.tolerance is None else args.tolerance)
    t = Table(title=f"audit of the {args.suite} suite's attacks against its controls")
    for col in ("attack", "control", "seed", "AUC", "expected", ""):
        t.add_column(col, justify="right" if col in ("seed", "AUC") else "left")
    for c in checks:
        t.add_row(c.attack, c.control, str(c.seed), "missing" if c.auc is None else f"{c.auc:.3f}", c.expected,
                  "[green]pass[/]" if c.passed else "[bold red]FAIL[/]")
    console.print(t)
    for attack, why in sorted({(c.attack, c.exempt) for c in checks if c.exempt}):
        console.print(f"[dim]exempt: {attack}: {why}[/]", highlight=False)
    failed = [c for c in checks if not c.passed]
    by_fix: dict[str, list[str]] = {}
    for c in failed:
        by_fix.setdefault(f"on {c.control}: {{}}: {c.fix}", []).append(f"{c.attack} (seed {c.seed})")
    for line, names in by_fix.items():
        console.print("[bold red]FAIL[/] " + line.format(", ".join(names)), highlight=False)
    console.print(f"{len(checks) - len(failed)} of {len(checks)} checks passed"
                  + ("; no number from these attack settings should be published until they all do" if failed else ""))
    return 1 if failed else 0


def _stage_printer(console: Console, defense: str, seed: int):  # noqa: ANN202 - Callable[[str], None]
    return lambda stage: console.print(f"[dim]{defense} · seed {seed} · {stage}[/]", highlight=False)


def run_table(record) -> Table:  # noqa: ANN001 - RunRecord
    labels = f" [{', '.join(record.labels)}]" if record.labels else ""
    t = Table(title=f"{record.suite} · {record.defense}{labels} · seed {record.seed} · "
                    f"{record.split_sizes['members']} members vs {record.split_sizes['non_members']} non-members")
    for col in ("attack", "access", "AUC [95% CI]", "TPR@1%FPR", "TPR@0.1%FPR", "prec@n (chance)", "s"):
        t.add_column(col, justify="left" if col in ("attack", "access") else "right")
    for name, res in record.attacks.items():
        m = res["metrics"]
        auc = m["auc"]
        ci = f" [{auc['ci'][0]:.3f}, {auc['ci'][1]:.3f}]" if auc["ci"] else ""
        t.add_row(name, res["access"], f"{auc['value']:.3f}{ci}",
                  _cell(m["tpr@1%fpr"]), _cell(m["tpr@0.1%fpr"]),
                  f"{m['precision@n']['value']:.3f} ({m['precision@n']['chance']:.2f})", f"{res['seconds']:.1f}")
    t.caption = "† underpowered: fewer than 10/x non-members"
    return t


def _cell(metric: dict) -> str:
    flag = "†" if metric.get("detail", {}).get("underpowered") else ""
    return f"{metric['value']:.3f}{flag}"


def cmd_leaderboard(args: argparse.Namespace, console: Console) -> None:
    from mia_bench.leaderboard import update_entries, write_leaderboard
    from mia_bench.results import RunRecord, find_records

    records = [RunRecord.read(p) for p in find_records(args.results_dir)]
    entries_dir = args.leaderboard_dir / "entries"
    written = update_entries(records, entries_dir)
    skipped = sum(not r.official for r in records)
    write_leaderboard(entries_dir, args.leaderboard_dir / "LEADERBOARD.md")
    if args.wandb != "off":
        from mia_bench.leaderboard import load_entries
        from mia_bench.tracking import log_leaderboard

        run_id = log_leaderboard(args.wandb, load_entries(entries_dir), results_dir=args.results_dir)
        console.print(f"W&B leaderboard run: {run_id or 'not logged'}")
    console.print(f"{len(written)} entr{'y' if len(written) == 1 else 'ies'} updated from {len(records)} record(s)"
                  + (f"; {skipped} run(s) with overrides left out" if skipped else "")
                  + f" -> {args.leaderboard_dir / 'LEADERBOARD.md'}")


def cmd_list(args: argparse.Namespace, console: Console) -> None:
    from mia_bench.attacks import ATTACKS
    from mia_bench.data import DATASETS
    from mia_bench.defenses import DEFENSES
    from mia_bench.metrics import METRICS

    t = Table(title="mia_bench registry")
    t.add_column("kind")
    t.add_column("name")
    t.add_column("details")
    for name in DATASETS.names():
        t.add_row("dataset", name, (DATASETS.get(name).__doc__ or "").strip().splitlines()[0])
    for name, cls in DEFENSES.items():
        flags = [f for f, on in (("control", cls.is_control), ("reconstructed", cls.reconstructed)) if on]
        doc = (cls.__doc__ or "").strip().splitlines()[:1]
        t.add_row("defense", name, "; ".join(flags + doc))
    for name, acls in ATTACKS.items():
        t.add_row("attack", name, f"access={acls.access.value}; {acls.variant}")
    for name, spec in METRICS.items():
        t.add_row("metric", name, f"{spec.kind}, {'higher' if spec.higher_is_better else 'lower'} is better: {spec.description}")
    console.print(t)


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)  # overrides may come before or after the options
    flags = [e for e in extra if e.startswith("-") or "=" not in e or args.command not in OVERRIDABLE]
    if flags:
        parser.error(f"unrecognized arguments: {' '.join(flags)}")
    if args.command in OVERRIDABLE:
        args.overrides = [*args.overrides, *extra]
    console = Console()
    commands = {"run": cmd_run, "audit": cmd_audit, "grid": cmd_grid, "leaderboard": cmd_leaderboard,
                "list": cmd_list}
    try:
        return commands[args.command](args, console) or 0
    except MiaBenchError as e:
        Console(stderr=True).print(f"[bold red]error:[/] {e}", highlight=False)
        return 2


if __name__ == "__main__":
    sys.exit(main())
