"""Nearest-distance search (mia_bench.nets.distance) vs scikit-learn's NearestNeighbors, same answer.

20k released samples x 2k queries, 64 features (digits-sized records); both timed end to end (sklearn's
fit + kneighbors, ours one call). Prints the ratio (goal: >= 3x) and checks the distances agree.

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
    ours, theirs = [], []
    for _ in range(args.repeats):
        t = time.perf_counter()
        d_ours, i_ours = nearest_distance(q, released)
        ours.append(time.perf_counter() - t)
        t = time.perf_counter()
        d_sk, i_sk = NearestNeighbors(n_neighbors=1).fit(released.numpy()).kneighbors(q.numpy())
        theirs.append(time.perf_counter() - t)
    np.testing.assert_allclose(d_ours.numpy(), d_sk[:, 0], rtol=1e-4, atol=1e-5)
    agree = float((i_ours.numpy() == i_sk[:, 0]).mean())
    a, b = statistics.median(ours), statistics.median(theirs)
    print(f"{args.released} released x {args.queries} queries x {args.dim} dims, threads={torch.get_num_threads()}")
    print(f"  mia_bench nearest_distance:  {a * 1e3:8.1f} ms")
    print(f"  sklearn NearestNeighbors:    {b * 1e3:8.1f} ms   ratio {b / a:.2f}x  (same neighbour for {agree:.1%})")


if __name__ == "__main__":
    main()
