"""LOGAN (Hayes, Melis, Danezis, De Cristofaro, PoPETs 2019), ALGORITHMS.md section 3.2.

White-box (`logan_wb`): score(x) = D_target(x), the target discriminator's logit (higher = member).
For a conditional discriminator the query's own label is passed (the attacker holds the record).
"""

from __future__ import annotations

import numpy as np
import torch

from mia_bench.attacks.base import AccessLevel, Attack, TargetView, register


@register("logan_wb")
class LoganWhiteBox(Attack):
    access = AccessLevel.WHITE_BOX
    variant = "wb: target discriminator logit"

    @torch.no_grad()
    def score(self, view: TargetView, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
        return view.discriminator(x, y).double().cpu().numpy()
