"""Variational lower bounds on mutual information and the statistics network they are estimated with.

Given a statistics network T and samples of T on pairs drawn from the joint P(a, b) and from the product
of marginals P(a)P(b), both bounds below satisfy bound <= I(A; B) for every T, with equality at the best T:

    Donsker-Varadhan (MINE):  I_DV  = E_joint[T] - log E_marginal[exp T]
    NWJ (f-divergence):       I_NWJ = E_joint[T] - E_marginal[exp(T - 1)]

I_NWJ <= I_DV for the same T. The DV minibatch estimate has a biased gradient (the log of a mean); MINE
corrects it with a moving average, NWJ needs no correction but has a higher variance. A critic maximises
the bound to estimate I; a model that wants to leak less minimises the same estimate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from math import prod

import torch
from torch import nn

MI_BOUNDS = ("dv", "nwj")


def dv_bound(t_joint: torch.Tensor, t_marginal: torch.Tensor) -> torch.Tensor:
    """Donsker-Varadhan bound (scalar, nats) from T on (N,) joint pairs and (M,) marginal pairs."""
    return t_joint.mean() - (torch.logsumexp(t_marginal, dim=0) - math.log(t_marginal.numel()))


def nwj_bound(t_joint: torch.Tensor, t_marginal: torch.Tensor) -> torch.Tensor:
    """Nguyen-Wainwright-Jordan bound (scalar, nats) from T on (N,) joint and (M,) marginal pairs."""
    return t_joint.mean() - torch.exp(t_marginal - 1.0).mean()


def mi_bound(kind: str, t_joint: torch.Tensor, t_marginal: torch.Tensor) -> torch.Tensor:
    """The bound named `kind` ("dv" or "nwj"); a scalar in nats, higher = more information."""
    if kind == "dv":
        return dv_bound(t_joint, t_marginal)
    if kind == "nwj":
        return nwj_bound(t_joint, t_marginal)
    raise ValueError(f"unknown MI bound {kind!r}; use one of {', '.join(MI_BOUNDS)}")


class StatisticsNetwork(nn.Module):
    """T(a, b): (B, *shape) x (B, *shape) -> (B,) real score, higher = judged a joint (dependent) pair.

    The MLP reads [a, b, |a - b|] so that closeness of the two records, the dependence that memorisation
    creates, is directly visible to it. With `out_bound` > 0 the score is squashed to (-out_bound, out_bound)
    by a scaled tanh: the DV and NWJ minibatch estimates then stay finite (their value is at most about
    2 * out_bound) and so do the gradients a model gets from minimising them.
    """

    def __init__(self, *, in_shape: Sequence[int], hidden: Sequence[int] = (128, 64), out_bound: float = 0.0) -> None:
        super().__init__()
        if out_bound < 0:
            raise ValueError(f"out_bound must be >= 0 (0 = unbounded), got {out_bound}")
        self.out_bound = out_bound
        width = 3 * prod(in_shape)
        layers: list[nn.Module] = []
        for h in hidden:
            layers += [nn.Linear(width, h), nn.LeakyReLU(0.2)]
            width = h
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        a, b = a.flatten(1), b.flatten(1)
        if a.shape != b.shape:
            raise ValueError(f"statistics network pairs must have equal shapes, got {tuple(a.shape)} and {tuple(b.shape)}")
        t = self.net(torch.cat([a, b, (a - b).abs()], dim=1)).squeeze(1)
        return self.out_bound * torch.tanh(t / self.out_bound) if self.out_bound else t
