"""GAN losses shared by every defense (ALGORITHMS.md section 1). Logits are (B,) pre-sigmoid values."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F


def ns_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor, real_target: float = 1.0) -> torch.Tensor:
    """Non-saturating D loss: BCE(l(x), t) + BCE(l(G(z)), 0); t < 1 is one-sided label smoothing."""
    return real_loss(real_logits, real_target) + F.softplus(fake_logits).mean()


def real_loss(real_logits: torch.Tensor, target: float = 1.0) -> torch.Tensor:
    """Mean BCE of real logits against `target` (softplus(-l) when target = 1)."""
    return F.binary_cross_entropy_with_logits(real_logits, torch.full_like(real_logits, target))


def ns_g_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating G loss: -log D(G(z)) = softplus(-l(G(z)))."""
    return F.softplus(-fake_logits).mean()


def wgan_d_loss(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    return fake_scores.mean() - real_scores.mean()


def wgan_g_loss(fake_scores: torch.Tensor) -> torch.Tensor:
    return -fake_scores.mean()


def gradient_penalty(critic: Callable[..., torch.Tensor], real: torch.Tensor, fake: torch.Tensor,
                     y: torch.Tensor | None = None, *, reduce: bool = True) -> torch.Tensor:
    """WGAN-GP: (||grad_xhat D(xhat, y)||_2 - 1)^2 at xhat = e*real + (1-e)*fake, e ~ U[0,1] per sample.

    Returns the mean over the batch, or the (B,) per-sample terms with reduce=False (DP-SGD clips those).
    """
    eps = torch.rand(real.shape[0], *([1] * (real.dim() - 1)), device=real.device, dtype=real.dtype)
    xhat = (eps * real.detach() + (1 - eps) * fake.detach()).requires_grad_(True)
    scores = critic(xhat, y) if y is not None else critic(xhat)
    (grad,) = torch.autograd.grad(scores.sum(), xhat, create_graph=True)
    per_sample = (grad.flatten(1).norm(2, dim=1) - 1) ** 2
    return per_sample.mean() if reduce else per_sample


def binary_entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """H_b(sigmoid(l)) in nats, elementwise, computed stably from logits."""
    p = torch.sigmoid(logits)
    return F.softplus(logits) - p * logits
