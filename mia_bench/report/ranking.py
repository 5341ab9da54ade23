"""Matched-utility ranking of a protocol-v2 suite's entries: a pure function of the entries.

An entry is one (defense, operating point) of a suite (leaderboard.py). For each threat model (access level:
samples, generator, white_box) every defense appears once, at its most private operating point that clears
the suite's utility floor (`leaderboard.utility_floor`, relative to the reference defense `none`'s best
point), ranked by its pooled worst-case TPR at 1% FPR at that level, then TPR at 0.1%, then AUC (lower is
more private). A row whose TPR@1%FPR interval overlaps the row above shares its rank (a tie). Controls are
never ranked; defenses with no point above the floor are listed apart, with their best utility.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from mia_bench.leaderboard import Stat, point_name, select_ranked

LEVELS = ("samples", "generator", "white_box")
RANK_METRICS = ("tpr@1%fpr", "tpr@0.1%fpr", "auc")


@dataclass(frozen=True)
class Interval:
    """A mean over seeds with its 95% interval, clipped to [0, 1]: the t-interval over seeds, or with one
    seed that seed's bootstrap-over-targets interval (none known: the point itself)."""

    mean: float
    lo: float
    hi: float
    n: int

    def overlaps(self, other: Interval) -> bool:
        return self.lo <= other.hi and other.lo <= self.hi

    def fmt(self, digits: int = 3) -> str:
        if math.isnan(self.mean):
            return "–"
        if self.lo == self.hi == self.mean:
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} [{self.lo:.{digits}f}, {self.hi:.{digits}f}]"


NAN = Interval(math.nan, math.nan, math.nan, 0)


def interval_of(vals: list[float], cis: list[Any]) -> Interval:
    """Values of one metric, one per seed, and each seed's bootstrap interval (or None): with one seed its
    bootstrap-over-targets interval (none recorded: the point itself), else the mean and its t-interval over
    seeds; clipped to [0, 1]."""
    if not vals:
        return NAN
    if len(vals) == 1:
        lo, hi = cis[0] if cis[0] else (vals[0], vals[0])
        return Interval(vals[0], max(0.0, float(lo)), min(1.0, float(hi)), 1)
    s = Stat.of(vals)
    hw = s.half_width or 0.0
    return Interval(s.mean, max(0.0, s.mean - hw), min(1.0, s.mean + hw), s.n)


def _interval(parts: list[dict[str, Any]], metric: str) -> Interval:
    """interval_of the seeds' summaries that hold `metric` (each with its bootstrap interval under `ci`)."""
    have = [p for p in parts if p.get(metric) is not None]
    return interval_of([float(p[metric]) for p in have], [(p.get("ci") or {}).get(metric) for p in have])


@dataclass(frozen=True)
class Point:
    """One (defense, operating point) entry of a suite."""

    entry: dict[str, Any] = field(repr=False, compare=False)
    defense: str
    name: str  # the operating point ("" for a defense without a sweep)
    index: int  # its place in the sweep (0 = the weakest privacy)

    @classmethod
    def of(cls, entry: dict[str, Any]) -> Point:
        op = entry.get("operating_point") or {}
        return cls(entry=entry, defense=entry["defense"], name=point_name(entry), index=int(op.get("index", 0)))

    @property
    def labels(self) -> list[str]:
        return list(self.entry.get("labels", []))

    @property
    def control(self) -> bool:
        return "control" in self.labels

    def privacy(self, level: str, metric: str, *, canaries: bool = False) -> Interval:
        """The worst case over the attacks of access `level` (population, or the canaries on their own)."""
        parts = []
        for s in self.entry["seeds"].values():
            if (w := (s.get("worst_case") or {}).get(level)) is not None:
                parts.append({**(w.get("canaries") or {}), "ci": w.get("canaries_ci")} if canaries else w)
        return _interval(parts, metric)

    def attack_parts(self, attack: str, *, canaries: bool = False) -> list[dict[str, Any]]:
        """Each seed's summary of one attack in the entry (population, or the canaries on their own)."""
        found = [s["attacks"].get(attack) for s in self.entry["seeds"].values()]
        return [part for a in found if a and (part := a.get("canaries") if canaries else a)]

    def attack(self, attack: str, metric: str, *, canaries: bool = False) -> Interval:
        """One attack's pooled `metric` (population, or the canaries on their own)."""
        return _interval(self.attack_parts(attack, canaries=canaries), metric)

    def key(self, level: str) -> tuple[float, ...]:
        return (*(self.privacy(level, m).mean for m in RANK_METRICS), self.index)

    def utility(self, metric: str) -> Stat:
        return Stat.of([s["utility"]["metrics"][metric] for s in self.entry["seeds"].values()
                        if metric in (s.get("utility") or {}).get("metrics", {})])

    def higher_is_better(self, metric: str) -> bool | None:
        for s in self.entry["seeds"].values():
            hib = (s.get("utility") or {}).get("higher_is_better", {})
            if metric in hib:
                return bool(hib[metric])
        return None


def suite_points(entries: list[dict[str, Any]]) -> list[Point]:
    """The suite's points: per (defense, operating point) the config with the most seeds, in a fixed order."""
    ranked = select_ranked(entries)[0]
    return sorted((Point.of(e) for e in ranked), key=lambda p: (p.defense, p.index, p.name))


@dataclass(frozen=True)
class Floor:
    """The utility floor: metric -> factor of the reference defense's best mean value over its points."""

    reference: str
    factors: dict[str, float]
    best: dict[str, float]  # the reference's best mean per metric (missing: the reference has no value)
    higher: dict[str, bool]

    @classmethod
    def of(cls, points: list[Point]) -> Floor:
        newest = max((p.entry for p in points), key=_created, default={})
        factors = {str(k): float(v) for k, v in (newest.get("utility_floor") or {}).items()}
        reference = str(newest.get("floor_reference") or "none")
        refs = [p for p in points if p.defense == reference]
        best, higher = {}, {}
        for m in factors:
            hib = next((h for p in points if (h := p.higher_is_better(m)) is not None), None)
            vals = [u.mean for p in refs if not math.isnan((u := p.utility(m)).mean)]
            if hib is not None and vals:
                higher[m], best[m] = hib, (max(vals) if hib else min(vals))
        return cls(reference=reference, factors=factors, best=best, higher=higher)

    @property
    def complete(self) -> bool:
        """Every metric of the floor has its reference value (else nothing can clear it)."""
        return all(m in self.best for m in self.factors)

    def threshold(self, metric: str) -> float:
        return self.factors[metric] * self.best[metric]

    def clears(self, p: Point) -> bool:
        if not self.complete:
            return False
        for m in self.factors:
            u = p.utility(m).mean
            if math.isnan(u) or (u < self.threshold(m) if self.higher[m] else u > self.threshold(m)):
                return False
        return True


def _created(e: dict[str, Any]) -> str:
    return max((s.get("created_at") or "" for s in e["seeds"].values()), default="")


@dataclass(frozen=True)
class Row:
    point: Point
    rank: int | None  # None: a control (never ranked)
    tied: bool = False


@dataclass(frozen=True)
class LevelTable:
    level: str
    rows: list[Row]  # ranked defenses, then the controls
    below: list[Point]  # per defense with no point above the floor: its point of best utility


def rank_level(points: list[Point], floor: Floor, level: str) -> LevelTable:
    """The ranked table of one threat model (see the module docstring)."""
    by_defense: dict[str, list[Point]] = defaultdict(list)
    for p in points:
        if not p.control:
            by_defense[p.defense].append(p)
    chosen, below = [], []
    for defense in sorted(by_defense):
        cands = [p for p in by_defense[defense] if floor.clears(p) and not math.isnan(p.privacy(level, RANK_METRICS[0]).mean)]
        if cands:
            chosen.append(min(cands, key=lambda p: p.key(level)))
        else:
            below.append(best_utility(by_defense[defense], floor))
    chosen.sort(key=lambda p: (*p.key(level), p.defense))
    ranks = assign_ranks([p.privacy(level, RANK_METRICS[0]) for p in chosen])
    counts = {r: ranks.count(r) for r in ranks}
    rows = [Row(p, r, counts[r] > 1) for p, r in zip(chosen, ranks, strict=True)]
    controls = sorted((p for p in points if p.control), key=lambda p: (p.defense, p.index))
    return LevelTable(level, rows + [Row(p, None) for p in controls], below)


NULL_CONTROL = "independent"  # the negative control: a model of the recipe that never saw the population


@dataclass(frozen=True)
class Verdict:
    """The ranked defenses of one threat model against the negative control's worst case: a row whose
    TPR@1% interval lies wholly above the control's leaks measurably (on the whole population, or on the
    canaries only); every other row is not separated from a model that never saw its records, so its
    place in the ranking is not evidence of privacy."""

    control: Interval
    population: list[Point]  # interval above the control's on the whole population
    canaries: list[Point]  # above on the canaries only
    unseparated: list[Point]


def verdict(table: LevelTable) -> Verdict | None:
    """None when the suite has no negative-control entry at this access level."""
    control = next((r.point for r in table.rows if r.rank is None and r.point.defense == NULL_CONTROL), None)
    if control is None or math.isnan((pop := control.privacy(table.level, RANK_METRICS[0])).mean):
        return None
    can = control.privacy(table.level, RANK_METRICS[0], canaries=True)
    out: dict[str, list[Point]] = {"population": [], "canaries": [], "unseparated": []}
    for row in table.rows:
        if row.rank is None:
            continue
        p = row.point
        if p.privacy(table.level, RANK_METRICS[0]).lo > pop.hi:
            out["population"].append(p)
        elif not math.isnan(can.mean) and p.privacy(table.level, RANK_METRICS[0], canaries=True).lo > can.hi:
            out["canaries"].append(p)
        else:
            out["unseparated"].append(p)
    return Verdict(control=pop, **out)


def assign_ranks(intervals: list[Interval]) -> list[int]:
    """Competition ranks of rows in ranked order: a row whose interval overlaps the row above's shares its
    rank; otherwise its rank is its position (1-based)."""
    ranks: list[int] = []
    for i, iv in enumerate(intervals):
        ranks.append(ranks[-1] if i and iv.overlaps(intervals[i - 1]) else i + 1)
    return ranks


def best_utility(points: list[Point], floor: Floor) -> Point:
    """The point of best utility on the floor's first metric (else the first point)."""
    metric = next(iter(floor.factors), None)
    scored = [p for p in points if metric and not math.isnan(p.utility(metric).mean)]
    if not scored:
        return points[0]
    sign = 1.0 if floor.higher.get(metric, True) else -1.0  # type: ignore[arg-type]
    return max(scored, key=lambda p: sign * p.utility(metric).mean)  # type: ignore[arg-type]


def pareto_front(utility: list[float], privacy: list[float], *, higher_utility: bool = True) -> list[int]:
    """Indices of the non-dominated points (utility better, privacy = attack success lower): i is dominated
    when some j is at least as good on both and strictly better on one. Sorted by utility (worst first)."""
    u = [x if higher_utility else -x for x in utility]
    front = [i for i in range(len(u))
             if not any(u[j] >= u[i] and privacy[j] <= privacy[i] and (u[j] > u[i] or privacy[j] < privacy[i])
                        for j in range(len(u)))]
    return sorted(front, key=lambda i: (u[i], privacy[i]))
