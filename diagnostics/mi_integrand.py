"""The mutual-information integrand per noise level: the conditional network against the exact filter.

I(Y_tau; phi_k) - I(Y_0; phi_k) integrates, over log sigma from sigma_max down to sigma(1 - tau), the integrand
E sigma^2 || s(y | phi_k) - s(y) ||^2 (nats per unit of log sigma; measure/mutual_info.py). This prints it at fixed
sigmas for the conditional network and for the exact scores of the data distribution (every image of the file), on
held-out images, so a learned MI curve's error can be placed: where the network's branches differ although the
image alone decides the label (exact 0: a late rise), or where it has not learned to use a label (a shortfall).

A second table places each gap against the exact one where the exact gap is not ~0: the mean over images of the
cosine between sigma (s(y | phi) - s(y)) of the network and of the exact score, and the RMS norm ratio. A label
the network does not use has a small ratio; a label it uses in the wrong place, a small cosine at any ratio. Run
from the repository root on a finished run's conditional model, dataset and split:

    r=results/default
    .venv/bin/python -m diagnostics.mi_integrand $r/models/cond $r/data/shapes3d.h5 $r/data/split.parquet

Measured results: docs/learned_vs_exact.md.
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
