"""`mimgan`: mutual-information-minimisation GAN (Shateri, Messina, Labeau, Piantanida; arXiv 2311.03172),
ALGORITHMS.md 2.2.

RECONSTRUCTED from the paper's abstract only ("uses a variational representation of the mutual information
to minimize the information that a synthetic sample might leak about the whole training data set"); the
pairing and the loss below are our placeholder [rec], and records carry the `reconstructed` label.

A statistics network T (its own player and optimizer) estimates I(X~; X), the information a released sample
X~ = G(z) carries about the training records, with a variational lower bound (mia_bench.nets.mi):

    joint pairs     (x~, nn(x~))   nn(x~) = the member closest to x~ (L2, over the whole training set)
    marginal pairs  (x~, x')       x' a member drawn uniformly, independently of x~
    I^  = E_joint[T] - log E_marginal[exp T]            (bound="dv"; "nwj": E_joint[T] - E_marg[e^(T-1)])

How the paper couples a synthetic sample with the training set is unknown; the nearest-member coupling is
our choice because memorisation is exactly what makes x~ informative about its nearest member. Per batch:

    D: softplus(-l(x)) + softplus(l(G(z)))     T: maximise I^ on detached fakes     G: softplus(-l(G(z))) + beta I^

The members are kept in a non-persistent buffer for the nearest-member search: never in a checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from mia_bench.data.datasets import DataInfo
from mia_bench.defenses.base import register
from mia_bench.defenses.mlp_game import MLPGame, MLPGameConfig
from mia_bench.nets.distance import pairwise_sq_dist
from mia_bench.nets.losses import ns_d_loss, ns_g_loss
from mia_bench.nets.mi import MI_BOUNDS, StatisticsNetwork, mi_bound


@dataclass
class MIMGANConfig(MLPGameConfig):
    beta: float = 0.1  # weight of the MI estimate in G's loss (0 = plain GAN with a passive estimator); 1 collapses G
    bound: str = "dv"  # "dv" (Donsker-Varadhan / MINE) | "nwj"
    t_hidden: list[int] = field(default_factory=lambda: [128, 64])
    t_bound: float = 5.0  # T's output squashed to (-t_bound, t_bound) so the estimate cannot diverge; 0 = off
    lr_t: float = 2e-4


@register("mimgan")
class MIMGAN(MLPGame):
    """GAN whose generator also minimises a variational MI estimate between its samples and the members.

    Reconstructed from the abstract of arXiv 2311.03172 (see the module docstring)."""

    Config = MIMGANConfig
    player_order = ("generator", "discriminator", "statistics")
    reconstructed = True
    members: torch.Tensor  # non-persistent buffer (n_train, *shape)

    def __init__(self, *, config: MIMGANConfig, info: DataInfo, n_train: int) -> None:
        super().__init__(config=config, info=info, n_train=n_train)
        if config.bound not in MI_BOUNDS:
            raise ValueError(f"defense.bound must be one of {', '.join(MI_BOUNDS)}, got {config.bound!r}")
        if config.beta < 0:
            raise ValueError(f"defense.beta must be >= 0, got {config.beta}")
        self.players["statistics"] = StatisticsNetwork(in_shape=info.shape, hidden=config.t_hidden,
                                                          out_bound=config.t_bound)
        self.register_buffer("members", torch.zeros(0, *info.shape), persistent=False)

    def prepare(self, x: torch.Tensor, y: torch.Tensor) -> None:
        super().prepare(x, y)
        self.members = x.detach().clone().to(self.label_prior.device)

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        return [*super().configure_optimizers(), self.adam("statistics", self.config.lr_t)]

    def mi_estimate(self, fake: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """I^(X~; X) in nats (scalar) on (B, *shape) samples, differentiable in `fake` and in T.

        The marginal partners are drawn from `generator` (a CPU generator; None = the global one)."""
        if self.members.shape[0] == 0:
            raise RuntimeError("mimgan needs its members: call prepare(x, y) before training or estimating")
        with torch.no_grad():  # the coupling is a selection, not a function G could be differentiated through
            nearest = pairwise_sq_dist(fake.flatten(1), self.members.flatten(1)).argmin(dim=1)
            partner = torch.randint(self.members.shape[0], (fake.shape[0],), generator=generator).to(fake.device)
        T = self.players["statistics"]
        return mi_bound(self.config.bound, T(fake, self.members[nearest]), T(fake, self.members[partner]))

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        D = self.players["discriminator"]
        x, n, y = batch["x"], batch["x"].shape[0], self.batch_labels(batch)
        fake, yf = self.draw_fakes(n)
        with self.playing("discriminator") as step:
            loss_d = ns_d_loss(D(x, y), D(fake.detach(), yf))
            step(loss_d)
        with self.playing("statistics") as step:
            mi_t = self.mi_estimate(fake.detach())
            step(-mi_t)  # T tightens the lower bound
        with self.playing("generator") as step:
            mi_g = self.mi_estimate(fake)
            loss_g = ns_g_loss(D(fake, yf)) + self.config.beta * mi_g
            step(loss_g)
        if self.should_log(batch_idx):
            self.log_dict({"loss/d": loss_d.detach(), "loss/g": loss_g.detach(), "mimgan/mi": mi_t.detach()})
