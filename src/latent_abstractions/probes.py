"""Linear probes: how linearly decodable each factor is from the network's features at each tau.

For each tau, layer and factor: StandardScaler + multinomial logistic regression fitted on train-split
features, accuracy on test-split features with a percentile bootstrap CI over test images, next to chance
level 1 / (levels present). The layer "pixels" (noisy pixels, pooled) is the baseline.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from joblib import Parallel, delayed
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from .factors import FACTOR_NAMES
from .features import load_features
from .io import read_parquet_metadata, write_parquet
from .stats import bootstrap_ci

log = logging.getLogger(__name__)


def probe_accuracy(x_train, y_train, x_test, y_test, C: float, max_iter: int) -> np.ndarray:
    """0/1 correctness of a standardised multinomial logistic regression on each test example."""
    if len(np.unique(y_train)) < 2:  # a constant factor: every prediction is that level
        return (y_test == y_train[0]).astype(np.float64)
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter))
    clf.fit(x_train, y_train)
    return (clf.predict(x_test) == y_test).astype(np.float64)


def _probe_one(path, layer, tau, C, max_iter, n_bootstrap, seed, n_levels):
    with threadpool_limits(1):  # one BLAS thread per job: these fits are small, and 2+ threads per job on a
        return _probe_one_fits(path, layer, tau, C, max_iter, n_bootstrap, seed, n_levels)  # busy CPU run 30x slower


def _probe_one_fits(path, layer, tau, C, max_iter, n_bootstrap, seed, n_levels):
    feats, labs = load_features(path, layer, tau)
    rows = []
    for k, factor in enumerate(FACTOR_NAMES):
        correct = probe_accuracy(feats["train"], labs["train"][:, k], feats["test"], labs["test"][:, k], C, max_iter)
        rng = np.random.default_rng([seed, k, int(round(tau * 1e6))])
        lo, hi = bootstrap_ci(correct, n_bootstrap, rng)
        rows.append({"tau": float(tau), "factor": factor, "layer": layer, "accuracy": float(correct.mean()),
                     "ci_low": lo, "ci_high": hi, "chance": 1.0 / n_levels[k], "n_levels": int(n_levels[k]),
                     "n_train": len(feats["train"]), "n_test": len(feats["test"])})
    return rows


def fit_linear_probes(features_path: str, out: str, *, C: float, max_iter: int, n_bootstrap: int, seed: int,
                      n_jobs: int = 1) -> pd.DataFrame:
    """The ``fit_linear_probes`` rule: one row per tau x layer x factor (schema in docs/architecture.md)."""
    meta = read_parquet_metadata(features_path)
    table = pq.read_table(features_path, columns=["tau", "layer"])
    taus = np.unique(table["tau"].to_numpy())
    layers = sorted(set(table["layer"].to_pylist()))
    jobs = [(layer, tau) for layer in layers for tau in taus]
    results = Parallel(n_jobs=n_jobs)(
        delayed(_probe_one)(features_path, layer, tau, C, max_iter, n_bootstrap, seed, meta["n_levels"])
        for layer, tau in jobs)
    df = pd.DataFrame([r for rows in results for r in rows])
    df["seed"] = np.int64(seed)
    df["checkpoint"] = meta["checkpoint"]
    df = df.sort_values(["layer", "factor", "tau"], kind="stable").reset_index(drop=True)
    write_parquet(df, out, {"C": C, "max_iter": max_iter, "n_bootstrap": n_bootstrap,
                            "time_convention": "tau generative: 0 = noise, 1 = data"})
    best = df[df["layer"] != "pixels"].groupby("factor")["accuracy"].max()
    log.info("best probe accuracy per factor: %s", best.round(3).to_dict())
    return df
