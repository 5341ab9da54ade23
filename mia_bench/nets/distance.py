"""Nearest-neighbour distances in batched torch (GAN-Leaks fbb, Monte-Carlo, the memorizer control)."""

from __future__ import annotations

import torch


def pairwise_sq_dist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(n, d), (m, d) -> (n, m) squared Euclidean distances, via one matmul (clamped at 0)."""
    d2 = (a * a).sum(1, keepdim=True) + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    return d2.clamp_min_(0.0)


def nearest_distance(queries: torch.Tensor, refs: torch.Tensor, *, chunk: int = 2048) -> tuple[torch.Tensor, torch.Tensor]:
    """For each query (flattened), the L2 distance to its nearest ref and that ref's index.

    queries: (N, ...), refs: (M, ...) -> dist (N,) float, index (N,) int64. Work is chunked over queries
    so memory stays at chunk x M. Computed in float64 so near-duplicates are not lost to cancellation.
    """
    q = queries.flatten(1).double()
    r = refs.flatten(1).double().to(q.device)
    dists, idx = [], []
    for start in range(0, q.shape[0], chunk):
        d2 = pairwise_sq_dist(q[start:start + chunk], r)
        m, i = d2.min(dim=1)
        dists.append(m.sqrt())
        idx.append(i)
    return torch.cat(dists).float(), torch.cat(idx)
