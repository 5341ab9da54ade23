"""Where a grid's time goes, read from its cells' records, and how long the whole grid takes.

Reads every official record of a suite under a results folder (`<defense>/[op-<point>/]seed<k>/record.json`;
runs with overrides, `ovr-*`, are left out) and prints, per cell, its wall time, its training and its
attacks; then the seconds of each attack summed over the cells with their share, and the grid's length
on `--parallel` workers (cells scheduled longest first, each on the first free worker: the local
executor's `--parallel`), as a ratio to `--goal` minutes (the digits grid's goal: about 90 minutes on
2 cores, two cells at a time): for the suite's published grid (`make grid`: each defense at its default
operating point and every point of the suite's `leaderboard.sweeps`), for every point of every sweep
(`make grid POINTS=all`) and for the default points only, from the same records.

A cell that found its targets or an attack's local models already trained (a rerun, or a second
seed of a design) times only what it ran; those cells are marked `cached` and the projection then
understates a fresh grid.

    .venv/bin/python benchmarks/perf/grid_cost.py [--results-dir results] [--suite digits]
                                                  [--parallel 2] [--goal 90]
"""

from __future__ import annotations

import argparse
import heapq
import json
from collections import defaultdict
from pathlib import Path

from mia_bench.grid import in_published, published_sweeps
from mia_bench.results import find_records


def cells(root: Path) -> list[dict]:
    """The suite's official records under root (results/<suite>), one dict per cell: the runs that
    results.find_records finds (caches left out), less those with overrides."""
    out = []
    for path in find_records(root.parent):
        rel = path.relative_to(root.parent).parts
        if rel[0] != root.name or any(p.startswith("ovr-") for p in rel):
            continue
        r = json.loads(path.read_text())
        timings = r.get("timings", {})
        attacks = {name: float(a.get("seconds", 0.0)) for name, a in r.get("attacks", {}).items()}
        op = r.get("operating_point") or {}
        point = op.get("name")
        out.append({"cell": f"{r['defense']}@{point}" if point else r["defense"], "seed": r.get("seed"),
                    "defense": r["defense"],
                    "default": not op or bool(op.get("default")),  # a control has no operating point
                    "wall": float(r.get("wall_time_s", 0.0)), "train": float(timings.get("train", 0.0)),
                    "attack_total": float(timings.get("attacks", sum(attacks.values()))), "attacks": attacks,
                    "cached": bool(timings.get("targets_cached"))})
    return out


def makespan(durations: list[float], workers: int) -> float:
    """Longest-first list scheduling of the cells on `workers` workers: when the last one finishes."""
    free = [0.0] * max(1, workers)
    for d in sorted(durations, reverse=True):
        heapq.heapreplace(free, free[0] + d)
    return max(free)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--results-dir", default="results")
    ap.add_argument("--suite", default="digits")
    ap.add_argument("--parallel", type=int, default=2, help="cells at a time (the grid's --parallel)")
    ap.add_argument("--goal", type=float, default=90.0, help="minutes the whole grid should take")
    args = ap.parse_args()
    root = Path(args.results_dir) / args.suite
    found = cells(root)
    if not found:  # nothing measured yet (`make perf` on a fresh clone): say how, not a failure
        print(f"no records of suite {args.suite!r} under {root}:\n"
              "run `make grid` first (or pass --results-dir / --suite)")
        return
    print(f"{'cell':<24} {'seed':>4} {'wall s':>7} {'train s':>8} {'attacks s':>9}  slowest attack")
    for c in sorted(found, key=lambda c: -c["wall"]):
        top = max(c["attacks"].items(), key=lambda kv: kv[1], default=("-", 0.0))
        mark = "  cached" if c["cached"] else ""
        print(f"{c['cell']:<24} {c['seed']!s:>4} {c['wall']:>7.0f} {c['train']:>8.0f} {c['attack_total']:>9.0f}"
              f"  {top[0]} {top[1]:.0f} s{mark}")
    total = sum(c["wall"] for c in found)
    train = sum(c["train"] for c in found)
    per_attack: dict[str, float] = defaultdict(float)
    for c in found:
        for name, s in c["attacks"].items():
            per_attack[name] += s
    attacks = sum(per_attack.values())
    print(f"\n{len(found)} cells, {total / 3600:.2f} h of cell time: training {train / total:.0%}, "
          f"attacks {attacks / total:.0%}")
    print(f"{'attack':<20} {'seconds':>8} {'of attacks':>10}")
    for name, s in sorted(per_attack.items(), key=lambda kv: -kv[1]):
        if s >= 0.01 * attacks:
            print(f"{name:<20} {s:>8.0f} {s / attacks:>10.0%}")
    cached = sum(c["cached"] for c in found)
    sweeps = published_sweeps(args.suite)
    grids = [("published grid", "make grid", [c for c in found if in_published(c["defense"], c["default"], sweeps)]),
             ("every point", "POINTS=all", found),
             ("default points", "POINTS=default", [c for c in found if c["default"]])]
    print(f"\ngrid on {args.parallel} workers, against the {args.goal:.0f}-minute goal:")
    shown: set[frozenset] = set()
    for name, how, mine in grids:
        cells_of = frozenset((c["cell"], c["seed"]) for c in mine)
        if mine and cells_of not in shown:  # a grid of the same cells as one already shown is that grid
            span = makespan([c["wall"] for c in mine], args.parallel)
            print(f"  {name} ({len(mine)} cells, {how}): {span / 60:.0f} min, {span / 60 / args.goal:.2f}x")
            shown.add(cells_of)
    if cached:
        print(f"{cached} cell(s) reused trained targets (marked cached): a fresh grid takes longer")


if __name__ == "__main__":
    main()
