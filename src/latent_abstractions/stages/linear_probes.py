"""The linear-probe stage (analysis environment: scikit-learn, no torch)."""

from __future__ import annotations

import logging
from typing import Sequence

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
from ..taus import shard_range
from .feature_table import features_matrix, read_cell
from .shards import load_parts, save_part
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
    features: str,
    out: str,
    *,
    C: float,
    max_iter: int,
    n_bootstrap: int,
    seed: int,
    n_jobs: int = 1,
    shard: Sequence[int] | None = None,
) -> pd.DataFrame | None:
    """The ``fit_linear_probes`` rule: one row per tau x layer x factor (schema in docs/architecture.md).

    ``shard``: (index, count) of a tau shard: only the cells of this shard's taus are fitted (the table's taus split
    as :func:`taus.shard_range` splits the grid), and ``out`` is the part (:mod:`stages.shards`) with their rows,
    for :func:`gather_linear_probes`; None: ``out`` is the table.
    """
    meta = read_parquet_metadata(features)
    table = pq.read_table(features, columns=["tau", "layer"])
    taus = np.unique(table["tau"].to_numpy())
    if shard is not None:
        taus = taus[list(shard_range(len(taus), shard[1], shard[0]))]
    layers = sorted(set(table["layer"].to_pylist()))
    results = Parallel(n_jobs=n_jobs)(
        delayed(_probe_cell)(features, layer, tau, C, max_iter, n_bootstrap, seed, meta["n_levels"])
        for layer in layers
        for tau in taus
    )
    rows = [r for rows in results for r in rows]
    header = {"C": C, "max_iter": max_iter, "n_bootstrap": n_bootstrap, "seed": seed, "checkpoint": meta["checkpoint"]}
    if shard is not None:
        columns = list(rows[0]) if rows else []
        arrays = {f"column_{i}": np.array([r[c] for r in rows]) for i, c in enumerate(columns)}
        save_part(out, arrays, {**header, "columns": columns, "shard": [int(i) for i in shard]})
        log.info("probes shard %d of %d: taus %s", shard[0], shard[1], taus.tolist())
        return None
    return write_probes_table(pd.DataFrame(rows), header, out)


def gather_linear_probes(parts: Sequence[str], out: str) -> pd.DataFrame:
    """The ``gather_linear_probes`` rule: the probes table of the tau shards' parts (in shard order)."""
    loaded = load_parts(parts)
    columns = loaded[0].header["columns"]
    rows = {c: [v for p in loaded for v in p.arrays[f"column_{i}"].tolist()] for i, c in enumerate(columns)}
    return write_probes_table(pd.DataFrame(rows), loaded[0].header, out)


def write_probes_table(rows: pd.DataFrame, header: dict, out: str) -> pd.DataFrame:
    """The probes table from its rows (in any order: sorted here) and the run's settings and provenance."""
    df = finish_table(
        rows,
        out,
        seed=header["seed"],
        checkpoint=header["checkpoint"],
        sort_by=["layer", "factor", "tau"],
        metadata={"C": header["C"], "max_iter": header["max_iter"], "n_bootstrap": header["n_bootstrap"]},
    )
    best = df[df["layer"] != "pixels"].groupby("factor")["accuracy"].max()
    log.info("best probe accuracy per factor: %s", best.round(3).to_dict())
    return df
