"""The run configuration's schema: dataclasses only, importable without torch (the CLI checks a command's
config with them before anything heavy is imported), and the range of every numeric value.

Ranges: a field's `metadata={"range": (lo, hi)}` when it has one; otherwise `default_range`, one rule for
every field of every schema (learning rates > 0, probabilities in [0, 1], counts >= 1 when their default
is, everything else numeric >= 0). `check_ranges` applies them to any config dataclass instance.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from typing import Any

from mia_bench.errors import ConfigError


@dataclass
class DatasetConfig:
    name: str = "digits"
    root: str = "data"  # folder holding downloaded/provided files (real datasets only)
    download: bool = False  # allow the loader to download missing files (user machines only)
    options: dict = field(default_factory=dict)  # loader-specific settings, validated by the loader


@dataclass
class SplitConfig:
    members: int = field(default=300, metadata={"range": (1, None)})
    non_members: int = field(default=300, metadata={"range": (1, None)})
    reference: int = 300
    attacker_aux: int = 300
    shadow_pool: int = field(default=597, metadata={"range": (0, None)})  # 0: no v1 shadow bank (protocol v2)


@dataclass
class DesignConfig:
    """Protocol v2 (suite `version: 2`; data/design.py): T target models per defense and seed, every
    population record IN for exactly T/2 of them. The roles outside the population (split.reference,
    split.attacker_aux, split.shadow_pool and `holdout`) stay disjoint from it and from each other;
    split.members and split.non_members are protocol v1's and unused here."""

    targets: int = field(default=16, metadata={"range": (2, None)})  # T (even)
    population: int = field(default=1000, metadata={"range": (2, None)})  # records that can be members, canaries included
    canaries: int = field(default=50, metadata={"range": (0, None)})  # population records made into canaries
    canary: str = "auto"  # auto (images: shuffled, tables: outliers) | shuffled | mislabelled | outliers (data/design.py)
    holdout: int = field(default=200, metadata={"range": (1, None)})  # utility hold-out: real data no target saw
    utility_targets: int = field(default=4, metadata={"range": (1, None)})  # targets whose release utility is measured


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
    bootstrap: int = field(default=200, metadata={"range": (0, None)})  # stratified bootstrap replicates for the intervals (0 = none)
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
    n_jobs: int = field(default=1, metadata={"range": (-1, None)})  # parallel DWpre regressions (binary tables; -1 = every core)


@dataclass
class TrackingConfig:
    """Weights & Biases (cosmetic: left out of the config digest). The CLI's --wandb overrides `wandb`."""

    wandb: str = "offline"  # online | offline (sync later with `wandb sync`) | off
    project: str = "mia_bench"
    entity: str | None = None


@dataclass
class LeaderboardConfig:
    """How the leaderboard ranks the suite's defenses (cosmetic for a run: left out of the config digest).

    utility_floor: metric -> factor of the reference defense's best value over its operating points; a point
    clears the floor when its mean utility is at least factor x that (higher-is-better metrics) or at most
    factor x that (lower-is-better ones), on every listed metric. Empty: no floor (every point ranks).

    sweeps: the published grid, what `make grid` runs and the leaderboard ranks: each defense at its default
    operating point, plus every point of the defenses named here (the DP baseline, whose frontier is the
    yardstick at matched utility). None: every point of every defense. Points outside it (`make grid
    POINTS=all`) are shown on the detail page, never ranked."""

    reference: str = "none"
    utility_floor: dict[str, float] = field(default_factory=dict)
    sweeps: list[str] | None = None


@dataclass
class RunConfig:
    suite: str = "digits"
    version: int = field(default=1, metadata={"range": (1, 2)})  # protocol version: entries of different versions are never ranked together
    description: str = ""
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    design: DesignConfig = field(default_factory=DesignConfig)  # protocol v2 only
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    release: ReleaseConfig = field(default_factory=ReleaseConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    utility: UtilityConfig = field(default_factory=UtilityConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    leaderboard: LeaderboardConfig = field(default_factory=LeaderboardConfig)
    attacks: dict[str, Any] = field(default_factory=dict)  # attack name -> its options (null: defaults; false: off)
    defenses: list[str] = field(default_factory=list)  # what `grid --defenses all` runs
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    defense: dict[str, Any] = field(default_factory=dict)  # {"name": ..., <defense Config fields>}




CONTROLS = ("memorizer", "independent")  # the controls every suite carries (what `mia-bench audit` runs)

Bound = tuple[float | None, float | None]
_RATE = re.compile(r"(^|_)lr($|_)")
_UNIT = re.compile(r"(^|_)(beta1|beta2|fraction|frac|prob|probability|q|dropout|momentum|level|quantile|delta|"
                   r"sampling_rate|member_fraction|holdout|ema|mix_lambda|real_label)($|_)")


def default_range(name: str, default: Any) -> Bound | None:
    """The rule for a numeric field without an explicit range; None for non-numeric fields."""
    if isinstance(default, bool) or not isinstance(default, (int, float)):
        return None
    if _RATE.search(name):
        return (math.ulp(0.0), None)  # > 0
    if _UNIT.search(name):
        return (0.0, 1.0)
    if isinstance(default, float) and default < 0:
        return None  # a signed quantity (e.g. an offset): any value
    if isinstance(default, int) and default >= 1:
        return (1, None)  # a count, a size, a budget
    return (0, None)


def field_range(f: dataclasses.Field) -> Bound | None:
    if "range" in f.metadata:
        return f.metadata["range"]
    default = f.default if f.default is not dataclasses.MISSING else None
    if default is None and isinstance(f.type, str) and f.type.replace(" ", "") in ("float|None", "int|None"):
        default = 0.0 if f.type.startswith("float") else 0  # optional number: the rule applies when it is set
    return default_range(f.name, default)


def in_range(value: Any, bound: Bound | None) -> bool:
    if bound is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return True
    lo, hi = bound
    if isinstance(value, float) and not math.isfinite(value):
        return False
    return (lo is None or value >= lo) and (hi is None or value <= hi)


def describe(bound: Bound) -> str:
    lo, hi = bound
    if lo is not None and hi is not None:
        return f"between {lo:g} and {hi:g}"
    if lo is not None:
        return "> 0" if 0 < lo < 1e-300 else f">= {lo:g}"
    return f"<= {hi:g}"


def check_ranges(obj: Any, where: str = "") -> None:
    """Raise ConfigError for the first numeric field of the dataclass `obj` (recursively) out of its range."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        key = f"{where}.{f.name}" if where else f.name
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            check_ranges(value, key)
            continue
        bound = field_range(f)
        if not in_range(value, bound):
            must = describe(bound)  # type: ignore[arg-type]
            raise ConfigError(f"config key '{key}' is {value!r} but must be {must}; fix: {key}=<a value {must}>")
