"""Protocol v2's membership design (suite `version: 2`): a population, its canaries, and T target models.

LiRA (Carlini et al., S&P 2022) and Aerni, Zhang & Tramer (CCS 2024) evaluate a defense on many models of
one recipe, each record IN for half of them, so every record is scored both as a member and as a
non-member and the ROC rests on thousands of non-member scores instead of a few hundred:

  population    P records that can be members; C of them are planted canaries (below)
  inside        (T, P) bool: target t trains on population[inside[t]]. Every record is IN for exactly
                T/2 targets (LiRA's construction: per record, the T/2 smallest of T uniform draws), so
                target sizes vary a little around P/2 and memberships of different records are independent.
                With groups (CelebA identities) the draw is per group: a person is IN or OUT as a whole
  reference     defender / attacker reference data (MP-GAN, DOMIAS, calibration), as in protocol v1
  attacker_aux  attacker's own data (local, substitute and reference models)
  shadow_pool   attacker data for protocol v1's shadow banks
  holdout       utility hold-out: real records no target ever trained on (FID, downstream accuracy)

All roles are pairwise disjoint and none outside the population touches it. Everything is a deterministic
function of (dataset size, sizes, seed); `digest()` goes into every target bank and record.

Canaries (`design.canary`), records a model can only fit by memorising them, chosen so that their
exposure measures memorisation of individuals rather than of a shared pattern:
  shuffled     (images; `auto`) the record's own pixels under a permutation of its own: the intensity
               histogram is unchanged (no brightness cue), but no stroke or shape is shared with any other
               record, so a generator places a sample near it, or a discriminator singles it out, only by
               fitting that record. One permutation per canary, so canaries do not form a learnable mode
               of their own (an inverted or shifted digit would: every such canary shares the pattern).
  mislabelled  (conditional models) the record with a random wrong label: G(z, y) reproduces it only by
               memorising the pair.
  outliers     (tables; `auto`) the population records farthest from their nearest neighbour (leave-one-
               out L2), unchanged: the rare-value rows that distance- and density-based attacks single out.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

import numpy as np
import torch

from mia_bench.data.datasets import ArrayDataset, DataKind
from mia_bench.data.splits import MembershipSplit, _cut, _grouped_order
from mia_bench.errors import SplitError
from mia_bench.schema import DesignConfig, SplitConfig

OUTSIDE = ("reference", "attacker_aux", "shadow_pool", "holdout")  # roles disjoint from the population
CANARY_KINDS = ("auto", "shuffled", "mislabelled", "outliers")


@dataclass(frozen=True)
class MembershipDesign:
    population: np.ndarray  # (P,) dataset ids
    canary: np.ndarray  # (P,) bool
    inside: np.ndarray  # (T, P) bool
    reference: np.ndarray
    attacker_aux: np.ndarray
    shadow_pool: np.ndarray
    holdout: np.ndarray
    seed: int
    canary_kind: str

    def __post_init__(self) -> None:
        for name in ("population", *OUTSIDE):
            arr = np.asarray(getattr(self, name), dtype=np.int64)
            if np.unique(arr).size != arr.size:
                raise SplitError(f"design role '{name}' repeats a record")
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)
        roles = ("population", *OUTSIDE)
        for i, a in enumerate(roles):
            for b in roles[i + 1:]:
                shared = np.intersect1d(getattr(self, a), getattr(self, b))
                if shared.size:
                    raise SplitError(f"design roles '{a}' and '{b}' share {shared.size} record(s); every role "
                                     "must be disjoint")
        inside = np.asarray(self.inside, dtype=bool)
        if inside.ndim != 2 or inside.shape[1] != self.population.size:
            raise SplitError(f"design membership must be (T, {self.population.size}), got {inside.shape}")
        inside.setflags(write=False)
        object.__setattr__(self, "inside", inside)
        canary = np.asarray(self.canary, dtype=bool)
        canary.setflags(write=False)
        object.__setattr__(self, "canary", canary)

    @property
    def n_targets(self) -> int:
        return int(self.inside.shape[0])

    @classmethod
    def make(cls, *, n_records: int, split: SplitConfig, design: DesignConfig, seed: int, dataset: str = "dataset",
             groups: np.ndarray | None = None, canary_kind: str = "shuffled") -> MembershipDesign:
        t = int(design.targets)
        if t < 2 or t % 2:
            raise SplitError(f"design.targets must be an even number >= 2 (every record IN for exactly T/2 "
                             f"targets), got {t}; fix: design.targets={max(2, t + t % 2)}")
        if design.canaries > design.population:
            raise SplitError(f"design.canaries={design.canaries} exceeds design.population={design.population}; "
                             "lower design.canaries")
        wanted = {"population": int(design.population), "reference": int(split.reference),
                  "attacker_aux": int(split.attacker_aux), "shadow_pool": int(split.shadow_pool),
                  "holdout": int(design.holdout)}
        total = sum(wanted.values())
        if total > n_records:
            raise SplitError(f"the design asks for {total} records ({wanted}) but dataset '{dataset}' holds "
                             f"{n_records}; lower design.population or the split sizes")
        rng = np.random.default_rng([seed, 2])
        order = _grouped_order(rng, n_records, groups) if groups is not None else rng.permutation(n_records)
        where = {"population": "design", "holdout": "design"}
        parts = _cut(order, wanted, groups, dataset, roles=tuple(wanted), where=where)
        if groups is None:
            inside = balanced_membership(parts["population"].size, t, seed=seed)
        else:  # a group (e.g. one person's images) is IN or OUT as a whole: no identity straddles the two
            codes = np.unique(np.asarray(groups)[parts["population"]], return_inverse=True)[1].ravel()
            inside = balanced_membership(int(codes.max()) + 1, t, seed=seed)[:, codes]
        canary = np.zeros(parts["population"].size, dtype=bool)
        canary[rng.choice(canary.size, int(design.canaries), replace=False)] = True
        return cls(inside=inside, canary=canary, seed=seed, canary_kind=canary_kind, **parts)

    def digest(self) -> str:
        h = hashlib.sha256(f"design/1 seed={self.seed} canary={self.canary_kind}".encode())
        for name in ("population", *OUTSIDE):
            h.update(name.encode())
            h.update(np.ascontiguousarray(getattr(self, name), dtype="<i8").tobytes())
        h.update(np.packbits(self.inside).tobytes())
        h.update(np.packbits(self.canary).tobytes())
        return h.hexdigest()

    def target_split(self, t: int) -> MembershipSplit:
        """Target t's view as a protocol-v1 split: its IN records are the members, its OUT ones the non-members."""
        return MembershipSplit(members=self.population[self.inside[t]], non_members=self.population[~self.inside[t]],
                               reference=self.reference, attacker_aux=self.attacker_aux,
                               shadow_pool=self.shadow_pool, seed=self.seed)

    def utility_split(self) -> MembershipSplit:
        """For the utility metrics: the hold-out is the real data released samples are compared with, and
        the evaluator trains on the attacker/reference roles (never on the population or the hold-out)."""
        return MembershipSplit(members=self.population, non_members=self.holdout, reference=self.reference,
                               attacker_aux=self.attacker_aux, shadow_pool=self.shadow_pool, seed=self.seed)

    def sizes(self) -> dict[str, int]:
        out = {name: int(getattr(self, name).size) for name in ("population", *OUTSIDE)}
        out.update(targets=self.n_targets, canaries=int(self.canary.sum()))
        return out

    def describe(self) -> dict:
        sizes = self.inside.sum(1)
        return {"digest": self.digest(), "targets": self.n_targets, "population": int(self.population.size),
                "canaries": int(self.canary.sum()), "canary_kind": self.canary_kind,
                "target_sizes": [int(sizes.min()), int(sizes.max())], "sizes": self.sizes()}


def balanced_membership(n_records: int, n_targets: int, *, seed: int) -> np.ndarray:
    """(T, n) bool, every column with exactly T/2 True: per record, the T/2 targets with the smallest of T
    uniform draws (LiRA's code), independently across records."""
    rng = np.random.default_rng([seed, 3])
    return rng.uniform(size=(n_targets, n_records)).argsort(0).argsort(0) < n_targets // 2


def canary_kind(requested: str, data: ArrayDataset) -> str:
    """The canary kind `auto` stands for on this data: `outliers` for tables, `shuffled` for images. It never
    depends on the defense (every defense of a seed shares the design and its natural bank), so `mislabelled`
    is chosen explicitly, in a suite whose defenses are conditional."""
    if requested not in CANARY_KINDS:
        raise SplitError(f"design.canary must be one of {list(CANARY_KINDS)}, got {requested!r}")
    if requested != "auto":
        return requested
    return "outliers" if data.info.kind is DataKind.TABULAR else "shuffled"


def plant_canaries(data: ArrayDataset, design: MembershipDesign) -> ArrayDataset:
    """The dataset with the design's canaries planted (a copy; `outliers` leaves every record as it is)."""
    ids = design.population[design.canary]
    if ids.size == 0 or design.canary_kind == "outliers":
        return data
    x, y = data.x.clone(), data.y.clone()
    rng = np.random.default_rng([design.seed, 4])
    if design.canary_kind == "shuffled":
        flat = x[torch.from_numpy(ids)].flatten(1)
        for i in range(flat.shape[0]):
            flat[i] = flat[i, torch.from_numpy(rng.permutation(flat.shape[1]))]
        x[torch.from_numpy(ids)] = flat.view(ids.size, *data.info.shape)
    elif design.canary_kind == "mislabelled":
        k = max(int(data.info.n_classes), 2)
        shift = torch.from_numpy(rng.integers(1, k, ids.size))
        y[torch.from_numpy(ids)] = (y[torch.from_numpy(ids)] + shift) % k
    return ArrayDataset(x=x, y=y, info=data.info, groups=data.groups)


def with_canaries(data: ArrayDataset, design: MembershipDesign) -> tuple[ArrayDataset, MembershipDesign]:
    """(dataset with canaries planted, design whose canary mask marks them). `outliers` replaces the random
    mask by the population records farthest from their nearest population neighbour."""
    if design.canary_kind == "outliers" and design.canary.any():
        x = data.take(design.population)[0].flatten(1).double()
        d = torch.cdist(x, x)
        d.fill_diagonal_(float("inf"))
        nearest = d.min(1).values.numpy()
        mask = np.zeros(design.population.size, dtype=bool)
        mask[np.argsort(-nearest, kind="stable")[:int(design.canary.sum())]] = True
        design = replace(design, canary=mask)
    return plant_canaries(data, design), design
