"""`mia-bench run|audit|grid|leaderboard|list|report`: the command-line front of the runner, the controls' audit,
the grid, the leaderboard and the run reports."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich import box
from rich.console import Console
from rich.table import Table

from mia_bench.errors import MiaBenchError
from mia_bench.external.cli import add_parser as add_audit_release_parser
from mia_bench.external.cli import cmd_audit_release
from mia_bench.grid_cli import add_grid_parser, cmd_grid, seed_value

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
    run.add_argument("--seed", type=seed_value, nargs="+", default=[0], help="one or more seeds (integers >= 0)")
    points = run.add_mutually_exclusive_group()
    points.add_argument("--op", nargs="+", default=None, metavar="POINT",
                        help="operating point(s) of the defense's sweep (default: its default point)")
    points.add_argument("--sweep", action="store_true", help="run every operating point of the defense's sweep")
    run.add_argument("--results-dir", type=Path, default=DEFAULT_RESULTS)
    run.add_argument("--name", type=run_name, default=None,
                     help="folder for this run under results/<suite>/<defense>/ (default: official runs in place, "
                          "runs with overrides under ovr-<config digest>)")
    run.add_argument("--config-dir", type=Path, default=None, help="folder holding suite YAMLs (default: benchmarks/)")
    run.add_argument("--no-progress", action="store_true", help="hide the progress bars (training, attacks, shadow models); the one-line stage notes stay")
    run.add_argument("--wandb", choices=WANDB_MODES, default=None,
                     help="Weights & Biases mode (default: the suite's tracking.wandb, offline)")
    run.add_argument("overrides", nargs="*", help="key=value config overrides, e.g. trainer.max_steps=500")

    audit = sub.add_parser("audit", help="run the suite's controls (memorizer, independent) and check every attack "
                                         "against them; exit 1 when one fails")
    audit.add_argument("--suite", default="digits", help="suite name (benchmarks/<suite>.yaml) or a YAML path")
    audit.add_argument("--seed", type=seed_value, nargs="+", default=[0], help="one or more seeds (integers >= 0)")
    audit.add_argument("--results-dir", type=Path, default=DEFAULT_RESULTS)
    audit.add_argument("--config-dir", type=Path, default=None, help="folder holding suite YAMLs (default: benchmarks/)")
    audit.add_argument("--tolerance", type=tolerance_value, default=None,
                       help="largest |AUC - 0.5| allowed on the independent control (default 0.1)")
    audit.add_argument("--no-progress", action="store_true", help="hide the progress bars (training, attacks, shadow models); the one-line stage notes stay")
    audit.add_argument("--wandb", choices=WANDB_MODES, default="off", help="Weights & Biases mode for the control runs")
    audit.add_argument("overrides", nargs="*", help="key=value config overrides, applied to both controls")

    add_grid_parser(sub, results=DEFAULT_RESULTS, leaderboard=DEFAULT_LEADERBOARD, wandb_modes=WANDB_MODES)

    lb = sub.add_parser("leaderboard", help="fold records into leaderboard entries and render LEADERBOARD.md")
    lb.add_argument("--results-dir", type=Path, default=DEFAULT_RESULTS)
    lb.add_argument("--leaderboard-dir", type=Path, default=DEFAULT_LEADERBOARD)
    lb.add_argument("--wandb", choices=WANDB_MODES, default="off", help="also log the leaderboard as a W&B table")

    sub.add_parser("list", help="registered datasets, defenses, attacks and metrics")
    add_audit_release_parser(sub)
    rep = sub.add_parser("report", help="write report.md and a self-contained report.html into a run folder "
                                        "(verdict, ROC, score histograms, most exposed records)",
                         description="Renders the audit report for a benchmark run folder (results/<suite>/"
                                     "<defense>/.../seed<N>/ with record.json and scores.npz). It writes "
                                     "report.md and report.html in that folder; it rewrites them only when "
                                     "this command wrote them before, and never replaces another report "
                                     "(exit 2). TPR values marked † rest on fewer than 10/FPR non-members.")
    rep.add_argument("folder", type=Path, help="the run folder (holds record.json and scores.npz)")
    return p


def cmd_run(args: argparse.Namespace, console: Console) -> None:
    from mia_bench.config import load_run, points_to_run

    for point in points_to_run(args.defense, args.config_dir, sweep=args.sweep, ops=args.op):
        resolved = load_run(suite=args.suite, defense=args.defense, overrides=_overrides(args),
                            config_dir=args.config_dir, operating_point=point)
        resolved.name = args.name or ""
        _run_seeds(args, console, resolved)


def _run_seeds(args: argparse.Namespace, console: Console, resolved) -> None:  # noqa: ANN001
    from mia_bench.results import RunPaths
    from mia_bench.tables import run_tables

    for seed in args.seed:
        if resolved.point_name:
            console.print(f"[bold]{resolved.defense_name} at operating point {resolved.point_name}[/] "
                          f"({resolved.operating_point.knob})", highlight=False)
        record = _run_one(args, console, resolved, seed)
        if record is None:  # a DDP rank other than 0: it only trained
            continue
        if record.suite_version >= 2 and console.width < 100:
            console.width = 100  # protocol v2's run table is laid out for 100 columns
        for table in run_tables(record):
            console.print(table)
        if record.utility:
            console.print("utility: " + ", ".join(f"{k} {v:.4g}" for k, v in record.utility["metrics"].items()))
        where = RunPaths.for_run(args.results_dir, resolved, seed).root
        console.print(f"results: {where}/  ({record.wall_time_s:.1f} s)", highlight=False, soft_wrap=True)
        if resolved.overrides:
            console.print("[dim]a run with overrides: kept apart from the official run, never on the leaderboard[/]")


def _overrides(args: argparse.Namespace) -> list[str]:
    return list(args.overrides) + (["trainer.progress_bar=false"] if getattr(args, "no_progress", False) else [])


def _run_one(args: argparse.Namespace, console: Console, resolved, seed: int):  # noqa: ANN001, ANN202
    """runner.run for one seed, with the run's W&B tracker and stage printer; the RunRecord or None."""
    from mia_bench.runner import run
    from mia_bench.tracking import for_run

    if args.no_progress and "trainer.progress_bar=false" in resolved.overrides:  # cosmetic: keep it official
        resolved.overrides.remove("trainer.progress_bar=false")
    from mia_bench import progress

    mode = args.wandb or resolved.config.tracking.wandb
    with for_run(mode, resolved, seed, results_dir=args.results_dir) as tracker, \
            progress.reporting(console, enabled=not args.no_progress):
        return run(resolved, seed, results_dir=args.results_dir, tracker=tracker,
                   on_stage=_stage_printer(console, resolved.defense_name, seed))


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
    t = Table(title=f"audit of the {args.suite} suite's attacks against its controls", box=box.SIMPLE_HEAD,
              pad_edge=False, caption="memorizer: AUC / TPR at 1% FPR at least; independent: AUC within 0.5 ± the tolerance")
    for col in ("attack", "control", "seed", "AUC", "TPR@1%", "expected", ""):  # attack names never cut
        t.add_column(col, justify="right" if col in ("seed", "AUC", "TPR@1%") else "left", no_wrap=col == "attack")
    for c in checks:
        t.add_row(c.attack, c.control, str(c.seed), "missing" if c.auc is None else f"{c.auc:.3f}",
                  "" if c.tpr is None else f"{c.tpr:.3f}", c.expected, "[green]pass[/]" if c.passed else "[bold red]FAIL[/]")
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


def cmd_leaderboard(args: argparse.Namespace, console: Console) -> None:

    from mia_bench.guards import check_writable
    from mia_bench.leaderboard import current_suites, load_entries, update_entries, write_leaderboard
    from mia_bench.results import RunRecord, find_records
    from mia_bench.tables import entries_table, level_tables

    if not Path(args.results_dir).is_dir():
        raise MiaBenchError(f"results folder {args.results_dir} does not exist: run `make bench` first, or pass "
                            "the folder your runs wrote with --results-dir")
    entries_dir = args.leaderboard_dir / "entries"
    check_writable(args.leaderboard_dir)
    records = [RunRecord.read(p) for p in find_records(args.results_dir)]
    written = update_entries(records, entries_dir)
    skipped = sum(not r.official for r in records)
    page = args.leaderboard_dir / "LEADERBOARD.md"
    figures = write_leaderboard(entries_dir, page)
    entries = load_entries(entries_dir)
    for (suite, version), group in current_suites(entries):  # the newest protocol version of each suite
        for table in (level_tables(group) if version >= 2 else [entries_table(
                group, f"{suite} (protocol v{version}): worst case over attacks, lower is more private")]):
            console.print(table)
    if args.wandb != "off":
        from mia_bench.tracking import log_leaderboard

        run_id = log_leaderboard(args.wandb, entries, results_dir=args.results_dir, figures=figures)
        console.print(f"W&B leaderboard run: {run_id or 'not logged'}")
    console.print(f"{len(written)} entr{'y' if len(written) == 1 else 'ies'} updated from {len(records)} record(s)"
                  + (f"; {skipped} run(s) with overrides left out" if skipped else "")
                  + f"; the full page (every attack): {page}", highlight=False)


def cmd_list(args: argparse.Namespace, console: Console) -> None:
    """The registry, read from the components' manifest (no torch import: it prints at once), or built from
    the registries when the sources changed since the manifest was generated."""
    from mia_bench.manifest import build, fresh, load

    m = load() if fresh() else build()
    t = Table(title="mia_bench registry")
    t.add_column("kind")
    t.add_column("name")
    t.add_column("details")
    for name, d in m["datasets"].items():
        t.add_row("dataset", name, d["doc"])
    for name, d in m["defenses"].items():
        flags = [f for f in ("control", "reconstructed") if d[f]]
        t.add_row("defense", name, "; ".join(flags + [d["doc"]]))
    for name, d in m["attacks"].items():
        t.add_row("attack", name, f"access={d['access']}; {d['variant']}")
    for name, d in m["metrics"].items():
        t.add_row("metric", name, f"{d['kind']}, {'higher' if d['higher_is_better'] else 'lower'} is better: "
                                  f"{d['description']}")
    console.print(t)


def cmd_report(args: argparse.Namespace, console: Console) -> int:
    from mia_bench.report.run_report import write_run_report

    md, html = write_run_report(args.folder)
    console.print(f"report: {md}, {html}", highlight=False)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)  # overrides may come before or after the options
    flags = [e for e in extra if e.startswith("-") or "=" not in e or args.command not in OVERRIDABLE]
    if flags:
        parser.error(f"unrecognized arguments: {' '.join(flags)}")
    if args.command in OVERRIDABLE:
        args.overrides = [*args.overrides, *extra]
    console = Console()
    try:
        precheck(args)
    except MiaBenchError as e:
        Console(stderr=True).print(f"[bold red]error:[/] {e}", highlight=False)
        return 2
    commands = {"run": cmd_run, "audit": cmd_audit, "grid": cmd_grid, "leaderboard": cmd_leaderboard,
                "list": cmd_list, "audit-release": cmd_audit_release,
                "report": cmd_report}
    try:
        return commands[args.command](args, console) or 0
    except MiaBenchError as e:
        Console(stderr=True).print(f"[bold red]error:[/] {e}", highlight=False)
        return 2
    except KeyboardInterrupt:
        Console(stderr=True).print("interrupted: rerun the same command to go on (finished steps are reused)",
                                   highlight=False, soft_wrap=True)
        return 130


def precheck(args: argparse.Namespace) -> None:
    """Check the command's names, config keys, types and ranges against the components' manifest before
    torch or Lightning is imported: a typo stops within a second, before anything is written. audit-release:
    its paths, gates, model specs, shadow count and --out (external/arguments.py)."""
    if args.command == "audit-release":
        from mia_bench.external.arguments import check

        check(train=args.train, holdout=args.holdout, synthetic=args.synthetic, generator=args.generator,
              discriminator=args.discriminator, reference=args.reference, out=args.out, fail_above=args.fail_above,
              recipe=args.recipe, shadows=args.shadows)
        return
    if args.command not in OVERRIDABLE:
        return
    from mia_bench.config import defense_sweep, load_run, merge_run_config, points_to_run
    from mia_bench.manifest import ManifestSchemas, fresh
    from mia_bench.schema import CONTROLS

    if not fresh():  # sources changed since components.json was generated: the full check (after import) runs
        return
    if args.command == "run":
        for point in points_to_run(args.defense, args.config_dir, sweep=args.sweep, ops=args.op):
            load_run(suite=args.suite, defense=args.defense, overrides=_overrides(args), config_dir=args.config_dir,
                     schemas=ManifestSchemas(), operating_point=point)
        return
    if args.command == "audit":
        defenses = list(CONTROLS)
    elif args.defenses == ["all"]:
        defenses = [str(d) for d in merge_run_config(suite=args.suite, defense="none", overrides=[],
                                                     config_dir=args.config_dir).defenses] or ["none"]
    else:
        defenses = list(args.defenses)
    for defense in defenses:
        sweep = (args.command == "grid" and args.points == "all"
                 and defense_sweep(defense, args.config_dir) is not None)
        for point in points_to_run(defense, args.config_dir, sweep=sweep, ops=None):
            load_run(suite=args.suite, defense=defense, overrides=_overrides(args), config_dir=args.config_dir,
                     schemas=ManifestSchemas(), operating_point=point)


def tolerance_value(text: str) -> float:
    """argparse type of --tolerance: a number in [0, 0.5] (the largest |AUC - 0.5| on the independent control)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--tolerance '{text}' is not a number; e.g. --tolerance 0.1") from None
    if not 0 <= value <= 0.5:
        raise argparse.ArgumentTypeError(f"--tolerance {value:g} is outside [0, 0.5]; e.g. --tolerance 0.1")
    return value


def run_name(text: str) -> str:
    """argparse type of --name: one folder name (letters, digits, . _ -), not seed<k> and not a cache's _ prefix."""
    import re

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", text) or re.fullmatch(r"seed\d+", text):
        raise argparse.ArgumentTypeError(f"--name '{text}': use letters, digits, '.', '_' and '-' (not starting "
                                         "with '.', '_' or '-', not seed<k>), e.g. --name short-budget")
    return text


if __name__ == "__main__":
    sys.exit(main())
