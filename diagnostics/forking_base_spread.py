"""How many base paths does the forking measurement need to certify a perfect model at tau = 0 (noise)?

At tau = 0 a fork starts from the prior, so with the exact score every fork's label is an independent draw from
the data's level marginal (uniform on the complete grid), and the learned curve's value there is the mean over
n_base paths of the normalised plug-in entropy of K labels. The forking criterion asks it to lie within 0.1 of the
exact filter's finite-K reference (the expectation of that same estimator). This script simulates the measurement
for a perfect model, with the run's levels and K (read from its tables/forking.parquet), and prints per factor
the spread of the mean and the probability of missing by more than 0.1, for several n_base. Run from the
repository root after a run's forking:

    .venv/bin/python -m diagnostics.forking_base_spread results/default [--n-base 6 12 24]

Measured results: docs/learned_vs_exact.md.
"""

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from latent_abstractions.data.factors import FACTOR_NAMES
from latent_abstractions.measure.exact_filter import expected_plugin_entropy
from latent_abstractions.measure.forking import normalised_entropy

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("results", help="a run's results directory (results/<run_name>) after run_forking")
parser.add_argument("--n-base", type=int, nargs="+", default=[6, 12, 24], help="base-path counts to simulate")
parser.add_argument("--runs", type=int, default=20_000, help="simulated measurements per count")
parser.add_argument("--tolerance", type=float, default=0.1, help="the forking criterion's tau = 0 tolerance")
parser.add_argument("--seed", type=int, default=0)
args = parser.parse_args()

table = pd.read_parquet(Path(args.results) / "tables/forking.parquet")
k = int(table["n_forks"].iloc[0])
levels = {f: int(table.loc[table["factor"] == f, "n_levels"].iloc[0]) for f in FACTOR_NAMES}
rng = np.random.default_rng(args.seed)


def normalised_plugin_entropy(labels: np.ndarray, n_levels: int) -> np.ndarray:
    """(..., K) integer labels -> (...) forking.normalised_entropy of each row, the run_forking stage's estimator.

    The entropy depends only on the multiset of a row's labels, so it is computed once per distinct sorted row (a
    few hundred) instead of once per row (millions).
    """
    rows = np.sort(labels.reshape(-1, labels.shape[-1]), axis=1)
    distinct, inverse = np.unique(rows, axis=0, return_inverse=True)
    per_distinct = np.array([normalised_entropy(row, n_levels) for row in distinct])
    return per_distinct[inverse.reshape(-1)].reshape(labels.shape[:-1])


print(f"K = {k} forks; levels {levels}; {args.runs} simulated runs per n_base; tolerance {args.tolerance}")
print(f"{'n_base':>6}  {'factor':<12} {'levels':>6} {'reference':>9} {'sd of mean':>10} {'P(miss)':>8}")
for n_base in args.n_base:
    p_all = 1.0
    for factor in FACTOR_NAMES:
        n_lev = levels[factor]
        ref = float(expected_plugin_entropy(np.full(n_lev, 1.0 / n_lev), k)) / np.log(n_lev)
        labels = rng.integers(0, n_lev, size=(args.runs, n_base, k))
        means = normalised_plugin_entropy(labels, n_lev).mean(axis=1)
        p_miss = float(np.mean(np.abs(means - ref) > args.tolerance))
        p_all *= 1.0 - p_miss  # on the complete grid an image's six factors are independent
        print(f"{n_base:>6}  {factor:<12} {n_lev:>6} {ref:>9.3f} {means.std():>10.3f} {p_miss:>8.3f}")
    print(f"{n_base:>6}  all six within the tolerance: {p_all:.2f}")
