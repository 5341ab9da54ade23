"""Variational lower bounds on mutual information and the statistics network they are estimated with.

Given a statistics network T and samples of T on pairs drawn from the joint P(a, b) and from the product
of marginals P(a)P(b), both bounds below satisfy bound <= I(A; B) for every T, with equality at the best T:

    Donsker-Varadhan (MINE):  I_DV  = E_joint[T] - log E_marginal[exp T]
    NWJ (f-divergence):       I_NWJ = E_joint[T] - E_marginal[exp(T - 1)]

I_NWJ <= I_DV for the same T. The DV minibatch estimate has a biased gradient (the log of a mean); MINE
corrects it with a moving average, NWJ needs no correction but has a higher variance. A critic maximises
the bound to estimate I; a model that wants to leak less minimises the same estimate.

When B is discrete with a known prior p(b) (`discrete_mi_bound`), the marginal expectation needs no
shuffled pairs: E_{P(a)P(b)}[f(T)] = E_a[sum_b p(b) f(T(a, b))], computed exactly over every value of b.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

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


def discrete_mi_bound(kind: str, scores: torch.Tensor, b: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
    """The bound `kind` on I(A; B) for a discrete B with K values: scalar, nats, at most H(B).

    scores: (N, K) T(a_i, b) for every value b of B; b: (N,) int64, the value paired with a_i in the
    joint sample; prior: (K,) p(b), summing to 1. The marginal term is exact over B (module docstring)."""
    if scores.dim() != 2 or scores.shape[1] != prior.numel() or b.shape != scores.shape[:1]:
        raise ValueError(f"scores (N, K), b (N,) and prior (K,) disagree: {tuple(scores.shape)}, "
                         f"{tuple(b.shape)}, {tuple(prior.shape)}")
    t_joint = scores.gather(1, b[:, None]).squeeze(1)
    log_prior = prior.to(scores.dtype).log()
    if kind == "dv":
        return t_joint.mean() - (torch.logsumexp(scores + log_prior, dim=(0, 1)) - math.log(scores.shape[0]))
    if kind == "nwj":
        return t_joint.mean() - (torch.exp(scores - 1.0) * prior.to(scores.dtype)).sum(1).mean()
    raise ValueError(f"unknown MI bound {kind!r}; use one of {', '.join(MI_BOUNDS)}")


class StatisticsNetwork(nn.Module):
    """T(a, b) for a discrete b: (B, in_features) -> (B, n_values) real scores, column b = T(a, b), higher
    = judged a joint (dependent) pair. One MLP trunk with one output per value of b.

    With `out_bound` > 0 the scores are squashed to (-out_bound, out_bound) by a scaled tanh: the DV and
    NWJ minibatch estimates then stay finite and so do the gradients a model gets from minimising them.
    """

    def __init__(self, *, in_features: int, n_values: int = 2, hidden: Sequence[int] = (64, 32),
                 out_bound: float = 0.0) -> None:
        super().__init__()
        if out_bound < 0:
            raise ValueError(f"out_bound must be >= 0 (0 = unbounded), got {out_bound}")
        self.out_bound = out_bound
        width = in_features
        layers: list[nn.Module] = []
        for h in hidden:
            layers += [nn.Linear(width, h), nn.LeakyReLU(0.2)]
            width = h
        layers.append(nn.Linear(width, n_values))
        self.net = nn.Sequential(*layers)

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        t = self.net(a.flatten(1))
        return self.out_bound * torch.tanh(t / self.out_bound) if self.out_bound else t
