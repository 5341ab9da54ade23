"""Running the project's registered attacks on the user's release: each attack sees a TargetView limited
to its access level, built from what the user gave (samples, generator, discriminator), and scores the
--train records (members) against the scored hold-out records (non-members); higher score = member.

Only attacks that need no training recipe run here. Shadow, reference and local models (LiRA, calibrated
GAN-Leaks, LOGAN-bb) need the user's recipe (--recipe, shadow.py runs them); without it they are listed
as skipped, with the reason, in the record.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from mia_bench import progress
from mia_bench.attacks import ATTACKS
from mia_bench.attacks.base import AccessLevel, AttackerKnowledge, TargetView
from mia_bench.data.datasets import DataInfo, DataKind
from mia_bench.defenses.base import Released
from mia_bench.external.inputs import AuditData
from mia_bench.external.models import UserGenerator
from mia_bench.metrics.privacy import privacy_report

# attack -> what of the user's release it needs beyond its access level's samples
RUNNABLE = {"ganleaks_fbb": "samples", "monte_carlo": "samples", "domias": "samples",
            "ganleaks_pbb": "generator", "ganleaks_wb": "generator", "logan_wb": "discriminator"}
NEEDS_RECIPE = "trains shadow / reference / local models: give --recipe module:callable (and --shadows K)"


@dataclass
class Release:
    """What the user released, in mia_bench's space: samples (S, *shape), the generator, the discriminator."""

    samples: np.ndarray | None
    generator: UserGenerator | None
    discriminator: Any  # Callable[[Tensor, Tensor | None], Tensor] | None

    def levels(self) -> list[str]:
        out = ["samples"] if self.samples is not None else []
        if self.generator is not None and self.generator.query is not None:
            out.append("generator")
        if self.discriminator is not None:
            out.append("white_box")
        return out

    def has(self, need: str) -> bool:
        if need == "samples":
            return self.samples is not None
        if need == "generator":
            return self.generator is not None and self.generator.query is not None
        return self.discriminator is not None


def plan(release: Release) -> tuple[list[str], dict[str, str]]:
    """(attacks to run, {attack: why it is skipped}) over every registered attack."""
    given = release.levels()
    run, skipped = [], {}
    for name in ATTACKS.names():
        level = ATTACKS.get(name).access.value
        if name not in RUNNABLE:
            skipped[name] = NEEDS_RECIPE
        elif level not in given:
            skipped[name] = f"needs {level} access: give " + {"samples": "--synthetic or --generator",
                                                             "generator": "--generator with generate(z) and z_dim",
                                                             "white_box": "--discriminator"}[level]
        elif not release.has(RUNNABLE[name]):
            skipped[name] = f"needs the {RUNNABLE[name]}: give --{RUNNABLE[name]}"
        else:
            run.append(name)
    return run, skipped


def data_info(data: AuditData) -> DataInfo:
    kind = DataKind.IMAGE if data.kind == "image" else DataKind.TABULAR
    spans = data.encoding.spans if hasattr(data.encoding, "spans") else ()
    return DataInfo(name="external", shape=data.shape, n_classes=0, kind=kind, categorical=spans)


def run_attacks(data: AuditData, release: Release, names: list[str], *, fprs: tuple[float, ...], n_boot: int,
                seed: int) -> tuple[dict[str, dict], dict[str, np.ndarray]]:
    """Per attack: {access, variant, settings, metrics (privacy_report: intervals by a stratified bootstrap
    over records), seconds}; and the raw scores {score/<name>: (M + H,) float32}."""
    x = torch.from_numpy(np.concatenate([data.train, data.holdout]))
    y = torch.zeros(x.shape[0], dtype=torch.int64)
    is_member = np.r_[np.ones(len(data.train), bool), np.zeros(len(data.holdout), bool)]
    info = data_info(data)
    samples = release.samples if release.samples is not None else np.zeros((0, *data.shape), np.float32)
    released = Released(x=torch.from_numpy(samples), y=None)
    knowledge = AttackerKnowledge(data={"attacker_aux": (torch.from_numpy(data.reference),
                                                         torch.zeros(len(data.reference), dtype=torch.int64))},
                                  seed=seed)
    attacks, raw = {}, {}
    with progress.task("attacks", total=len(names)) as bar:
        for name in names:
            bar.update(description=f"attacks: {name}")
            t0 = time.perf_counter()
            cls = ATTACKS.get(name)
            view = TargetView(access=cls.access, info=info, released=released,
                              generator=release.generator.query if release.generator is not None and
                              cls.access.rank >= AccessLevel.GENERATOR.rank else None,
                              discriminator=release.discriminator if cls.access is AccessLevel.WHITE_BOX else None)
            attack = cls(config=cls.Config(), seed=seed)
            attack.fit(view, knowledge)
            scores = attack.score(view, x, y, ids=np.arange(x.shape[0]))
            metrics = measure(scores, is_member, fprs=fprs, n_boot=n_boot, seed=seed)
            attacks[name] = {**attack.describe(), "metrics": metrics, "canaries": {},
                             "seconds": round(time.perf_counter() - t0, 3)}
            raw[f"score/{name}"] = scores.astype(np.float32)
            bar.advance()
    return attacks, raw


def measure(scores: np.ndarray, is_member: np.ndarray, *, fprs: tuple[float, ...], n_boot: int, seed: int) -> dict:
    """privacy_report of (M + H,) scores (intervals: stratified bootstrap over records) plus the list of
    underpowered FPRs (fewer than 10/x non-members), as protocol v2 records it."""
    metrics = privacy_report(scores, is_member, fprs=fprs, n_boot=n_boot, seed=seed)
    metrics["underpowered"] = [k for k in metrics if k.startswith("tpr@") and metrics[k]["detail"]["underpowered"]]
    return metrics
