"""MI from a classifier-guided conditional score: a noise-conditional classifier's gap against the exact filter.

Trains noisy_classifier.NoisyClassifier on a run's training split, with the run's VE SDE (from its unconditional
model), then runs the estimate_mutual_information rule's estimator (mutual_info.mi_curves, "gap" integrand: the
run's held-out images, seed, tau grid and strata, read from tables/mutual_info.parquet) with the score gap of the
classifier-guided model, grad_y log q(phi_k | y, sigma), and prints I(Y_tau) - I(Y_0) beside the exact filter's
(tables/exact_filter.parquet, mixture "all") and beside the run's own learned curve (the label-input network),
together with the classifier's variational bound log L - E[-log q(phi_k | Y_tau)]; then, on the same draws, how
well the classifier's gradient field g = grad_y log q lines up with the exact gap g* over the whole path
(int ||g||^2, int ||g*||^2, int ||g - g*||^2, int g . g* and its cosine). A gap curve near the exact one is no
evidence, by itself, that the conditional score is right; the gradient table says whether it is. Run from the
repository root after a run's MI and exact filter:

    .venv/bin/python -m diagnostics.mi_classifier_guidance results/default [--steps 1500 --threads 1]

Measured results: docs/learned_vs_exact.md.
"""

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from diagnostics.noisy_classifier import guidance_gap_fn, train_noisy_classifier
from latent_abstractions.data.factors import FACTOR_NAMES
from latent_abstractions.data.shapes3d import load_shapes3d, load_split, to_model_input
from latent_abstractions.measure.exact_filter import exact_score_fn
from latent_abstractions.measure.mutual_info import mi_curves
from latent_abstractions.model.checkpoint import read_hparams
from latent_abstractions.model.sde import VESDE
from latent_abstractions.rng import seeded_subset

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
model, losses = train_noisy_classifier(
    torch.from_numpy(data.images(train)).permute(0, 3, 1, 2),
    torch.from_numpy(data.label_indices[train]),
    [v.tolist() for v in data.levels_present],
    sde,
    width=args.width,
    steps=args.steps,
    batch_size=args.batch_size,
    lr=args.lr,
    ema_decay=args.ema_decay,
    seed=seed,
    device=torch.device("cpu"),
)
print(
    f"trained {args.steps} steps in {time.perf_counter() - t0:.0f} s; mean loss of the last 100 "
    f"{np.mean(losses[-100:]):.3f}"
)
idx = seeded_subset(parts["test"], n_images, seed)  # the rule's own choice of held-out images
x0 = to_model_input(data.images(idx))
labels = torch.from_numpy(data.label_indices[idx])
factors = [k for k, n_lv in enumerate(data.n_levels_present) if n_lv > 1]
t0 = time.perf_counter()
mi, se = mi_curves(
    guidance_gap_fn(model, sde),
    sde,
    x0,
    labels,
    taus,
    n_times,
    torch.Generator().manual_seed(seed),
    batch_size=256,
    progress=True,
    factors=factors,
    estimator="gap",
)
print(f"MI in {time.perf_counter() - t0:.0f} s")
# Where the gap's agreement comes from: on the same draws (same seed), the integrals of ||g*||^2 (the exact score gap,
# from every image of the file) and of ||g - g*||^2 (g = grad log q) give the integral of g . g* =
# (||g||^2 + ||g*||^2 - ||g - g*||^2) / 2 sample by sample, and so the alignment of the two gradient fields.
exact_score = exact_score_fn(to_model_input(data.images(np.arange(data.n))), data.label_indices, sde)
gap_fn, n_rows = guidance_gap_fn(model, sde), len(factors) + 1


def exact_gap(x, t, lab):  # s*(y | phi_k) - s*(y) on conditional rows, 0 on the unconditional first block
    s = exact_score(x, t, lab)  # mi_curves stacks n_rows copies of the batch, the unconditional one first
    return s - s[: x.shape[0] // n_rows].repeat(n_rows, 1, 1, 1)


def gap_error(x, t, lab):
    return gap_fn(x, t, lab) - exact_gap(x, t, lab)


t0 = time.perf_counter()
mi_star, err = (
    mi_curves(
        fn,
        sde,
        x0,
        labels,
        taus,
        n_times,
        torch.Generator().manual_seed(seed),
        batch_size=256,
        factors=factors,
        estimator="gap",
    )[0]
    for fn in (exact_gap, gap_error)
)
print(f"exact gap and gap error in {time.perf_counter() - t0:.0f} s")
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
    print(
        f"{tau:5.2f}  "
        + "  ".join(
            f"{mi[j, i]:4.2f}/{bound[j, i]:4.2f}/{net[f]:4.2f}/{ref[f]:4.2f}".rjust(21) for i, f in enumerate(names)
        )
    )
print(
    "at tau = 1, nats: int ||g||^2 (the gap) / int ||g*||^2 (exact score gap) / int ||g - g*||^2 (error) / "
    "int g . g* (cosine)"
)
for i, f in enumerate(names):
    dot = (mi[-1, i] + mi_star[-1, i] - err[-1, i]) / 2
    print(
        f"  {f:12s} {mi[-1, i]:5.2f} / {mi_star[-1, i]:5.2f} / {err[-1, i]:5.2f} / {dot:5.2f} "
        f"({dot / np.sqrt(mi[-1, i] * mi_star[-1, i]):.2f})"
    )
print("largest |learned - exact filter| over tau, guidance: " + ", ".join(f"{f} {w:.3f}" for f, w in worst_g.items()))
print("largest |learned - exact filter| over tau, bound:    " + ", ".join(f"{f} {w:.3f}" for f, w in worst_b.items()))
print("largest |learned - exact filter| over tau, network:  " + ", ".join(f"{f} {w:.3f}" for f, w in worst_n.items()))
