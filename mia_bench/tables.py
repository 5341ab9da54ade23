"""Terminal tables designed for 80 columns: a run's attacks (one table per access level) and the
leaderboard's compact ranking. Long names never get truncated: rows wrap nothing, legends explain marks."""

from __future__ import annotations

from typing import Any

from rich import box
from rich.markup import escape
from rich.table import Table

from mia_bench import leaderboard as lb

ACCESS_ORDER = ("samples", "generator", "white_box")
SHORT_UTILITY = {"fid_classifier": "FID(clf)", "fid_inception": "FID", "downstream_accuracy": "acc",
                 "dwp_mae": "DWP", "dwpre_mae": "DWpre"}
WIDTH = 80


def _table(title: str, caption: str = "") -> Table:
    return Table(title=title, caption=caption or None, box=box.SIMPLE_HEAD, padding=(0, 1, 0, 0), pad_edge=False,
                 title_justify="left", caption_justify="left")


def _value(metric: dict[str, Any]) -> str:
    flag = "†" if metric.get("detail", {}).get("underpowered") else ""
    return f"{metric['value']:.3f}{flag}"


def _by_access(record: Any) -> list[tuple[str, list[tuple[str, dict]]]]:
    """The record's attacks grouped by access level, levels from the least to the most access."""
    by_access: dict[str, list[tuple[str, dict]]] = {}
    for name, res in record.attacks.items():
        by_access.setdefault(res["access"], []).append((name, res))
    return sorted(by_access.items(), key=lambda kv: ACCESS_ORDER.index(kv[0]) if kv[0] in ACCESS_ORDER else 99)


def _access_table(record: Any, sizes: str, access: str, *, first: bool, columns: tuple[str, ...]) -> Table:
    """An empty per-access-level table; the first one carries the run's heading."""
    labels = escape(f" [{', '.join(record.labels)}]") if record.labels else ""
    version = f" v{record.suite_version}" if record.suite_version >= 2 else ""
    head = f"{record.suite}{version} · {record.defense}{labels} · seed {record.seed} · {sizes}"
    t = _table(f"{head}\naccess: {access}" if first else f"access: {access}")
    for col in columns:
        t.add_column(col, justify="left" if col == "attack" else "right", no_wrap=True)
    return t


def run_tables(record: Any) -> list[Table]:
    """One table per access level of a RunRecord: AUC with its interval, TPR at 1% and 0.1% FPR, precision
    at the top n (with chance) and seconds per attack."""
    if record.suite_version >= 2:
        return run_tables_v2(record)
    sizes = f"{record.split_sizes['members']} members vs {record.split_sizes['non_members']} non-members"
    tables: list[Table] = []
    for access, attacks in _by_access(record):
        t = _access_table(record, sizes, access, first=not tables,
                          columns=("attack", "AUC [95% CI]", "TPR@1%", "TPR@0.1%", "prec@n (chance)", "s"))
        for name, res in attacks:
            m = res["metrics"]
            auc = m["auc"]
            ci = f" [{auc['ci'][0]:.2f}, {auc['ci'][1]:.2f}]" if auc.get("ci") else ""
            prec = m.get("precision@n")
            t.add_row(name, f"{auc['value']:.3f}{ci}", _value(m["tpr@1%fpr"]), _value(m["tpr@0.1%fpr"]),
                      f"{prec['value']:.3f} ({prec['chance']:.2f})" if prec else "–", f"{res['seconds']:.0f}")
        tables.append(t)
    if tables:
        tables[-1].caption = "TPR@x%: TPR at x% FPR; † underpowered: fewer than 10/x non-members"
    return tables


def _ci(metric: dict[str, Any], digits: int = 2) -> str:
    ci = metric.get("ci")
    return f" [{ci[0]:.{digits}f},{ci[1]:.{digits}f}]" if ci else ""


def _pooled(m: dict[str, Any], key: str, *, ci: bool = False) -> str:
    """A pooled (protocol v2) metric: value, optional interval, † when underpowered, ! when the AUC's
    interval lies below chance."""
    if not m or key not in m:
        return "–"
    flag = "†" if key in m.get("underpowered", []) else ""
    flag += "!" if key == "auc" and m.get("below_chance") else ""
    return f"{m[key]['value']:.3f}{flag}{_ci(m[key]) if ci else ''}"


def run_tables_v2(record: Any) -> list[Table]:
    """A protocol-v2 record at 100 columns: per access level, each attack's pooled AUC and TPR at 1% and
    0.1% FPR (with bootstrap-over-targets intervals) on the whole population and on the canaries; then the
    worst case per access level."""
    d = record.design
    sizes = f"{d.get('targets')} targets × {d.get('population')} records ({d.get('canaries')} canaries)"
    tables: list[Table] = []
    for access, attacks in _by_access(record):
        t = _access_table(record, sizes, access, first=not tables, columns=(
            "attack", "AUC [95% CI]", "TPR@1% [95% CI]", "TPR@0.1%", "│ AUC", "TPR@1%", "TPR@0.1%", "s"))
        for name, res in attacks:
            m, c = res["metrics"], res.get("canaries") or {}
            t.add_row(name, _pooled(m, "auc", ci=True), _pooled(m, "tpr@1%fpr", ci=True), _pooled(m, "tpr@0.1%fpr"),
                      "│ " + _pooled(c, "auc"), _pooled(c, "tpr@1%fpr"), _pooled(c, "tpr@0.1%fpr"),
                      f"{res['seconds']:.0f}")
        tables.append(t)
    worst = _table("worst case per access level (each level includes the attacks of the levels below)")
    for col in ("access", "strongest attack", "AUC [95% CI]", "TPR@1% [95% CI]", "TPR@0.1%", "│ TPR@1%", "TPR@0.1%"):
        worst.add_column(col, justify="left" if col in ("access", "strongest attack") else "right", no_wrap=True)
    for level in ACCESS_ORDER:
        pick = (record.worst_case or {}).get(level)
        if not pick:
            continue
        res = record.attacks[pick["attack"]]
        m, c = res["metrics"], res.get("canaries") or {}
        worst.add_row(level, pick["attack"], _pooled(m, "auc", ci=True), _pooled(m, "tpr@1%fpr", ci=True),
                      _pooled(m, "tpr@0.1%fpr"), "│ " + _pooled(c, "tpr@1%fpr"), _pooled(c, "tpr@0.1%fpr"))
    n_non = next(iter(record.attacks.values()))["metrics"].get("n_non_members") if record.attacks else 0
    worst.caption = (f"left of │: all {d.get('population')} records pooled over targets ({n_non:,} non-member "
                     "scores); right: the canaries only. Intervals: bootstrap over targets. † underpowered "
                     "(fewer than 10/x non-member scores); ! AUC interval below chance (a broken attack, not privacy)")
    return [*tables, worst]


def _stat(s: lb.Stat, digits: int = 3) -> str:
    return s.fmt(digits).replace(" ± ", "±")


def entries_table(entries: list[dict[str, Any]], title: str) -> Table:
    """Leaderboard entries of one suite version, ranked by worst-case TPR@1%FPR then AUC (mean±95% half-width
    over seeds); controls last, marked c. A * marks a reconstructed method."""
    entries = lb.select_ranked(entries)[0]
    main = lb.main_utility(entries)
    seeds = sorted({len(e["seeds"]) for e in entries})
    util = SHORT_UTILITY.get(main, main) if main else None
    t = _table(f"{title} ({'/'.join(map(str, seeds))} seeds)",
               "* reconstructed method; @: operating point; c: control (not ranked); mean±95% interval over seeds; lower "
               "TPR/AUC is more private"
               + (f"; {util}: {main}" if util and util != main else ""))
    for col in ("#", "defense", "TPR@1%↓", "AUC↓", "ε", *([util] if util else []), "strongest"):
        t.add_column(col, justify="left" if col in ("defense", "strongest") else "right", no_wrap=True,
                     min_width=16 if col == "strongest" else None)
    ranked = lb.rank([e for e in entries if "control" not in e.get("labels", [])])
    controls = lb.rank([e for e in entries if "control" in e.get("labels", [])])
    for i, e in enumerate(ranked + controls, start=1):
        labels = e.get("labels", [])
        point = lb.point_name(e)
        name = e["defense"] + (f"@{point}" if point else "") + ("*" if "reconstructed" in labels else "")
        strongest = max(sorted(e["attacks"]), key=lambda a: lb.per_attack(e, a, lb.RANK_KEY).mean, default="–")
        eps = lb.epsilon_cell(e).split(" ")[0] if lb.epsilon_cell(e) != "–" else "–"
        t.add_row(str(i) if e in ranked else "c", name, _stat(lb.worst_case(e, lb.RANK_KEY)),
                  _stat(lb.worst_case(e, "auc")), eps,
                  *([_stat(lb.utility_stat(e, main), 1)] if main else []), strongest)
    return t


def _verdict_caption(table: Any) -> str:
    """The level's rows against the negative control, for the caption (see report.ranking.verdict)."""
    from mia_bench.report.ranking import NULL_CONTROL, verdict

    v = verdict(table)
    if v is None:
        return ""
    parts = [f"{label}: {', '.join(p.defense for p in pts)}" for label, pts in
             (("above it on the population", v.population), ("on the canaries only", v.canaries),
              ("not separated from it", v.unseparated)) if pts]
    return f"; vs the {NULL_CONTROL} control (TPR@1% {v.control.fmt()}): " + "; ".join(parts)


def level_tables(entries: list[dict[str, Any]]) -> list[Table]:
    """A protocol-v2 suite's ranking in the terminal: per threat model, each defense at its most private
    published operating point above the utility floor (the same rows as LEADERBOARD.md), then the controls; defenses
    with no point above the floor are named in the caption."""
    from mia_bench.report.pages import TPR1, published, utility_metrics
    from mia_bench.report.ranking import LEVELS, Floor, rank_level, suite_points

    suite = entries[0]["suite"]
    points = published(suite, suite_points(entries))[0]  # the published grid's points, as LEADERBOARD.md
    floor = Floor.of(points)
    util = utility_metrics(points, floor)
    tables = []
    for level in LEVELS:
        table = rank_level(points, floor, level)
        below = ", ".join(p.defense for p in table.below)
        caption = ("at matched utility (floor: " + ", ".join(f"{SHORT_UTILITY.get(m, m)}" for m in floor.factors)
                   + " vs none); pop: whole population; can: canaries; = shares the rank above; c: control"
                   + (f"; below the floor (not ranked): {below}" if below else "") + _verdict_caption(table))
        t = _table(f"{suite} v2 · threat model {level}: worst case over attacks", caption if floor.factors else "")
        for col in ("#", "defense@op", "TPR@1% pop", "can", "AUC", *(SHORT_UTILITY.get(m, m) for m in util)):
            t.add_column(col, justify="left" if col.startswith("defense") else "right", no_wrap=True)
        for row in table.rows:
            p = row.point
            rank = "c" if row.rank is None else f"{row.rank}{'=' if row.tied else ''}"
            name = p.defense + (f"@{p.name}" if p.name else "") + ("*" if "reconstructed" in p.labels else "")
            pop, can = p.privacy(level, TPR1), p.privacy(level, TPR1, canaries=True)
            t.add_row(rank, name, f"{pop.mean:.3f}", f"{can.mean:.3f}", f"{p.privacy(level, 'auc').mean:.3f}",
                      *(lb.utility_stat(p.entry, m).fmt(1 if m.startswith("fid") else 3) for m in util))
        tables.append(t)
    return tables
