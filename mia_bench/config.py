"""Run configuration: a suite YAML, merged with the defense's YAML and `key=value` overrides.

    benchmarks/<suite>.yaml            dataset, split sizes, training budget, attacks, metrics, seeds
    benchmarks/defenses/<defense>.yaml the defense's hyperparameters (its Config dataclass)
    overrides                          e.g. trainer.max_steps=500 defense.lambda_h=0.5

Schemas are dataclasses checked by OmegaConf (structured configs): an unknown key or a value of the wrong
type is a ConfigError that names the key. Defense and attack options are checked against the component's
own Config dataclass.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from mia_bench.errors import ConfigError
from mia_bench.schema import (  # noqa: F401 - re-exported: the schema's home is torch-free
    DatasetConfig,
    MetricsConfig,
    ReleaseConfig,
    RunConfig,
    SplitConfig,
    TrackingConfig,
    TrainerConfig,
    UtilityConfig,
    check_ranges,
)
from mia_bench.sweep import OperatingPoint, Sweep, split_defense_node

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class ResolvedRun:
    """A fully checked run configuration: the schema plus typed defense and attack options."""

    config: RunConfig
    defense_name: str
    defense_params: Any
    attack_params: dict[str, Any]
    overrides: list[str]
    name: str = ""  # --name: the run's folder under results/<suite>/<defense>/ (instead of its override digest)
    operating_point: OperatingPoint | None = None  # the defense's sweep point (mia_bench/sweep.py); None: no sweep

    @property
    def variant(self) -> str:
        """The run's folder below its defense's: "" for an official run (at the default operating point),
        `op-<point>` at another point; else `name` or `ovr-<digest[:12]>` (with `@<point>` at a point other than
        the default)."""
        base = self.name or (f"ovr-{self.digest()[:12]}" if self.overrides else "")
        op = self.operating_point
        if op is None or op.is_default:
            return base
        return f"{base}@{op.name}" if base else f"op-{op.name}"

    @property
    def point_name(self) -> str:
        return self.operating_point.name if self.operating_point else ""

    def point_record(self) -> dict[str, Any]:
        """What a record and an entry carry of the operating point ({} without a sweep)."""
        return self.operating_point.describe() if self.operating_point else {}

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self.config)
        d["defense"] = {"name": self.defense_name, **asdict(self.defense_params)}
        d["attacks"] = {k: asdict(v) for k, v in self.attack_params.items()}
        return d

    def digest(self) -> str:
        """sha256 of everything that shapes a run's result (seeds list and cosmetic keys excluded)."""
        d = self.to_dict()
        for key in ("seeds", "defenses", "description", "tracking", "leaderboard"):
            d.pop(key)
        if self.config.version < 2:
            d.pop("design")  # protocol v1 has no design: its digests stay what they were
        d["trainer"].pop("progress_bar")
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()

    def training_digest(self) -> str:
        """sha256 of what shapes the trained model only (data, split sizes, trainer, defense): a checkpoint
        stays valid when attack, metric, release or utility settings change."""
        d = self.to_dict()
        keep = {k: d[k] for k in ("suite", "version", "dataset", "split", "trainer", "defense")}
        if self.config.version >= 2:
            keep["design"] = d["design"]
        keep["trainer"] = {k: v for k, v in keep["trainer"].items() if k != "progress_bar"}
        return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()


def suite_path(suite: str, config_dir: Path) -> Path:
    p = Path(suite)
    if p.suffix in (".yaml", ".yml"):
        if not p.is_file():
            raise ConfigError(f"suite file '{suite}' does not exist")
        return p
    p = config_dir / f"{suite}.yaml"
    if not p.is_file():
        known = sorted(f.stem for f in config_dir.glob("*.yaml"))
        close = difflib.get_close_matches(suite, known, n=3, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ConfigError(f"Unknown suite '{suite}'.{hint} Available: {', '.join(known) or 'none'} (in {config_dir})")
    return p


def _load_yaml(path: Path) -> DictConfig:
    try:
        node = OmegaConf.load(path)
    except (OSError, OmegaConfBaseException, Exception) as e:  # yaml.YAMLError and friends
        raise ConfigError(f"cannot read {path}: {e}") from None
    if not isinstance(node, DictConfig):
        raise ConfigError(f"{path} must hold a mapping of config keys")
    return node


def _dotted_keys(node: Any, prefix: str = "") -> list[str]:
    if not isinstance(node, dict):
        return []
    keys = []
    for k, v in node.items():
        keys.append(f"{prefix}{k}")
        keys += _dotted_keys(v, f"{prefix}{k}.")
    return keys


def _explain(e: OmegaConfBaseException, known: list[str]) -> ConfigError:
    key = getattr(e, "full_key", None) or "?"
    if isinstance(e, ConfigKeyError):
        close = difflib.get_close_matches(str(key), known, n=3, cutoff=0.8)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        return ConfigError(f"unknown config key '{key}'.{hint} Remove it or fix its spelling.")
    if isinstance(e, ValidationError):
        msg = str(getattr(e, "msg", e)).splitlines()[0]
        return ConfigError(f"config key '{key}': {msg}")
    return ConfigError(f"config error at '{key}': {getattr(e, 'msg', e)}")


def component_config(schema: type, values: Any, where: str) -> Any:
    """Check `values` (mapping or None) against a component's Config dataclass; returns an instance."""
    base = OmegaConf.structured(schema)
    known = [f"{where}.{k}" for k in _dotted_keys(OmegaConf.to_container(base))]
    try:
        merged = OmegaConf.merge(base, OmegaConf.create(values or {}))
        return OmegaConf.to_object(merged)
    except OmegaConfBaseException as e:
        if getattr(e, "full_key", None):
            e.full_key = f"{where}.{e.full_key}"  # type: ignore[attr-defined]
        raise _explain(e, known) from None


def parse_overrides(overrides: list[str]) -> DictConfig:
    bad = [o for o in overrides if "=" not in o or o.startswith("=")]
    if bad:
        raise ConfigError(f"override '{bad[0]}' must look like key=value, e.g. trainer.max_steps=500")
    if any(o.split("=", 1)[0].strip() == "defense.name" for o in overrides):
        raise ConfigError("choose the defense with --defense NAME, not defense.name=...")
    try:
        return OmegaConf.from_dotlist(overrides)
    except OmegaConfBaseException as e:
        raise ConfigError(f"cannot parse overrides {overrides}: {e}") from None


class Schemas:
    """Where component Config dataclasses come from: the registries (imports torch), or the manifest
    (mia_bench/manifest.py, torch-free) when the CLI checks a command before any heavy import."""

    def defense(self, name: str) -> type:
        from mia_bench.defenses import DEFENSES

        return DEFENSES.get(name).Config

    def attack(self, name: str) -> type:
        from mia_bench.attacks import ATTACKS

        return ATTACKS.get(name).Config


def defense_file(defense: str, config_dir: Path | None) -> tuple[dict[str, Any], Sweep | None]:
    """The defense's YAML (its hyperparameters) and its sweep of operating points (None when it declares none)."""
    path = (Path(config_dir) if config_dir else REPO_ROOT / "benchmarks") / "defenses" / f"{defense}.yaml"
    if not path.is_file():
        return {}, None
    node = OmegaConf.to_container(_load_yaml(path))
    return split_defense_node(defense, node, str(path))  # type: ignore[arg-type]


def defense_sweep(defense: str, config_dir: Path | None = None) -> Sweep | None:
    return defense_file(defense, config_dir)[1]


def pick_point(defense: str, sweep: Sweep | None, operating_point: str | None) -> OperatingPoint | None:
    if sweep is None:
        if operating_point is not None:
            raise ConfigError(f"defense '{defense}' declares no operating points (no `operating_points:` in its "
                              "YAML); leave out --op / --sweep")
        return None
    return sweep.pick(operating_point)


def points_to_run(defense: str, config_dir: Path | None, *, sweep: bool, ops: list[str] | None) -> list[str | None]:
    """The operating points a command runs: every point of the defense's sweep (`sweep`), the named ones
    (`ops`, checked now), or [None] (the default point; no point for a defense without a sweep)."""
    found = defense_sweep(defense, config_dir)
    if sweep:
        if found is None:
            raise ConfigError(f"--sweep: defense '{defense}' declares no operating points (no `operating_points:` in "
                              f"benchmarks/defenses/{defense}.yaml); run it without --sweep")
        return list(found.names())
    for name in ops or []:
        pick_point(defense, found, name)
    return list(ops) if ops else [None]


def merge_run_config(*, suite: str, defense: str, overrides: list[str], config_dir: Path | None,
                     operating_point: str | None = None) -> RunConfig:
    """The suite YAML, the defense's YAML and the overrides, merged and checked against RunConfig (torch-free)."""
    return _merge(suite=suite, defense=defense, overrides=overrides, config_dir=config_dir,
                  operating_point=operating_point)[0]


def _merge(*, suite: str, defense: str, overrides: list[str], config_dir: Path | None,
           operating_point: str | None) -> tuple[RunConfig, OperatingPoint | None]:
    """merge_run_config, with the operating point it ran at: its settings sit between the defense's YAML and
    the overrides, and its budget fraction scales the merged trainer.max_steps."""
    config_dir = Path(config_dir) if config_dir else REPO_ROOT / "benchmarks"
    layers = [_load_yaml(suite_path(suite, config_dir))]
    params, sweep = defense_file(defense, config_dir)
    point = pick_point(defense, sweep, operating_point)
    layers.append(OmegaConf.create({"defense": params}))
    layers.append(OmegaConf.create(point.layer() if point else {}))
    layers.append(parse_overrides(overrides))
    base = OmegaConf.structured(RunConfig)
    known = _dotted_keys(OmegaConf.to_container(base))
    try:
        merged = OmegaConf.merge(base, *layers)
        cfg: RunConfig = OmegaConf.to_object(merged)  # type: ignore[assignment]
    except OmegaConfBaseException as e:
        raise _explain(e, known) from None
    if point is not None:
        cfg.trainer.max_steps = point.steps(cfg.trainer.max_steps)
    check_ranges(cfg)
    bad = [f for f in cfg.metrics.fprs if not 0 < f < 1]
    if bad:
        raise ConfigError(f"config key 'metrics.fprs' holds {bad[0]!r}; every FPR must be between 0 and 1 "
                          "(exclusive), e.g. metrics.fprs=[0.001,0.01,0.1]")
    return cfg, point


def attack_options(name: str, opts: Any) -> Any:
    """An attack's entry in `attacks:`: null or true (its defaults), false (left out), or a mapping."""
    if opts is None or opts is True:
        return {}
    if opts is False or isinstance(opts, dict):
        return opts
    raise ConfigError(f"config key 'attacks.{name}' is {opts!r}: use true or null (the attack's defaults), false "
                      f"(leave it out) or its options, e.g. attacks.{name}.<option>=<value>")


def load_run(*, suite: str, defense: str, overrides: list[str] | None = None, config_dir: Path | None = None,
             schemas: Schemas | None = None, operating_point: str | None = None) -> ResolvedRun:
    """The fully checked configuration of one run: names (with "did you mean"), keys, types and ranges.
    operating_point: a point of the defense's sweep (None: its default; defenses without a sweep: none)."""
    schemas = schemas or Schemas()
    overrides = list(overrides or [])
    defense_schema = schemas.defense(defense)
    cfg, point = _merge(suite=suite, defense=defense, overrides=overrides, config_dir=config_dir,
                        operating_point=operating_point)
    params = dict(cfg.defense)
    params.pop("name", None)
    defense_params = component_config(defense_schema, params, "defense")
    check_ranges(defense_params, "defense")
    attack_params = {}
    for name, raw in cfg.attacks.items():
        schema = schemas.attack(name)  # unknown names stop here, even when switched off
        opts = attack_options(name, raw)
        if opts is False:  # attacks.NAME=false: left out
            continue
        attack_params[name] = component_config(schema, opts, f"attacks.{name}")
        check_ranges(attack_params[name], f"attacks.{name}")
    return ResolvedRun(config=cfg, defense_name=defense, defense_params=defense_params,
                       attack_params=attack_params, overrides=overrides, operating_point=point)
