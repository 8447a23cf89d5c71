"""The exact filter on the full Shapes3D grid: wall time, throughput, achieved GFLOP/s vs this machine's GEMM peak.

    nice -n 10 .venv/bin/python benchmarks/exact_filter_throughput.py /tmp/3dshapes_64.h5 --out /tmp/exact_full

Renders the full 480,000-image 64x64 grid to the given path first if the file does not exist, then runs the exact
filter (all images, ``--n-samples`` query states, the default config's tau grid) streaming the HDF5 in chunks, and
prints: wall time, query samples/s, the GFLOP/s achieved by the filter's float64 GEMM work next to the float64 GEMM
peak measured in this same run (a large matmul of the filter's shape, before and after), peak RSS and the load
average. Writes the table (``exact_filter_full.parquet``) to ``--out``: docs/exact_filter.md gives what it shows,
docs/benchmarks.md the measured timings.

sigma_max: the largest pairwise distance among a seeded random subset of ``--sigma-pairs-images`` images (the
workflow takes it from the trained model; the paper config estimates it on 8,192 training images), or
``--sigma-max``. sigma_min = 0.01 as in every config.
"""

import argparse
import json
import os
import resource
import time
from pathlib import Path

import numpy as np
import torch

from latent_abstractions.data.factors import N_LEVELS
from latent_abstractions.data.render import GridSpec
from latent_abstractions.data.shapes3d import load_shapes3d, to_model_input, write_synthetic
from latent_abstractions.measure.exact_filter import level_codes
from latent_abstractions.model.sde import VESDE, sigma_max_from_data
from latent_abstractions.rng import seeded_subset
from latent_abstractions.stages.exact import filter_table
from latent_abstractions.taus import tau_grid

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("h5")
parser.add_argument("--out", default="benchmarks/out_exact_filter")
parser.add_argument("--n-samples", type=int, default=1024)
parser.add_argument("--n-taus", type=int, default=12, help="points of the tau grid (the default config: 12)")
parser.add_argument("--n-forks", type=int, default=6)
parser.add_argument("--chunk-size", type=int, default=2048)
parser.add_argument("--sigma-max", type=float, default=None)
parser.add_argument("--sigma-pairs-images", type=int, default=4096)
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--limit", type=int, default=None, help="use only the first N images (quick trials)")
args = parser.parse_args()


def gemm_peak(d: int, q: int = 2048, n: int = 2048, reps: int = 3) -> float:
    """float64 GFLOP/s of a (q x d) @ (d x n) matmul, best of ``reps`` (the filter's GEMM shape)."""
    a, b = torch.randn(q, d, dtype=torch.float64), torch.randn(n, d, dtype=torch.float64)
    a @ b.T
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        a @ b.T
        best = min(best, time.perf_counter() - t0)
    return 2 * q * n * d / best / 1e9


if not os.path.exists(args.h5):
    t0 = time.perf_counter()
    write_synthetic(args.h5, GridSpec.from_counts(64, N_LEVELS))
    print(f"rendered {args.h5} in {time.perf_counter() - t0:.0f} s")
load_before = os.getloadavg()
data = load_shapes3d(args.h5)
d = data.resolution**2 * 3
members = np.arange(data.n if args.limit is None else min(args.limit, data.n))
if args.sigma_max is None:
    sub = seeded_subset(members, args.sigma_pairs_images, args.seed)
    t0 = time.perf_counter()
    sigma_max = sigma_max_from_data(to_model_input(data.images(sub)))
    print(f"sigma_max = {sigma_max:.4f} (largest distance among {len(sub)} images, {time.perf_counter() - t0:.0f} s)")
else:
    sigma_max = args.sigma_max
sde = VESDE(0.01, sigma_max)
taus = tau_grid(0.0, 1.0, args.n_taus)
peak_before = gemm_peak(d)
print(
    f"float64 GEMM peak before: {peak_before:.1f} GFLOP/s  (threads {torch.get_num_threads()}, "
    f"load average {load_before[0]:.2f})",
    flush=True,
)
t0 = time.perf_counter()
df = filter_table(
    data,
    members,
    sde,
    taus,
    n_samples=args.n_samples,
    n_forks=args.n_forks,
    chunk_size=args.chunk_size,
    seed=args.seed,
    device=torch.device("cpu"),
    codes_present=level_codes(data.label_indices),
)
wall = time.perf_counter() - t0
load_after = os.getloadavg()
peak_after = gemm_peak(d)
n, q, t = len(members), args.n_samples, len(taus) + 1  # + the sigma_max evaluation
flops = 2 * (2 * q) * n * d + 2 * q * n * sum(N_LEVELS) * t  # the Gram + z.x GEMM, the level sums
out = Path(args.out)
out.mkdir(parents=True, exist_ok=True)
df = df.assign(mixture="all", n_images=n, n_samples=q, n_forks=args.n_forks, seed=args.seed)
df.to_parquet(out / "exact_filter_full.parquet", index=False)
stats = {
    "images": n,
    "resolution": data.resolution,
    "queries": q,
    "taus": len(taus),
    "wall_s": round(wall, 1),
    "samples_per_s": round(q / wall, 2),
    "gflops_achieved": round(flops / wall / 1e9, 1),
    "gemm_peak_gflops_before": round(peak_before, 1),
    "gemm_peak_gflops_after": round(peak_after, 1),
    "fraction_of_peak": round(flops / wall / 1e9 / max(peak_before, peak_after), 3),
    "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    "load_before": [round(v, 2) for v in load_before],
    "load_after": [round(v, 2) for v in load_after],
    "sigma_min": 0.01,
    "sigma_max": sigma_max,
    "cpu_threads": torch.get_num_threads(),
}
(out / "benchmark.json").write_text(json.dumps(stats, indent=1) + "\n")
print(" ".join(f"{k}: {v}" for k, v in stats.items()))
