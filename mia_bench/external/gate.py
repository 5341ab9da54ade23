"""The privacy gate: `--fail-above [LEVEL:]METRIC=VALUE` (several allowed), e.g. `tpr@1%fpr=0.05`,
`auc=0.6`, `generator:tpr@0.1%fpr=0.01`. A gate with a level covers the attacks that level allows (it and
the levels below: a released generator can be sampled); without one, every attack run. The audit exits
with GATE_EXIT_CODE when any attack's point estimate is above a gate's value."""

from __future__ import annotations

import re
from dataclasses import dataclass

from mia_bench.errors import ConfigError

GATE_EXIT_CODE = 3  # not 1 (a crash / failed check) and not 2 (bad input)
LEVELS = ("samples", "generator", "white_box")
_SPEC = re.compile(r"^(?:(?P<level>[a-z_]+):)?(?P<metric>auc|tpr@(?P<fpr>[0-9.]+)%fpr)=(?P<value>[0-9.eE+-]+)$")
EXAMPLE = "e.g. --fail-above tpr@1%fpr=0.05, auc=0.6 or generator:tpr@0.1%fpr=0.01"


@dataclass(frozen=True)
class Gate:
    metric: str  # record key: "auc" or "tpr@1%fpr"
    value: float
    level: str | None  # None: every attack
    fpr: float | None  # the FPR of a tpr@ metric

    def __str__(self) -> str:
        return f"{self.level + ':' if self.level else ''}{self.metric}={self.value:g}"


@dataclass(frozen=True)
class Breach:
    gate: Gate
    attack: str
    access: str
    observed: float


def parse(text: str) -> Gate:
    m = _SPEC.match(text.strip().replace(" ", ""))
    if not m:
        raise ConfigError(f"--fail-above '{text}' is not [LEVEL:]METRIC=VALUE; {EXAMPLE}")
    level = m.group("level")
    if level is not None and level not in LEVELS:
        raise ConfigError(f"--fail-above '{text}': unknown access level '{level}'; use one of {list(LEVELS)}")
    try:
        value = float(m.group("value"))
        fpr = float(m.group("fpr")) / 100 if m.group("fpr") else None
    except ValueError:
        raise ConfigError(f"--fail-above '{text}': not a number; {EXAMPLE}") from None
    if not 0 <= value <= 1 or (fpr is not None and not 0 < fpr < 1):
        raise ConfigError(f"--fail-above '{text}': the value must be in [0, 1] and the FPR in (0%, 100%); {EXAMPLE}")
    metric = "auc" if fpr is None else f"tpr@{fpr * 100:g}%fpr"
    return Gate(metric=metric, value=value, level=level, fpr=fpr)


def check(gates: list[Gate], attacks: dict[str, dict]) -> list[Breach]:
    """Every (gate, attack) whose value is above the gate, strongest first per gate."""
    out = []
    for g in gates:
        allowed = LEVELS if g.level is None else LEVELS[: LEVELS.index(g.level) + 1]
        hits = [Breach(g, name, a["access"], float(a["metrics"][g.metric]["value"]))
                for name, a in attacks.items() if a["access"] in allowed and g.metric in a["metrics"]
                and float(a["metrics"][g.metric]["value"]) > g.value]
        out += sorted(hits, key=lambda b: -b.observed)
    return out
