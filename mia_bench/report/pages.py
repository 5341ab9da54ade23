"""The pages of a protocol-v2 suite, pure functions of its entries: its section of LEADERBOARD.md (three
ranked tables of at most 10 columns, one per threat model, with the frontier figures) and
leaderboard/<suite>.md (the per-attack detail of every defense at every operating point)."""

from __future__ import annotations

import math
from typing import Any

from mia_bench import leaderboard as lb
from mia_bench.report.ranking import (
    LEVELS,
    NULL_CONTROL,
    Floor,
    LevelTable,
    Point,
    rank_level,
    suite_points,
    verdict,
)

LEVEL_TEXT = {"samples": "the released synthetic samples", "generator": "the generator (queried at will)",
              "white_box": "the generator and its discriminator(s)"}
SHORT = {"downstream_accuracy": "acc", "fid_classifier": "FID(clf)", "fid_inception": "FID", "dwp_mae": "DWP",
         "dwpre_mae": "DWpre"}
TPR1, TPR01 = "tpr@1%fpr", "tpr@0.1%fpr"


def detail_name(suite: str, version: int) -> str:
    return f"{suite}.md" if int(version) == 2 else f"{suite}_v{version}.md"


def frontier_name(suite: str, version: int, level: str) -> str:
    return f"frontier_{suite}_v{version}_{level}.png"


def utility_metrics(points: list[Point], floor: Floor) -> list[str]:
    """The columns of utility: the floor's metrics (at most two), else the suite's main metric."""
    if floor.factors:
        return list(floor.factors)[:2]
    main = lb.main_utility([p.entry for p in points])
    return [main] if main else []


def _util_cell(p: Point, metric: str) -> str:
    text = lb.utility_stat(p.entry, metric).fmt(2 if metric.startswith("fid") else 3)
    return text + (" †" if metric == "downstream_accuracy" and lb._classifier_labelled(p.entry) and text != "–" else "")


def _pair(p: Point, level: str, metric: str, *, ci: bool) -> str:
    pop, can = p.privacy(level, metric), p.privacy(level, metric, canaries=True)
    left = pop.fmt() if ci else ("–" if math.isnan(pop.mean) else f"{pop.mean:.3f}")
    return f"{left} / {'–' if math.isnan(can.mean) else f'{can.mean:.3f}'}"


def _labels(p: Point) -> str:
    return ", ".join(f"*{lab}*" for lab in p.labels)


def level_table(table: LevelTable, util: list[str]) -> list[str]:
    arrows = [f"{SHORT.get(m, m)} {'↑' if _hib(table, m) else '↓'}" for m in util]
    head = ["Rank", "Defense", "Labels", "Op", "ε (δ)", "TPR@1% pop / canaries ↓", "TPR@0.1% pop / can. ↓",
            "AUC ↓", *arrows]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in table.rows:
        p = row.point
        rank = "–" if row.rank is None else f"{row.rank}{'=' if row.tied else ''}"
        cells = [rank, f"`{p.defense}`", _labels(p), f"`{p.name}`" if p.name else "–", lb.epsilon_cell(p.entry),
                 _pair(p, table.level, TPR1, ci=True), _pair(p, table.level, TPR01, ci=False),
                 p.privacy(table.level, "auc").fmt().split(" [")[0], *(_util_cell(p, m) for m in util)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _hib(table: LevelTable, metric: str) -> bool:
    points = [r.point for r in table.rows] + table.below
    return next((h for p in points if (h := p.higher_is_better(metric)) is not None), True)


def _names(points: list[Point]) -> str:
    return ", ".join(f"`{p.defense}`" for p in points)


def control_verdict(table: LevelTable) -> list[str]:
    """Below a level's table: which ranked rows leak measurably more than the negative control (a model that
    never saw the population), on the population or on the canaries only, and which the attacks cannot
    separate from it (their order is not evidence of privacy). [] without a control entry."""
    v = verdict(table)
    if v is None:
        return []
    parts = []
    if v.population:
        parts.append(f"above it on the whole population: {_names(v.population)}")
    if v.canaries:
        parts.append(f"on the canaries only: {_names(v.canaries)}")
    if v.unseparated:
        parts.append(f"not separated from it (TPR@1% interval not above the control's, population and canaries): "
                     f"{_names(v.unseparated)}")
    text = (f"**Against the `{NULL_CONTROL}` control** (worst-case TPR@1% {v.control.fmt()}; a model of the recipe "
            "that never saw the population, so its value is what the attacks reach by chance): " + "; ".join(parts)
            + ".")
    if any(p.defense == "none" for p in v.unseparated):
        text += (" The unprotected `none` is itself not separated from the control: at this access this suite's "
                 "attacks detect no membership at 1% FPR, so no defense can show a gain here and the ranks above "
                 "are ties with chance.")
    elif v.unseparated:
        text += " The order among the rows not separated from the control is not evidence of privacy."
    return ["", text]


def below_floor(table: LevelTable, util: list[str]) -> list[str]:
    if not table.below:
        return []
    items = [f"`{p.defense}` (best utility at `{p.name or '–'}`: "
             + ", ".join(f"{m} {lb.utility_stat(p.entry, m).fmt(2 if m.startswith('fid') else 3)}" for m in util)
             + f"; its worst-case TPR@1% here {p.privacy(table.level, TPR1).fmt()})" for p in table.below]
    return ["", "**Not ranked: below the utility floor:** " + "; ".join(items) + "."]


def floor_text(floor: Floor) -> str:
    if not floor.factors:
        return "The suite sets no utility floor: every operating point competes."
    if not floor.complete:
        return (f"**Nothing is ranked:** the utility floor is relative to `{floor.reference}`'s best operating point "
                f"and `{floor.reference}` has no utility for {', '.join(m for m in floor.factors if m not in floor.best)}"
                f"; run `make bench DEFENSE={floor.reference} SWEEP=1`.")
    rules = [f"{m} {'≥' if floor.higher[m] else '≤'} {floor.factors[m]:g} × {floor.best[m]:.3g} = "
             f"{floor.threshold(m):.3g}" for m in floor.factors]
    return (f"Utility floor, relative to `{floor.reference}`'s best operating point (mean over seeds): "
            + "; ".join(rules) + ".")


def _sweeps(suite: str) -> list[str] | None:
    """The suite's `leaderboard.sweeps` (grid.published_sweeps); None also when its YAML cannot be read."""
    from mia_bench.errors import ConfigError
    from mia_bench.grid import published_sweeps

    try:
        return published_sweeps(suite)
    except (ConfigError, OSError):
        return None


def published(suite: str, points: list[Point]) -> tuple[list[Point], list[Point]]:
    """(the points of the suite's published grid, the others): only the first are ranked and drawn, so the
    committed leaderboard is what `make grid` reproduces; the others (an extended sweep, `make grid
    POINTS=all`) are listed and kept on the detail page. Every point is published when the suite's YAML
    names no `leaderboard.sweeps` or cannot be read."""
    from mia_bench.grid import in_published

    sweeps = _sweeps(suite)
    inside = [p for p in points
              if in_published(p.defense, bool((p.entry.get("operating_point") or {}).get("default", True)), sweeps)]
    return inside, [p for p in points if p not in inside]


def coverage(suite: str, points: list[Point]) -> list[str]:
    """What of the suite's published grid (its `defenses:` x their published operating points, from the
    committed YAMLs) the entries hold: a partial grid says so above its tables. [] when the suite's YAML
    cannot be read."""
    from mia_bench.config import defense_sweep
    from mia_bench.errors import ConfigError
    from mia_bench.grid import in_published, suite_defenses

    sweeps = _sweeps(suite)
    try:
        grid = {d: [p.name for p in sweep.points if in_published(d, p.is_default, sweeps)]
                if (sweep := defense_sweep(d)) else [""] for d in suite_defenses(suite)}
    except (ConfigError, OSError):
        return []
    have = {(p.defense, p.name) for p in points}
    missing = {d: [n for n in names if (d, n) not in have] for d, names in grid.items()}
    total, todo = sum(map(len, grid.values())), sum(map(len, missing.values()))
    if not todo:
        return []
    runs = "; ".join(f"`{d}` ({'all points' if len(m) == len(grid[d]) else ', '.join(f'`{n}`' for n in m)})"
                     for d, m in missing.items() if m)
    return [f"**Partial grid:** {total - todo} of the {total} (defense, operating point) cells of this suite have "
            f"entries; the rankings below are among those only. Not yet run: {runs}.", ""]


def seed_coverage(suite: str, points: list[Point]) -> list[str]:
    """Which of the suite's `seeds:` the entries hold, above the tables when some are missing: with fewer
    seeds than the suite names, a row's value is that of fewer independent designs than the suite asks for.
    [] when every entry holds every seed or the suite's YAML cannot be read."""
    from mia_bench.errors import ConfigError
    from mia_bench.grid import suite_seeds

    try:
        want = suite_seeds(suite)
    except (ConfigError, OSError):
        return []
    held: dict[tuple[int, ...], int] = {}
    for p in points:
        seeds = tuple(sorted(int(s) for s in p.entry["seeds"]))
        held[seeds] = held.get(seeds, 0) + 1
    if not want or all(set(want) <= set(seeds) for seeds in held):
        return []
    parts = [f"{n} with seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}"
             for seeds, n in sorted(held.items(), key=lambda kv: (-kv[1], kv[0]))]
    return [f"**Seeds:** the suite names seeds {', '.join(map(str, want))}; of its {len(points)} entries (defense, "
            f"operating point), "
            f"{'; '.join(parts)}. A row with one seed rests on one membership design: its interval is the "
            "bootstrap over that design's targets, which leaves out the variation between designs and training "
            f"runs. Complete it with `mia-bench grid --suite {suite} --defenses all`.", ""]


def render_suite_v2(entries: list[dict[str, Any]]) -> str:
    """The suite's section of LEADERBOARD.md."""
    suite, version = entries[0]["suite"], int(entries[0]["suite_version"])
    points, extended = published(suite, suite_points(entries))
    floor = Floor.of(points)
    util = utility_metrics(points, floor)
    design = next(iter(points[0].entry["seeds"].values())).get("design") or {}
    sweeps = _sweeps(suite)
    scope = ("" if sweeps is None else "The published grid: each defense at its default operating point"
             + (f", and every point of {', '.join(f'`{d}`' for d in sweeps)} (the DP baseline: its frontier is "
                "the yardstick at matched utility)" if sweeps else "") + ". ")
    lines = [f"## Suite `{suite}` (protocol version {version})", "",
             f"{design.get('targets')} targets per seed, {design.get('population')}-record population with "
             f"{design.get('canaries')} canaries; scores of all records under all targets pooled into one ROC "
             "per attack. " + scope + "For each threat model, each defense at its most private operating point "
             "that clears the utility floor, ranked by the worst case over the attacks that access allows "
             "(pooled TPR at 1% FPR, then at 0.1%, then AUC; lower is more private). " + floor_text(floor), ""]
    if extended:
        names = ", ".join(f"`{p.defense}@{p.name}`" for p in extended)
        lines += [f"**Not ranked, outside the published grid:** {names} (the sweep of each defense's knob, `make "
                  f"grid POINTS=all`): on [{detail_name(suite, version)}]({detail_name(suite, version)}).", ""]
    lines += coverage(suite, points) + seed_coverage(suite, points)
    for level in LEVELS:
        table = rank_level(points, floor, level)
        lines += [f"### Threat model `{level}`: the attacker has {LEVEL_TEXT[level]}", ""]
        lines += level_table(table, util) + control_verdict(table) + below_floor(table, util)
        lines += ["", f"![privacy-utility frontier, {level}]({frontier_name(suite, version, level)})", ""]
    lines += ["Values: mean over seeds; [interval]: 95% t-interval over seeds, or with one seed the bootstrap over "
              "targets; `=`: the row's TPR@1% interval overlaps the row above's, so they share a rank. Controls "
              "(–) are never ranked. Per-attack detail of every defense at every operating point: "
              f"[{detail_name(suite, version)}]({detail_name(suite, version)})."]
    lines += ["", "Utility is measured on the releases of the first targets against the design's hold-out (records no "
              "target saw); `fid_classifier` is FID on an evaluator classifier's features, not comparable to "
              "Inception FID."]
    if any(lb._classifier_labelled(p.entry) for p in points):
        lines.append("† downstream accuracy of an unconditional model: its samples were labelled by the evaluator.")
    lines += fresh_noise(points)
    return "\n".join(lines) + "\n"


def fresh_noise(points: list[Point]) -> list[str]:
    """A line naming the defenses whose published runs drew their DP noise from os.urandom (their record's
    privacy_guarantee: deterministic_noise false, as a DP guarantee needs: noise from the published seed
    could be replayed and subtracted). Their rows are one draw: a rerun of the same seed trains other models.
    Every other recipe is seeded, so a rerun reproduces its row. [] when no such point is shown."""
    names = sorted({p.defense for p in points for s in p.entry["seeds"].values()
                    if (dp := s.get("privacy_guarantee")) and not dp.get("deterministic_noise", False)})
    if not names:
        return []
    return ["", f"Reruns: {', '.join(f'`{n}`' for n in names)} draw their DP noise and sampling from os.urandom, as "
            "their guarantee requires (noise derived from the published seed could be replayed and subtracted), so "
            "a rerun of the same seed trains other models and gives other values; every other row is seeded, and a "
            "rerun with the same packages reproduces it to float rounding."]


def _attack_stat(p: Point, attack: str, metric: str, *, canaries: bool = False) -> str:
    """One attack's pooled metric with its interval; † an underpowered FPR (fewer than 10/x non-member
    scores behind it), ! an AUC whose interval lies below chance (a broken attack, not privacy)."""
    parts = p.attack_parts(attack, canaries=canaries)
    text = p.attack(attack, metric, canaries=canaries).fmt()
    if any(metric in part.get("underpowered", []) for part in parts):
        text += " †"
    if metric == "auc" and any(part.get("below_chance") for part in parts):
        text += " !"
    return text


def point_detail(p: Point, util: list[str], *, extended: bool = False) -> list[str]:
    """`extended`: a point outside the suite's published grid (never ranked), said in its heading."""
    op = p.entry.get("operating_point") or {}
    settings = ", ".join(f"{k}={v}" for k, v in (op.get("settings") or {}).items()) or "the defense's own settings"
    u = ", ".join(f"{m} {lb.utility_stat(p.entry, m).fmt(3)}" for m in util)
    lines = [f"### `{p.defense}` at `{p.name or '–'}`" + (" (not ranked: outside the published grid)" if extended
                                                          else ""), "",
             f"{settings}; {len(p.entry['seeds'])} seed(s); ε (δ) {lb.epsilon_cell(p.entry)}; {u or 'no utility'}."
             + (f" Labels: {_labels(p)}." if p.labels else ""), "",
             "| attack | access | AUC | TPR@1% | TPR@0.1% | canaries AUC | canaries TPR@1% | canaries TPR@0.1% |",
             "|---|---|---|---|---|---|---|---|"]
    for name, a in sorted(p.entry["attacks"].items()):
        lines.append(f"| `{name}` | {a['access']} | " + " | ".join(
            [_attack_stat(p, name, m) for m in ("auc", TPR1, TPR01)]
            + [_attack_stat(p, name, m, canaries=True) for m in ("auc", TPR1, TPR01)]) + " |")
    return lines + [""]


def render_detail(entries: list[dict[str, Any]]) -> str:
    """leaderboard/<suite>.md: every (defense, operating point), knob order, its attacks one per row."""
    points = suite_points(entries)
    suite, version = entries[0]["suite"], int(entries[0]["suite_version"])
    ranked, extended = published(suite, points)
    util = utility_metrics(ranked, Floor.of(ranked))
    lines = [f"# `{suite}` (protocol version {version}): every defense at every operating point", "",
             "Generated by `mia-bench leaderboard` from `leaderboard/entries/`; do not edit by hand. Ranked tables: "
             "[LEADERBOARD.md](LEADERBOARD.md). Values: pooled over targets; [interval]: 95% t-interval over "
             "seeds, or with one seed the bootstrap over targets (entries written before intervals were kept "
             "show the value alone); † underpowered (fewer than 10/x non-member scores behind a TPR at x FPR: "
             "read it as TPR at (near) zero false positives); ! AUC below chance beyond its interval (a broken "
             "attack, not privacy). Lower AUC / TPR is more private.", ""]
    for defense in sorted({p.defense for p in points}):
        mine = [p for p in points if p.defense == defense]
        knob = (mine[0].entry.get("operating_point") or {}).get("knob")
        lines += [f"## `{defense}`" + (f" (knob: {knob}; points from the weakest privacy)" if knob else ""), ""]
        for p in mine:
            lines += point_detail(p, util, extended=p in extended)
    return "\n".join(lines)
