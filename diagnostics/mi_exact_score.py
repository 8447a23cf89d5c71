"""The MI estimator with the exact score beside the network's: is an MI gap the network's, or the estimator's?

Runs the estimate_mutual_information rule's estimator (mutual_info.mi_curves: the same held-out images, seed,
tau grid, quadrature strata and integrand as the run's tables/mutual_info.parquet, read from it) once with the
conditional network and once with the exact conditional and unconditional scores of the data distribution (every
image of the file, exact_filter.exact_score_fn), and prints per factor and tau I(Y_tau) - I(Y_0) of both beside the exact
filter's own value (tables/exact_filter.parquet, mixture "all": mi - mi_at_noise, computed from the posterior
over images, not from scores). Where the exact-score column meets the filter's, the Monte Carlo quadrature is
sound at the run's n_images and n_times, and what separates the network's column from it is the network's score.

    PYTHONPATH=src python3 benchmarks/mi_exact_score.py results/default

Measured on the default 24x24 run (its 96 held-out images, 48 strata, seed 0; 88 s on 2 cores), nats, network /
exact score / exact filter:
     tau  floor hue       wall hue        object hue      scale           shape           orientation
    0.00  0.00/0.00/0.00  0.00/0.00/0.00  0.00/0.00/0.00  0.00/0.00/0.00  0.00/0.00/0.00  0.00/0.00/0.00
    0.09  0.06/0.21/0.20  0.02/0.11/0.10  0.00/0.02/0.02  0.00/0.00/0.00  0.00/0.00/0.00  0.00/0.00/0.00
    0.18  0.39/0.68/0.71  0.14/0.45/0.45  0.01/0.11/0.11  0.00/0.02/0.02  0.01/0.02/0.02  0.00/0.01/0.01
    0.27  0.90/1.18/1.20  0.33/1.01/1.04  0.01/0.42/0.42  0.01/0.14/0.12  0.01/0.15/0.14  0.01/0.08/0.08
    0.36  0.99/1.28/1.31  0.37/1.28/1.32  0.02/0.91/0.96  0.01/0.47/0.48  0.02/0.51/0.51  0.01/0.38/0.35
    0.45  1.01/1.28/1.32  0.39/1.39/1.35  0.03/1.31/1.32  0.02/1.06/1.05  0.03/1.01/1.08  0.02/1.09/0.96
    0.55  1.06/1.28/1.32  0.44/1.39/1.35  0.05/1.44/1.38  0.04/1.26/1.32  0.07/1.22/1.35  0.05/1.46/1.42
    0.64  1.20/1.28/1.32  0.55/1.39/1.35  0.07/1.44/1.38  0.07/1.32/1.38  0.12/1.27/1.39  0.09/1.56/1.57
    0.73  1.37/1.28/1.32  0.63/1.39/1.35  0.11/1.44/1.38  0.08/1.32/1.39  0.17/1.27/1.39  0.14/1.60/1.61
    0.82  1.50/1.28/1.32  0.68/1.39/1.35  0.12/1.44/1.38  0.10/1.32/1.39  0.18/1.27/1.39  0.17/1.60/1.61
    0.91  1.63/1.28/1.32  0.74/1.39/1.35  0.15/1.44/1.38  0.13/1.32/1.39  0.22/1.27/1.39  0.23/1.60/1.61
    1.00  1.83/1.28/1.32  0.83/1.39/1.35  0.20/1.44/1.38  0.19/1.32/1.39  0.29/1.27/1.39  0.29/1.60/1.61
With the exact score the estimator's largest error over tau is 0.04 / 0.04 / 0.06 / 0.07 / 0.13 / 0.13 (floor,
wall, object hue, scale, shape, orientation), within the issue's tolerance max(0.15, 0.1 log L) for every factor.
At 24 strata (the default before) it was 0.09 / 0.06 / 0.07 / 0.20 / 0.29 / 0.11, over the tolerance for scale and
shape, and heavy-tailed (shape -3.1 SE). Other seeds and budgets (largest error over the six
factors, exact score): 96 images x 24 strata 0.29 / 0.23 / 0.25 (seeds 0 / 1 / 2); 96 x 48 0.13 / 0.18 / 0.22;
72 x 48 0.19 / 0.18 / 0.38; 64 x 48 0.28 / 0.16; 384 x 24 (seed 0) 0.14; 96 x 96 (seed 0) 0.13. Strata help more
than images (the variance is in the time draws); 48 strata cost the default run's MI job 71.5 s against ~36 s.
The last line counts the factors whose curve meets tables/agreement.parquet's MI criterion at every tau. With the
exact score at the default budget (96 x 48; run of f119b99, --exact-only, ~50 s per seed), seeds 0-7: 6, 5, 5, 5,
6, 6, 4, 4 of 6 (mean 5.1; the misses are single taus 0.15-0.24 off: scale in seeds 1, 3, 6, 7, floor hue in 2
and 7, object hue in 6): a model with the exact score meets the MI target's ">= 4 of 6" in every seed tried, so
that part of the target is attainable at this budget; the network's 0 of 6 is not the estimator's noise.
The network's errors (0.5-1.5 nats; floor hue rising past the exact curve, the object's factors far below it) are
five to ten times the estimator's: they are the conditional network's (benchmarks/mi_integrand.py places them).
"""

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from latent_abstractions.data.factors import FACTOR_NAMES
from latent_abstractions.data.shapes3d import load_shapes3d, load_split, to_model_input
from latent_abstractions.io import read_parquet_metadata
from latent_abstractions.measure.agreement import within
from latent_abstractions.measure.exact_filter import exact_score_fn
from latent_abstractions.measure.mutual_info import mi_curves
from latent_abstractions.model.checkpoint import load_score_model
from latent_abstractions.model.score import get_score_fn
from latent_abstractions.rng import seeded_subset

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("results", help="a run's results directory (results/<run_name>) after its MI and exact filter")
parser.add_argument("--estimator", default=None, help="the integrand (mutual_info.ESTIMATORS; default: the run's)")
parser.add_argument("--n-images", type=int, default=None, help="held-out images (default: the run's)")
parser.add_argument("--n-times", type=int, default=None, help="quadrature strata (default: the run's)")
parser.add_argument("--seed", type=int, default=None, help="images, times and noise (default: the run's)")
parser.add_argument("--exact-only", action="store_true", help="skip the network (the estimator's own error)")
args = parser.parse_args()

res = Path(args.results)
model = load_score_model(res / "models/cond/model.pt", res / "models/cond/hparams.json")
learned = pd.read_parquet(res / "tables/mutual_info.parquet")
exact = pd.read_parquet(res / "tables/exact_filter.parquet")
exact = exact[exact["mixture"] == "all"]
taus = np.sort(learned["tau"].unique())
seed, n_images, n_times = (int(learned[c].iloc[0]) for c in ("seed", "n_images", "n_times"))
n_images, n_times = args.n_images or n_images, args.n_times or n_times
seed = seed if args.seed is None else args.seed
estimator = args.estimator or read_parquet_metadata(res / "tables/mutual_info.parquet")["estimator"].split(":")[0]
data = load_shapes3d(res / "data/shapes3d.h5")
test = load_split(res / "data/split.parquet", data.n)["test"]
idx = seeded_subset(test, n_images, seed)  # the rule's own choice of held-out images
x0 = to_model_input(data.images(idx))
labels = torch.from_numpy(data.label_indices[idx])
factors = [k for k, n_lv in enumerate(data.n_levels_present) if n_lv > 1]
curves, ses = {}, {}
scores = [
    ("exact score", exact_score_fn(to_model_input(data.images(np.arange(data.n))), data.label_indices, model.sde))
]
if not args.exact_only:
    scores.insert(0, ("network", get_score_fn(model.net, model.sde)))
for name, score in scores:
    with torch.no_grad():
        curves[name], ses[name] = mi_curves(
            score,
            model.sde,
            x0,
            labels,
            taus,
            n_times,
            torch.Generator().manual_seed(seed),
            batch_size=256,
            progress=True,
            factors=factors,
            estimator=estimator,
        )
names = [FACTOR_NAMES[k] for k in factors]
cols = list(curves) + ["exact filter"]
worst = {}
print(
    f"{n_images} images, {n_times} strata, seed {seed}; I(Y_tau) - I(Y_0) in nats, "
    + " / ".join(cols)
    + "; then the exact score's error in units of its standard error"
)
print(f"{'tau':>5}  " + "  ".join(f"{f:>22s}" for f in names))
for j, tau in enumerate(taus):
    ref = exact[np.isclose(exact["tau"], tau)].set_index("factor")
    ref = ref["mi"] - ref["mi_at_noise"]
    cells = []
    for i, f in enumerate(names):
        ex, se = curves["exact score"][j, i], ses["exact score"][j, i]
        z = (ex - ref[f]) / se if se > 0 else 0.0
        worst[f] = max(worst.get(f, 0.0), abs(ex - ref[f]))
        cells.append("/".join(f"{curves[c][j, i]:.2f}" for c in curves) + f"/{ref[f]:.2f} {z:+5.1f}")
    print(f"{tau:5.2f}  " + "  ".join(f"{c:>22s}" for c in cells))
print("largest |exact score - exact filter| over tau: " + ", ".join(f"{f} {w:.3f}" for f, w in worst.items()))
levels = [data.n_levels_present[k] for k in factors]
ref_all = exact.assign(gain=exact["mi"] - exact["mi_at_noise"]).set_index(["factor", "tau"])["gain"]
for name in curves:
    ok = []
    for i, f in enumerate(names):
        m = pd.DataFrame({"mi": curves[name][:, i], "se": ses[name][:, i], "n_levels": levels[i]})
        ref = np.array([ref_all[(f, min(ref_all.loc[f].index, key=lambda t: abs(t - tau)))] for tau in taus])
        if within("mutual_info", m, ref, ref - m["mi"].to_numpy()).all():
            ok.append(f)
    print(
        f"{name}: agrees with the exact filter at every tau (tables/agreement.parquet's criterion) for "
        f"{len(ok)} of {len(names)} factors: {', '.join(ok) or 'none'}"
    )
