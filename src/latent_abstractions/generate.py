"""Unconditional samples of a trained score model, their grid, and their scores by the attribute classifier.

Sample quality is reported beside the same numbers for real held-out images, so a reader can judge it:
- classifier confidence: per factor, the mean over images of the classifier's largest class probability (a
  scene the classifier recognises scores near its held-out value; noise scores near 1 / levels or is
  confidently wrong, so read it with the TV distance);
- nearest-image distance: the root-mean-square pixel distance (on the [0, 1] scale) from each image to its
  nearest training image. Held-out images are not in the training set, so their distances are the scale of a
  real but new scene; samples much farther away are not scenes of the dataset, samples at ~0 are copies.
"""

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
             device: torch.device, n_corrector: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """``n`` samples (uint8, (n, H, W, 3)) from tau = 0 to 1, and their seeds; batch size does not matter."""
    net, sde, hp = load_score_model(model_dir, device)
    score = get_score_fn(net, sde)
    seeds = sample_seeds(seed, n)
    res = hp["net"]["img_resolution"]
    out = []
    for i in range(0, n, batch_size):
        gens = make_generators(seeds[i:i + batch_size], device)
        x = sde.prior_sampling((len(gens), 3, res, res), gens, device)
        out.append(to_uint8(sample(score, sde, x, time_grid(steps), gens, method=method, snr=snr,
                                    n_corrector=n_corrector, progress=True).x))
    return np.concatenate(out), seeds


@torch.no_grad()
def nearest_distances(queries: torch.Tensor, reference: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """RMS pixel distance from each query image to its nearest reference image (float64, one per query).

    Args:
        queries: (Q, C, H, W) float images; reference: (N, C, H, W) float images of the same shape.
    """
    if queries.shape[1:] != reference.shape[1:]:
        raise ValueError(f"query images {tuple(queries.shape[1:])} and reference images "
                         f"{tuple(reference.shape[1:])} differ in shape")
    ref = reference.flatten(1).double()
    ref_norm = ref.pow(2).sum(1)
    out = []
    for i in range(0, len(queries), batch_size):
        q = queries[i:i + batch_size].flatten(1).double()
        d2 = (q.pow(2).sum(1, keepdim=True) - 2 * q @ ref.T + ref_norm[None]).clamp_min(0)
        out.append(d2.min(1).values.div(q.shape[1]).sqrt())
    return torch.cat(out) if out else torch.empty(0, dtype=torch.float64)


@torch.no_grad()
def classifier_confidence(clf, x: torch.Tensor, batch_size: int = 512) -> np.ndarray:
    """Per factor, the mean over images of the classifier's largest class probability; shape (6,)."""
    dev = next(clf.parameters()).device
    total = np.zeros(len(FACTOR_NAMES))
    for i in range(0, len(x), batch_size):
        logits = clf(x[i:i + batch_size].to(dev).float())
        total += np.array([float(lg.softmax(1).max(1).values.sum()) for lg in logits])
    return total / max(1, len(x))


def tv_to_uniform(pred: np.ndarray, levels_present: list[list[int]]) -> np.ndarray:
    """Per factor, total variation distance between predicted label frequencies and uniform over present levels."""
    tv = []
    for k, present in enumerate(levels_present):
        freq = np.array([(pred[:, k] == lv).mean() for lv in present])
        tv.append(0.5 * np.abs(freq - 1 / len(present)).sum() + 0.5 * (1 - freq.sum()))
    return np.asarray(tv)


def sample_and_score(model_dir: str, classifier_dir: str, h5_out: str, png_out: str, scores_out: str, *, n: int,
                     steps: int, method: str, snr: float, batch_size: int, seed: int, device: torch.device,
                     dataset_h5: str | None = None, split_path: str | None = None, n_corrector: int = 1) -> None:
    """The ``sample_images`` rule: samples to HDF5, a sample-grid PNG, classifier-based scores to Parquet.

    With ``dataset_h5`` and ``split_path`` the table also holds the sample-quality measures of the module
    docstring for the samples and for ``n`` held-out images (seeded).
    """
    images, seeds = generate(model_dir, n, steps, method, snr, batch_size, seed, device, n_corrector)
    sha = model_sha256(model_dir)
    with atomic_path(h5_out) as tmp, h5py.File(tmp, "w") as f:
        f["images"] = images
        f["seeds"] = seeds
        f.attrs.update({"time_convention": "tau generative: 0 = noise, 1 = data; sampled tau 0 -> 1",
                        "steps": steps, "method": method, "snr": snr, "checkpoint_sha256": sha})
    name = Path(model_dir).name
    image_grid(images[:64], png_out, ncols=8, title=f"{name} model: {n} samples, {method.upper()}"
               f"{'' if method != 'pc' else (' + corrector' if n_corrector else ' predictor only')} {steps} steps")
    clf = load_classifier(classifier_dir, device)
    pred = predict(clf, to_model_input(images)).numpy()
    tv = tv_to_uniform(pred, clf.hparams["levels_present"])
    log.info("TV distance to uniform per factor: %s", dict(zip(FACTOR_NAMES, np.round(tv, 3))))
    df = pd.DataFrame({"factor": list(FACTOR_NAMES), "tv_distance": tv, "n_samples": np.int64(n),
                       "seed": np.int64(seed), "checkpoint": sha})
    if dataset_h5 is not None and split_path is not None:
        from .shapes3d import load_shapes3d, load_split

        data = load_shapes3d(dataset_h5)
        parts = load_split(split_path, data.n)
        held = np.sort(np.random.default_rng(seed).choice(parts["test"], size=min(n, len(parts["test"])),
                                                          replace=False))
        real = to_model_input(data.images(held))
        train = to_model_input(data.images(np.sort(parts["train"])))
        fake = to_model_input(images)
        d_fake, d_real = nearest_distances(fake, train).numpy(), nearest_distances(real, train).numpy()
        df["confidence"] = classifier_confidence(clf, fake)
        df["confidence_real"] = classifier_confidence(clf, real)
        df["nn_distance"] = float(np.median(d_fake))
        df["nn_distance_real"] = float(np.median(d_real))
        df["n_real"] = np.int64(len(held))
        log.info("sample quality: confidence %s (real %s); median nearest-train-image RMS distance %.4f "
                 "(real held-out %.4f)", np.round(df["confidence"].to_numpy(), 3),
                 np.round(df["confidence_real"].to_numpy(), 3), np.median(d_fake), np.median(d_real))
    write_parquet(df, scores_out, {"model": name, "steps": steps, "method": method})
