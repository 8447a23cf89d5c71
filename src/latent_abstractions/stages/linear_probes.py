"""The linear-probe stage (analysis environment: scikit-learn, no torch)."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pyarrow.compute as pc
import pyarrow.parquet as pq
from joblib import Parallel, delayed
from threadpoolctl import threadpool_limits

from ..data.factors import FACTOR_NAMES
from ..io import read_parquet_metadata
from ..measure.probes import probe_rows
from ..rng import numpy_rng
from .feature_table import features_matrix, read_cell
from .tables import finish_table

log = logging.getLogger(__name__)


def load_features(path: str, layer: str, tau: float) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(features by split, labels (n, 6) by split) of one layer at one tau, from the features table.

    Decodes only the row groups that hold the cell (:func:`feature_table.read_cell`), never the whole table.
    """
    table = read_cell(path, layer, tau)
    feats, labs = {}, {}
    for s in ("train", "test"):
        sub = table.filter(pc.equal(table["split"], s))
        feats[s] = features_matrix(sub)
        labs[s] = np.stack([sub[f].to_numpy() for f in FACTOR_NAMES], axis=1)
    return feats, labs


def _probe_cell(path, layer, tau, C, max_iter, n_bootstrap, seed, n_levels):
    """Rows of one (layer, tau): each worker reads its own slice of the table (no large arrays are pickled)."""
    feats, labs = load_features(path, layer, tau)
    rngs = [numpy_rng(seed, k, int(round(tau * 1e6))) for k in range(len(FACTOR_NAMES))]
    # one BLAS thread per worker: these fits are small, and 2+ threads per fit on a busy CPU ran 30x slower
    with threadpool_limits(1):
        return probe_rows(
            feats,
            labs,
            tau=tau,
            layer=layer,
            C=C,
            max_iter=max_iter,
            n_bootstrap=n_bootstrap,
            rngs=rngs,
            n_levels=n_levels,
        )


def fit_linear_probes(
    features: str, out: str, *, C: float, max_iter: int, n_bootstrap: int, seed: int, n_jobs: int = 1
) -> pd.DataFrame:
    """The ``fit_linear_probes`` rule: one row per tau x layer x factor (schema in docs/architecture.md)."""
    meta = read_parquet_metadata(features)
    table = pq.read_table(features, columns=["tau", "layer"])
    taus = np.unique(table["tau"].to_numpy())
    layers = sorted(set(table["layer"].to_pylist()))
    results = Parallel(n_jobs=n_jobs)(
        delayed(_probe_cell)(features, layer, tau, C, max_iter, n_bootstrap, seed, meta["n_levels"])
        for layer in layers
        for tau in taus
    )
    df = finish_table(
        pd.DataFrame([r for rows in results for r in rows]),
        out,
        seed=seed,
        checkpoint=meta["checkpoint"],
        sort_by=["layer", "factor", "tau"],
        metadata={"C": C, "max_iter": max_iter, "n_bootstrap": n_bootstrap},
    )
    best = df[df["layer"] != "pixels"].groupby("factor")["accuracy"].max()
    log.info("best probe accuracy per factor: %s", best.round(3).to_dict())
    return df
