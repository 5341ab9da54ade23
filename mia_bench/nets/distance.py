"""Nearest-neighbour distances in batched torch (GAN-Leaks fbb, Monte-Carlo, the memorizer control)."""

from __future__ import annotations

import torch


def pairwise_sq_dist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(..., n, d), (..., m, d) -> (..., n, m) squared Euclidean distances, via one (batched) matmul,
    clamped at 0."""
    d2 = (a * a).sum(-1, keepdim=True) + (b * b).sum(-1).unsqueeze(-2) - 2.0 * (a @ b.transpose(-1, -2))
    return d2.clamp_min_(0.0)


def nearest_sample_distance(records: torch.Tensor, samples: torch.Tensor) -> torch.Tensor:
    """(..., n, d) records, (..., s, d) samples -> (..., n): each record's distance to its nearest sample,
    per coordinate (L2 / sqrt(d)); differentiable in `samples` through the chosen sample, the choice itself
    is a selection and is not differentiated (MIMGAN's d_G(X))."""
    with torch.no_grad():
        nearest = pairwise_sq_dist(records, samples).argmin(-1)
    chosen = samples.gather(-2, nearest.unsqueeze(-1).expand(*nearest.shape, samples.shape[-1]))
    return ((records - chosen).pow(2).mean(-1) + 1e-12).sqrt()


def nearest_distance(queries: torch.Tensor, refs: torch.Tensor, *, chunk: int = 256,
                     candidates: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """For each query (flattened), the L2 distance to its nearest ref and that ref's index.

    queries: (N, ...), refs: (M, ...) -> dist (N,) float, index (N,) int64. The search ranks refs with one
    float32 matmul per block of `chunk` queries (memory chunk x M; the query's own norm is left out, it
    does not change the order); the `candidates` best (1: the argmin) are then re-measured exactly in
    float64, so near-duplicates keep their tiny distances instead of losing them to cancellation. Only
    refs within float32 rounding of each other (~1e-6 of |r|^2) can swap places, at equal distance.
    """
    q = queries.flatten(1)
    r = refs.flatten(1).to(q.device)
    r32 = r.float()
    r2 = (r32 * r32).sum(1)
    k = min(candidates, r.shape[0])
    dists, idx = [], []
    for start in range(0, q.shape[0], chunk):
        qc = q[start:start + chunk]
        score = torch.addmm(r2[None, :], qc.float(), r32.T, alpha=-2.0)  # |r|^2 - 2 q.r, (chunk, M)
        cand = score.topk(k, dim=1, largest=False).indices if k > 1 else score.argmin(1, keepdim=True)
        exact = (qc[:, None, :].double() - r[cand].double()).pow(2).sum(-1)  # (chunk, k)
        m, j = exact.min(1)
        dists.append(m.sqrt())
        idx.append(cand.gather(1, j[:, None]).squeeze(1))
    return torch.cat(dists).float(), torch.cat(idx)
