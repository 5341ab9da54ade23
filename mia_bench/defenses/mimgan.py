"""`mimgan`: mutual-information-minimisation GAN (Shateri, Messina, Labeau, Piantanida; arXiv 2311.03172),
ALGORITHMS.md 2.2.

RECONSTRUCTED from the paper's abstract only ("uses a variational representation of the mutual information
to minimize the information that a synthetic sample might leak about the whole training data set"); the
coupling and the loss below are our choice [rec], and records carry the `reconstructed` label.

What leaks is information about *which* records trained G. A statistics network T (its own player and
optimizer) estimates I(M; d_G(X)) with a variational lower bound (mia_bench.nets.mi, `discrete_mi_bound`):

    X       a record of the pool  members (M = 1)  U  the defender's reference records (M = 0),
            one loader batch of each (equal sizes, so p(M = 1) = 1/2)
    d_G(X)  the L2 distance from X to the nearest of `mi_samples` fresh generated samples (GAN-Leaks'
            full black-box statistic); differentiable in the nearest sample, the choice of it is not
    I^      = E_joint[T(d, m)] - log E_{d} sum_m p(m) exp T(d, m)      (bound="dv"; "nwj" likewise)

I(M; d_G(X)) lies in [0, log 2]. It is 0 whenever G is independent of which pool records are members
(members and reference records are exchangeable for such a G, so d_G(X) has the same law under M = 0 and
M = 1), and it grows as G copies members: a G that releases members exactly puts d = 0 on members only,
and I -> log 2. T reads only the distance, not the record, so it cannot learn the split itself.
Why not the coupling this file used before (each sample paired with its nearest member, against uniform
members): the pair's second element is a function of the first, so KL(joint || marginal) = log n for every
G, and G was only pushed against T's output bound. Any coupling built from members alone shares the flaw
in a weaker form (a good G that never saw a member is still near members), hence the reference set.

Per batch (members x, reference ref_x):

    D: softplus(-l(x)) + softplus(l(G(z)))
    T: maximise I^ on detached samples
    G: softplus(-l(G(z))) + beta * I^      (pushes the samples nearest to members away, those nearest to
                                            reference records closer, until distances carry no membership)

Assumption (as MP-GAN): the defender holds reference data from the same distribution (`needs_reference`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from mia_bench.data.datasets import DataInfo
from mia_bench.defenses.base import register
from mia_bench.defenses.mlp_game import MLPGame, MLPGameConfig
from mia_bench.nets.distance import nearest_sample_distance
from mia_bench.nets.losses import ns_d_loss, ns_g_loss
from mia_bench.nets.mi import MI_BOUNDS, StatisticsNetwork, discrete_mi_bound


@dataclass
class MIMGANConfig(MLPGameConfig):
    beta: float = 1.0  # weight of the MI estimate (nats, <= log 2) in G's loss; 0 = passive estimator
    bound: str = "dv"  # "dv" (Donsker-Varadhan / MINE) | "nwj"
    mi_samples: int = 256  # generated samples the pool records' nearest distances are taken over
    t_hidden: list[int] = field(default_factory=lambda: [64, 32])
    t_bound: float = 5.0  # T's scores squashed to (-t_bound, t_bound) so the estimate cannot diverge; 0 = off
    lr_t: float = 1e-3  # T must track G: at 2e-4 it lags and the penalty acts late (or not at all)


@register("mimgan")
class MIMGAN(MLPGame):
    """GAN whose generator also minimises a variational estimate of the information its samples carry
    about which records are members. Reconstructed from the abstract of arXiv 2311.03172 (module docstring)."""

    Config = MIMGANConfig
    player_order = ("generator", "discriminator", "statistics")
    needs_reference = True
    reconstructed = True

    def __init__(self, *, config: MIMGANConfig, info: DataInfo, n_train: int) -> None:
        super().__init__(config=config, info=info, n_train=n_train)
        if config.bound not in MI_BOUNDS:
            raise ValueError(f"defense.bound must be one of {', '.join(MI_BOUNDS)}, got {config.bound!r}")
        if config.beta < 0 or config.mi_samples < 1:
            raise ValueError(f"need defense.beta >= 0 and defense.mi_samples >= 1, got {config.beta}, "
                             f"{config.mi_samples}")
        self.players["statistics"] = StatisticsNetwork(in_features=1, n_values=2, hidden=config.t_hidden,
                                                          out_bound=config.t_bound)

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        return [*super().configure_optimizers(), self.adam("statistics", self.config.lr_t)]

    def nearest_distances(self, records: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """(N, *shape) records, (S, *shape) samples -> (N,) distance of each record to its nearest sample,
        per coordinate (L2 / sqrt(dim)); differentiable in `fake` through the chosen sample."""
        return nearest_sample_distance(records.flatten(1), fake.flatten(1))

    def mi_estimate(self, fake: torch.Tensor, x: torch.Tensor, ref_x: torch.Tensor) -> torch.Tensor:
        """I^(M; d_G(X)) in nats (scalar, <= log 2) from (S, *shape) samples, (B, *shape) members and
        (B, *shape) reference records; differentiable in `fake` and in T."""
        if x.shape[0] != ref_x.shape[0]:
            raise ValueError(f"mimgan pairs equal member and reference batches, got {x.shape[0]} and {ref_x.shape[0]}")
        d = self.nearest_distances(torch.cat([x, ref_x]), fake)  # (2B,)
        m = torch.cat([torch.ones(x.shape[0]), torch.zeros(ref_x.shape[0])]).long().to(d.device)
        prior = torch.full((2,), 0.5, device=d.device)
        return discrete_mi_bound(self.config.bound, self.players["statistics"](d[:, None]), m, prior)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        D = self.players["discriminator"]
        x, ref_x, n, y = batch["x"], batch["ref_x"], batch["x"].shape[0], self.batch_labels(batch)
        fake, yf = self.draw_fakes(n)
        probe, _ = self.draw_fakes(self.config.mi_samples)  # the samples the distances are taken to
        with self.playing("discriminator") as step:
            loss_d = ns_d_loss(D(x, y), D(fake.detach(), yf))
            step(loss_d)
        with self.playing("statistics") as step:
            mi_t = self.mi_estimate(probe.detach(), x, ref_x)
            step(-mi_t)  # T tightens the lower bound
        with self.playing("generator") as step:
            mi_g = self.mi_estimate(probe, x, ref_x)
            loss_g = ns_g_loss(D(fake, yf)) + self.config.beta * mi_g
            step(loss_g)
        if self.should_log(batch_idx):
            self.log_dict({"loss/d": loss_d.detach(), "loss/g": loss_g.detach(), "mimgan/mi": mi_t.detach()})
