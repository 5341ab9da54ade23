"""Nearest-distance search (mia_bench.nets.distance) vs scikit-learn's NearestNeighbors, same answer.

20k released samples x 2k queries, 64 features (digits-sized records); both timed end to end (sklearn's
fit + kneighbors, ours one call). Prints the ratio (goal: >= 3x) and checks the distances agree.
Then the floor of any exact float32 brute-force search: its GEMM alone (queries x released, the same chunks),
and the ratio to scikit-learn that even a search costing nothing beyond that GEMM would reach.

    .venv/bin/python benchmarks/perf/nearest_distance.py [--released 20000] [--queries 2000] [--dim 64]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from sklearn.neighbors import NearestNeighbors

from mia_bench.nets.distance import nearest_distance


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--released", type=int, default=20000)
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    g = torch.Generator().manual_seed(0)
    released = torch.rand(args.released, args.dim, generator=g) * 2 - 1
    q = torch.rand(args.queries, args.dim, generator=g) * 2 - 1
    ours, theirs, gemm = [], [], []
    r2 = (released * released).sum(1)
    for _ in range(args.repeats):
        t = time.perf_counter()
        d_ours, i_ours = nearest_distance(q, released)
        ours.append(time.perf_counter() - t)
        t = time.perf_counter()
        d_sk, i_sk = NearestNeighbors(n_neighbors=1).fit(released.numpy()).kneighbors(q.numpy())
        theirs.append(time.perf_counter() - t)
        t = time.perf_counter()
        for start in range(0, q.shape[0], 256):  # nearest_distance's default chunk
            torch.addmm(r2[None, :], q[start:start + 256], released.T, alpha=-2.0)
        gemm.append(time.perf_counter() - t)
    np.testing.assert_allclose(d_ours.numpy(), d_sk[:, 0], rtol=1e-4, atol=1e-5)
    agree = float((i_ours.numpy() == i_sk[:, 0]).mean())
    a, b, c = statistics.median(ours), statistics.median(theirs), statistics.median(gemm)
    print(f"{args.released} released x {args.queries} queries x {args.dim} dims, threads={torch.get_num_threads()}")
    print(f"  mia_bench nearest_distance:  {a * 1e3:8.1f} ms")
    print(f"  sklearn NearestNeighbors:    {b * 1e3:8.1f} ms   ratio {b / a:.2f}x  (same neighbour for {agree:.1%})")
    flops = 2 * args.released * args.queries * args.dim
    print(f"  its float32 GEMM alone:      {c * 1e3:8.1f} ms   ({flops / c / 1e9:.0f} GFLOP/s); ceiling for an exact "
          f"float32 search: {b / c:.2f}x")


if __name__ == "__main__":
    main()
