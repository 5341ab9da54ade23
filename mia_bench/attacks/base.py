"""Attack (the evaluator) and TargetView (the part of the target its access level allows).

Access levels, from least to most:
  samples    full black-box: only the released samples
  generator  partial black-box: query G(z, y) for chosen latents, no gradients
  white_box  G with gradients and the discriminator D
The runner builds the view from the checkpoint; attacks never open checkpoints. Asking a view for more
than its level raises AccessError.
"""

from __future__ import annotations

import abc
import enum
import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from mia_bench.data.datasets import DataInfo
from mia_bench.defenses.base import Defense, Released
from mia_bench.errors import AccessError
from mia_bench.registry import Registry


class AccessLevel(str, enum.Enum):
    SAMPLES = "samples"
    GENERATOR = "generator"
    WHITE_BOX = "white_box"

    @property
    def rank(self) -> int:
        return list(AccessLevel).index(self)


@dataclass(frozen=True)
class GeneratorQuery:
    """G as an attacker may query it: z (B, z_dim) [+ y (B,) labels] -> x (B, *shape)."""

    z_dim: int
    n_classes: int  # 0 for unconditional generators
    query: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]
    draw_latent: Callable[[int, torch.Generator], torch.Tensor]
    differentiable: bool
    # an opaque token, the same object for every view of one model (nothing can be read through it): lets a
    # run share one latent search between attacks that ask for the same one (nets/latent.shared_searches)
    source: object | None = field(default=None, compare=False, repr=False)


class TargetView:
    """What one attack sees of the target. Fields beyond the access level raise AccessError."""

    def __init__(self, *, access: AccessLevel, info: DataInfo, released: Released,
                 generator: GeneratorQuery | None = None,
                 discriminator: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor] | None = None) -> None:
        self.access, self.info, self.released = access, info, released
        self._generator, self._discriminator = generator, discriminator

    @property
    def generator(self) -> GeneratorQuery:
        if self._generator is None:
            raise AccessError(f"an attack with access '{self.access.value}' cannot query the generator")
        return self._generator

    @property
    def discriminator(self) -> Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]:
        if self._discriminator is None:
            raise AccessError(f"an attack with access '{self.access.value}' cannot read the discriminator")
        return self._discriminator

    def holds(self) -> set[str]:
        return {k for k, v in (("generator", self._generator), ("discriminator", self._discriminator)) if v is not None}


class _QueryToken:
    """Identity of one model's generator, for sharing searches; holds nothing."""

    __slots__ = ()


def query_token(defense: Defense) -> object:
    token = defense.__dict__.get("_query_token")
    if token is None:
        token = defense.__dict__["_query_token"] = _QueryToken()
    return token


def make_view(defense: Defense, access: AccessLevel, released: Released) -> TargetView:
    """Build the view of `defense` for `access`. Generator queries at `generator` level run without grad."""
    gen = disc = None
    if access.rank >= AccessLevel.GENERATOR.rank:
        white = access is AccessLevel.WHITE_BOX
        n_classes = defense.info.n_classes if defense.conditional else 0

        def query(z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
            yv = defense.label_vector(y.to(defense.device)) if (defense.conditional and y is not None) else None
            with torch.set_grad_enabled(white and torch.is_grad_enabled()):
                out = defense.generate(z.to(defense.device), yv)
            return out if white else out.detach()

        gen = GeneratorQuery(z_dim=defense.z_dim, n_classes=n_classes, query=query, differentiable=white,
                             draw_latent=lambda n, g: defense.draw_latent(n, g), source=query_token(defense))
    if access is AccessLevel.WHITE_BOX:
        def disc(x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
            return defense.discriminate(x.to(defense.device), None if y is None else y.to(defense.device))
    return TargetView(access=access, info=defense.info, released=released, generator=gen, discriminator=disc)


@dataclass(frozen=True)
class Recipe:
    """How the target was trained, which the attacker is assumed to know (Kerckhoffs): shadow, reference
    and substitute models are trained with it. It holds no data and no weights of the target."""

    defense: str
    params: Any  # the defense's Config dataclass
    trainer: Any  # TrainerConfig
    info: DataInfo

    @classmethod
    def of(cls, resolved: Any, info: DataInfo) -> Recipe:
        return cls(defense=resolved.defense_name, params=resolved.defense_params,
                   trainer=resolved.config.trainer, info=info)

    def digest(self) -> str:
        trainer = {k: v for k, v in asdict(self.trainer).items() if k != "progress_bar"}
        blob = json.dumps({"defense": self.defense, "params": asdict(self.params), "trainer": trainer,
                           "info": self.info.to_dict()}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()


class RoleData:
    """The dataset as an attack may read it: `take` serves only the records of the attack's declared roles
    (`needs`: never members or non-members); anything else raises AccessError. Same interface as the
    ArrayDataset for what attacks train on (info, len, take)."""

    def __init__(self, data: Any, ids_by_role: dict[str, np.ndarray]) -> None:
        self._data, self.info, self.roles = data, data.info, tuple(ids_by_role)
        self._allowed = np.unique(np.concatenate([np.asarray(v, np.int64) for v in ids_by_role.values()]
                                                 or [np.zeros(0, np.int64)]))
        self.groups = None

    def __len__(self) -> int:
        return len(self._data)

    def take(self, ids: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        ids = np.asarray(ids, dtype=np.int64)
        outside = ids[~np.isin(ids, self._allowed)]
        if outside.size:
            raise AccessError(f"an attack read {outside.size} record(s) outside its declared roles "
                              f"{list(self.roles)} (e.g. ids {outside[:5].tolist()}); attacks may only read the "
                              "roles in their `needs`, never members or non-members")
        return self._data.take(ids)

    @property
    def x(self) -> torch.Tensor:
        raise AccessError("an attack may not read the whole dataset; use take(ids) on its declared roles")

    y = x


@dataclass
class AttackerKnowledge:
    """What the attacker holds besides the view: its own data by split role (never members or
    non-members), the record ids of that data, the target's recipe, and a cache folder for its models."""

    data: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    ids: dict[str, np.ndarray] = field(default_factory=dict)
    recipe: Recipe | None = None
    dataset: Any = None  # RoleData: the dataset limited to the attacker's roles, for training models on `ids`
    cache_dir: Path | None = None
    seed: int = 0

    def get(self, role: str) -> tuple[torch.Tensor, torch.Tensor]:
        if role not in self.data:
            raise AccessError(f"attacker data '{role}' was not provided; declare it in the attack's `needs`")
        return self.data[role]


@dataclass
class NoOptions:
    pass


class Attack(abc.ABC):
    name: ClassVar[str] = ""
    access: ClassVar[AccessLevel]
    variant: ClassVar[str] = ""
    needs: ClassVar[tuple[str, ...]] = ()  # attacker data roles: reference, attacker_aux, shadow_pool
    Config: ClassVar[type] = NoOptions
    # why the attack cannot catch the `memorizer` control by construction ("" = it must: AUC >= 0.95);
    # the audit (mia_bench/audit.py) and the control tests read it
    memorizer_exempt: ClassVar[str] = ""

    @classmethod
    def memorizer_exemption(cls, settings: dict[str, Any] | None = None) -> str:
        """Why this attack, at `settings` (the record's attack settings; None: the defaults), cannot catch
        the memorizer by construction; "" when it must."""
        return cls.memorizer_exempt

    def __init__(self, *, config: Any, seed: int) -> None:
        self.config, self.seed = config, seed
        self.details: dict[str, Any] = {}  # what fit/score found out (shadow bank, epsilon, ...): in the record

    def fit(self, view: TargetView, knowledge: AttackerKnowledge) -> None:  # noqa: B027 - optional hook
        """Prepare from the view and the attacker's own data (local models, thresholds). Default: nothing."""
        return None

    @abc.abstractmethod
    def score(self, view: TargetView, x: torch.Tensor, y: torch.Tensor, *, ids: np.ndarray | None = None) -> np.ndarray:
        """(N,) float64 membership scores for queries x (N, *shape) with labels y (N,); higher = member.

        ids: the queries' dataset record ids, for attacks that join per-record statistics computed by
        other models (calibration), which must align by record id, never by position."""

    def bank_request(self, view: TargetView, knowledge: AttackerKnowledge) -> dict | None:
        """The shadows.train_bank arguments of the one local model `fit` will train on this target, if any
        (protocol v2 trains every target's local models as one stack first; fit then loads its own from
        the cache). Default: None (no local model, or one that cannot be trained ahead)."""
        return None

    def extra_metrics(self, scores: np.ndarray, is_member: np.ndarray) -> dict[str, Any]:
        """Attack-specific metrics beyond the standard report (e.g. precision at top-scoring regions),
        each {"value": float, ...}. Called by the runner after scoring; default: none."""
        return {}

    def describe(self) -> dict[str, Any]:
        out = {"access": self.access.value, "variant": self.variant, "settings": asdict(self.config)}
        if self.details:
            out["details"] = self.details
        return out


ATTACKS: Registry[type[Attack]] = Registry("attack")


def register(name: str):  # noqa: ANN201 - decorator
    def deco(cls: type[Attack]) -> type[Attack]:
        cls.name = name
        return ATTACKS.register(name)(cls)

    return deco
