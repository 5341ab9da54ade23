"""GAN-Leaks (Chen, Yu, Zhang, Fritz, CCS 2020), ALGORITHMS.md section 3.1. Score = -L, higher = member.

  ganleaks_fbb      full black-box: L(x) = min_j ||x - g_j||_2 over the released samples, pixel space
                    ([-1, 1]); no LPIPS (the authors' setting for fbb).
  ganleaks_pbb      partial black-box: L(x) = min_z mean (G(z) - x)^2, found by a batched gradient-free
                    search that only queries G (nets/latent.py, method "es").
  ganleaks_wb       white-box: the same objective, gradient search on z (Adam, method "adam").
  ganleaks_*_cal    calibrated (the paper's L_cal): L(x) under the target minus L_ref(x), the same loss under a
                    reference model the attacker trains with the target's recipe on its own data
                    (`attacker_aux`); score = -(L - L_ref), higher = member. `calibration: log_ratio` scores
                    -(log L - log L_ref) instead [rec: not in the paper; a scale-free variant for skewed
                    positive losses, an option only]. The reference losses are kept per record id and joined
                    to the queries by id, never by position (the official eval_roc.py aligns by index and
                    silently truncates).
LPIPS is left out of pbb/wb (its VGG weights cannot be downloaded here); the objective keeps the L2 term
and the latent norm regulariser (lambda3 = 1e-3), and the score uses the L2 term alone, as in the code.
"""

from __future__ import annotations

import abc
import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from mia_bench import shadows
from mia_bench.attacks.base import AccessLevel, Attack, AttackerKnowledge, TargetView, register
from mia_bench.defenses import Defense
from mia_bench.errors import MiaBenchError
from mia_bench.nets import latent
from mia_bench.nets.distance import nearest_distance
from mia_bench.nets.latent import Queryable, SearchConfig, reconstruct

_FLOOR = 1e-12  # a perfect reconstruction must keep a finite log


@dataclass
class FbbConfig:
    chunk: int = 256  # queries per distance block (memory: chunk x n_released)


@dataclass
class PbbConfig:
    steps: int = 40  # evolution-strategy iterations
    population: int = 16  # candidates per query per iteration
    sigma: float = 0.3  # initial step size in latent units
    init_draws: int = 20000  # prior draws for the nearest-neighbour start (the official code's k; nets/latent.py)
    norm_weight: float = 1e-3  # lambda3 of the latent norm regulariser


@dataclass
class WbConfig:
    steps: int = 200  # Adam steps on z
    lr: float = 0.05
    init_draws: int = 20000
    norm_weight: float = 1e-3


def search_config(cfg: PbbConfig | WbConfig) -> SearchConfig:
    if isinstance(cfg, PbbConfig):
        return SearchConfig(method="es", steps=cfg.steps, population=cfg.population, sigma=cfg.sigma,
                            init_draws=cfg.init_draws, norm_weight=cfg.norm_weight)
    return SearchConfig(method="adam", steps=cfg.steps, lr=cfg.lr, init_draws=cfg.init_draws,
                        norm_weight=cfg.norm_weight)


def _fbb_loss(x: torch.Tensor, samples: torch.Tensor, chunk: int) -> np.ndarray:
    return nearest_distance(x, samples, chunk=chunk)[0].double().cpu().numpy()


@register("ganleaks_fbb")
class GanLeaksFullBlackBox(Attack):
    access = AccessLevel.SAMPLES
    variant = "fbb: nearest released sample, L2 in pixel space"
    Config = FbbConfig

    def score(self, view: TargetView, x: torch.Tensor, y: torch.Tensor, *, ids: np.ndarray | None = None) -> np.ndarray:
        return -_fbb_loss(x, view.released.x, self.config.chunk)


class _LatentSearch(Attack):
    """Score = minus the reconstruction loss found by the latent search the config describes."""

    def score(self, view: TargetView, x: torch.Tensor, y: torch.Tensor, *, ids: np.ndarray | None = None) -> np.ndarray:
        return -reconstruct(view.generator, x, y, search_config(self.config), seed=self.seed).numpy()


@register("ganleaks_pbb")
class GanLeaksPartialBlackBox(_LatentSearch):
    access = AccessLevel.GENERATOR
    variant = "pbb: gradient-free latent search (batched evolution strategy), L2 without LPIPS"
    Config = PbbConfig


@register("ganleaks_wb")
class GanLeaksWhiteBox(_LatentSearch):
    access = AccessLevel.WHITE_BOX
    variant = "wb: Adam latent search with gradients, L2 without LPIPS"
    Config = WbConfig


CALIBRATIONS = ("difference", "log_ratio")


@dataclass
class CalibrationConfig:
    reference: str = "defense"  # reference model's recipe: "defense" (the target's) | "natural" (`none`)
    calibration: str = "difference"  # difference: L - L_ref (the paper's) | log_ratio: log L - log L_ref [rec]


@dataclass
class FbbCalConfig(CalibrationConfig, FbbConfig):
    pass


@dataclass
class PbbCalConfig(CalibrationConfig, PbbConfig):
    pass


@dataclass
class WbCalConfig(CalibrationConfig, WbConfig):
    pass


class _Calibrated(Attack):
    """L_cal(x) = L(x | target) - L(x | reference model); score = -L_cal (N,), higher = member (or, with
    `calibration: log_ratio`, -(log L - log L_ref)). Reference losses are joined by record id."""

    needs = ("attacker_aux", "shadow_pool")  # shadow_pool: reference data for recipes that need it

    def fit(self, view: TargetView, knowledge: AttackerKnowledge) -> None:
        if knowledge.recipe is None or knowledge.dataset is None:
            raise MiaBenchError(f"{self.name} trains a reference model: it needs the target's recipe and the dataset")
        if self.config.reference not in ("defense", "natural") or self.config.calibration not in CALIBRATIONS:
            raise MiaBenchError(f"{self.name}: reference must be 'defense' or 'natural' and calibration one of "
                                f"{CALIBRATIONS} (got {self.config.reference!r}, {self.config.calibration!r})")
        recipe = knowledge.recipe if self.config.reference == "defense" else shadows.natural_recipe(knowledge.recipe)
        train, reference = shadows.attacker_reference(recipe, knowledge.ids["attacker_aux"], knowledge.ids["shadow_pool"])
        recipe = shadows.fit_batch(recipe, train.size, None if reference is None else reference.size)
        bank = shadows.train_bank(recipe=recipe, data=knowledge.dataset, ids=train, n_models=1,
                                  size=shadows.EVERY_RECORD, seed=knowledge.seed, cache_dir=knowledge.cache_dir,
                                  reference_ids=reference)
        self.reference_model: Defense = bank.models[0]
        settings = json.dumps({"attack": self.name, **asdict(self.config), "seed": self.seed,
                               "search_version": latent.VERSION}, sort_keys=True)
        key = f"{bank.digest[:24]}_{hashlib.sha256(settings.encode()).hexdigest()[:16]}.pt"
        self.table_path = None if knowledge.cache_dir is None else Path(knowledge.cache_dir) / "calibration" / key
        self.details["reference_model"] = {**bank.describe(), "role": "attacker_aux"}

    @abc.abstractmethod
    def _loss(self, view: TargetView | None, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
        """(N,) loss of records x under the target (view given) or under the reference model (view None)."""

    def score(self, view: TargetView, x: torch.Tensor, y: torch.Tensor, *, ids: np.ndarray | None = None) -> np.ndarray:
        if ids is None:
            raise MiaBenchError(f"{self.name} joins the reference model's losses by record id: pass ids=")
        ids = np.asarray(ids)
        if np.unique(ids).size != ids.size:
            raise MiaBenchError(f"{self.name}: query record ids must be unique")
        table = shadows.RecordTable(self.table_path)
        todo = table.missing(ids)
        if todo.any():
            sel = torch.from_numpy(np.flatnonzero(todo))
            table.add(ids[todo], self._loss(None, x[sel], y[sel]))
        target, reference = self._loss(view, x, y), table.lookup(ids)[:, 0]
        if self.config.calibration == "log_ratio":
            return -(np.log(np.maximum(target, _FLOOR)) - np.log(np.maximum(reference, _FLOOR)))
        return -(target - reference)


def _owned(model: Defense) -> Queryable:
    return shadows.owned_generator(model)


@register("ganleaks_fbb_cal")
class GanLeaksFbbCalibrated(_Calibrated):
    access = AccessLevel.SAMPLES
    variant = "fbb calibrated: nearest released sample minus nearest reference-model sample"
    Config = FbbCalConfig

    def _loss(self, view: TargetView | None, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
        if view is not None:
            return _fbb_loss(x, view.released.x, self.config.chunk)
        ref = self.reference_model.sample(self._n_samples, generator=torch.Generator().manual_seed(self.seed))
        return _fbb_loss(x, ref.x, self.config.chunk)

    def score(self, view: TargetView, x: torch.Tensor, y: torch.Tensor, *, ids: np.ndarray | None = None) -> np.ndarray:
        self._n_samples = int(view.released.x.shape[0])  # the reference model releases as many samples
        return super().score(view, x, y, ids=ids)


class _CalibratedSearch(_Calibrated):
    """The latent search's reconstruction loss (search settings: the Pbb/Wb fields of the config)."""

    # [measured] the paper's difference of squared reconstruction losses cannot catch the memorizer at a low
    # false-positive rate, whatever the search finds. A member's loss is ~0, so it scores L_ref(x), its
    # squared distance to the reference memorizer's (attacker) records; a non-member scores L_ref(x) - L(x),
    # a difference of two squared nearest-record distances that grows with the square of how isolated the
    # record is, so isolated non-members outrank typical members. With an exact search (L = 0 for members,
    # nearest-record distances for the rest) on digits, 500 members, 500 non-members and the suite's 247
    # attacker records: AUC 0.92, TPR@1%FPR 0.20 (tests/test_review_attacks.py computes it). The squared
    # loss is the paper's; `calibration: log_ratio` (scale-free) catches it and is not exempt.
    memorizer_exempt = ("the paper's calibration subtracts squared reconstruction losses: on a memorizer a member "
                        "scores L_ref (its squared distance to the attacker's records) and an isolated non-member "
                        "L_ref - L, which outranks it; an exact search reaches AUC 0.92, TPR@1% 0.20 on digits")

    @classmethod
    def memorizer_exemption(cls, settings: dict | None = None) -> str:
        calibration = (settings or {}).get("calibration", CalibrationConfig.calibration)
        return cls.memorizer_exempt if calibration == "difference" else ""

    def _loss(self, view: TargetView | None, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
        gen = view.generator if view is not None else _owned(self.reference_model)
        return reconstruct(gen, x, y, search_config(self.config), seed=self.seed).numpy()


@register("ganleaks_pbb_cal")
class GanLeaksPbbCalibrated(_CalibratedSearch):
    access = AccessLevel.GENERATOR
    variant = "pbb calibrated: gradient-free reconstruction loss minus the reference model's"
    Config = PbbCalConfig


@register("ganleaks_wb_cal")
class GanLeaksWbCalibrated(_CalibratedSearch):
    access = AccessLevel.WHITE_BOX
    variant = "wb calibrated: gradient reconstruction loss minus the reference model's"
    Config = WbCalConfig
