"""Leaderboard: records -> committed entries (leaderboard/entries/<suite>/<defense>.json) -> LEADERBOARD.md.

An entry keeps per-seed summaries of the official runs (no command-line overrides) of one suite version
and one resolved config; rendering is a pure, deterministic function of the entries. Rows are ranked by
worst-case privacy: the highest TPR at 1% FPR over all attacks (mean over seeds), then the highest AUC;
lower is better. Controls are shown below the ranking and marked. The suite's utility metrics stand beside
the privacy columns, and each suite gets a privacy-utility plot (PNG next to LEADERBOARD.md, linked from it).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from mia_bench.errors import MiaBenchError
from mia_bench.io import atomic_write_json, atomic_write_text, read_versioned_json
from mia_bench.report.plots import TradeoffPoint, privacy_utility_png
from mia_bench.results import RunRecord

ENTRY_SCHEMA = "mia_bench.entry/1"
RANK_KEY = "tpr@1%fpr"
SHOWN = ("auc", "tpr@1%fpr", "tpr@0.1%fpr")
UTILITY_SHOWN = ("fid_classifier", "fid_inception", "downstream_accuracy", "dwp_mae", "dwpre_mae")


def _values(m: dict[str, Any]) -> dict[str, Any]:
    """One attack's summary in an entry: each metric's value, the FPRs that are underpowered, and (protocol
    v2) each metric's bootstrap-over-targets interval (`ci`) and whether AUC is below chance beyond it."""
    out: dict[str, Any] = {k: m[k]["value"] for k in m if isinstance(m[k], dict) and "value" in m[k]}
    pooled = m.get("underpowered")  # protocol v2 lists the underpowered FPRs; v1 flags them per metric
    out["underpowered"] = sorted(pooled if isinstance(pooled, list) else
                                 (k for k in m if isinstance(m[k], dict) and m[k].get("detail", {}).get("underpowered")))
    ci = {k: list(m[k]["ci"]) for k in m if isinstance(m[k], dict) and m[k].get("ci") is not None}
    if ci:
        out["ci"] = ci
    if "below_chance" in m:
        out["below_chance"] = bool(m["below_chance"])
    return out


def seed_summary(record: RunRecord) -> dict[str, Any]:
    attacks = {}
    for name, res in record.attacks.items():
        attacks[name] = _values(res["metrics"])
        if res.get("canaries"):  # protocol v2: the canaries scored on their own
            attacks[name]["canaries"] = _values(res["canaries"])
    out = {"split_digest": record.split_digest, "attacks": attacks, "utility": record.utility,
           "privacy_guarantee": record.privacy_guarantee,
           "git": (record.environment.get("git") or {}).get("commit"), "created_at": record.created_at}
    if record.suite_version >= 2:
        first = next(iter(record.attacks.values()), {}).get("metrics", {})
        out.update(n_members=first.get("n_members"), n_non_members=first.get("n_non_members"),
                   design={k: record.design.get(k) for k in ("digest", "targets", "population", "canaries",
                                                             "canary_kind")},
                   worst_case={level: _worst_summary(w) for level, w in record.worst_case.items()})
    else:
        out.update(n_members=record.split_sizes["members"], n_non_members=record.split_sizes["non_members"])
    return out


def _worst_summary(w: dict[str, Any]) -> dict[str, Any]:
    """One access level's worst case: its attack, the pooled values (population, canaries) and their
    bootstrap-over-targets intervals (`ci`, `canaries_ci`), which rank rows when an entry has one seed."""
    out: dict[str, Any] = {"attack": w["attack"]}
    for part, prefix in (("metrics", ""), ("canaries", "canaries_")):
        m = w.get(part) or {}
        values = {k: v["value"] for k, v in m.items()}
        if prefix:
            out["canaries"] = values
        else:
            out.update(values)
        out[f"{prefix}ci"] = {k: list(v["ci"]) for k, v in m.items() if v.get("ci") is not None}
    return out


def build_entry(records: list[RunRecord], existing: dict[str, Any] | None = None) -> dict[str, Any]:
    """The entry of one (suite, suite version, config digest, defense): `existing`'s seeds, with every seed
    that `records` ran added or replaced; seeds the records did not run are never removed."""
    newest = max(records, key=lambda r: r.created_at)
    if any(_record_key(r) != _record_key(newest) for r in records):
        raise MiaBenchError("build_entry: records of one entry must share their suite version, config digest and "
                            "operating point")
    if existing is not None and _entry_key(existing) != _record_key(newest):
        raise MiaBenchError("build_entry: the existing entry is of another suite version, config digest or "
                            "operating point")
    seeds = dict((existing or {}).get("seeds", {}))
    seeds.update({str(r.seed): seed_summary(r) for r in sorted(records, key=lambda r: (r.seed, r.created_at))})
    return {
        "schema": ENTRY_SCHEMA, "suite": newest.suite, "suite_version": newest.suite_version,
        "defense": newest.defense, "config_digest": newest.config_digest, "labels": newest.labels,
        "operating_point": dict(newest.operating_point),
        "utility_floor": dict((newest.config.get("leaderboard") or {}).get("utility_floor") or {}),
        "floor_reference": (newest.config.get("leaderboard") or {}).get("reference", "none"),
        "attacks": {k: {"access": v["access"], "variant": v["variant"]} for k, v in newest.attacks.items()},
        "seeds": dict(sorted(seeds.items(), key=lambda kv: int(kv[0]))),
        "environment": newest.environment,
    }


def point_name(e: dict[str, Any]) -> str:
    """The entry's (or record dict's) operating point ("" when its defense has no sweep)."""
    return str((e.get("operating_point") or {}).get("name") or "")


def _entry_key(e: dict[str, Any]) -> tuple[int, str, str]:
    return int(e["suite_version"]), str(e["config_digest"]), point_name(e)


def _record_key(r: RunRecord) -> tuple[int, str, str]:
    return int(r.suite_version), r.config_digest, str((r.operating_point or {}).get("name") or "")


def entry_path(entries_dir: Path, suite: str, defense: str, suite_version: int, config_digest: str,
               operating_point: str = "", *, default_point: bool = True) -> Path:
    """Where the entry of (suite, defense, version, config digest, operating point) lives: the existing file
    holding it, else the first free of `<defense>.json` (the default point, or no sweep) and
    `<defense>@<point>.json`, else the last with `@<digest[:12]>` added (never over another entry): the v2
    default point of a defense whose v1 entry holds `<defense>.json` lands in `<defense>@<point>.json`."""
    folder = Path(entries_dir) / suite
    for path in sorted(folder.glob(f"{defense}.json")) + sorted(folder.glob(f"{defense}@*.json")):
        e = _read_entry(path)
        if e["defense"] == defense and _entry_key(e) == (int(suite_version), config_digest, operating_point):
            return path
    stems = ([defense] if default_point or not operating_point else []) + (
        [f"{defense}@{operating_point}"] if operating_point else [])
    for stem in stems:
        if not (folder / f"{stem}.json").exists():
            return folder / f"{stem}.json"
    return folder / f"{stems[-1]}@{config_digest[:12]}.json"


def update_entries(records: Iterable[RunRecord], entries_dir: Path) -> list[Path]:
    """Merge the official records into their entries (one per suite, defense, version and config digest);
    other entries, and seeds of an entry that no record ran, are left untouched."""
    groups: dict[tuple[str, str, int, str, str], list[RunRecord]] = defaultdict(list)
    for r in records:
        if r.official:
            groups[(r.suite, r.defense, *_record_key(r))].append(r)
    written = []
    for (suite, defense, version, digest, point), recs in sorted(groups.items()):
        default = bool((recs[0].operating_point or {}).get("default", True))
        path = entry_path(entries_dir, suite, defense, version, digest, point, default_point=default)
        existing = _read_entry(path) if path.exists() else None
        atomic_write_json(path, build_entry(recs, existing))
        written.append(path)
    return written


def _read_entry(path: Path) -> dict[str, Any]:
    return read_versioned_json(path, ENTRY_SCHEMA, "leaderboard entry", "; restore it with git")


def load_entries(entries_dir: Path) -> list[dict[str, Any]]:
    return [_read_entry(path) for path in sorted(Path(entries_dir).glob("*/*.json"))]


def _newest(e: dict[str, Any]) -> str:
    return max((s.get("created_at") or "" for s in e["seeds"].values()), default="")


def select_ranked(entries: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(entries that rank, entries kept beside them): per (suite, version, defense, operating point), the
    config with the most seeds ranks (ties: the most recently run); the others stay in the entries and are
    named under the table."""
    by_defense: dict[tuple[str, int, str, str], list[dict[str, Any]]] = defaultdict(list)
    for e in entries:
        by_defense[(e["suite"], int(e["suite_version"]), e["defense"], point_name(e))].append(e)
    ranked, beside = [], []
    for key in sorted(by_defense):
        group = sorted(by_defense[key], key=lambda e: (len(e["seeds"]), _newest(e), e["config_digest"]), reverse=True)
        ranked.append(group[0])
        beside += group[1:]
    return ranked, beside


@dataclass(frozen=True)
class Stat:
    mean: float
    half_width: float | None  # 95% t-interval half-width over seeds; None with one seed
    n: int

    @classmethod
    def of(cls, values: list[float]) -> Stat:
        v = np.asarray(values, dtype=float)
        if v.size < 2:
            return cls(float(v.mean()) if v.size else math.nan, None, int(v.size))
        hw = stats.t.ppf(0.975, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size)
        return cls(float(v.mean()), float(hw), int(v.size))

    def fmt(self, digits: int = 3) -> str:
        if math.isnan(self.mean):
            return "–"
        return f"{self.mean:.{digits}f}" + (f" ± {self.half_width:.{digits}f}" if self.half_width is not None else "")


def worst_case(entry: dict[str, Any], metric: str) -> Stat:
    """Per seed, the max of `metric` over attacks (the strongest attack); then mean and interval."""
    return Stat.of([max(a[metric] for a in s["attacks"].values()) for s in entry["seeds"].values() if s["attacks"]])


def per_attack(entry: dict[str, Any], attack: str, metric: str) -> Stat:
    return Stat.of([s["attacks"][attack][metric] for s in entry["seeds"].values() if attack in s["attacks"]])


def rank(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(entries, key=lambda e: (worst_case(e, RANK_KEY).mean, worst_case(e, "auc").mean, e["defense"]))


def _labels(e: dict[str, Any]) -> str:
    return ", ".join(f"*{lab}*" for lab in e.get("labels", []))


def _underpowered(entries: list[dict[str, Any]]) -> list[str]:
    flagged = set()
    for e in entries:
        for s in e["seeds"].values():
            for a in s["attacks"].values():
                flagged.update(a.get("underpowered", []))
    return sorted(flagged)


def render_suite(entries: list[dict[str, Any]]) -> str:
    if int(entries[0]["suite_version"]) >= 2:
        from mia_bench.report.pages import render_suite_v2

        return render_suite_v2(entries)
    entries, beside = select_ranked(entries)
    suite, version = entries[0]["suite"], entries[0]["suite_version"]
    attacks = sorted({a for e in entries for a in e["attacks"]})
    util = _utility_columns(entries)
    head = ["Rank", "Defense", "Labels", "Seeds", f"worst {RANK_KEY} ↓", "worst AUC ↓", "ε (δ)"]
    head += [f"{m} {'↑' if _higher_is_better(entries, m) else '↓'}" for m in util]
    head += [f"{a} AUC / {RANK_KEY}" for a in attacks]
    lines = [f"## Suite `{suite}` (protocol version {version})", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    defenses = rank([e for e in entries if "control" not in e.get("labels", [])])
    controls = rank([e for e in entries if "control" in e.get("labels", [])])
    for i, e in enumerate(defenses + controls, start=1):
        at = f"@{point_name(e)}" if point_name(e) else ""  # a v1 run at an operating point
        row = [str(i) if e in defenses else "–", f"`{e['defense']}{at}`", _labels(e), str(len(e["seeds"])),
               worst_case(e, RANK_KEY).fmt(), worst_case(e, "auc").fmt(), epsilon_cell(e)]
        row += [_utility_cell(e, m) for m in util]
        row += [f"{per_attack(e, a, 'auc').fmt()} / {per_attack(e, a, RANK_KEY).fmt()}" if a in e["attacks"] else "–"
                for a in attacks]
        lines.append("| " + " | ".join(row) + " |")
    n_non = sorted({s["n_non_members"] for e in entries for s in e["seeds"].values()})
    n_mem = sorted({s["n_members"] for e in entries for s in e["seeds"].values()})
    lines += ["", f"Members per run: {', '.join(map(str, n_mem))}; non-members: {', '.join(map(str, n_non))}. "
              "Values are mean ± 95% t-interval half-width over seeds; TPR at x% FPR is the largest empirical TPR "
              "with FPR ≤ x (no interpolation). Lower is more private."]
    flagged = _underpowered(entries)
    if flagged:
        lines.append(f"**Underpowered:** {', '.join(flagged)} rest on fewer than 10/x non-members; read them as "
                     "TPR at (near) zero false positives, not at the nominal FPR.")
    lines += _beside_notes(entries, beside)
    lines += _utility_notes(entries, util)
    lines.append("")
    lines += [f"- `{a}`: access `{v['access']}`, {v['variant']}" for a, v in
              sorted({a: v for e in entries for a, v in e["attacks"].items()}.items())]
    return "\n".join(lines) + "\n"


def _beside_notes(ranked: list[dict[str, Any]], beside: list[dict[str, Any]]) -> list[str]:
    """Which config of a defense the table ranks when its entries hold several (a locally edited suite YAML)."""
    if not beside:
        return []
    chosen = {(e["defense"], point_name(e)): e for e in ranked}
    lines = ["", "**Several configs:** the table ranks, per defense, the config with the most seeds; the others "
                 "are kept in the entries, not ranked:"]
    for e in sorted(beside, key=lambda e: (e["defense"], point_name(e), e["config_digest"])):
        c = chosen[(e["defense"], point_name(e))]
        at = f"@{point_name(e)}" if point_name(e) else ""
        lines.append(f"- `{e['defense']}{at}`: ranked `{c['config_digest'][:12]}` ({len(c['seeds'])} seeds); "
                     f"kept `{e['config_digest'][:12]}` ({len(e['seeds'])} seed{'s' if len(e['seeds']) != 1 else ''})")
    return lines


def utility_stat(entry: dict[str, Any], metric: str) -> Stat:
    return Stat.of([s["utility"]["metrics"][metric] for s in entry["seeds"].values()
                    if metric in (s.get("utility") or {}).get("metrics", {})])


def _utility_columns(entries: list[dict[str, Any]]) -> list[str]:
    present = {m for e in entries for s in e["seeds"].values() for m in (s.get("utility") or {}).get("metrics", {})}
    return [m for m in UTILITY_SHOWN if m in present]


def _higher_is_better(entries: list[dict[str, Any]], metric: str) -> bool:
    return any((s.get("utility") or {}).get("higher_is_better", {}).get(metric, False)
               for e in entries for s in e["seeds"].values())


def _classifier_labelled(e: dict[str, Any]) -> bool:
    return any(((s.get("utility") or {}).get("details", {}).get("downstream") or {}).get("labels") == "classifier"
               for s in e["seeds"].values())


def _utility_cell(e: dict[str, Any], metric: str) -> str:
    text = utility_stat(e, metric).fmt(2 if metric.startswith("fid") else 3)
    return text + (" †" if metric == "downstream_accuracy" and _classifier_labelled(e) and text != "–" else "")


def main_utility(entries: list[dict[str, Any]]) -> str | None:
    """The suite's main utility metric (the records' `utility.main`; the most common one if they differ)."""
    mains = sorted(m for e in entries for s in e["seeds"].values() if (m := (s.get("utility") or {}).get("main")))
    return max(sorted(set(mains)), key=mains.count) if mains else None


def plot_name(suite: str, version: int) -> str:
    return f"privacy_utility_{suite}_v{version}.png"


def _utility_notes(entries: list[dict[str, Any]], util: list[str]) -> list[str]:
    if not util:
        return []
    accs = [s["utility"]["details"]["evaluator"]["test_accuracy"] for e in entries for s in e["seeds"].values()
            if "evaluator" in (s.get("utility") or {}).get("details", {})]
    v2 = int(entries[0]["suite_version"]) >= 2
    real = ("the design's hold-out (records no target saw), on the releases of the first targets" if v2 else
            "the scored non-members (held out from every model)")
    trained = "the reference and attacker roles" if v2 else "records outside members and non-members"
    notes = ["", f"Utility is measured against {real}. "
             f"`fid_classifier` is FID on the features of an evaluator classifier trained on {trained}" + (f" (its test accuracy: {Stat.of(accs).fmt()})" if accs else "") + "; it is not "
             "comparable to Inception FID."]
    if any(_classifier_labelled(e) for e in entries):
        notes.append("† downstream accuracy of an unconditional model: its samples were labelled by the evaluator "
                     "classifier, not by the model.")
    main, suite = main_utility(entries), entries[0]
    if main:
        notes += ["", f"![Privacy-utility trade-off: worst-case {RANK_KEY} against {main}]"
                      f"({plot_name(suite['suite'], suite['suite_version'])})"]
    return notes


def write_tradeoff_plot(entries: list[dict[str, Any]], folder: Path) -> Path | None:
    """The suite's privacy-utility PNG in `folder` (None when its records carry no utility)."""
    entries = select_ranked(entries)[0]
    main = main_utility(entries)
    if main is None:
        return None
    points = []
    for e in sorted(entries, key=lambda e: e["defense"]):
        u, p = utility_stat(e, main), worst_case(e, RANK_KEY)
        if not math.isnan(u.mean):
            points.append(TradeoffPoint(label=e["defense"], utility=u.mean, utility_hw=u.half_width, privacy=p.mean,
                                        privacy_hw=p.half_width, control="control" in e.get("labels", [])))
    better = "higher" if _higher_is_better(entries, main) else "lower"
    suite, version = entries[0]["suite"], entries[0]["suite_version"]
    return privacy_utility_png(folder / plot_name(suite, version), points, title=f"{suite} (v{version})",
                               utility_label=f"{main} ({better} is better)",
                               privacy_label=f"worst-case {RANK_KEY} over attacks (lower is more private)")


def epsilon_cell(e: dict[str, Any]) -> str:
    eps = [s["privacy_guarantee"].get("epsilon") for s in e["seeds"].values() if s.get("privacy_guarantee")]
    if not eps:
        return "–"
    delta = next(iter(e["seeds"].values()))["privacy_guarantee"].get("delta")
    return f"{Stat.of(eps).fmt(2)} ({delta:g})"


def _environment(entries: list[dict[str, Any]]) -> str:
    envs = {json.dumps({k: e["environment"].get(k) for k in ("python", "device", "cpu_count", "packages")},
                       sort_keys=True) for e in entries}
    commits = sorted({s["git"] for e in entries for s in e["seeds"].values() if s.get("git")})
    lines = ["## Environment", ""]
    for env in sorted(envs):
        d = json.loads(env)
        pk = ", ".join(f"{k} {v}" for k, v in sorted((d.get("packages") or {}).items()) if v)
        lines.append(f"- Python {d.get('python')} on {d.get('device')} ({d.get('cpu_count')} CPUs): {pk}")
    if commits:
        lines.append(f"- mia_bench commits: {', '.join(c[:10] for c in commits)}")
    return "\n".join(lines) + "\n"


def render(entries: list[dict[str, Any]]) -> str:
    """LEADERBOARD.md: per suite, the section of its newest protocol version (older versions are linked)."""
    from mia_bench.report.pages import detail_name

    out = ["# mia_bench leaderboard", "",
           "Generated by `mia-bench leaderboard` from `leaderboard/entries/`; do not edit by hand.", ""]
    by_suite, shown = _by_suite(entries), []
    for (suite, version), group in current_suites(entries):
        shown += group
        out.append(render_suite(group))
        if older := sorted(v for s, v in by_suite if s == suite and v < version):  # each keeps its own page
            links = ", ".join(f"[version {v}]({detail_name(suite, v)})" for v in older)
            out.append(f"Earlier protocol versions of `{suite}`, superseded by version {version} and kept "
                       f"unchanged: {links}.\n")
    if entries:
        out.append(_environment(shown))
    else:
        out.append("No entries yet: run `make bench DEFENSE=none`.\n")
    return "\n".join(out)


def pages(entries: list[dict[str, Any]]) -> dict[str, str]:
    """Every page the entries give: LEADERBOARD.md and, per protocol-v2 suite, its detail page (file name
    -> text); a pure function of the entries."""
    from mia_bench.report.pages import detail_name, render_detail

    out = {"LEADERBOARD.md": render(entries)}
    current = dict(current_suites(entries))
    for (suite, version), group in sorted(_by_suite(entries).items()):
        if version >= 2:
            out[detail_name(suite, version)] = render_detail(group)
        elif (suite, version) not in current:
            out[detail_name(suite, version)] = superseded_page(group)
    return out


def superseded_page(entries: list[dict[str, Any]]) -> str:
    """The page of a suite's results under an older protocol version: its section as it was, under a title
    that says what superseded it."""
    suite, version = entries[0]["suite"], int(entries[0]["suite_version"])
    head = [f"# `{suite}` under protocol version {version} (superseded)", "",
            "Generated by `mia-bench leaderboard` from `leaderboard/entries/`; do not edit by hand. These "
            "entries were measured under an earlier protocol and are kept as they were; the current rankings "
            "are in [LEADERBOARD.md](LEADERBOARD.md).", ""]
    return "\n".join(head + [render_suite(entries), _environment(entries)])


def current_suites(entries: list[dict[str, Any]]) -> list[tuple[tuple[str, int], list[dict[str, Any]]]]:
    """((suite, version), entries) of each suite's newest protocol version, by suite name."""
    by_suite = _by_suite(entries)
    newest = {s: max(v for t, v in by_suite if t == s) for s, _ in by_suite}
    return [((s, v), by_suite[(s, v)]) for s, v in sorted(newest.items())]


def _by_suite(entries: list[dict[str, Any]]) -> dict[tuple[str, int], list[dict[str, Any]]]:
    by_suite: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for e in entries:
        by_suite[(e["suite"], int(e["suite_version"]))].append(e)
    return by_suite


def write_leaderboard(entries_dir: Path, out_md: Path) -> list[Path]:
    """Write the pages (LEADERBOARD.md as `out_md`, detail pages beside it) and the figures (protocol v2: a
    frontier per threat model; v1: the privacy-utility plot); returns the figures written."""
    from mia_bench.report.frontier import write_frontiers

    entries = load_entries(entries_dir)
    folder = Path(out_md).parent
    for name, text in pages(entries).items():
        atomic_write_text(out_md if name == "LEADERBOARD.md" else folder / name, text)
    figures = []
    for (_, version), group in sorted(_by_suite(entries).items()):
        if version >= 2:
            figures += write_frontiers(group, folder)
        elif (plot := write_tradeoff_plot(group, folder)) is not None:
            figures.append(plot)
    return figures


def leaderboard_rows(entries: list[dict[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    """The leaderboard as rows (ranked defenses, then controls), with mean and 95% half-width columns."""
    entries = select_ranked(entries)[0]
    attacks = sorted({a for e in entries for a in e["attacks"]})
    columns = ["suite", "version", "rank", "defense", "labels", "seeds", f"worst {RANK_KEY}", f"worst {RANK_KEY} ±",
               "worst auc", "worst auc ±"] + [f"{a} auc" for a in attacks] + [f"{a} {RANK_KEY}" for a in attacks]
    rows = []
    for suite_version in sorted({(e["suite"], e["suite_version"]) for e in entries}):
        group = [e for e in entries if (e["suite"], e["suite_version"]) == suite_version]
        ranked = rank([e for e in group if "control" not in e.get("labels", [])])
        controls = rank([e for e in group if "control" in e.get("labels", [])])
        for i, e in enumerate(ranked + controls, start=1):
            w, a = worst_case(e, RANK_KEY), worst_case(e, "auc")
            row = [*suite_version, i if e in ranked else None, e["defense"], ", ".join(e.get("labels", [])),
                   len(e["seeds"]), w.mean, w.half_width, a.mean, a.half_width]
            row += [per_attack(e, att, "auc").mean if att in e["attacks"] else None for att in attacks]
            row += [per_attack(e, att, RANK_KEY).mean if att in e["attacks"] else None for att in attacks]
            rows.append(row)
    return columns, rows
