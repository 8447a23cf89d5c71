"""Sampling stage: samples of a score model, their grid, their classifier scores."""

from __future__ import annotations

import logging

import h5py
import numpy as np
import pandas as pd
import torch

from ..data.factors import FACTOR_NAMES
from ..data.shapes3d import load_shapes3d, load_split, to_model_input
from ..io import atomic_path, write_parquet
from ..measure.sample_quality import classifier_confidence, nearest_distances, tv_to_uniform
from ..model.checkpoint import load_classifier, load_score_model
from ..model.classifier import predict
from ..model.sampling import generate, sample_seeds
from ..model.score import get_score_fn
from ..plan import stage_batch
from ..report.plots import image_grid
from ..rng import seeded_subset
from .tables import TIME_CONVENTION

log = logging.getLogger(__name__)


def sample_images(
    model_path: str,
    hparams_path: str,
    classifier_path: str,
    classifier_hparams_path: str,
    dataset_h5: str,
    split: str,
    h5_out: str,
    png_out: str,
    scores_out: str,
    *,
    model: str,
    n_samples: int,
    steps: int,
    method: str,
    snr: float,
    corrector: bool,
    batch_size: int,
    seed: int,
    device: torch.device,
    device_memory_gb: float | str = "auto",
) -> None:
    """The ``sample_images`` rule: samples to HDF5, a sample-grid PNG, classifier-based scores to Parquet.

    The scores table also holds the sample-quality measures of :mod:`latent_abstractions.generate` for the samples
    and, for comparison, for ``n_samples`` held-out images of ``dataset_h5`` (seeded). ``batch_size`` is an upper
    bound: a batch that would not fit ``device_memory_gb`` (:func:`plan.fit_batch`) is made smaller.
    """
    score_model = load_score_model(model_path, hparams_path, device)
    batch_size = stage_batch(
        batch_size,
        key="sampling.batch_size",
        rule="sample_images",
        net_hparams=score_model.hparams["net"],
        device_memory_gb=device_memory_gb,
        device=device,
    )
    seeds = sample_seeds(seed, n_samples)
    images = generate(
        get_score_fn(score_model.net, score_model.sde),
        score_model.sde,
        score_model.hparams["net"]["img_resolution"],
        seeds,
        steps=steps,
        method=method,
        snr=snr,
        batch_size=batch_size,
        device=device,
        n_corrector=1 if corrector else 0,
    )
    log.info("network evaluations: %d rows (sampling, %d samples)", score_model.net.evaluations, n_samples)
    with atomic_path(h5_out) as tmp, h5py.File(tmp, "w") as f:
        f["images"] = images
        f["seeds"] = seeds
        f.attrs.update(
            {
                "time_convention": f"{TIME_CONVENTION}; sampled tau 0 -> 1",
                "steps": steps,
                "method": method,
                "snr": snr,
                "corrector": corrector,
                "checkpoint_sha256": score_model.sha256,
            }
        )
    image_grid(
        images[:64],
        png_out,
        ncols=8,
        title=f"{model} model: {n_samples} samples, {method.upper()}"
        f"{'' if method != 'pc' else (' + corrector' if corrector else ' predictor only')} {steps} steps",
    )
    clf = load_classifier(classifier_path, classifier_hparams_path, device)
    pred = predict(clf.net, to_model_input(images)).numpy()
    tv = tv_to_uniform(pred, clf.hparams["levels_present"])
    log.info("TV distance to uniform per factor: %s", dict(zip(FACTOR_NAMES, np.round(tv, 3))))
    df = pd.DataFrame(
        {
            "factor": list(FACTOR_NAMES),
            "tv_distance": tv,
            "n_samples": np.int64(n_samples),
            "seed": np.int64(seed),
            "checkpoint": score_model.sha256,
        }
    )
    data = load_shapes3d(dataset_h5)
    parts = load_split(split, data.n)
    held = seeded_subset(parts["test"], n_samples, seed)
    real = to_model_input(data.images(held))
    fake = to_model_input(images)
    # the training set is streamed in blocks (at 64x64 it does not fit in memory as floats); the nearest image
    # over all blocks is the minimum of the per-block nearest distances
    train_idx = np.sort(parts["train"])
    d_fake = torch.full((len(images),), torch.inf, dtype=torch.float64)
    d_real = torch.full((len(held),), torch.inf, dtype=torch.float64)
    for a in range(0, len(train_idx), 4096):
        block = to_model_input(data.images(train_idx[a : a + 4096]))
        d_fake = torch.minimum(d_fake, nearest_distances(fake, block))
        d_real = torch.minimum(d_real, nearest_distances(real, block))
    d_fake, d_real = d_fake.numpy(), d_real.numpy()
    df["confidence"] = classifier_confidence(clf.net, fake)
    df["confidence_real"] = classifier_confidence(clf.net, real)
    df["nn_distance"] = float(np.median(d_fake))
    df["nn_distance_real"] = float(np.median(d_real))
    df["n_real"] = np.int64(len(held))
    log.info(
        "sample quality: confidence %s (real %s); median nearest-train-image RMS distance %.4f (real held-out %.4f)",
        np.round(df["confidence"].to_numpy(), 3),
        np.round(df["confidence_real"].to_numpy(), 3),
        np.median(d_fake),
        np.median(d_real),
    )
    write_parquet(df, scores_out, {"model": model, "steps": steps, "method": method, "corrector": corrector})
