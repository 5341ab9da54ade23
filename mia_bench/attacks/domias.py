"""DOMIAS (van Breugel, Sun, Qian, van der Schaar, AISTATS 2023), ALGORITHMS.md section 3.6.

Score A(x) = p_G(x) / p_R(x), computed as log p_G(x) - log p_R(x) (a monotone transform of the ratio that
keeps tiny densities apart; higher = member): p_G is fitted on the released samples, p_R on the
attacker's reference data from the same distribution (`attacker_aux`). Density models: scikit-learn's
Gaussian KDE (bandwidth by 3-fold cross-validated likelihood, Scott's or Silverman's rule, or a number) or a Gaussian mixture (the stronger
option; BNAF, the paper's default, is not implemented). 8x8 images have constant pixels, so densities are
fitted in whitened PCA coordinates (fitted on the reference data), stated in the record.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from sklearn.decomposition import PCA
from sklearn.mixture import GaussianMixture
from sklearn.model_selection import GridSearchCV
from sklearn.neighbors import KernelDensity

from mia_bench.attacks.base import AccessLevel, Attack, AttackerKnowledge, TargetView, register
from mia_bench.errors import MiaBenchError


@dataclass
class DomiasConfig:
    density: str = "kde"  # kde | gmm
    n_components: int = 10  # whitened PCA components (0 = raw pixels)
    bandwidth: str = "cv"  # kde: cv (3-fold likelihood) | scott | silverman | a positive number
    gmm_components: int = 10
    gmm_reg: float = 1e-3


@register("domias")
class Domias(Attack):
    access = AccessLevel.SAMPLES
    variant = "density ratio of released samples to reference data"
    needs = ("attacker_aux",)
    Config = DomiasConfig

    def _density(self, z: np.ndarray) -> KernelDensity | GaussianMixture:
        c = self.config
        if c.density == "gmm":
            k = min(c.gmm_components, z.shape[0])
            return GaussianMixture(n_components=k, reg_covar=c.gmm_reg, random_state=self.seed).fit(z)
        if c.density != "kde":
            raise MiaBenchError(f"domias: density must be 'kde' or 'gmm', got {c.density!r}")
        if c.bandwidth == "cv":  # maximise the held-out likelihood (3-fold) over a log grid
            grid = GridSearchCV(KernelDensity(kernel="gaussian"), {"bandwidth": np.logspace(-2, 0.5, 12)}, cv=3)
            return grid.fit(z).best_estimator_
        bw: str | float = c.bandwidth if c.bandwidth in ("scott", "silverman") else float(c.bandwidth)
        return KernelDensity(kernel="gaussian", bandwidth=bw).fit(z)

    def fit(self, view: TargetView, knowledge: AttackerKnowledge) -> None:
        ref = knowledge.get("attacker_aux")[0].flatten(1).double().numpy()
        c = self.config
        self.pca = None
        if c.n_components > 0:
            self.pca = PCA(n_components=min(c.n_components, *ref.shape), whiten=True, random_state=self.seed).fit(ref)
        self.p_ref = self._density(self._z(ref))
        self.p_gen = self._density(self._z(view.released.x.flatten(1).double().numpy()))
        space = f"whitened pca{self.pca.n_components_} fitted on attacker_aux" if self.pca is not None else "pixels"
        self.details.update(feature_space=space, density=c.density, reference="attacker_aux")

    def _z(self, flat: np.ndarray) -> np.ndarray:
        return flat if self.pca is None else self.pca.transform(flat)

    def score(self, view: TargetView, x: torch.Tensor, y: torch.Tensor, *, ids: np.ndarray | None = None) -> np.ndarray:
        z = self._z(x.flatten(1).double().numpy())
        return (self.p_gen.score_samples(z) - self.p_ref.score_samples(z)).astype(np.float64)
