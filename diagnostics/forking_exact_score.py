"""Forking with the exact score beside the learned one: is a forking gap the network's, or the measurement's?

Runs the forking measurement (forking.fork_labels with the run's tau grid, sampler, steps, corrector flag, seed,
K and attribute classifier, read from its tables; only the number of base paths is this script's) twice, once
with the unconditional network and once with the exact score of the data distribution (every image of the file,
exact_filter.exact_score_fn), and prints per factor and tau the mean normalised fork entropy of both beside the
exact filter's finite-K reference (tables/exact_filter.parquet, mixture "all", entropy_k). Where the exact-score
column meets the reference, sampler discretisation, classifier and estimator are unbiased, and what separates the
network's column from it is the network's score. Run from the repository root after a run's forking:

    .venv/bin/python -m diagnostics.forking_exact_score results/default --n-base 24

The same comparison is the exact-score forking rows of a run's tables/agreement.parquet; measured results:
docs/learned_vs_exact.md.
"""

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from latent_abstractions.data.factors import FACTOR_NAMES
from latent_abstractions.data.shapes3d import load_shapes3d, to_model_input
from latent_abstractions.io import read_parquet_metadata
from latent_abstractions.measure.exact_filter import exact_score_fn
from latent_abstractions.measure.forking import fork_entropies, fork_labels
from latent_abstractions.model.checkpoint import load_classifier, load_score_model
from latent_abstractions.model.classifier import predict
from latent_abstractions.model.score import get_score_fn

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("results", help="a run's results directory (results/<run_name>) after run_forking")
parser.add_argument("--n-base", type=int, default=24, help="base paths (the default run uses 12)")
args = parser.parse_args()

res = Path(args.results)
model = load_score_model(res / "models/uncond/model.pt", res / "models/uncond/hparams.json")
clf = load_classifier(res / "models/classifier/model.pt", res / "models/classifier/hparams.json", torch.device("cpu"))
exact = pd.read_parquet(res / "tables/exact_filter.parquet")
exact = exact[exact["mixture"] == "all"]
run = pd.read_parquet(res / "tables/forking.parquet")
sampler = read_parquet_metadata(res / "tables/forking.parquet")  # how run_forking sampled
taus = np.sort(run["tau"].unique())
data = load_shapes3d(res / "data/shapes3d.h5")
images = to_model_input(data.images(np.arange(data.n)))
n_levels = [len(v) for v in clf.hparams["levels_present"]]
common = dict(
    shape=tuple(images.shape[1:]),
    taus=taus,
    n_base=args.n_base,
    n_forks=int(run["n_forks"].iloc[0]),
    steps=int(sampler["steps"]),
    method=sampler["method"],
    snr=float(sampler["snr"]),
    corrector=bool(sampler["corrector"]),
    seed=int(run["seed"].iloc[0]),
    device=torch.device("cpu"),
)
curves = {}
for name, score in (
    ("network", get_score_fn(model.net, model.sde)),
    ("exact score", exact_score_fn(images, data.label_indices, model.sde)),
):
    with torch.no_grad():
        labels, _ = fork_labels(score, model.sde, lambda x: predict(clf.net, x), **common)
    curves[name] = np.stack([fork_entropies(labels[j], n_levels).mean(0) for j in range(len(taus))])  # (tau, F)
print(f"{'tau':>5}  " + "  ".join(f"{f:>16s}" for f in FACTOR_NAMES) + "   (network / exact score / reference)")
for j, tau in enumerate(taus):
    ref = exact[np.isclose(exact["tau"], tau)].set_index("factor")["entropy_k"]
    cells = [
        f"{curves['network'][j, k]:.2f}/{curves['exact score'][j, k]:.2f}/{ref[f]:.2f}"
        for k, f in enumerate(FACTOR_NAMES)
    ]
    print(f"{tau:5.2f}  " + "  ".join(f"{c:>16s}" for c in cells))
