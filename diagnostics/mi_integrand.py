"""The mutual-information integrand per noise level: the conditional network against the exact filter.

I(Y_tau; phi_k) - I(Y_0; phi_k) integrates, over log sigma from sigma_max down to sigma(1 - tau), the integrand
E sigma^2 || s(y | phi_k) - s(y) ||^2 (nats per unit of log sigma; mutual_info.py). This prints it at fixed sigmas
for the conditional network and for the exact scores of the data distribution (every image of the file), on
held-out images, so a learned MI curve's error can be placed: where the network's branches differ although the
image alone decides the label (exact 0: a late rise), or where it has not learned to use a label (a shortfall).

    PYTHONPATH=src python3 benchmarks/mi_integrand.py results/default/models/cond \\
        results/default/data/shapes3d.h5 results/default/data/split.parquet

Measured on the default 24x24 run (precond edm, geometric weighting, 1,300 steps; the fresh-clone run of
e10c3ec; 64 held-out images, seed 0), network / exact:
    sigma  floor_hue     wall_hue      object_hue    scale         shape         orientation
    0.01   0.507/0.000   0.192/0.000   0.083/0.000   0.087/0.000   0.081/0.000   0.195/0.000
    0.05   0.147/0.000   0.056/0.000   0.018/0.000   0.023/0.000   0.019/0.000   0.023/0.000
    0.2    0.323/0.000   0.126/0.000   0.030/0.000   0.039/0.023   0.225/0.000   0.070/0.105
    0.5    0.085/0.000   0.094/0.000   0.017/0.001   0.051/0.128   0.039/0.348   0.039/0.681
    1      0.043/0.000   0.026/0.109   0.004/0.115   0.011/0.950   0.017/0.895   0.016/0.973
    2      0.084/0.205   0.045/0.315   0.003/0.760   0.005/0.476   0.008/0.496   0.005/0.474
    5      0.528/0.685   0.190/0.823   0.011/0.350   0.007/0.091   0.007/0.105   0.009/0.079
    10     0.339/0.567   0.132/0.418   0.009/0.105   0.004/0.013   0.004/0.021   0.005/0.011
The network uses the floor and wall hues at large sigma (near the exact values) and barely uses the object's
factors anywhere (<= 0.07 where the exact integrand is 0.1-1.0); where the exact integrand is 0 (sigma <= 0.2) its
branches still differ by 0.01-0.5 nats per unit log sigma, which is the late rise of its floor-hue curve.

A second table places each gap against the exact one where the exact gap is not ~0: the mean over images of the
cosine between sigma (s(y | phi) - s(y)) of the network and of the exact score, and the RMS norm ratio. A label
the network does not use has a small ratio; a label it uses in the wrong place, a small cosine at any ratio. On the
same run: floor hue cosine 0.39 / 0.58 at sigma 5 / 10 (ratio 0.88 / 0.77), wall hue 0.47 / 0.43; object hue 0.35
at sigma 2 with ratio 0.06; scale, shape, orientation cosine <= 0.10 and ratio 0.10-0.14 at sigma 1-2, where their
exact integrand peaks. The network's label branches are both too weak and misplaced: the exact gap for the
object's factors sits on the object (per-pixel RMS 0.08-0.12 there against <= 0.004 at the edges, object hue at
sigma 2; for orientation also at the walls' edges), the network's is nearly flat over the image (0.004 at the
object, 0.001-0.003 elsewhere; for scale, shape and orientation at sigma 1, 0.002-0.004 everywhere).
"""

import argparse

import numpy as np
import torch

from latent_abstractions.data.factors import FACTOR_NAMES
from latent_abstractions.data.shapes3d import load_shapes3d, load_split, to_model_input
from latent_abstractions.measure.exact_filter import exact_score_fn
from latent_abstractions.model.checkpoint import load_score_model
from latent_abstractions.rng import seeded_subset

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("model_dir", help="the conditional score model's directory (model.pt + hparams.json)")
parser.add_argument("h5")
parser.add_argument("split")
parser.add_argument(
    "--n-images", type=int, default=64, help="held-out images (a seeded random subset of the test split)"
)
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
align = []  # per sigma: (cosine, norm ratio) of the network's gap against the exact one, per factor
with torch.no_grad():
    for s in args.sigmas:
        y = x0 + s * torch.randn(x0.shape, generator=gen)
        t = float(sde.t_of_sigma(s))
        sig = torch.full((len(y),), s)
        s_net, s_ex = model.net(y, sig).double(), exact(y, t).double()
        cells, row = [], []
        for k in range(len(FACTOR_NAMES)):
            given = torch.full_like(labels, -1)
            given[:, k] = labels[:, k]
            gap_net = (s * (model.net(y, sig, given).double() - s_net)).flatten(1)  # sigma (s(y | phi) - s(y))
            gap_ex = (s * (exact(y, t, given).double() - s_ex)).flatten(1)
            net_k, ex_k = float(gap_net.pow(2).sum(1).mean()), float(gap_ex.pow(2).sum(1).mean())
            cells.append(f"{net_k:8.3f}/{ex_k:8.3f}")
            # where the exact gap is ~0 (the image decides the label) direction and ratio are undefined
            if ex_k > 1e-3:
                cos = float(torch.nn.functional.cosine_similarity(gap_net, gap_ex, dim=1).mean())
                row.append(f"{cos:+8.2f} {np.sqrt(net_k / ex_k):8.2f}")
            else:
                row.append(f"{'-':>8s} {'-':>8s}")
        align.append(row)
        print(f"{s:7.2f}  " + "  ".join(cells), flush=True)
print(
    f"\n{'sigma':>7}  "
    + "  ".join(f"{name:>17s}" for name in FACTOR_NAMES)
    + "   (cosine of the network's gap with the exact gap, mean over images; RMS norm ratio network / exact)"
)
for s, row in zip(args.sigmas, align):
    print(f"{s:7.2f}  " + "  ".join(row))
