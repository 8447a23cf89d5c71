"""The MI estimator with the exact score beside the network's: is an MI gap the network's, or the estimator's?

Runs the estimate_mutual_information rule's estimator (mutual_info.mi_curves: the same held-out images, seed,
tau grid, quadrature strata and integrand as the run's tables/mutual_info.parquet, read from it) once with the
conditional network and once with the exact conditional and unconditional scores of the data distribution (every
image of the file, exact_filter.exact_score_fn), and prints per factor and tau I(Y_tau) - I(Y_0) of both beside
the exact filter's own value (tables/exact_filter.parquet, mixture "all": mi - mi_at_noise, computed from the
posterior over images, not from scores). Where the exact-score column meets the filter's, the Monte Carlo
quadrature is sound at the run's n_images and n_times, and what separates the network's column from it is the
network's score. The last line counts the factors whose curve meets tables/agreement.parquet's MI criterion at
every tau. Run from the repository root after a run's MI and exact filter:

    .venv/bin/python -m diagnostics.mi_exact_score results/default [--n-times 24 --seed 1 --exact-only]

The same comparison is the exact-score MI rows of a run's tables/agreement.parquet; measured results:
docs/learned_vs_exact.md.
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
