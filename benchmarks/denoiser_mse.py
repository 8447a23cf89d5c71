"""Denoiser MSE per noise level of a trained score model, against the mean-image and identity baselines.

D(y; sigma) = y + sigma^2 s(y, sigma) is the model's estimate of E[x_0 | y]. A usable model beats the
dataset-mean image at large sigma (where the exact denoiser tends to it) and the identity D = y at small sigma
(where the exact denoiser tends to y); the loss curve alone does not show either.

    PYTHONPATH=src python3 benchmarks/denoiser_mse.py results/default/models/uncond \
        results/default/data/shapes3d.h5 results/default/data/split.parquet

Measured on the default 24x24 run with the first 256 test images by index (one floor hue, so a mean-image
baseline of 0.061; over the whole split it is 0.126), per-pixel MSE on the [0, 1] scale, 600 steps x 32 images:
    sigma                   0.05    0.2     0.5     1      2      5      10     25
    precond none (issue 10)   -      -       -      -      -     0.92    -     24.2
    precond edm, per-channel mean, log-uniform sigma
                            0.0018  0.0100  0.0148  0.0185 0.0292 0.0674 0.0947 0.1236
    precond edm, per-channel mean, log-normal sigma (-1.2, 1.2)
                            0.0012  0.0050  0.0086  0.0130 0.0254 0.0694 0.1148 0.1564
"""

import argparse

import numpy as np
import torch

from latent_abstractions.checkpoint import load_score_model
from latent_abstractions.losses import denoiser_mse
from latent_abstractions.shapes3d import load_shapes3d, load_split, to_model_input

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("model_dir", help="a score model's directory (model.pt + hparams.json)")
parser.add_argument("h5")
parser.add_argument("split")
parser.add_argument("--n-images", type=int, default=256, help="held-out images (a seeded random subset of the test split)")
parser.add_argument("--sigmas", type=float, nargs="+", default=[0.01, 0.05, 0.2, 0.5, 1, 2, 5, 10, 25])
parser.add_argument("--seed", type=int, default=0)
args = parser.parse_args()

model = load_score_model(f"{args.model_dir}/model.pt", f"{args.model_dir}/hparams.json")
data = load_shapes3d(args.h5)
test = load_split(args.split, data.n)["test"]
test = np.sort(np.random.default_rng(args.seed).choice(test, size=min(args.n_images, len(test)), replace=False))
x0 = to_model_input(data.images(test))
out = denoiser_mse(model.net, x0, args.sigmas, torch.Generator().manual_seed(args.seed))
print(f"{'sigma':>8} {'model':>10} {'mean image':>11} {'identity':>10}   model / best baseline")
for j in range(len(out["sigma"])):
    m, a, b = (float(out[k][j]) for k in ("mse", "mean_image", "identity"))
    print(f"{float(out['sigma'][j]):8.3f} {m:10.4f} {a:11.4f} {b:10.4f}   {m / min(a, b):.2f}")
