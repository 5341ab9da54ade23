"""Monte-Carlo attack (Hilprecht, Haerterich, Bernau, PoPETs 2019), ALGORITHMS.md section 3.5.

Score f_eps(x) = (1/n) sum_j 1[d(x, g_j) <= eps] over the n released samples g_j (higher = member): a
Monte-Carlo estimate of P[G(z) in U_eps(x)]. eps by the median heuristic: the median over the scored
queries of their nearest-sample distance (privGAN's and DOMIAS's code), or `epsilon: percentile`, the
given percentile of all query-sample distances. `variant: log` weights each sample in the ball by
-log d (the paper's log variant [mem]). Distances are Euclidean in a feature space stated in the record:
`pca` (components fitted on the attacker's own held-out data, `attacker_aux`, as privGAN's code fits
them on held-out data) or `pixels`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from sklearn.decomposition import PCA

from mia_bench.attacks.base import AccessLevel, Attack, AttackerKnowledge, TargetView, register
from mia_bench.errors import MiaBenchError
from mia_bench.nets.distance import pairwise_sq_dist


@dataclass
class MonteCarloConfig:
    features: str = "pca"  # pca | pixels
    n_components: int = 40
    epsilon: str = "median"  # median | percentile
    percentile: float = 1.0  # epsilon = this percentile of all query-sample distances
    variant: str = "count"  # count | log
    chunk: int = 1024


def fit_features(kind: str, n_components: int, aux: torch.Tensor, seed: int) -> tuple[PCA | None, str]:
    """PCA fitted on the attacker's held-out records (or None for pixels), and its description."""
    if kind == "pixels":
        return None, "pixels (flattened, [-1, 1])"
    if kind != "pca":
        raise MiaBenchError(f"features must be 'pca' or 'pixels', got {kind!r}")
    flat = aux.flatten(1).double().numpy()
    k = min(n_components, flat.shape[1], flat.shape[0])
    return PCA(n_components=k, random_state=seed).fit(flat), f"pca{k} fitted on attacker_aux ({flat.shape[0]} records)"


def project(pca: PCA | None, x: torch.Tensor) -> torch.Tensor:
    flat = x.flatten(1).double()
    return flat if pca is None else torch.from_numpy(pca.transform(flat.numpy()))


@register("monte_carlo")
class MonteCarlo(Attack):
    access = AccessLevel.SAMPLES
    variant = "epsilon-ball counts over the released samples"
    needs = ("attacker_aux",)
    Config = MonteCarloConfig

    def fit(self, view: TargetView, knowledge: AttackerKnowledge) -> None:
        c = self.config
        if c.epsilon not in ("median", "percentile") or c.variant not in ("count", "log"):
            raise MiaBenchError("monte_carlo: epsilon must be 'median' or 'percentile', variant 'count' or 'log'")
        self.pca, space = fit_features(c.features, c.n_components, knowledge.get("attacker_aux")[0], self.seed)
        self.details["feature_space"] = space

    @torch.no_grad()
    def score(self, view: TargetView, x: torch.Tensor, y: torch.Tensor, *, ids: np.ndarray | None = None) -> np.ndarray:
        c = self.config
        q, g = project(self.pca, x), project(self.pca, view.released.x)
        d = torch.cat([pairwise_sq_dist(q[i:i + c.chunk], g).sqrt() for i in range(0, q.shape[0], c.chunk)])
        if c.epsilon == "median":
            eps = float(d.min(1).values.median())
        else:
            eps = float(np.percentile(d.numpy(), c.percentile))
        inside = d <= eps
        if c.variant == "count":
            s = inside.double().mean(1)
        else:
            s = torch.where(inside, -torch.log(d.clamp_min(1e-12)), torch.zeros_like(d)).sum(1) / d.shape[1]
        self.details.update(epsilon=eps, epsilon_rule=c.epsilon, n_samples=int(g.shape[0]))
        return s.numpy().astype(np.float64)
