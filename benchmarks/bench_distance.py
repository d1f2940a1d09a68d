"""d* of the paper's pool (Sec. 5): 25e6 uniform cartpole (state, action) rows against the 200 points
of an expert trajectory, chunk by chunk, as `objmm reweight` computes it; time and peak memory.

    python benchmarks/bench_distance.py                      # 25e6 rows on the CPU
    python benchmarks/bench_distance.py --rows 2000000 --device cuda

Beside it, in the same run, the plain one-shot broadcast (`[rows, 200, 5]` at once, the obvious
torch code) on a slice small enough to fit, as rows per second of each. The reference is a random
200-step path through the box (the distances' cost does not depend on where the points are).
"""

from __future__ import annotations

import argparse
import resource
import time

import torch

from objmm.data.distance import min_distance_brute_force
from objmm.data.uniform_pool import UniformPool

CARTPOLE = "objmm/PETSCartpole-v0"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=25_000_000)
    parser.add_argument("--reference", type=int, default=200)
    parser.add_argument("--plain-rows", type=int, default=200_000, help="rows of the one-shot broadcast")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    pool = UniformPool(CARTPOLE, args.rows, seed=0)
    reference = UniformPool(CARTPOLE, args.reference, seed=1).rows(0)
    rss_before = peak_rss_mb()
    start = time.perf_counter()
    distances = pool.distances(reference, args.device)
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    rss_after = peak_rss_mb()
    print(
        f"objmm d*: {args.rows:.3g} rows x {args.reference} points on {args.device} in {seconds:.1f} s "
        f"({args.rows / seconds:.3g} rows/s); peak memory {rss_after:.0f} MB, of it {rss_after - rss_before:.0f} MB "
        f"added (the d* themselves: {distances.numel() * 4 / 2**20:.0f} MB); "
        f"{args.rows / pool.chunk:.0f} chunks of {pool.chunk} rows"
    )
    rows = pool.rows(0)[: args.plain_rows].to(args.device)
    start = time.perf_counter()
    plain = min_distance_brute_force(rows, reference.to(args.device), (1,))
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    plain_seconds = time.perf_counter() - start
    assert torch.allclose(plain.cpu(), distances[: len(rows)], atol=1e-4)
    plain_rate = len(rows) / plain_seconds
    print(
        f"plain broadcast: {len(rows):.3g} rows in {plain_seconds:.2f} s ({plain_rate:.3g} rows/s, "
        f"{len(rows) * args.reference * 5 * 4 / 2**20:.0f} MB of differences at once); "
        f"objmm's chunked d* runs at {args.rows / seconds / plain_rate:.2f}x its rate; "
        f"peak memory now {peak_rss_mb():.0f} MB"
    )


if __name__ == "__main__":
    main()
