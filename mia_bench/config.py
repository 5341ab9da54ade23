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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from mia_bench.data.datasets import DatasetConfig
from mia_bench.data.splits import SplitConfig
from mia_bench.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class TrainerConfig:
    max_steps: int = 8000  # generator updates; converted to loader batches (x n_critic etc.)
    batch_size: int = 64  # records per discriminator batch (per shard for sharded defenses)
    accelerator: str = "cpu"
    devices: int = 1
    strategy: str = "auto"
    num_nodes: int = 1
    precision: str = "32-true"
    log_every_n_steps: int = 50
    progress_bar: bool = True


@dataclass
class ReleaseConfig:
    n_samples: int = 2000  # records the defense releases (what samples-level attacks see)


@dataclass
class MetricsConfig:
    fprs: list[float] = field(default_factory=lambda: [0.001, 0.01, 0.1])
    bootstrap: int = 200  # stratified bootstrap replicates for the intervals (0 = none)
    ci_level: float = 0.95


@dataclass
class UtilityConfig:
    """What a defense costs (metrics/utility.py). Real data for utility is the scored non-members (held out
    from every model); the evaluator classifier trains on records outside members and non-members."""

    enabled: bool = True
    n_samples: int = 0  # real (non-member) and released records compared by FID/DWP; 0 = min of both counts
    fid_inception: str = "auto"  # "auto" (when torch-fidelity, CUDA and weights are there) | "on" | "off"
    inception_weights: str = ""  # torch-fidelity Inception-v3 weights file; "" = torch-fidelity's cache
    main: str = "auto"  # metric on the privacy-utility plot; auto: fid_classifier / dwpre_mae / downstream_accuracy
    classifier_epochs: int = 30  # evaluator (feature / labelling) classifier
    classifier_max_train: int = 20000  # cap on its training records
    downstream_epochs: int = 30  # the fixed downstream recipe, trained on the released samples
    device: str = "auto"  # "auto" (cuda when available) | "cpu" | "cuda"
    n_jobs: int = 1  # parallel DWpre regressions (binary tables; -1 = every core)


@dataclass
class TrackingConfig:
    """Weights & Biases (cosmetic: left out of the config digest). The CLI's --wandb overrides `wandb`."""

    wandb: str = "offline"  # online | offline (sync later with `wandb sync`) | off
    project: str = "mia_bench"
    entity: str | None = None


@dataclass
class RunConfig:
    suite: str = "digits"
    version: int = 1  # protocol version: entries of different versions are never ranked together
    description: str = ""
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    release: ReleaseConfig = field(default_factory=ReleaseConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    utility: UtilityConfig = field(default_factory=UtilityConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    attacks: dict[str, Any] = field(default_factory=dict)  # attack name -> its options (null: defaults; false: off)
    defenses: list[str] = field(default_factory=list)  # what `grid --defenses all` runs
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    defense: dict[str, Any] = field(default_factory=dict)  # {"name": ..., <defense Config fields>}


@dataclass
class ResolvedRun:
    """A fully checked run configuration: the schema plus typed defense and attack options."""

    config: RunConfig
    defense_name: str
    defense_params: Any
    attack_params: dict[str, Any]
    overrides: list[str]
    name: str = ""  # --name: the run's folder under results/<suite>/<defense>/ (instead of its override digest)

    @property
    def variant(self) -> str:
        """The run's folder below its defense's: "" for an official run, else `name` or `ovr-<digest[:12]>`."""
        if self.name:
            return self.name
        return f"ovr-{self.digest()[:12]}" if self.overrides else ""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self.config)
        d["defense"] = {"name": self.defense_name, **asdict(self.defense_params)}
        d["attacks"] = {k: asdict(v) for k, v in self.attack_params.items()}
        return d

    def digest(self) -> str:
        """sha256 of everything that shapes a run's result (seeds list and cosmetic keys excluded)."""
        d = self.to_dict()
        for key in ("seeds", "defenses", "description", "tracking"):
            d.pop(key)
        d["trainer"].pop("progress_bar")
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()

    def training_digest(self) -> str:
        """sha256 of what shapes the trained model only (data, split sizes, trainer, defense): a checkpoint
        stays valid when attack, metric, release or utility settings change."""
        d = self.to_dict()
        keep = {k: d[k] for k in ("suite", "version", "dataset", "split", "trainer", "defense")}
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


def load_run(*, suite: str, defense: str, overrides: list[str] | None = None,
             config_dir: Path | None = None) -> ResolvedRun:
    from mia_bench.attacks import ATTACKS
    from mia_bench.defenses import DEFENSES

    overrides = list(overrides or [])
    config_dir = Path(config_dir) if config_dir else REPO_ROOT / "benchmarks"
    defense_cls = DEFENSES.get(defense)
    layers = [_load_yaml(suite_path(suite, config_dir))]
    defense_file = config_dir / "defenses" / f"{defense}.yaml"
    layers.append(OmegaConf.create({"defense": _load_yaml(defense_file) if defense_file.is_file() else {}}))
    layers.append(parse_overrides(overrides))
    base = OmegaConf.structured(RunConfig)
    known = _dotted_keys(OmegaConf.to_container(base))
    try:
        merged = OmegaConf.merge(base, *layers)
        cfg: RunConfig = OmegaConf.to_object(merged)  # type: ignore[assignment]
    except OmegaConfBaseException as e:
        raise _explain(e, known) from None
    params = dict(cfg.defense)
    params.pop("name", None)
    defense_params = component_config(defense_cls.Config, params, "defense")
    attack_params = {name: component_config(ATTACKS.get(name).Config, opts, f"attacks.{name}")
                     for name, opts in cfg.attacks.items() if opts is not False}  # attacks.NAME=false: skip
    return ResolvedRun(config=cfg, defense_name=defense, defense_params=defense_params,
                       attack_params=attack_params, overrides=overrides)
