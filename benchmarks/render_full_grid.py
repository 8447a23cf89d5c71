"""Render the full official Shapes3D grid (480,000 images) with this project's renderer; print time and size.

    nice -n 19 .venv/bin/python benchmarks/render_full_grid.py /tmp/3dshapes_synthetic.h5 [--resolution 64]

Also prints the peak resident memory, to show the grid is streamed rather than held in memory. Measured numbers:
docs/benchmarks.md.
"""

import argparse
import os
import resource
import time

from latent_abstractions.data.factors import N_LEVELS
from latent_abstractions.data.render import GridSpec
from latent_abstractions.data.shapes3d import write_synthetic

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("out")
parser.add_argument("--resolution", type=int, default=64)
args = parser.parse_args()
spec = GridSpec.from_counts(args.resolution, N_LEVELS)
t0 = time.perf_counter()
write_synthetic(args.out, spec)
dt = time.perf_counter() - t0
size = os.path.getsize(args.out)
print(
    f"images: {spec.n_images}  resolution: {args.resolution}  time: {dt:.1f} s  "
    f"({spec.n_images / dt:.0f} img/s)  file: {size / 2**20:.1f} MiB  "
    f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10:.0f} MiB"
)
