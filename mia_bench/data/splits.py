"""MembershipSplit: who is a member, who is scored as a non-member, and what each other party may use.

Roles (indices into the dataset, pairwise disjoint):
  members       the target's training set (D_mem)
  non_members   held out; scored against members, seen by nobody (D_non)
  reference     reference data of the defender (MP-GAN) or the attacker (DOMIAS, calibration) (D_ref)
  attacker_aux  attacker's own data from the same distribution (local / substitute models)
  shadow_pool   attacker data that shadow models are trained on (D_pool)
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass, fields

import numpy as np

from mia_bench.errors import SplitError
from mia_bench.schema import SplitConfig

ROLES: tuple[str, ...] = ("members", "non_members", "reference", "attacker_aux", "shadow_pool")


@dataclass(frozen=True)
class MembershipSplit:
    members: np.ndarray
    non_members: np.ndarray
    reference: np.ndarray
    attacker_aux: np.ndarray
    shadow_pool: np.ndarray
    seed: int

    def __post_init__(self) -> None:
        for role in ROLES:
            idx = np.asarray(getattr(self, role))
            if idx.ndim != 1 or (idx.size and not np.issubdtype(idx.dtype, np.integer)):
                raise SplitError(f"split role '{role}' must be a 1-D integer index array")
            if np.unique(idx).size != idx.size:
                raise SplitError(f"split role '{role}' repeats a record")
            idx = idx.astype(np.int64)
            idx.setflags(write=False)
            object.__setattr__(self, role, idx)
        for a, b in itertools.combinations(ROLES, 2):
            shared = np.intersect1d(getattr(self, a), getattr(self, b))
            if shared.size:
                raise SplitError(f"split roles '{a}' and '{b}' share {shared.size} record(s), e.g. {shared[:5].tolist()}; "
                                 "every role must be disjoint")

    @classmethod
    def make(cls, *, n_records: int, sizes: SplitConfig, seed: int, dataset: str = "dataset",
             groups: np.ndarray | None = None) -> MembershipSplit:
        """Deterministic split for `seed`. With `groups` (e.g. identities), no group spans two roles."""
        wanted = {f.name: int(getattr(sizes, f.name)) for f in fields(sizes)}
        negative = [k for k, v in wanted.items() if v < 0]
        if negative:
            raise SplitError(f"split sizes must be >= 0; fix split.{negative[0]}")
        if wanted["members"] < 1 or wanted["non_members"] < 1:
            raise SplitError("split.members and split.non_members must each be at least 1")
        total = sum(wanted.values())
        if total > n_records:
            raise SplitError(f"split asks for {total} records ({wanted}) but dataset '{dataset}' holds {n_records}; "
                             "reduce the split sizes in the suite (e.g. split.shadow_pool=...)")
        rng = np.random.default_rng(seed)
        order = _grouped_order(rng, n_records, groups) if groups is not None else rng.permutation(n_records)
        parts = _cut(order, wanted, groups, dataset)
        return cls(seed=seed, **parts)

    def digest(self) -> str:
        """sha256 over the seed and every role's indices; stored in checkpoints and records."""
        h = hashlib.sha256(f"seed={self.seed}".encode())
        for role in ROLES:
            h.update(role.encode())
            h.update(np.ascontiguousarray(getattr(self, role), dtype="<i8").tobytes())
        return h.hexdigest()

    def sizes(self) -> dict[str, int]:
        return {role: int(getattr(self, role).size) for role in ROLES}

    def member_fraction(self) -> float:
        """pi: share of members among the scored queries (members + non_members)."""
        return self.members.size / (self.members.size + self.non_members.size)


def _grouped_order(rng: np.random.Generator, n: int, groups: np.ndarray) -> np.ndarray:
    groups = np.asarray(groups)
    if groups.shape != (n,):
        raise SplitError(f"groups must have one id per record ({n}), got shape {groups.shape}")
    uniq = np.unique(groups)
    group_rank = rng.permutation(uniq.size)[np.searchsorted(uniq, groups)]  # random order of groups
    jitter = rng.permutation(n)  # shuffles records within a group
    return np.lexsort((jitter, group_rank))


def _cut(order: np.ndarray, wanted: dict[str, int], groups: np.ndarray | None, dataset: str,
         roles: tuple[str, ...] = ROLES, where: dict[str, str] | None = None) -> dict[str, np.ndarray]:
    """Consecutive blocks of `order`; with groups, a block ends on a group boundary (excess records skipped)."""
    parts: dict[str, np.ndarray] = {}
    pos = 0
    for role in roles:
        take = wanted[role]
        block = order[pos:pos + take]
        if block.size < take:
            raise SplitError(f"dataset '{dataset}' has too few records (after keeping groups whole) for "
                             f"{(where or {}).get(role, 'split')}.{role}={take}; reduce the split sizes")
        pos += take
        if groups is not None and take:
            # skip the rest of the last group so the next role starts on a fresh group
            last = groups[block[-1]]
            while pos < order.size and groups[order[pos]] == last:
                pos += 1
        parts[role] = block
    return parts
