"""LOGAN (Hayes, Melis, Danezis, De Cristofaro, PoPETs 2019), ALGORITHMS.md section 3.2.

  logan_wb  white-box: score(x) = D_target(x), the target discriminator's output (higher = member).
  logan_bb  black-box: a local GAN trained on the target's released samples as its "real" data; queries
            are scored by the local discriminator's logit D_local(x) (higher = member). The local GAN
            is the attacker's own unprotected GAN (`none` with the target's architecture, conditional
            when the target is) unless `recipe: defense`; `steps` is the attacker's training budget
            (0 = the target's). The official code samples fresh batches from G every step; with
            samples-level access the attacker holds a fixed released set instead. A `defense` recipe
            that needs reference data (MP-GAN) gets the last quarter of the released samples as its
            reference set and trains on the rest: the samples are all this attacker holds.
For a conditional discriminator the query's own label is passed (the attacker holds the record).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mia_bench import shadows
from mia_bench.attacks.base import AccessLevel, Attack, AttackerKnowledge, TargetView, register
from mia_bench.defenses import DEFENSES
from mia_bench.errors import MiaBenchError


@register("logan_wb")
class LoganWhiteBox(Attack):
    access = AccessLevel.WHITE_BOX
    variant = "wb: target discriminator logit"

    @torch.no_grad()
    def score(self, view: TargetView, x: torch.Tensor, y: torch.Tensor, *, ids: np.ndarray | None = None) -> np.ndarray:
        return view.discriminator(x, y).double().cpu().numpy()


@dataclass
class LoganBbConfig:
    recipe: str = "natural"  # local GAN recipe: "natural" (`none`, the target's architecture) | "defense"
    steps: int = 0  # local GAN generator updates (0 = the target's budget)


@register("logan_bb")
class LoganBlackBox(Attack):
    access = AccessLevel.SAMPLES
    variant = "bb: discriminator of a local GAN trained on the released samples"
    Config = LoganBbConfig
    memorizer_exempt = ("a local GAN's discriminator, trained against its own generator, does not single out the "
                        "records it was shown (AUC about 0.52 at the digits suite's 2,000 steps, at most 0.90 with a "
                        "WGAN critic)")

    def fit(self, view: TargetView, knowledge: AttackerKnowledge) -> None:
        if knowledge.recipe is None:
            raise MiaBenchError("logan_bb trains a local GAN: it needs the target's recipe (architecture)")
        if self.config.recipe not in ("natural", "defense"):
            raise MiaBenchError(f"logan_bb: recipe must be 'natural' or 'defense', got {self.config.recipe!r}")
        base = knowledge.recipe if self.config.recipe == "defense" else shadows.natural_recipe(knowledge.recipe)
        recipe = shadows.with_steps(base, self.config.steps)
        data = shadows.released_dataset(view.released, view.info)
        train, reference = np.arange(len(data)), None
        if DEFENSES.get(recipe.defense).needs_reference:
            train, reference = np.array_split(train, [len(data) - len(data) // 4])
            if not (train.size and reference.size):
                raise MiaBenchError(f"logan_bb with recipe 'defense' ({recipe.defense}) splits the released samples "
                                    f"into training and reference data; {len(data)} are too few, release more")
        bank = shadows.train_bank(recipe=recipe, data=data, ids=train, n_models=1, size=shadows.EVERY_RECORD,
                                  seed=knowledge.seed, cache_dir=knowledge.cache_dir, reference_ids=reference)
        self.local = bank.models[0]
        self.details["local_gan"] = {**bank.describe(), "trained_on": f"{train.size} released samples",
                                     "reference": 0 if reference is None else int(reference.size),
                                     "steps": recipe.trainer.max_steps}

    @torch.no_grad()
    def score(self, view: TargetView, x: torch.Tensor, y: torch.Tensor, *, ids: np.ndarray | None = None) -> np.ndarray:
        return self.local.discriminate(x, y).double().cpu().numpy()
