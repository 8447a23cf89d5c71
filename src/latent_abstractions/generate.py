"""Unconditional samples of a trained score model, their grid, and their scores by the attribute classifier."""

from __future__ import annotations

import logging
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import torch

from .checkpoint import load_score_model, model_sha256
from .classifier import load_classifier, predict
from .factors import FACTOR_NAMES
from .io import atomic_path, write_parquet
from .plotting import image_grid
from .rng import make_generators
from .sampling import sample, time_grid
from .score import get_score_fn
from .shapes3d import to_model_input, to_uint8

log = logging.getLogger(__name__)


def sample_seeds(seed: int, n: int) -> np.ndarray:
    """Per-sample seeds of a run: sample k of run seed s has seed s * 1_000_003 + k."""
    return np.int64(seed) * 1_000_003 + np.arange(n, dtype=np.int64)


def generate(model_dir: str, n: int, steps: int, method: str, snr: float, batch_size: int, seed: int,
             device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """``n`` samples (uint8, (n, H, W, 3)) from tau = 0 to 1, and their seeds; batch size does not matter."""
    net, sde, hp = load_score_model(model_dir, device)
    score = get_score_fn(net, sde)
    seeds = sample_seeds(seed, n)
    res = hp["net"]["img_resolution"]
    out = []
    for i in range(0, n, batch_size):
        gens = make_generators(seeds[i:i + batch_size], device)
        x = sde.prior_sampling((len(gens), 3, res, res), gens, device)
        out.append(to_uint8(sample(score, sde, x, time_grid(steps), gens, method=method, snr=snr, progress=True).x))
    return np.concatenate(out), seeds


def tv_to_uniform(pred: np.ndarray, levels_present: list[list[int]]) -> np.ndarray:
    """Per factor, total variation distance between predicted label frequencies and uniform over present levels."""
    tv = []
    for k, present in enumerate(levels_present):
        freq = np.array([(pred[:, k] == lv).mean() for lv in present])
        tv.append(0.5 * np.abs(freq - 1 / len(present)).sum() + 0.5 * (1 - freq.sum()))
    return np.asarray(tv)


def sample_and_score(model_dir: str, classifier_dir: str, h5_out: str, png_out: str, scores_out: str, *, n: int,
                     steps: int, method: str, snr: float, batch_size: int, seed: int, device: torch.device) -> None:
    """The ``sample_images`` rule: samples to HDF5, a sample-grid PNG, classifier-based scores to Parquet."""
    images, seeds = generate(model_dir, n, steps, method, snr, batch_size, seed, device)
    sha = model_sha256(model_dir)
    with atomic_path(h5_out) as tmp, h5py.File(tmp, "w") as f:
        f["images"] = images
        f["seeds"] = seeds
        f.attrs.update({"time_convention": "tau generative: 0 = noise, 1 = data; sampled tau 0 -> 1",
                        "steps": steps, "method": method, "snr": snr, "checkpoint_sha256": sha})
    name = Path(model_dir).name
    image_grid(images[:64], png_out, ncols=8, title=f"{name} model: {n} samples, {method.upper()} {steps} steps")
    clf = load_classifier(classifier_dir, device)
    pred = predict(clf, to_model_input(images)).numpy()
    tv = tv_to_uniform(pred, clf.hparams["levels_present"])
    log.info("TV distance to uniform per factor: %s", dict(zip(FACTOR_NAMES, np.round(tv, 3))))
    df = pd.DataFrame({"factor": list(FACTOR_NAMES), "tv_distance": tv, "n_samples": np.int64(n),
                       "seed": np.int64(seed), "checkpoint": sha})
    write_parquet(df, scores_out, {"model": name, "steps": steps, "method": method})
