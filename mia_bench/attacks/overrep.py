"""Over-representation attack with member-confidence scores (Hu & Pang, CCS 2021 poster), ALGORITHMS.md 3.4.

constructMCScore: the target's released samples are the substitute's "members" X_m (m of them) and n
fresh samples drawn from the target generator its "non-members" X_n; a substitute GAN is trained on X_m;
Phi = sigmoid(D_sub(x)) on X_m and X_n is clustered (k-means on the 1-D outputs, k regions), and each
region i gets MCScore(i) = r_m(i) / (r_m(i) + r_n(i)) with r_m(i) = m_i / m, r_n(i) = n_i / n (an empty
region gets 0.5). assignMCScore: a query's Phi_t = sigmoid(D_target(x)) is assigned to the nearest
centroid and scored with that region's MCScore (higher = member).

[rec] choices, as ALGORITHMS.md lists them: k-means, k = 10; the substitute has the target's architecture
and recipe (`substitute: defense`; `natural` trains the attacker's own unprotected GAN instead) and the
attacker's budget (`steps`, 0 = the target's); it trains on `m` released samples (0 = all). The clusters
are built on the substitute's output scale and queried with the target's, as written; `rank_normalise`
(flagged variant) replaces Phi by its rank within its own set on both sides. Precision at the
top-scoring regions is reported next to AUC and TPR at low FPR.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
from scipy.stats import rankdata
from sklearn.cluster import KMeans

from mia_bench import shadows
from mia_bench.attacks.base import AccessLevel, Attack, AttackerKnowledge, TargetView, register
from mia_bench.defenses import DEFENSES
from mia_bench.errors import MiaBenchError
from mia_bench.metrics.regions import precision_at_top_regions


@dataclass
class OverRepConfig:
    k: int = 10  # regions (k-means clusters of the substitute discriminator's outputs)
    n_nonmember: int = 2000  # fresh target samples held out of the substitute's training
    substitute: str = "defense"  # substitute GAN recipe: "defense" (the target's, as ALGORITHMS 3.4) | "natural"
    steps: int = 0  # substitute generator updates (0 = the target's budget)
    m: int = 0  # released samples the substitute trains on (0 = all)
    rank_normalise: bool = False


def _phi(logits: torch.Tensor, rank: bool) -> np.ndarray:
    p = torch.sigmoid(logits.double()).cpu().numpy()
    return rankdata(p) / p.size if rank else p


@register("overrep")
class OverRepresentation(Attack):
    access = AccessLevel.WHITE_BOX
    variant = "member-confidence score of k-means regions of the substitute discriminator's outputs"
    Config = OverRepConfig

    def bank_request(self, view: TargetView, knowledge: AttackerKnowledge) -> dict:
        """The shadows.train_bank arguments of the substitute GAN (protocol v2 trains every target's at once)."""
        c = self.config
        if knowledge.recipe is None or c.substitute not in ("natural", "defense"):
            raise MiaBenchError("overrep trains a substitute GAN: it needs the target's recipe, and substitute "
                                f"must be 'natural' or 'defense' (got {c.substitute!r})")
        base = knowledge.recipe if c.substitute == "defense" else shadows.natural_recipe(knowledge.recipe)
        recipe = shadows.with_steps(base, c.steps)
        data = shadows.released_dataset(view.released, view.info)
        if 0 < c.m < len(data):
            data = replace(data, x=data.x[:c.m], y=data.y[:c.m])
        train, reference = data, None
        if DEFENSES.get(recipe.defense).needs_reference:  # e.g. MP-GAN: the fresh samples are its reference set
            xn, yn = self._fresh_samples(view, data.y)
            train = replace(data, x=torch.cat([data.x, xn]), y=torch.cat([data.y, yn]))
            reference = np.arange(len(data), len(train))
        return dict(recipe=recipe, data=train, ids=np.arange(len(data)), n_models=1, size=shadows.EVERY_RECORD,
                    seed=knowledge.seed, cache_dir=knowledge.cache_dir, reference_ids=reference)

    def fit(self, view: TargetView, knowledge: AttackerKnowledge) -> None:
        c = self.config
        request = self.bank_request(view, knowledge)
        recipe, ids = request["recipe"], request["ids"]
        data = replace(request["data"], x=request["data"].x[:ids.size], y=request["data"].y[:ids.size])
        xn, yn = self._fresh_samples(view, data.y)
        bank = shadows.train_bank(**request)
        sub = bank.models[0]
        with torch.no_grad():
            phi_m = _phi(sub.discriminate(data.x, data.y), c.rank_normalise)
            phi_n = _phi(sub.discriminate(xn, yn), c.rank_normalise)
        self.centroids, self.mc = self._regions(phi_m, phi_n)
        self.details.update(substitute={**bank.describe(), "steps": recipe.trainer.max_steps},
                            m=int(phi_m.size), n=int(phi_n.size), centroids=self.centroids.round(4).tolist(),
                            mc_scores=self.mc.round(4).tolist())

    def _fresh_samples(self, view: TargetView, released_y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """n new samples from the target generator (labels resampled from the released ones)."""
        g = torch.Generator().manual_seed(self.seed + 17)
        gen = view.generator
        z = gen.draw_latent(self.config.n_nonmember, g).cpu()
        y = released_y[torch.randint(released_y.numel(), (self.config.n_nonmember,), generator=g)]
        with torch.no_grad():
            x = gen.query(z, y if gen.n_classes else None).detach().cpu().float()
        return x, y

    def _regions(self, phi_m: np.ndarray, phi_n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Sorted centroids (k,) and their MC scores (k,)."""
        values = np.concatenate([phi_m, phi_n])[:, None]
        k = min(self.config.k, np.unique(values).size)
        km = KMeans(n_clusters=k, n_init=10, random_state=self.seed).fit(values)
        order = np.argsort(km.cluster_centers_[:, 0])
        relabel = np.empty(k, dtype=np.int64)
        relabel[order] = np.arange(k)
        lab = relabel[km.labels_]
        r_m = np.bincount(lab[:phi_m.size], minlength=k) / phi_m.size
        r_n = np.bincount(lab[phi_m.size:], minlength=k) / phi_n.size
        total = r_m + r_n
        mc = np.where(total > 0, r_m / np.where(total > 0, total, 1.0), 0.5)
        return km.cluster_centers_[order, 0], mc

    @torch.no_grad()
    def score(self, view: TargetView, x: torch.Tensor, y: torch.Tensor, *, ids: np.ndarray | None = None) -> np.ndarray:
        phi = _phi(view.discriminator(x, y), self.config.rank_normalise)
        region = np.abs(phi[:, None] - self.centroids[None, :]).argmin(1)
        return self.mc[region].astype(np.float64)

    def extra_metrics(self, scores: np.ndarray, is_member: np.ndarray) -> dict:
        return precision_at_top_regions(scores, is_member, levels=3)
