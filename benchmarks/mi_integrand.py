"""The mutual-information integrand per noise level: the conditional network against the exact filter.

I(Y_tau; phi_k) - I(Y_0; phi_k) integrates, over log sigma from sigma_max down to sigma(1 - tau), the integrand
E sigma^2 || s(y | phi_k) - s(y) ||^2 (nats per unit of log sigma; mutual_info.py). This prints it at fixed sigmas
for the conditional network and for the exact scores of the data distribution (every image of the file), on
held-out images, so a learned MI curve's error can be placed: where the network's branches differ although the
image alone decides the label (exact 0: a late rise), or where it has not learned to use a label (a shortfall).

    PYTHONPATH=src python3 benchmarks/mi_integrand.py results/default/models/cond \\
        results/default/data/shapes3d.h5 results/default/data/split.parquet

Measured on the default 24x24 run (precond edm, geometric weighting, 1,300 steps; 64 held-out images, seed 0),
network / exact:
    sigma  floor_hue     wall_hue      object_hue    scale         shape         orientation
    0.01   0.503/0.000   0.145/0.000   0.039/0.000   0.123/0.000   0.093/0.000   0.101/0.000
    0.05   0.168/0.000   0.073/0.000   0.026/0.000   0.009/0.000   0.010/0.000   0.029/0.000
    0.2    0.213/0.000   0.189/0.000   0.025/0.000   0.032/0.023   0.189/0.000   0.040/0.105
    0.5    0.066/0.000   0.081/0.000   0.025/0.001   0.017/0.128   0.064/0.348   0.037/0.681
    1      0.046/0.000   0.024/0.109   0.012/0.115   0.008/0.950   0.020/0.895   0.013/0.973
    2      0.064/0.205   0.031/0.315   0.005/0.760   0.003/0.476   0.008/0.496   0.003/0.474
    5      0.579/0.685   0.203/0.823   0.009/0.350   0.009/0.091   0.012/0.105   0.005/0.079
    10     0.348/0.567   0.130/0.418   0.009/0.105   0.003/0.013   0.005/0.021   0.003/0.011
The network uses the floor and wall hues at large sigma (near the exact values) and barely uses the object's
factors anywhere (<= 0.03 where the exact integrand is 0.1-1.0); where the exact integrand is 0 (sigma <= 0.2) its
branches still differ by 0.01-0.5 nats per unit log sigma, which is the late rise of its floor-hue curve.
"""

import argparse

import numpy as np
import torch

from latent_abstractions.checkpoint import load_score_model
from latent_abstractions.exact_filter import exact_score_fn
from latent_abstractions.factors import FACTOR_NAMES
from latent_abstractions.rng import seeded_subset
from latent_abstractions.shapes3d import load_shapes3d, load_split, to_model_input

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("model_dir", help="the conditional score model's directory (model.pt + hparams.json)")
parser.add_argument("h5")
parser.add_argument("split")
parser.add_argument("--n-images", type=int, default=64, help="held-out images (a seeded random subset of the test split)")
parser.add_argument("--sigmas", type=float, nargs="+", default=[0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10])
parser.add_argument("--seed", type=int, default=0)
args = parser.parse_args()

model = load_score_model(f"{args.model_dir}/model.pt", f"{args.model_dir}/hparams.json")
if model.hparams["net"].get("n_levels") is None:
    parser.error(f"{args.model_dir} holds an unconditional model; the integrand needs the conditional one")
data = load_shapes3d(args.h5)
test = load_split(args.split, data.n)["test"]
test = seeded_subset(test, args.n_images, args.seed)
x0 = to_model_input(data.images(test))
labels = torch.as_tensor(data.label_indices[test]).long()
exact = exact_score_fn(to_model_input(data.images(np.arange(data.n))), data.label_indices, model.sde)
sde, gen = model.sde, torch.Generator().manual_seed(args.seed)
print(f"{'sigma':>7}  " + "  ".join(f"{name:>17s}" for name in FACTOR_NAMES) + "   (network / exact)")
with torch.no_grad():
    for s in args.sigmas:
        y = x0 + s * torch.randn(x0.shape, generator=gen)
        t = float(sde.t_of_sigma(s))
        sig = torch.full((len(y),), s)
        s_net, s_ex = model.net(y, sig).double(), exact(y, t).double()
        cells = []
        for k in range(len(FACTOR_NAMES)):
            given = torch.full_like(labels, -1)
            given[:, k] = labels[:, k]
            net_k = float((s**2 * (model.net(y, sig, given).double() - s_net).pow(2).flatten(1).sum(1)).mean())
            ex_k = float((s**2 * (exact(y, t, given).double() - s_ex).pow(2).flatten(1).sum(1)).mean())
            cells.append(f"{net_k:8.3f}/{ex_k:8.3f}")
        print(f"{s:7.2f}  " + "  ".join(cells), flush=True)
