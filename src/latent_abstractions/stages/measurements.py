"""Measurement stages on the shared tau grid (generative time: 0 = noise, 1 = data): features for the
linear probes, mutual information, forking. The probes themselves are in ``stages.probes`` (no torch)."""

from __future__ import annotations

import logging
import math
from typing import Sequence

import h5py
import numpy as np
import pandas as pd
import pyarrow as pa
import torch
from tqdm import tqdm

from ..data.factors import FACTOR_NAMES
from ..data.shapes3d import load_shapes3d, load_split, to_model_input, to_uint8
from ..io import atomic_path, write_parquet
from ..measure.features import choose_images, pooled_features
from ..measure.forking import fork_entropies, fork_labels
from ..measure.mutual_info import ESTIMATORS, mi_curves
from ..measure.stats import bootstrap_ci
from ..model.checkpoint import load_classifier, load_score_model
from ..model.classifier import predict
from ..model.score import get_score_fn
from ..plan import stage_batch
from ..rng import derive_seed, numpy_rng, seeded_subset
from .tables import TIME_CONVENTION, finish_table

log = logging.getLogger(__name__)


def extract_features(
    model_path: str,
    hparams_path: str,
    h5: str,
    split: str,
    out: str,
    *,
    taus: Sequence[float],
    layers: list[str],
    pooling: str,
    grid: int,
    n_train: int,
    n_test: int,
    batch_size: int,
    seed: int,
    device: torch.device,
    device_memory_gb: float | str = "auto",
) -> None:
    """The ``extract_features`` rule: one row per image x tau x layer (schema in docs/architecture.md).

    ``batch_size``: images per network call, at most (fewer where ``device_memory_gb`` needs it)."""
    taus = np.asarray(taus)
    model = load_score_model(model_path, hparams_path, device)
    net, sde = model.net, model.sde
    batch_size = stage_batch(
        batch_size,
        key="features.batch_size",
        rule="extract_features",
        net_hparams=model.hparams["net"],
        use="features",
        layers=layers,
        device_memory_gb=device_memory_gb,
        device=device,
    )
    data = load_shapes3d(h5)
    chosen = choose_images(load_split(split, data.n), n_train, n_test, seed)
    idx = np.concatenate([chosen["train"], chosen["test"]])
    split_names = np.array(["train"] * len(chosen["train"]) + ["test"] * len(chosen["test"]))
    x0 = to_model_input(data.images(idx))
    labels = data.label_indices[idx]
    cols: dict[str, list] = {"image_index": [], "split": [], "tau": [], "layer": [], "features": []}
    cols.update({f: [] for f in FACTOR_NAMES})
    dims: dict[str, int] = {}
    for j, tau in enumerate(tqdm(taus, desc="features", mininterval=2)):
        # the same noise whatever the batch size
        gen = torch.Generator().manual_seed(derive_seed(seed, "feature_noise", j))
        z = torch.randn(x0.shape, generator=gen)
        sigma = float(sde.sigma(float(sde.tau_to_t(tau))))
        feats = pooled_features(
            net,
            x0 + sigma * z,
            sigma,
            layers,
            pooling=pooling,
            grid=grid,
            pix_grid=min(8, data.resolution),
            batch_size=batch_size,
            device=device,
        )
        for name, mat in feats.items():
            dims[name] = mat.shape[1]
            cols["features"].append(mat)
            cols["image_index"].append(idx)
            cols["split"].append(split_names)
            cols["tau"].append(np.full(len(idx), tau))
            cols["layer"].append(np.full(len(idx), name))
            for k, f in enumerate(FACTOR_NAMES):
                cols[f].append(labels[:, k])
    # list<float32> column; all rows of one layer have that layer's width (``dims`` in the metadata).
    arrays = {
        "image_index": pa.array(np.concatenate(cols["image_index"]).astype(np.int64)),
        "split": pa.array(np.concatenate(cols["split"])),
        "tau": pa.array(np.concatenate(cols["tau"]).astype(np.float64)),
        "layer": pa.array(np.concatenate(cols["layer"])),
        **{f: pa.array(np.concatenate(cols[f]).astype(np.int64)) for f in FACTOR_NAMES},
        "features": pa.array([row for mat in cols["features"] for row in mat], type=pa.list_(pa.float32())),
    }
    meta = {
        "checkpoint": model.sha256,
        "seed": seed,
        "layers": layers,
        "pooling": pooling,
        "grid": grid,
        "dims": dims,
        "n_levels": list(data.n_levels_present),
        "time_convention": f"{TIME_CONVENTION}; x_tau = x0 + sigma(1 - tau) z",
    }
    write_parquet(pa.table(arrays), out, meta)
    log.info("features: %d images x %d taus x %d layers, dims %s", len(idx), len(taus), len(dims), dims)


def estimate_mutual_information(
    model_path: str,
    hparams_path: str,
    h5: str,
    split: str,
    out: str,
    *,
    taus: Sequence[float],
    n_images: int,
    n_times: int,
    batch_size: int,
    seed: int,
    device: torch.device,
    estimator: str = "gap",
    device_memory_gb: float | str = "auto",
) -> pd.DataFrame:
    """The ``estimate_mutual_information`` rule, with the conditional network on held-out images.

    ``estimator``: the integrand, "gap" or "dsm_difference" (see :mod:`latent_abstractions.mutual_info`); either
    way the table holds I(Y_tau) - I(Y_0), the information gained since tau = 0. ``batch_size``: rows per
    network call, at most (fewer where ``device_memory_gb`` needs it).
    """
    taus = np.asarray(taus)
    model = load_score_model(model_path, hparams_path, device)
    if model.hparams["net"].get("n_levels") is None:
        raise ValueError(f"{hparams_path}: mutual information needs the conditional model (n_levels is null)")
    data = load_shapes3d(h5)
    test = load_split(split, data.n)["test"]
    idx = seeded_subset(test, n_images, seed)
    x0 = to_model_input(data.images(idx)).to(device)
    labels = torch.from_numpy(data.label_indices[idx])
    gen = torch.Generator().manual_seed(seed)
    # I(Y; phi) = 0 exactly for a factor with one level in the data (not measurable): not estimated
    measurable = [k for k, n_lv in enumerate(data.n_levels_present) if n_lv > 1]
    batch_size = stage_batch(
        batch_size,
        key="mutual_info.batch_size",
        rule="estimate_mutual_information",
        net_hparams=model.hparams["net"],
        device_memory_gb=device_memory_gb,
        device=device,
        fixed_extra=x0.numel() * x0.element_size(),
        min_rows=len(measurable) + 1,
    )
    mi, se = np.zeros((2, len(taus), len(FACTOR_NAMES)))
    mi[:, measurable], se[:, measurable] = mi_curves(
        get_score_fn(model.net, model.sde),
        model.sde,
        x0,
        labels,
        taus,
        n_times,
        gen,
        batch_size,
        progress=True,
        factors=measurable,
        estimator=estimator,
    )
    rows = []
    for j, tau in enumerate(taus):
        for k, factor in enumerate(FACTOR_NAMES):
            n_lv = int(data.n_levels_present[k])
            rows.append(
                {
                    "tau": float(tau),
                    "factor": factor,
                    "mi": float(mi[j, k]),
                    "se": float(se[j, k]),
                    "ceiling": math.log(n_lv),
                    "n_levels": n_lv,
                    "n_images": len(idx),
                    "n_times": int(n_times),
                }
            )
    df = finish_table(
        pd.DataFrame(rows),
        out,
        seed=seed,
        checkpoint=model.sha256,
        sort_by=["factor", "tau"],
        metadata={"estimator": f"{estimator}: {ESTIMATORS[estimator]} (stratified MC); I(Y_tau) - I(Y_0)"},
    )
    over = df[df["mi"] > df["ceiling"] + 3 * df["se"]]
    for factor, sub in over.groupby("factor"):  # an exact estimator cannot exceed log(levels)
        log.warning(
            "MI of %s exceeds its ceiling %.3f nats by more than 3 se from tau = %.3f (max %.3f): the "
            "conditional network's label branches are undertrained",
            factor,
            sub["ceiling"].iloc[0],
            sub["tau"].min(),
            sub["mi"].max(),
        )
    log.info(
        "MI at tau=1 per factor (nats): %s",
        df[df["tau"] == df["tau"].max()].set_index("factor")["mi"].round(3).to_dict(),
    )
    return df


def strip_indices(taus: np.ndarray, strip_taus: Sequence[float], tol: float = 1e-9) -> list[int]:
    """Sorted grid indices of the taus nearest to ``strip_taus``; a value off the grid is logged with its snap."""
    out = []
    for s in strip_taus:
        j = int(np.argmin(np.abs(taus - s)))
        if abs(taus[j] - s) > tol:
            log.warning(
                "forking.strip_taus: %g is not on the tau grid; the strip is drawn at the nearest "
                "grid point tau = %.6g",
                s,
                taus[j],
            )
        out.append(j)
    return sorted(set(out))


def run_forking(
    model_path: str,
    hparams_path: str,
    classifier_path: str,
    classifier_hparams_path: str,
    table_out: str,
    strips_out: str,
    *,
    taus: Sequence[float],
    n_base: int,
    n_forks: int,
    steps: int,
    method: str,
    snr: float,
    strip_taus: Sequence[float],
    seed: int,
    device: torch.device,
    corrector: bool = False,
    n_bootstrap: int = 1000,
    batch_size: int = 512,
    device_memory_gb: float | str = "auto",
) -> pd.DataFrame:
    """The ``run_forking`` rule: entropy table (one row per tau x factor) and fork strips of base 0.

    ``corrector``: run the Langevin corrector on base paths and forks (method "pc"); False (the default) forks
    with the predictor alone, whose end points follow the exact filter's label law (see forking.py).
    ``batch_size``: forks (and base paths) per network call, at most (fewer where ``device_memory_gb`` needs it).
    """
    taus = np.asarray(taus)
    model = load_score_model(model_path, hparams_path, device)
    clf = load_classifier(classifier_path, classifier_hparams_path, device)
    n_levels = [len(v) for v in clf.hparams["levels_present"]]
    res = model.hparams["net"]["img_resolution"]
    strip_idx = strip_indices(taus, strip_taus)
    batch_size = stage_batch(
        batch_size,
        key="forking.batch_size",
        rule="run_forking",
        net_hparams=model.hparams["net"],
        device_memory_gb=device_memory_gb,
        device=device,
    )
    labels, kept = fork_labels(
        get_score_fn(model.net, model.sde),
        model.sde,
        lambda x: predict(clf.net, x),
        shape=(3, res, res),
        taus=taus,
        n_base=n_base,
        n_forks=n_forks,
        steps=steps,
        method=method,
        snr=snr,
        seed=seed,
        device=device,
        keep_images=set(strip_idx),
        corrector=corrector,
        batch_size=batch_size,
    )
    strips = (
        np.stack([to_uint8(kept[j]) for j in strip_idx])
        if strip_idx
        else np.zeros((0, n_forks, res, res, 3), dtype=np.uint8)
    )
    rows = []
    for j, tau in enumerate(taus):
        ent = fork_entropies(labels[j], n_levels)  # (n_base, 6)
        rng = numpy_rng(seed, j)
        for k, factor in enumerate(FACTOR_NAMES):
            lo, hi = bootstrap_ci(ent[:, k], n_bootstrap, rng)
            rows.append(
                {
                    "tau": float(tau),
                    "factor": factor,
                    "entropy": float(ent[:, k].mean()),
                    "ci_low": lo,
                    "ci_high": hi,
                    "n_levels": int(n_levels[k]),
                    "n_base": n_base,
                    "n_forks": n_forks,
                }
            )
    df = finish_table(
        pd.DataFrame(rows),
        table_out,
        seed=seed,
        checkpoint=model.sha256,
        sort_by=["factor", "tau"],
        metadata={
            "steps": steps,
            "method": method,
            "snr": snr,
            "corrector": corrector,
            "entropy_estimator": f"plug-in entropy of K = {n_forks} fork labels",
        },
    )
    with atomic_path(strips_out) as tmp, h5py.File(tmp, "w") as f:
        f["images"] = strips
        f["taus"] = np.asarray([taus[i] for i in strip_idx], dtype=np.float64)
        f.attrs["description"] = "forks of base trajectory 0: images[i, k] = fork k from the state at taus[i]"
    log.info(
        "fork entropy at the first and last tau: %s",
        df.groupby("factor")["entropy"].agg(["first", "last"]).round(3).to_dict("index"),
    )
    return df
