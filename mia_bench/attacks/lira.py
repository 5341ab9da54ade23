"""LiRA (Carlini et al., S&P 2022) on GANs, as the mixup paper uses it; ALGORITHMS.md section 3.3.

A bank of K shadow GANs is trained on halves of the attacker's shadow pool (mia_bench/shadows.py); each
query's loss under the target is compared with its losses under the shadows (Gaussian likelihood ratio,
nets/lira.py; higher = member). The per-record loss depends on the access level:

  lira_wb*   white-box: the discriminator loss, logit-scaled as LiRA does (for a logit D, softplus(-l) is
             monotone in -l, and -l is LiRA's phi for the "real" class); for a critic, -D(x).
  lira_gen*  generator: log of the GAN-Leaks reconstruction loss, found with the gradient-free search
             (identical settings and seeds on the target and on every shadow).
  lira_fbb*  samples: log of the distance to the nearest released sample (each shadow releases as many).

Options (every name accepts all of them; the names only change the defaults):
  mode       online (IN and OUT Gaussians) | offline (OUT only, one-sided)
  reference  natural: shadows of the `none` recipe with the target's architecture and game, so one bank
             per seed serves every defense (the mixup paper's "naturally trained" reference models) |
             defense: shadows trained with the target's own recipe (its "mixup-trained" adaptive variant)
  query      single: the record itself | mixed: the record mixed (lambda x + (1 - lambda) x', soft labels
             alike) with `partners` other queries, scores averaged over its mixes (the co-membership
             "mixed query" of the mixup paper) [rec: partners and lambda are not given there]
  standardise  every model's loss (target and shadows) centred by its median and scaled by its spread on
             the same attacker_aux records, which all of them left out [rec]; off = LiRA as published
Registered: lira_wb (online), lira_wb_offline, lira_wb_mixed, lira_wb_adaptive (reference defense),
lira_gen, lira_gen_offline, lira_fbb, lira_fbb_offline.
"""

from __future__ import annotations

import abc
import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from mia_bench import shadows
from mia_bench.attacks.base import AccessLevel, Attack, AttackerKnowledge, TargetView, register
from mia_bench.attacks.ganleaks import PbbConfig, search_config
from mia_bench.errors import MiaBenchError
from mia_bench.nets import latent, lira
from mia_bench.nets.distance import nearest_distance
from mia_bench.nets.latent import SearchConfig, reconstruct, reconstruct_many

_FLOOR = 1e-12  # losses are logged; a perfect reconstruction must stay finite


@dataclass
class LiraConfig:
    mode: str = "online"  # online | offline
    n_shadows: int = 16
    reference: str = "natural"  # natural | defense
    query: str = "single"  # single | mixed
    partners: int = 4  # mixed: partners per query
    mix_lambda: float = 0.5  # mixed: weight of the query itself
    shadow_size: int = 0  # records per shadow model; 0 = LiRA's balanced halves of the pool
    calibration_records: int = 256  # online: pool records on which the IN-vs-OUT shift is measured
    standardise: bool = True  # per model, centre and scale the loss on the attacker's auxiliary records
    standardise_records: int = 128  # auxiliary records used for that


@dataclass
class LiraOfflineConfig(LiraConfig):
    mode: str = "offline"


@dataclass
class LiraMixedConfig(LiraConfig):
    query: str = "mixed"


@dataclass
class LiraAdaptiveConfig(LiraConfig):
    reference: str = "defense"


@dataclass
class LiraGenConfig(PbbConfig, LiraConfig):  # the latent search: GAN-Leaks pbb's settings, cheaper defaults
    steps: int = 30


@dataclass
class LiraGenOfflineConfig(LiraGenConfig):
    mode: str = "offline"


def _mix(x: torch.Tensor, y: torch.Tensor, x2: torch.Tensor, y2: torch.Tensor, lam: float,
         n_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixup of record pairs: lam x + (1 - lam) x2, labels as soft (M, C) vectors mixed alike."""
    c = max(n_classes, int(max(y.max(), y2.max())) + 1)
    soft = lam * F.one_hot(y, c).float() + (1 - lam) * F.one_hot(y2, c).float()
    return lam * x + (1 - lam) * x2, soft


class _Lira(Attack):
    needs = ("shadow_pool", "attacker_aux")
    Config = LiraConfig
    statistic: ClassVar[str] = ""

    # ---- the per-record loss (lower = member) --------------------------------------------------------
    @abc.abstractmethod
    def target_losses(self, view: TargetView, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
        """(M,) loss of each record under the target."""

    @abc.abstractmethod
    def shadow_losses(self, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
        """(K, M) loss of each record under each shadow model."""

    def statistic_settings(self) -> dict:
        return {}

    # ---- fit: the bank and, online, the IN shift -----------------------------------------------------
    def fit(self, view: TargetView, knowledge: AttackerKnowledge) -> None:
        c = self.config
        for key, allowed in (("mode", ("online", "offline")), ("reference", ("natural", "defense")),
                             ("query", ("single", "mixed"))):
            if getattr(c, key) not in allowed:
                raise MiaBenchError(f"{self.name}: {key} must be one of {allowed}, got {getattr(c, key)!r}")
        if knowledge.recipe is None or knowledge.dataset is None:
            raise MiaBenchError(f"{self.name} trains shadow models: it needs the target's recipe and the dataset")
        if c.n_shadows < (4 if c.mode == "online" else 2):
            raise MiaBenchError(f"{self.name}: n_shadows must be >= 4 online (>= 2 offline)")
        recipe = knowledge.recipe if c.reference == "defense" else shadows.natural_recipe(knowledge.recipe)
        pool = knowledge.ids["shadow_pool"]
        self.n_classes = view.info.n_classes
        self.bank = shadows.train_bank(recipe=recipe, data=knowledge.dataset, ids=pool, n_models=c.n_shadows,
                                       size=c.shadow_size, seed=knowledge.seed, cache_dir=knowledge.cache_dir)
        self.global_variance = c.n_shadows < lira.GLOBAL_VARIANCE_BELOW
        self.table_dir = None if knowledge.cache_dir is None else Path(knowledge.cache_dir) / "lira"
        self.details.update(shadows=self.bank.describe(), global_variance=self.global_variance)
        self._fit_standardisation(view, knowledge)
        self.shift: lira.InShift | None = None
        if c.mode == "online":
            self.shift = self._measure_shift(knowledge, pool)
            self.details["in_shift"] = {k: (v if np.isfinite(v) else None) for k, v in asdict(self.shift).items()}

    def _fit_standardisation(self, view: TargetView, knowledge: AttackerKnowledge) -> None:
        """Each model's loss centred by its median and scaled by its spread on the same auxiliary records,
        which every model (target and shadows) left out [rec]: a discriminator's offset and scale vary from
        model to model (a WGAN critic's offset is not even defined), and would swamp the per-record spread."""
        k = len(self.bank)
        self.loc, self.scale = np.zeros(k), np.ones(k)
        self.target_loc, self.target_scale = 0.0, 1.0
        if not self.config.standardise:
            return
        aux_ids = knowledge.ids["attacker_aux"]
        ids = np.random.default_rng([self.seed, 5]).choice(aux_ids, min(self.config.standardise_records,
                                                                        aux_ids.size), replace=False)
        x, y = knowledge.dataset.take(ids)
        shadow = self._cached_shadow_losses(x, y, ids)
        self.loc, self.scale = np.median(shadow, 1), np.maximum(shadow.std(1), 1e-12)
        target = self.target_losses(view, x, y)
        self.target_loc, self.target_scale = float(np.median(target)), max(float(target.std()), 1e-12)
        self.details["standardised_on"] = f"{ids.size} attacker_aux records"

    def _standard(self, stats: np.ndarray, *, target: bool = False) -> np.ndarray:
        """(K, M) shadow losses (or (1, M) target losses) in each model's standard units."""
        if target:
            return (stats - self.target_loc) / self.target_scale
        return (stats - self.loc[:, None]) / self.scale[:, None]

    def _measure_shift(self, knowledge: AttackerKnowledge, pool: np.ndarray) -> lira.InShift:
        rng = np.random.default_rng([self.seed, 3])
        both = self.bank.membership(pool)
        usable = pool[both.any(0) & ~both.all(0)]  # IN for some shadow and OUT for another
        cal = rng.choice(usable, min(self.config.calibration_records, usable.size), replace=False)
        x, y = knowledge.dataset.take(cal)
        is_in = self.bank.membership(cal)
        if self.config.query == "single":
            return lira.in_shift(self._standard(self._cached_shadow_losses(x, y, cal)), is_in)
        partner = rng.permutation(cal.size)  # mixed pairs count as IN (OUT) only when both records are
        xm, ym = _mix(x, y, x[partner], y[partner], self.config.mix_lambda, self.n_classes)
        both_in, both_out = is_in & is_in[:, partner], ~is_in & ~is_in[:, partner]
        stats = np.where(both_in | both_out, self._standard(self.shadow_losses(xm, ym)), np.nan)
        return lira.in_shift(stats, both_in)

    def _cached_shadow_losses(self, x: torch.Tensor, y: torch.Tensor, ids: np.ndarray | None) -> np.ndarray:
        """shadow_losses, kept per record id on disk so online/offline variants and reruns share them."""
        if ids is None or self.table_dir is None:
            return self.shadow_losses(x, y)
        key = json.dumps({"stat": type(self).statistic, "seed": self.seed, **self.statistic_settings()}, sort_keys=True)
        table = shadows.RecordTable(self.table_dir / f"{self.bank.digest[:24]}_{hashlib.sha256(key.encode()).hexdigest()[:16]}.pt")
        todo = table.missing(ids)
        if todo.any():
            sel = torch.from_numpy(np.flatnonzero(todo))
            table.add(ids[todo], self.shadow_losses(x[sel], y[sel]).T)
        return table.lookup(ids).T

    # ---- score ---------------------------------------------------------------------------------------
    def score(self, view: TargetView, x: torch.Tensor, y: torch.Tensor, *, ids: np.ndarray | None = None) -> np.ndarray:
        n = x.shape[0]
        if self.config.query == "mixed":
            p = self.config.partners
            rng = np.random.default_rng([self.seed, 4])
            partner = torch.from_numpy((np.arange(n)[:, None] + rng.integers(1, n, (n, p))) % n).flatten()
            owner = np.repeat(np.arange(n), p)
            own = torch.from_numpy(owner)
            xq, yq = _mix(x[own], y[own], x[partner], y[partner], self.config.mix_lambda, self.n_classes)
            shadow = self._standard(self.shadow_losses(xq, yq))
        else:
            owner, xq, yq = np.arange(n), x, y
            shadow = self._standard(self._cached_shadow_losses(x, y, None if ids is None else np.asarray(ids)))
        target = self._standard(self.target_losses(view, xq, yq)[None], target=True)[0]
        mu, sd = lira.out_fit(shadow, global_variance=self.global_variance)
        if self.shift is None:
            s = lira.offline_score(target, mu, sd)
        elif self.global_variance:  # one pooled spread for IN and OUT: the ratio is monotone in the loss
            s = lira.pooled_online_score(target, mu, self.shift)
        else:
            s = lira.online_score(target, mu, sd, self.shift)
        return np.bincount(owner, weights=s, minlength=n) / np.bincount(owner, minlength=n)


class _LiraWhiteBox(_Lira):
    access = AccessLevel.WHITE_BOX
    statistic = "discriminator loss (-logit; -D for a critic)"

    @torch.no_grad()
    def target_losses(self, view: TargetView, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
        return -view.discriminator(x, y).double().cpu().numpy()

    @torch.no_grad()
    def shadow_losses(self, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
        return np.stack([-m.discriminate(x, y).double().cpu().numpy() for m in self.bank.models])


class _LiraGenerator(_Lira):
    access = AccessLevel.GENERATOR
    statistic = "log reconstruction loss (gradient-free latent search)"
    Config = LiraGenConfig

    def search(self) -> SearchConfig:
        return search_config(self.config)

    def statistic_settings(self) -> dict:
        return {**asdict(self.search()), "search_version": latent.VERSION}

    def target_losses(self, view: TargetView, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
        return np.log(np.maximum(reconstruct(view.generator, x, y, self.search(), seed=self.seed).numpy(), _FLOOR))

    def shadow_losses(self, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
        gens = [shadows.owned_generator(m) for m in self.bank.models]
        return np.log(np.maximum(reconstruct_many(gens, x, y, self.search(), seed=self.seed).numpy(), _FLOOR))


class _LiraSamples(_Lira):
    access = AccessLevel.SAMPLES
    statistic = "log distance to the nearest released sample"

    def fit(self, view: TargetView, knowledge: AttackerKnowledge) -> None:
        self.n_samples = int(view.released.x.shape[0])  # every shadow releases as many samples
        super().fit(view, knowledge)

    def statistic_settings(self) -> dict:
        return {"n_samples": self.n_samples}

    def target_losses(self, view: TargetView, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
        return np.log(np.maximum(nearest_distance(x, view.released.x)[0].double().numpy(), _FLOOR))

    def shadow_losses(self, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
        out = []
        for m in self.bank.models:
            released = m.sample(self.n_samples, generator=torch.Generator().manual_seed(self.seed))
            out.append(np.log(np.maximum(nearest_distance(x, released.x)[0].double().numpy(), _FLOOR)))
        return np.stack(out)


@register("lira_wb")
class LiraWhiteBox(_LiraWhiteBox):
    variant = "online, natural shadows, single queries; statistic: discriminator loss"


@register("lira_wb_offline")
class LiraWhiteBoxOffline(_LiraWhiteBox):
    variant = "offline, natural shadows, single queries; statistic: discriminator loss"
    Config = LiraOfflineConfig


@register("lira_wb_mixed")
class LiraWhiteBoxMixed(_LiraWhiteBox):
    variant = "online, natural shadows, mixed (co-membership) queries; statistic: discriminator loss"
    Config = LiraMixedConfig
    memorizer_exempt = ("mixed queries probe co-membership in mixup-trained models; the memorizer's discriminator "
                        "scores closeness to one member and does not answer blends of two records")


@register("lira_wb_adaptive")
class LiraWhiteBoxAdaptive(_LiraWhiteBox):
    variant = "online, shadows trained with the defense's own recipe, single queries; discriminator loss"
    Config = LiraAdaptiveConfig


@register("lira_gen")
class LiraGenerator(_LiraGenerator):
    variant = "online, natural shadows; statistic: log reconstruction loss"


@register("lira_gen_offline")
class LiraGeneratorOffline(_LiraGenerator):
    variant = "offline, natural shadows; statistic: log reconstruction loss"
    Config = LiraGenOfflineConfig


@register("lira_fbb")
class LiraSamples(_LiraSamples):
    variant = "online, natural shadows; statistic: log nearest-sample distance"


@register("lira_fbb_offline")
class LiraSamplesOffline(_LiraSamples):
    variant = "offline, natural shadows; statistic: log nearest-sample distance"
    Config = LiraOfflineConfig
