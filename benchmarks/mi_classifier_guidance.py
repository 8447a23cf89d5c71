"""MI from a classifier-guided conditional score: a noise-conditional classifier's gap against the exact filter.

Trains noisy_classifier.NoisyClassifier on a run's training split, with the run's VE SDE (from its unconditional
model), then runs the estimate_mutual_information rule's estimator (mutual_info.mi_curves, "gap" integrand: the
run's held-out images, seed, tau grid and strata, read from tables/mutual_info.parquet) with the score gap of the
classifier-guided model, grad_y log q(phi_k | y, sigma), and prints I(Y_tau) - I(Y_0) beside the exact filter's
(tables/exact_filter.parquet, mixture "all") and beside the run's own learned curve (the label-input network).

    PYTHONPATH=src python3 benchmarks/mi_classifier_guidance.py results/default [--steps 1500 --threads 1]

Measured on the default 24x24 run of d4a2894 (96 held-out images, 48 strata, seed 0), width 32 (0.55 M parameters),
batch 64, lr 2e-3 one-cycle, 1,500 steps: 248 s on one thread beside a second copy (the score models' ~5 minutes);
the MI step ~65 s. Nats, I(Y_tau) - I(Y_0): guidance gap / the classifier's bound / label-input network / exact:
     tau  floor hue            wall hue             object hue           scale                shape                orientation
    0.09  0.22/0.17/0.06/0.20  0.09/0.12/0.02/0.10  0.03/0.08/0.00/0.02  0.00/0.00/0.00/0.00  0.00/-.01/0.00/0.00  0.00/0.00/0.00/0.00
    0.18  0.68/0.69/0.39/0.71  0.42/0.41/0.14/0.45  0.11/0.22/0.01/0.11  0.02/0.01/0.00/0.02  0.02/0.02/0.01/0.02  0.01/0.00/0.00/0.01
    0.27  1.18/1.20/0.90/1.20  1.01/1.02/0.33/1.04  0.47/0.42/0.01/0.42  0.08/0.08/0.01/0.12  0.07/0.10/0.01/0.14  0.04/0.02/0.01/0.08
    0.36  1.26/1.31/0.99/1.31  1.20/1.29/0.37/1.32  1.12/1.02/0.02/0.96  0.29/0.24/0.01/0.48  0.26/0.32/0.02/0.51  0.16/0.09/0.01/0.35
    0.45  1.26/1.32/1.01/1.32  1.24/1.35/0.39/1.35  1.70/1.18/0.03/1.32  0.81/0.70/0.02/1.05  0.78/0.67/0.03/1.08  0.67/0.43/0.02/0.96
    0.55  1.26/1.32/1.06/1.32  1.24/1.35/0.44/1.35  1.81/1.37/0.05/1.38  1.15/1.05/0.04/1.32  1.24/1.05/0.07/1.35  1.36/1.16/0.05/1.42
    0.64  1.26/1.32/1.20/1.32  1.24/1.35/0.55/1.35  1.84/1.38/0.07/1.38  1.44/1.19/0.07/1.38  1.44/1.36/0.12/1.39  1.64/1.49/0.09/1.57
    1.00  1.26/1.32/1.83/1.32  1.24/1.35/0.83/1.35  1.84/1.38/0.20/1.38  1.49/1.37/0.19/1.39  1.49/1.39/0.29/1.39  1.79/1.59/0.29/1.61
Largest |learned - exact| over tau (floor / wall / object hue / scale / shape / orientation; the issue's tolerance
is 0.15-0.16): guidance gap 0.06 / 0.12 / 0.46 / 0.24 / 0.31 / 0.30; bound 0.03 / 0.04 / 0.14 / 0.35 / 0.42 /
0.54; label-input network 0.51 / 0.97 / 1.33 / 1.32 / 1.28 / 1.49. The same classifier, its weights' EMA (decay
0.998, --ema-decay): gap 0.26 / 0.26 / 0.08 / 0.51 / 0.53 / 0.53 (every curve lower; object hue 1.46 at tau = 1).
Twice as long (3,000 steps; 522 s, beside other work; measured before the mean and std came from
train.data_statistics, otherwise the same): gap 0.09 / 0.11 / 0.41 / 0.18 / 0.22 / 0.29 (object hue 1.79, shape
1.57, orientation 1.90 at tau = 1, all over their ceilings), bound 0.01 / 0.04 / 0.09 / 0.28 / 0.29 / 0.37.

Findings. (1) The classifier-guided gap is 3-9 times closer to the exact filter than the label-input network
trained as long, but not within the target: the object hue overshoots its ceiling log 4 = 1.39 (1.84), scale,
shape and orientation end 0.1-0.2 above theirs. (2) Its probabilities are nearly right where its gradients are
not: the bound meets the exact curve within 0.03-0.14 for the three hues, while the integral of the squared input
gradient of the same classifier moves by 0.2-0.4 nats between the last iterate and the weights' EMA. The gap
estimator needs calibrated input gradients, which cross-entropy does not train; the geometric factors' bound lags
the exact curve mid-path (the classifier is underconfident at tau 0.36-0.55) and closes with training
(0.35-0.54 at 1,500 steps, 0.28-0.37 at 3,000), while the gap's overshoot does not.
"""

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from latent_abstractions.checkpoint import read_hparams
from latent_abstractions.factors import FACTOR_NAMES
from latent_abstractions.mutual_info import mi_curves
from latent_abstractions.noisy_classifier import guidance_gap_fn, train_noisy_classifier
from latent_abstractions.rng import seeded_subset
from latent_abstractions.sde import VESDE
from latent_abstractions.shapes3d import load_shapes3d, load_split, to_model_input

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("results", help="a run's results directory (results/<run_name>) after its MI and exact filter")
parser.add_argument("--steps", type=int, default=1500, help="optimiser steps of the classifier")
parser.add_argument("--width", type=int, default=32, help="channels of its first block")
parser.add_argument("--batch-size", type=int, default=64, help="noised training images per step")
parser.add_argument("--lr", type=float, default=2e-3, help="peak Adam learning rate (one-cycle)")
parser.add_argument("--ema-decay", type=float, default=0.0, help="0: the last iterate")
parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
args = parser.parse_args()
torch.set_num_threads(args.threads)

res = Path(args.results)
hp = read_hparams(res / "models/uncond/hparams.json")
sde = VESDE(hp["sigma_min"], hp["sigma_max"])
learned = pd.read_parquet(res / "tables/mutual_info.parquet")
exact = pd.read_parquet(res / "tables/exact_filter.parquet")
exact = exact[exact["mixture"] == "all"]
taus = np.sort(learned["tau"].unique())
seed, n_images, n_times = (int(learned[c].iloc[0]) for c in ("seed", "n_images", "n_times"))
data = load_shapes3d(res / "data/shapes3d.h5")
parts = load_split(res / "data/split.parquet", data.n)
train = np.sort(parts["train"])
t0 = time.perf_counter()
model, losses = train_noisy_classifier(torch.from_numpy(data.images(train)).permute(0, 3, 1, 2),
                                       torch.from_numpy(data.label_indices[train]),
                                       [v.tolist() for v in data.levels_present], sde, width=args.width,
                                       steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                                       ema_decay=args.ema_decay, seed=seed, device=torch.device("cpu"))
print(f"trained {args.steps} steps in {time.perf_counter() - t0:.0f} s; mean loss of the last 100 "
      f"{np.mean(losses[-100:]):.3f}")
idx = seeded_subset(parts["test"], n_images, seed)  # the rule's own choice of held-out images
x0 = to_model_input(data.images(idx))
labels = torch.from_numpy(data.label_indices[idx])
factors = [k for k, n_lv in enumerate(data.n_levels_present) if n_lv > 1]
t0 = time.perf_counter()
mi, se = mi_curves(guidance_gap_fn(model, sde), sde, x0, labels, taus, n_times, torch.Generator().manual_seed(seed),
                   batch_size=256, progress=True, factors=factors, estimator="gap")
print(f"MI in {time.perf_counter() - t0:.0f} s")
# The same classifier's variational bound I(Y_tau; phi) >= H(phi) - E[-log q(phi | Y_tau)] (Barber & Agakov), on the
# same images with fresh noise: where it meets the exact filter but the gap integral does not, q's probabilities are
# right and its input gradients are not. The bound estimates I(Y_tau) itself: the exact filter's I(Y_0) (its value at
# sigma_max, 0.07 nats for the floor hue at the default sigma_max) is subtracted to print it on the tables' scale.
bound = np.zeros((len(taus), len(factors)))
gen = torch.Generator().manual_seed(seed + 1)
with torch.no_grad():
    for j, tau in enumerate(taus):
        sigma = sde.sigma(torch.full((len(x0),), 1 - float(tau)))
        logits = model(x0 + sigma[:, None, None, None] * torch.randn(x0.shape, generator=gen), sigma)
        for i, k in enumerate(factors):
            ce = torch.nn.functional.cross_entropy(logits[k], labels[:, k])
            bound[j, i] = np.log(data.n_levels_present[k]) - float(ce)
at_noise = exact.groupby("factor")["mi_at_noise"].first()
bound -= np.array([at_noise[FACTOR_NAMES[k]] for k in factors])[None]
print("I(Y_tau) - I(Y_0) in nats: guidance gap / the classifier's bound / label-input network / exact filter")
names = [FACTOR_NAMES[k] for k in factors]
print(f"{'tau':>5}  " + "  ".join(f"{f:>21s}" for f in names))
worst_g, worst_b, worst_n = {}, {}, {}
for j, tau in enumerate(taus):
    ref = exact[np.isclose(exact["tau"], tau)].set_index("factor")
    ref = ref["mi"] - ref["mi_at_noise"]
    net = learned[np.isclose(learned["tau"], tau)].set_index("factor")["mi"]
    for i, f in enumerate(names):
        worst_g[f] = max(worst_g.get(f, 0.0), abs(mi[j, i] - ref[f]))
        worst_b[f] = max(worst_b.get(f, 0.0), abs(bound[j, i] - ref[f]))
        worst_n[f] = max(worst_n.get(f, 0.0), abs(net[f] - ref[f]))
    print(f"{tau:5.2f}  " + "  ".join(f"{mi[j, i]:4.2f}/{bound[j, i]:4.2f}/{net[f]:4.2f}/{ref[f]:4.2f}".rjust(21)
                                      for i, f in enumerate(names)))
print("largest |learned - exact filter| over tau, guidance: "
      + ", ".join(f"{f} {w:.3f}" for f, w in worst_g.items()))
print("largest |learned - exact filter| over tau, bound:    "
      + ", ".join(f"{f} {w:.3f}" for f, w in worst_b.items()))
print("largest |learned - exact filter| over tau, network:  "
      + ", ".join(f"{f} {w:.3f}" for f, w in worst_n.items()))
