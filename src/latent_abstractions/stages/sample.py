"""Sampling stage: samples of a score model, their grid, their classifier scores."""

from __future__ import annotations

import logging

import h5py
import numpy as np
import pandas as pd
import torch

from ..checkpoint import load_classifier, load_score_model
from ..classifier import predict
from ..factors import FACTOR_NAMES
from ..generate import generate, sample_seeds, tv_to_uniform
from ..io import atomic_path, write_parquet
from ..plotting import image_grid
from ..score import get_score_fn
from ..shapes3d import to_model_input
from .tables import TIME_CONVENTION

log = logging.getLogger(__name__)


def sample_images(model_path: str, hparams_path: str, classifier_path: str, classifier_hparams_path: str,
                  h5_out: str, png_out: str, scores_out: str, *, model: str, n_samples: int, steps: int,
                  method: str, snr: float, batch_size: int, seed: int, device: torch.device) -> None:
    """The ``sample_images`` rule: samples to HDF5, a sample-grid PNG, classifier-based scores to Parquet."""
    score_model = load_score_model(model_path, hparams_path, device)
    seeds = sample_seeds(seed, n_samples)
    images = generate(get_score_fn(score_model.net, score_model.sde), score_model.sde,
                      score_model.hparams["net"]["img_resolution"], seeds, steps=steps, method=method, snr=snr,
                      batch_size=batch_size, device=device)
    with atomic_path(h5_out) as tmp, h5py.File(tmp, "w") as f:
        f["images"] = images
        f["seeds"] = seeds
        f.attrs.update({"time_convention": f"{TIME_CONVENTION}; sampled tau 0 -> 1",
                        "steps": steps, "method": method, "snr": snr, "checkpoint_sha256": score_model.sha256})
    image_grid(images[:64], png_out, ncols=8,
               title=f"{model} model: {n_samples} samples, {method.upper()} {steps} steps")
    clf = load_classifier(classifier_path, classifier_hparams_path, device)
    pred = predict(clf.net, to_model_input(images)).numpy()
    tv = tv_to_uniform(pred, clf.hparams["levels_present"])
    log.info("TV distance to uniform per factor: %s", dict(zip(FACTOR_NAMES, np.round(tv, 3))))
    df = pd.DataFrame({"factor": list(FACTOR_NAMES), "tv_distance": tv, "n_samples": np.int64(n_samples),
                       "seed": np.int64(seed), "checkpoint": score_model.sha256})
    write_parquet(df, scores_out, {"model": model, "steps": steps, "method": method})
