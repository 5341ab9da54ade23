"""`mia-bench audit`: a suite's two controls as the check of its attacks, before any number is published.

If the controls fail, no other number can be trusted (DESIGN.md). The audit runs `memorizer` and
`independent` through the same runner, suite, attack settings and overrides as any defense, then checks
every attack of the suite:

  memorizer    AUC >= 0.95: the model releases its members, so an attack that misses them is too weak
               (or broken) at these settings. An attack that cannot catch it by construction says why
               (`Attack.memorizer_exemption`); it must still not score below chance - tolerance.
  independent  |AUC - 0.5| <= tolerance (0.1): the model never saw the members, so an attack that
               separates them measures something else (a shift between members and non-members, a leak
               through the attacker's data).

A check also fails when an attack is missing from a control's record. The CLI prints the checks and exits 1
when any failed; the control records stay in the results folder like any other run. A failed memorizer
check names the settings that decide it for that attack (`budget_knobs`): its own Config's budget fields
and, for attacks that read the released samples, the suite's release.n_samples.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, replace

from mia_bench.attacks import ATTACKS, AccessLevel
from mia_bench.results import RunRecord

CONTROLS = ("memorizer", "independent")
MEMORIZER_AUC = 0.95
MEMORIZER_TPR = 0.5  # TPR at 1% FPR: catching the memorizer means finding its members at a low false-positive rate
CHANCE_TOLERANCE = 0.1
MISSING = "it is missing from the control's record: rerun the controls with the same suite and overrides"
# Config fields that buy an attack power against the memorizer: latent-search iterations, candidates and
# starts, shadow models, the training of a model the attacker trains itself, and (for mixed queries only)
# partners per query. A Config marks any other such field with metadata {"budget": True} (logan_bb's lr).
BUDGET_FIELDS = ("steps", "population", "init_draws", "n_shadows", "n_nonmember")


def budget_knobs(attack: str, settings: dict | None = None) -> list[str]:
    """The settings (override keys) that decide whether `attack` catches the memorizer: the budget fields its
    Config has, then release.n_samples when it reads the released samples. settings: the attack's settings
    as a record holds them (its Config's defaults when None)."""
    cls = ATTACKS.get(attack)
    given = settings if settings is not None else dataclasses.asdict(cls.Config())
    knobs = [f"attacks.{attack}.{f.name}" for f in dataclasses.fields(cls.Config)
             if f.name in BUDGET_FIELDS or f.metadata.get("budget")
             or (f.name == "partners" and given.get("query") == "mixed")]
    if cls.access is AccessLevel.SAMPLES:
        knobs.append("release.n_samples")
    return knobs


def memorizer_fix(attack: str, settings: dict | None = None) -> str:
    """What to do when `attack` misses the memorizer's members (settings: as in budget_knobs)."""
    knobs = budget_knobs(attack, settings) if attack in ATTACKS else []
    if not knobs:
        return ("it has no budget to raise: its score reads the target directly, so a miss points at the attack "
                "or at the model's own scores")
    out = f"raise {' or '.join(knobs)}: at these settings it misses records the model releases"
    if "release.n_samples" in knobs:
        out += (" (if release.n_samples already covers every member, the memorizer's noise is too large for "
                "this data: lower defense.noise)")
    return out


@dataclass(frozen=True)
class Check:
    attack: str
    control: str  # "memorizer" | "independent"
    seed: int
    auc: float | None  # None: the attack is missing from the control's record
    expected: str
    passed: bool
    fix: str = ""  # what to do when it failed
    exempt: str = ""  # why the attack cannot catch the memorizer by construction (Attack.memorizer_exemption)
    tpr: float | None = None  # TPR at 1% FPR (the memorizer must also be caught at a low false-positive rate)


def check_controls(memorizer: RunRecord, independent: RunRecord, *, memorizer_auc: float = MEMORIZER_AUC,
                   tolerance: float = CHANCE_TOLERANCE) -> list[Check]:
    """One check per attack and control (same suite and seed), in attack-name order."""
    if (memorizer.defense, independent.defense) != CONTROLS:
        raise ValueError(f"expected a memorizer and an independent record, got {memorizer.defense!r} and "
                         f"{independent.defense!r}")
    seed = memorizer.seed
    checks = []
    for name in sorted(set(memorizer.attacks) | set(independent.attacks)):
        settings = memorizer.attacks.get(name, {}).get("settings")
        exempt = ATTACKS.get(name).memorizer_exemption(settings) if name in ATTACKS else ""
        auc = _auc(memorizer, name)
        if exempt:
            floor = 0.5 - tolerance
            checks.append(Check(name, "memorizer", seed, auc, f"≥ {floor:.2f} exempt",
                                auc is not None and auc >= floor,
                                "it scores the memorizer's members below chance: check its sign", exempt))
        else:
            tpr = _metric(memorizer, name, "tpr@1%fpr")
            checks.append(Check(name, "memorizer", seed, auc, f"≥ {memorizer_auc:.2f} / {MEMORIZER_TPR:.1f}",
                                auc is not None and auc >= memorizer_auc and (tpr is None or tpr >= MEMORIZER_TPR),
                                memorizer_fix(name, memorizer.attacks.get(name, {}).get("settings")), tpr=tpr))
        auc = _auc(independent, name)
        checks.append(Check(name, "independent", seed, auc, f"0.50 ± {tolerance:.2f}",
                            auc is not None and abs(auc - 0.5) <= tolerance,
                            "it separates records a model never saw: look for a shift between the split's members "
                            "and non-members, or attacker data that overlaps the scored records (or, when its AUC's "
                            "95% interval in the record holds 0.5, a tolerance tighter than this split's noise)"))
    return [replace(c, fix=MISSING) if c.auc is None else c for c in checks]


def _metric(record: RunRecord, attack: str, key: str) -> float | None:
    m = (record.attacks.get(attack) or {}).get("metrics", {}).get(key)
    return None if m is None else float(m["value"])


def _auc(record: RunRecord, attack: str) -> float | None:
    return _metric(record, attack, "auc")
