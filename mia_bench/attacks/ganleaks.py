"""GAN-Leaks (Chen, Yu, Zhang, Fritz, CCS 2020), ALGORITHMS.md section 3.1.

Full black-box (`ganleaks_fbb`): L(x) = min_j ||x - g_j||_2 over the released samples, in pixel space
([-1, 1]); score = -L (no LPIPS term, as the authors state for fbb).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mia_bench.attacks.base import AccessLevel, Attack, TargetView, register
from mia_bench.nets.distance import nearest_distance


@dataclass
class FbbConfig:
    chunk: int = 2048  # queries per distance block (memory: chunk x n_released)


@register("ganleaks_fbb")
class GanLeaksFullBlackBox(Attack):
    access = AccessLevel.SAMPLES
    variant = "fbb: nearest released sample, L2 in pixel space"
    Config = FbbConfig

    def score(self, view: TargetView, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
        dist, _ = nearest_distance(x, view.released.x, chunk=self.config.chunk)
        return -dist.double().cpu().numpy()
