"""RunRecord: the versioned JSON result of one run (suite x defense x seed), and where runs live on disk.

results/<suite>/<defense>/seed<k>/            an official run (the suite's own settings)
results/<suite>/<defense>/<variant>/seed<k>/  a run with overrides (variant `ovr-<config digest[:12]>`)
                                              or one named with --name
    record.json     this record (written last: its presence means the run is complete)
    scores.npz      raw per-record attack scores, record ids and membership (new metrics need no retraining)
    samples.npz     the released samples
    checkpoint.pt   the trained defense (weights_only-loadable)
    checkpoint-<training digest[:12]>.pt   the checkpoint of another training config, kept (never overwritten)
    superseded/<config digest[:12]>/       an earlier run of another config in this folder, kept
"""

from __future__ import annotations

import os
import platform
import subprocess
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from mia_bench.config import REPO_ROOT
from mia_bench.io import atomic_write_json, read_versioned_json

RECORD_SCHEMA = "mia_bench.record/1"
_PACKAGES = ("torch", "lightning", "torchmetrics", "scikit-learn", "numpy", "scipy", "opacus", "wandb", "omegaconf")


@dataclass(frozen=True)
class RunPaths:
    root: Path

    @classmethod
    def of(cls, results_dir: Path, suite: str, defense: str, seed: int, variant: str = "") -> RunPaths:
        folder = Path(results_dir) / suite / defense
        return cls((folder / variant if variant else folder) / f"seed{seed}")

    @classmethod
    def for_run(cls, results_dir: Path, resolved: Any, seed: int) -> RunPaths:
        """Where the run of `resolved` (a config.ResolvedRun) at `seed` lives."""
        return cls.of(results_dir, resolved.config.suite, resolved.defense_name, seed, resolved.variant)

    def archived_checkpoint(self, training_digest: str) -> Path:
        return self.root / f"checkpoint-{training_digest[:12]}.pt"

    def superseded(self, config_digest: str) -> Path:
        return self.root / "superseded" / config_digest[:12]

    @property
    def record(self) -> Path:
        return self.root / "record.json"

    @property
    def scores(self) -> Path:
        return self.root / "scores.npz"

    @property
    def samples(self) -> Path:
        return self.root / "samples.npz"

    @property
    def checkpoint(self) -> Path:
        return self.root / "checkpoint.pt"


@dataclass
class RunRecord:
    suite: str
    suite_version: int
    defense: str
    seed: int
    config: dict[str, Any]
    config_digest: str
    overrides: list[str]
    split_digest: str
    split_sizes: dict[str, int]
    member_fraction: float
    attacks: dict[str, dict[str, Any]]  # name -> {access, variant, settings, metrics, seconds}
    labels: list[str] = field(default_factory=list)  # "control", "reconstructed", ...
    utility: dict[str, Any] = field(default_factory=dict)
    diagnostics: dict[str, Any] = field(default_factory=dict)
    privacy_guarantee: dict[str, Any] = field(default_factory=dict)  # epsilon, delta for DP defenses
    environment: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    wall_time_s: float = 0.0
    wandb_run_id: str | None = None
    created_at: str = ""
    variant: str = ""  # "" for an official run; the folder of a run with overrides or a --name
    design: dict[str, Any] = field(default_factory=dict)  # protocol v2: the membership design (data/design.py)
    worst_case: dict[str, Any] = field(default_factory=dict)  # protocol v2: strongest attack per access level
    operating_point: dict[str, Any] = field(default_factory=dict)  # the defense's sweep point (sweep.py); {}: none
    schema: str = RECORD_SCHEMA

    @property
    def official(self) -> bool:
        """Run with the suite's own settings (no command-line overrides): eligible for the leaderboard."""
        return not self.overrides and "external_audit" not in self.labels  # audits of user models never rank

    def write(self, path: Path) -> None:
        atomic_write_json(path, asdict(self))

    @classmethod
    def read(cls, path: Path) -> RunRecord:
        d = read_versioned_json(path, RECORD_SCHEMA, "record")
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def now_iso() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


# what the runs themselves write into the tree: a run after another one (whose leaderboard update is not
# yet committed) ran the same code, so these never make a revision dirty
OUTPUTS = ("leaderboard",)


def git_revision(root: Path = REPO_ROOT) -> dict[str, Any]:
    """The checkout's commit and whether its tracked code or configs differ from it (`dirty`)."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                *(f":(exclude){p}" for p in OUTPUTS)], cwd=root,
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    if head.returncode != 0:
        return {"commit": None, "dirty": None}
    return {"commit": head.stdout.strip(), "dirty": bool(dirty.stdout.strip())}


def environment() -> dict[str, Any]:
    import torch

    versions: dict[str, str | None] = {}
    for pkg in _PACKAGES:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "torch_threads": torch.get_num_threads(),
        "packages": versions,
        "mia_bench": metadata.version("mia_bench") if _installed("mia_bench") else None,
        "git": git_revision(),
    }


def _installed(pkg: str) -> bool:
    try:
        metadata.version(pkg)
        return True
    except metadata.PackageNotFoundError:
        return False


def find_records(results_dir: Path) -> list[Path]:
    """Every run's record.json: official runs and variants (folders starting with `_` are caches)."""
    root = Path(results_dir)
    found = list(root.glob("*/*/seed*/record.json")) + list(root.glob("*/*/*/seed*/record.json"))
    return sorted(p for p in found if not any(part.startswith("_") for part in p.relative_to(root).parts))
