"""Operating points: the named settings of a defense's privacy knob, from weak to strong (torch-free).

A defense's YAML (benchmarks/defenses/<defense>.yaml) may declare its sweep beside its hyperparameters:

    operating_points:
      knob: defense.lambda_h          # what the sweep turns (shown on the leaderboard)
      default: lh1                    # the point a run without --op (or --sweep) runs
      points:                         # listed from the weakest privacy to the strongest (knob order)
        lh0.1: {defense.lambda_h: 0.1}
        lh1: {defense.lambda_h: 1.0}
        lh3: {defense.lambda_h: 3.0}

A point is a named set of config settings (dotted keys, as overrides) applied between the defense's YAML
and the command line's overrides; `budget: f` is the one relative setting: trainer.max_steps times f (after
the overrides), the early-stopping knob of `none`, sized by whatever budget the suite or command gives.
A run at a point is official (the point is the defense's own setting, not an override). At the default
point it keeps the defense's plain folder (results/<suite>/<defense>/seed<k>) and entry (<defense>.json),
so `make bench DEFENSE=megan` stays where it was; any other point lives in `op-<name>` and its entry in
`<defense>@<name>.json` (with overrides: `ovr-<digest>@<name>`), so two points never share either.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any

from mia_bench.errors import ConfigError

SECTION = "operating_points"
BUDGET = "budget"  # the relative setting: a fraction of trainer.max_steps
_NAME = re.compile(r"[a-z][A-Za-z0-9._-]{0,31}")


@dataclass(frozen=True)
class OperatingPoint:
    """One setting of a defense's privacy knob. index: its place in the sweep, 0 = the weakest privacy."""

    name: str
    index: int
    knob: str
    settings: dict[str, Any] = field(default_factory=dict)
    is_default: bool = False  # the defense's default point: its runs keep the defense's plain folder and entry

    def layer(self) -> dict[str, Any]:
        """The point's absolute settings as a nested mapping (a config layer)."""
        out: dict[str, Any] = {}
        for key, value in self.settings.items():
            if key == BUDGET:
                continue
            node = out
            *parents, leaf = key.split(".")
            for p in parents:
                node = node.setdefault(p, {})
            node[leaf] = value
        return out

    def steps(self, max_steps: int) -> int:
        """trainer.max_steps at this point (the budget fraction of `max_steps`; at least one step)."""
        frac = self.settings.get(BUDGET)
        return max_steps if frac is None else max(1, round(float(frac) * max_steps))

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "index": self.index, "knob": self.knob, "settings": dict(self.settings),
                "default": self.is_default}


@dataclass(frozen=True)
class Sweep:
    defense: str
    knob: str
    default: str
    points: tuple[OperatingPoint, ...]

    def names(self) -> list[str]:
        return [p.name for p in self.points]

    def pick(self, name: str | None) -> OperatingPoint:
        """The point called `name` (None: the default); an unknown name names the valid ones."""
        name = self.default if name is None else name
        for p in self.points:
            if p.name == name:
                return p
        raise ConfigError(f"defense '{self.defense}' has no operating point '{name}'; its points (weak to strong "
                          f"privacy): {', '.join(self.names())}. Fix: --op {self.default}, or --sweep for all")


def parse(defense: str, node: Any, where: str) -> Sweep:
    """The `operating_points:` section of a defense YAML (a plain mapping), checked: at least 3 points,
    valid names, distinct settings, a known default, `budget` in (0, 1]."""
    if not isinstance(node, dict) or not isinstance(node.get("points"), dict):
        raise ConfigError(f"{where}: `{SECTION}` must hold `knob`, `default` and a mapping `points` "
                          "(name -> settings), e.g. points: {lh1: {defense.lambda_h: 1.0}}")
    unknown = sorted(set(node) - {"knob", "default", "points"})
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown} in `{SECTION}`; it holds knob, default, points")
    knob, points = str(node.get("knob") or ""), []
    seen: dict[str, str] = {}
    for i, (name, settings) in enumerate(node["points"].items()):
        settings = dict(settings or {})
        _check_point(str(name), settings, where)
        key = repr(sorted(settings.items()))
        if key in seen:
            raise ConfigError(f"{where}: operating points '{seen[key]}' and '{name}' have the same settings; "
                              "give each point its own value of the knob")
        seen[key] = str(name)
        points.append(OperatingPoint(name=str(name), index=i, knob=knob, settings=settings))
    if len(points) < 3:
        raise ConfigError(f"{where}: `{SECTION}` lists {len(points)} point(s); a sweep needs at least 3, from weak "
                          "to strong privacy")
    default = str(node.get("default") or points[0].name)
    Sweep(defense=defense, knob=knob, default=default, points=tuple(points)).pick(default)  # must be a point
    points = [replace(p, is_default=p.name == default) for p in points]
    return Sweep(defense=defense, knob=knob, default=default, points=tuple(points))


def _check_point(name: str, settings: dict[str, Any], where: str) -> None:
    if not _NAME.fullmatch(name):
        raise ConfigError(f"{where}: operating point name '{name}': start with a lowercase letter, then letters, "
                          "digits, '.', '_' or '-' (at most 32), e.g. lh0.5")
    for key, value in settings.items():
        if key == BUDGET:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
                raise ConfigError(f"{where}: point '{name}': budget must be a fraction in (0, 1] of "
                                  f"trainer.max_steps, got {value!r}")
        elif not isinstance(key, str) or "." not in key:
            raise ConfigError(f"{where}: point '{name}': setting '{key}' must be a dotted config key, e.g. "
                              "defense.lambda_h")


def split_defense_node(defense: str, node: dict[str, Any], where: str) -> tuple[dict[str, Any], Sweep | None]:
    """(the defense's hyperparameters, its sweep or None) from its YAML mapping."""
    node = dict(node)
    raw = node.pop(SECTION, None)
    return node, (None if raw is None else parse(defense, raw, where))
