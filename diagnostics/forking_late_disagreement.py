"""Why do the network's forks still disagree late on the path? Same images with flipping labels, or different images?

Reruns a run's forking measurement exactly (forking.fork_labels with the run's tau grid, sampler, steps, corrector
flag, seed, K, base paths and attribute classifier, read from its tables; the entropies are checked equal to
tables/forking.parquet) and keeps every fork's final image. For each tau >= --min-tau and factor it counts the base
paths whose K forks the classifier labels differently, and for those bases reports how far apart their forks'
images are (median over bases of the mean pairwise RMS pixel distance, 0-1 scale), the classifier's mean top
probability on those forks, whether labelling by the nearest dataset image (the exact filter's label of a grid
image) splits them as well, and the forks' median distance to that nearest image (how far off the grid they are).

A second table gives the whole curve with both labellers against the exact filter's K-fork reference and the 95%
range of the measurement on the exact law (tables/exact_filter.parquet, entropy_k_low .. entropy_k_high). Run from
the repository root after a run's forking and exact filter:

    .venv/bin/python -m diagnostics.forking_late_disagreement results/default [--min-tau 0.5]

Measured results: docs/learned_vs_exact.md.
"""

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from latent_abstractions.data.factors import FACTOR_NAMES
from latent_abstractions.data.shapes3d import load_shapes3d, to_model_input
from latent_abstractions.io import read_parquet_metadata
from latent_abstractions.measure.forking import fork_entropies, fork_labels
from latent_abstractions.model.checkpoint import load_classifier, load_score_model
from latent_abstractions.model.score import get_score_fn

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("results", help="a run's results directory (results/<run_name>) after run_forking")
parser.add_argument("--min-tau", type=float, default=0.5, help="report taus from here on")
args = parser.parse_args()
torch.set_num_threads(1)

res = Path(args.results)
model = load_score_model(res / "models/uncond/model.pt", res / "models/uncond/hparams.json")
clf = load_classifier(res / "models/classifier/model.pt", res / "models/classifier/hparams.json", torch.device("cpu"))
run = pd.read_parquet(res / "tables/forking.parquet")
sampler = read_parquet_metadata(res / "tables/forking.parquet")
taus = np.sort(run["tau"].unique())
n_base, k = int(run["n_base"].iloc[0]), int(run["n_forks"].iloc[0])
data = load_shapes3d(res / "data/shapes3d.h5")
grid_images = to_model_input(data.images(np.arange(data.n))).flatten(1).double()
grid_norm = grid_images.pow(2).sum(1)
n_levels = [len(v) for v in clf.hparams["levels_present"]]
res_px = int(model.hparams["net"]["img_resolution"])

kept = []  # per tau: (final images (n_base * K, C, H, W), top probabilities (n_base * K, F))


@torch.no_grad()
def classify(x: torch.Tensor) -> torch.Tensor:
    logits = clf.net(x.float())
    probs = [lg.softmax(1) for lg in logits]
    kept.append((x.clone(), torch.stack([p.max(1).values for p in probs], 1)))
    return torch.stack([lg.argmax(1) for lg in logits], 1)


with torch.no_grad():
    labels, _ = fork_labels(
        get_score_fn(model.net, model.sde),
        model.sde,
        classify,
        shape=(3, res_px, res_px),
        taus=taus,
        n_base=n_base,
        n_forks=k,
        steps=int(sampler["steps"]),
        method=sampler["method"],
        snr=float(sampler["snr"]),
        corrector=bool(sampler["corrector"]),
        seed=int(run["seed"].iloc[0]),
        device=torch.device("cpu"),
    )
table = run.set_index(["tau", "factor"])["entropy"]
again = np.stack([fork_entropies(labels[j], n_levels).mean(0) for j in range(len(taus))])
expected = np.array([[table[(t, f)] for f in FACTOR_NAMES] for t in taus])
assert np.allclose(again, expected, atol=1e-9), "the rerun does not reproduce tables/forking.parquet"
print(f"rerun of {res / 'tables/forking.parquet'}: {n_base} bases x K = {k} forks, entropies reproduced exactly")


def nearest_grid_image(images: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """RMS distance (0-1 scale) from each image to its nearest grid image, and that image's level indices."""
    flat = images.flatten(1).double()
    d2 = (flat.pow(2).sum(1, keepdim=True) - 2 * flat @ grid_images.T + grid_norm[None]).clamp_min(0)
    dist, idx = d2.min(1)
    return dist.div(flat.shape[1]).sqrt().numpy(), data.label_indices[idx.numpy()]


nearest = [nearest_grid_image(images) for images, _ in kept]  # per tau, computed once for both tables
print(
    f"{'tau':>5} {'factor':<12} {'split':>5} {'nn split':>8} {'fork RMS split':>14} {'fork RMS all':>12} "
    f"{'top p split':>11} {'nn dist':>7}"
)
for j, tau in enumerate(taus):
    if tau < args.min_tau:
        continue
    images, top = kept[j]
    nn_dist, nn_labels = nearest[j][0], nearest[j][1].reshape(n_base, k, -1)
    per_base = images.reshape(n_base, k, -1).double()
    pair = torch.cdist(per_base, per_base).div(per_base.shape[-1] ** 0.5)  # RMS distances (n_base, K, K)
    mean_pair = (pair.sum((1, 2)) / (k * (k - 1))).numpy()
    top = top.reshape(n_base, k, -1).numpy()
    for f, factor in enumerate(FACTOR_NAMES):
        split = np.array([len(set(labels[j, b, :, f])) > 1 for b in range(n_base)])
        nn_split = np.array([len(set(nn_labels[b, :, f])) > 1 for b in range(n_base)])
        if not split.any():
            continue
        print(
            f"{tau:5.2f} {factor:<12} {split.sum():5d} {int((nn_split & split).sum()):8d} "
            f"{np.median(mean_pair[split]):14.3f} {np.median(mean_pair):12.3f} {top[split, :, f].mean():11.2f} "
            f"{np.median(nn_dist.reshape(n_base, k)[split]):7.3f}"
        )

# the whole curve with each labeller, against the exact filter's K-fork reference and its 95% range
exact = pd.read_parquet(res / "tables/exact_filter.parquet")
exact = exact[exact["mixture"] == "all"].set_index(["factor", "tau"])
nn_curve = np.stack([fork_entropies(lab.reshape(n_base, k, -1), n_levels).mean(0) for _, lab in nearest])
print("\nfork entropy, classifier / nearest image / exact reference [its 95% range]; * = outside the range")
inside = {"classifier": np.zeros(len(FACTOR_NAMES), int), "nearest": np.zeros(len(FACTOR_NAMES), int)}
for j, tau in enumerate(taus):
    cells = []
    for f, factor in enumerate(FACTOR_NAMES):
        e = exact.loc[(factor, min(exact.loc[factor].index, key=lambda t: abs(t - tau)))]
        marks = []
        for name, v in (("classifier", again[j, f]), ("nearest", nn_curve[j, f])):
            ok = e["entropy_k_low"] - 1e-9 <= v <= e["entropy_k_high"] + 1e-9
            inside[name][f] += ok
            marks.append(f"{v:.2f}{' ' if ok else '*'}")
        cells.append(
            f"{marks[0]}/{marks[1]}/{e['entropy_k']:.2f} [{e['entropy_k_low']:.2f}, {e['entropy_k_high']:.2f}]"
        )
    print(f"{tau:5.2f}  " + "  ".join(cells))
first = np.array(
    [exact.loc[(f, min(exact.loc[f].index, key=lambda t: abs(t - taus[0]))), "entropy_k"] for f in FACTOR_NAMES]
)
for (name, counts), curve in zip(inside.items(), (again, nn_curve)):
    print(
        f"taus inside the range, {name} labels: "
        + ", ".join(f"{f} {c}" for f, c in zip(FACTOR_NAMES, counts))
        + "; at the first tau, learned - reference: "
        + ", ".join(f"{v:+.3f}" for v in curve[0] - first)
    )
