"""The components' manifest (mia_bench/components.json): every registered dataset, defense, attack and
metric with its Config schema (field types, defaults, ranges), generated from the registries.

The CLI checks a command's names, keys, types and ranges against it before importing torch, so a typo is
reported at once; the real check (config.load_run with the registries) runs again afterwards. A test
regenerates it and compares: `python -m mia_bench.manifest` rewrites it after a component changes.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from functools import lru_cache
from pathlib import Path
from typing import Any

from mia_bench.config import Schemas
from mia_bench.errors import UnknownNameError
from mia_bench.schema import field_range

PATH = Path(__file__).with_name("components.json")
_SOURCES = ("attacks", "data", "defenses", "metrics", "nets", "schema.py", "config.py", "sweep.py", "registry.py")


def sources_digest() -> str:
    """sha256 of the source files the manifest is generated from: a stale manifest is never trusted."""
    import hashlib

    root = Path(__file__).parent
    h = hashlib.sha256()
    for name in _SOURCES:
        for f in sorted((root / name).rglob("*.py")) if (root / name).is_dir() else [root / name]:
            h.update(str(f.relative_to(root)).encode())
            h.update(f.read_bytes())
    return h.hexdigest()


def fresh() -> bool:
    """True when components.json was generated from the sources as they are now."""
    try:
        return load().get("sources") == sources_digest()
    except (OSError, ValueError):
        return False
_TYPES: dict[str, Any] = {"int": int, "float": float, "bool": bool, "str": str, "list": list, "dict": dict,
                          "None": type(None), "Any": Any}


def _type_text(tp: Any) -> str:
    text = str(tp) if not isinstance(tp, type) else tp.__name__
    return text.replace("typing.", "").replace("NoneType", "None")


def _schema(config: type) -> dict[str, Any]:
    hints = typing.get_type_hints(config)
    out = {}
    for f in dataclasses.fields(config):
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        bound = field_range(f)
        out[f.name] = {"type": _type_text(hints[f.name]), "default": default,
                       "range": list(bound) if bound is not None else None}
    return out


def _first_line(obj: Any) -> str:
    return ((obj.__doc__ or "").strip().splitlines() or [""])[0]


def build() -> dict[str, Any]:
    from mia_bench.attacks import ATTACKS
    from mia_bench.data import DATASETS
    from mia_bench.defenses import DEFENSES
    from mia_bench.metrics import METRICS

    return {
        "sources": sources_digest(),
        "datasets": {n: {"doc": _first_line(DATASETS.get(n))} for n in DATASETS.names()},
        "defenses": {n: {"doc": _first_line(c), "control": c.is_control, "reconstructed": c.reconstructed,
                         "config": _schema(c.Config)} for n, c in DEFENSES.items()},
        "attacks": {n: {"access": c.access.value, "variant": c.variant, "config": _schema(c.Config)}
                    for n, c in ATTACKS.items()},
        "metrics": {n: {"kind": m.kind, "higher_is_better": m.higher_is_better, "description": m.description}
                    for n, m in METRICS.items()},
    }


def text(manifest: dict[str, Any]) -> str:
    return json.dumps(manifest, indent=1, sort_keys=True) + "\n"


@lru_cache(maxsize=1)
def load() -> dict[str, Any]:
    return json.loads(PATH.read_text())


def _dataclass(kind: str, name: str, fields: dict[str, Any]) -> type:
    spec = []
    for fname, f in fields.items():
        tp = eval(f["type"], {"__builtins__": {}}, _TYPES)  # noqa: S307 - our own generated type names only
        default = f["default"]
        meta = {"range": tuple(f["range"])} if f["range"] is not None else {"range": None}
        if isinstance(default, (list, dict)):
            spec.append((fname, tp, dataclasses.field(default_factory=lambda d=default: json.loads(json.dumps(d)),
                                                      metadata=meta)))
        else:
            spec.append((fname, tp, dataclasses.field(default=default, metadata=meta)))
    return dataclasses.make_dataclass(f"{kind}_{name}_Config", spec)


class ManifestSchemas(Schemas):
    """Component schemas read from components.json: no torch import."""

    def _get(self, kind: str, name: str) -> type:
        table = load()[kind + "s"]
        if name not in table:
            import difflib

            close = difflib.get_close_matches(name, sorted(table), n=3, cutoff=0.5)
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            raise UnknownNameError(f"Unknown {kind} '{name}'.{hint} Available: {', '.join(sorted(table))}")
        return _dataclass(kind, name, table[name]["config"])

    def defense(self, name: str) -> type:
        return self._get("defense", name)

    def attack(self, name: str) -> type:
        return self._get("attack", name)


if __name__ == "__main__":
    PATH.write_text(text(build()))
    print(f"wrote {PATH}")
