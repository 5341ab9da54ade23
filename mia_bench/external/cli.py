"""`mia-bench audit-release`: the command-line front of mia_bench.external.audit.audit_release."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from mia_bench.external.gate import GATE_EXIT_CODE


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("audit-release", help="audit your own generator or synthetic data against your train / "
                                             "hold-out records; --fail-above exits 3 when it leaks more")
    p.add_argument("--train", type=Path, required=True, help="the records the model was trained on")
    p.add_argument("--holdout", type=Path, required=True, help="records from the same distribution it never saw")
    p.add_argument("--synthetic", type=Path, help="released samples: .npz/.npy/.csv/.parquet or an image folder")
    p.add_argument("--generator", help="TorchScript file or module:callable (generator access)")
    p.add_argument("--discriminator", help="TorchScript file or module:callable (white-box access)")
    p.add_argument("--recipe", metavar="MODULE:CALLABLE",
                   help="recipe(x, y=None, seed=0) that trains your model on x and returns it (sample(n); "
                        "optionally generate(z) + z_dim, discriminate(x)); unlocks LiRA, calibrated "
                        "GAN-Leaks and LOGAN-bb")
    p.add_argument("--shadows", type=int, default=16, metavar="K",
                   help="shadow models the recipe trains for LiRA (default 16; at least 4)")
    p.add_argument("--reference", type=Path, help="attacker data (default: half of the hold-out)")
    p.add_argument("--out", type=Path, help="output folder (default results/audits/<name>/)")
    p.add_argument("--name", default="audit", help="audit name (default: audit)")
    p.add_argument("--fail-above", action="append", default=[], metavar="[LEVEL:]METRIC=VALUE",
                   help=f"privacy gate, e.g. tpr@1%%fpr=0.05; exit {GATE_EXIT_CODE} when exceeded")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")


def cmd_audit_release(args: argparse.Namespace, console: Console) -> int:
    from mia_bench import progress
    from mia_bench.external.audit import audit_release
    from mia_bench.report.audit_report import DAGGER_NOTE, meaning, verdict_lines

    with progress.reporting(console, enabled=not args.no_progress):
        res = audit_release(train=args.train, holdout=args.holdout, synthetic=args.synthetic,
                            generator=args.generator, discriminator=args.discriminator, reference=args.reference,
                            out=args.out, name=args.name, fail_above=args.fail_above, seed=args.seed,
                            recipe=args.recipe, shadows=args.shadows)
    for note in res.notes:
        console.print(f"[dim]note: {note}[/]", highlight=False)
    lines = verdict_lines(res.record)
    for line in lines:
        console.print(line, highlight=False)
    if any("†" in line for line in lines):
        console.print(DAGGER_NOTE, highlight=False)
    console.print(meaning(res.record), highlight=False)
    console.print(f"record: {res.record_path}\nreport: {res.report_md}, {res.report_html}", highlight=False)
    for b in res.breaches:
        console.print(f"[bold red]GATE FAILED[/] {b.gate}: {b.attack} ({b.access} access) reached "
                      f"{b.observed:.3f}", highlight=False)
    return GATE_EXIT_CODE if res.breaches else 0
