"""Denoiser MSE per noise level of a trained score model, against the mean-image and identity baselines.

D(y; sigma) = y + sigma^2 s(y, sigma) is the model's estimate of E[x_0 | y]. A usable model beats the
dataset-mean image at large sigma (where the exact denoiser tends to it) and the identity D = y at small sigma
(where the exact denoiser tends to y); the loss curve alone does not show either. Prints, per sigma, the per-pixel
MSE on the [0, 1] scale of a seeded subset of held-out images for the model and both baselines.

With ``--exact`` a column gives the exact denoiser of the training images (exact_filter.exact_score_fn: the
posterior mean over the training split, what the model is trained to approximate; held-out images are not in it,
so at small sigma it snaps them to their nearest training image and its error stays at that distance).

Run from the repository root on a finished run (a score model's directory, the dataset, the split):

    r=results/default
    .venv/bin/python -m diagnostics.denoiser_mse $r/models/uncond $r/data/shapes3d.h5 $r/data/split.parquet --exact

Measured results: docs/learned_vs_exact.md.
"""

import argparse

import numpy as np
import torch

from latent_abstractions.data.shapes3d import load_shapes3d, load_split, to_model_input
from latent_abstractions.measure.exact_filter import exact_score_fn
from latent_abstractions.model.checkpoint import load_score_model
from latent_abstractions.model.losses import denoiser_mse
from latent_abstractions.rng import seeded_subset

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("model_dir", help="a score model's directory (model.pt + hparams.json)")
parser.add_argument("h5")
parser.add_argument("split")
parser.add_argument(
    "--n-images", type=int, default=256, help="held-out images (a seeded random subset of the test split)"
)
parser.add_argument("--sigmas", type=float, nargs="+", default=[0.01, 0.05, 0.2, 0.5, 1, 2, 5, 10, 25])
parser.add_argument("--seed", type=int, default=0)
parser.add_argument(
    "--exact",
    action="store_true",
    help="add the exact denoiser of the training split (holds the split in memory as float64)",
)
args = parser.parse_args()

model = load_score_model(f"{args.model_dir}/model.pt", f"{args.model_dir}/hparams.json")
data = load_shapes3d(args.h5)
test = load_split(args.split, data.n)["test"]
test = seeded_subset(test, args.n_images, args.seed)
x0 = to_model_input(data.images(test))
out = denoiser_mse(model.net, x0, args.sigmas, torch.Generator().manual_seed(args.seed))
exact = None
if args.exact:
    train = np.sort(load_split(args.split, data.n)["train"])
    score = exact_score_fn(to_model_input(data.images(train)), data.label_indices[train], model.sde)

    class ExactNet(torch.nn.Module):  # the exact score with the network's call signature net(x, sigma, labels)
        def forward(self, x, sigma, labels=None):
            return score(x, model.sde.t_of_sigma(sigma.double()))

    exact = denoiser_mse(ExactNet(), x0, args.sigmas, torch.Generator().manual_seed(args.seed))["mse"]
exact_head = f"{'exact':>10}" if exact is not None else ""
print(f"{'sigma':>8} {'model':>10} {'mean image':>11} {'identity':>10}{exact_head}   model / best baseline")
for j in range(len(out["sigma"])):
    m, a, b = (float(out[k][j]) for k in ("mse", "mean_image", "identity"))
    ex = f"{float(exact[j]):10.4f}" if exact is not None else ""
    print(f"{float(out['sigma'][j]):8.3f} {m:10.4f} {a:11.4f} {b:10.4f}{ex}   {m / min(a, b):.2f}")
