"""LOGAN (Hayes, Melis, Danezis, De Cristofaro, PoPETs 2019), ALGORITHMS.md section 3.2.

  logan_wb  white-box: score(x) = D_target(x), the target discriminator's output (higher = member).
  logan_bb  black-box: a local GAN trained on the target's released samples as its "real" data; queries
            are scored by the local discriminator's logit D_local(x) (higher = member). The local GAN
            is the attacker's own unprotected GAN (`none` with the target's architecture, conditional
            when the target is) unless `recipe: defense`; `steps` is the attacker's training budget
            (0 = the target's) and `lr` its Adam learning rate for both players (unset: the recipe's,
            DCGAN's 2e-4 as in the official code). The official code samples fresh batches from G
            every step; with samples-level access the attacker holds a fixed released set instead. A `defense` recipe
            that needs reference data (MP-GAN) gets the last quarter of the released samples as its
            reference set and trains on the rest: the samples are all this attacker holds.
For a conditional discriminator the query's own label is passed (the attacker holds the record).

Why the local discriminator needs its budget [rec, measured]: D_local is trained to tell the released
samples from its own generator's, so while that generator's samples are still poor, D_local is a realism
detector and scores every realistic record high, non-members alike (AUC 0.51 on the digits memorizer at
2,000 steps of lr 2e-4, 0.74 at 8,000). It singles out the released records only once its generator
produces realistic records that are not among them, which D_local must then push down: the
discriminator-overfitting regime LOGAN relies on (the official README: the black-box attack fails at
1,000 steps, 10,000 are used). Training steps times learning rate sets when that regime is reached; on the
digits memorizer 4,000 steps at lr 2e-3 give AUC 0.92-0.98 over seeds (the independent control 0.45-0.50).
It plateaus there rather than at 1: the local generator learns the released members too, and D_local
measures the released density against the generator's, which flattens where the generator covers a member.
Halving the steps and doubling the rate does not keep the product's effect: on the protocol-v2 digits
memorizer (16 targets, seed 0) 2,000 steps at lr 4e-3 reach AUC 0.70 (canaries 0.85) against 0.87 (0.89)
at the shipped 4,000 x 2e-3 [measured 2026-12-07].

Why it is exempt from the memorizer's low-FPR check [measured, 2026-12-05]: D_local estimates
log p_released / p_local, and the local GAN is trained to make p_local = p_released, so the score flattens
on exactly the records a memorizer releases. It is high on them only in the window between the local
generator becoming realistic (before: a realism detector) and it covering the release (after: flat).
Measured on the protocol-v2 shape (memorizer of 500 digits, 2,000 released samples, 500 members vs 300
non-members, one local GAN, seed 0): steps x lr 1,500 x 2e-3: AUC 0.62 (TPR@1%FPR 0.02); 4,000 x 2e-3:
0.89 (0.06); 8,000 x 2e-3: 0.96 (0.11); 16,000 x 2e-3: 0.95 (0.04); 4,000 x 5e-3 / 1e-2: 0.84 / 0.83;
D four times wider: 0.91 (0.06); a generator lr a quarter of D's: 0.72; 1,000-4,000 further D-only steps
against the frozen generator: 0.77-0.82 (the discriminator turns back into a realism detector). No budget
finds the members at a low false-positive rate (TPR@1%FPR >= 0.5), which is what the memorizer check
asks; the audit still requires it above chance, and the suite ships 4,000 steps (AUC ~0.89).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import torch

from mia_bench import shadows
from mia_bench.attacks.base import AccessLevel, Attack, AttackerKnowledge, TargetView, register
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
    # local GAN Adam learning rate of both players (None = the recipe's); with steps, what the audit names
    lr: float | None = field(default=None, metadata={"budget": True})


@register("logan_bb")
class LoganBlackBox(Attack):
    access = AccessLevel.SAMPLES
    variant = "bb: discriminator of a local GAN trained on the released samples"
    Config = LoganBbConfig
    memorizer_exempt = ("the local discriminator scores released density over its own generator's, which is "
                        "trained to match the release and so flattens on exactly the memorized records: "
                        "1,500-16,000 steps reach AUC 0.62-0.96 but TPR@1% <= 0.11 on digits (module docstring)")

    def bank_request(self, view: TargetView, knowledge: AttackerKnowledge) -> dict:
        """The shadows.train_bank arguments of the local GAN (protocol v2 trains every target's at once)."""
        if knowledge.recipe is None:
            raise MiaBenchError("logan_bb trains a local GAN: it needs the target's recipe (architecture)")
        if self.config.recipe not in ("natural", "defense"):
            raise MiaBenchError(f"logan_bb: recipe must be 'natural' or 'defense', got {self.config.recipe!r}")
        base = knowledge.recipe if self.config.recipe == "defense" else shadows.natural_recipe(knowledge.recipe)
        recipe = shadows.with_steps(base, self.config.steps)
        if self.config.lr is not None:
            if not all(hasattr(recipe.params, f) for f in ("lr_g", "lr_d")):
                raise MiaBenchError(f"logan_bb: lr is set but the local recipe ({recipe.defense}) has no lr_g / lr_d")
            recipe = replace(recipe, params=replace(recipe.params, lr_g=self.config.lr, lr_d=self.config.lr))
        data = shadows.released_dataset(view.released, view.info)
        train, reference = shadows.attacker_reference(recipe, np.arange(len(data)), np.empty(0, dtype=np.int64))
        return dict(recipe=recipe, data=data, ids=train, n_models=1, size=shadows.EVERY_RECORD, seed=knowledge.seed,
                    cache_dir=knowledge.cache_dir, reference_ids=reference)

    def fit(self, view: TargetView, knowledge: AttackerKnowledge) -> None:
        request = self.bank_request(view, knowledge)
        recipe, train, reference = request["recipe"], request["ids"], request["reference_ids"]
        bank = shadows.train_bank(**request)
        self.local = bank.models[0]
        self.details["local_gan"] = {**bank.describe(), "trained_on": f"{train.size} released samples",
                                     "reference": 0 if reference is None else int(reference.size),
                                     "steps": recipe.trainer.max_steps, "lr": getattr(recipe.params, "lr_d", None)}

    @torch.no_grad()
    def score(self, view: TargetView, x: torch.Tensor, y: torch.Tensor, *, ids: np.ndarray | None = None) -> np.ndarray:
        return self.local.discriminate(x, y).double().cpu().numpy()
