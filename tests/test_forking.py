"""Forking entropy on a two-point data set whose exact score is known (answers: 1 bit early, 0 at the end)."""

import numpy as np
import torch

from latent_abstractions.forking import fork_labels
from latent_abstractions.sde import VESDE

SDE = VESDE(0.01, 10.0)
SHAPE = (3, 2, 2)


def point_mass_score(centres):
    """Exact score of (1/M) sum_m N(c_m, sigma(t)^2 I) in the VE SDE."""
    c = torch.as_tensor(np.stack(centres), dtype=torch.float64).reshape(len(centres), -1)

    def score(x, t, labels=None):
        sigma = SDE.sigma(torch.as_tensor(t, dtype=torch.float64)).reshape(-1, 1)  # t: float or (B,)
        flat = x.reshape(len(x), -1).double()
        w = (-((flat[:, None] - c[None]) ** 2).sum(-1) / (2 * sigma**2)).softmax(1)
        return ((w @ c - flat) / sigma**2).float().reshape(x.shape)
    return score


def brightness_label(x):
    """A stand-in classifier: one factor, level 1 iff the image is bright."""
    return (x.mean(dim=(1, 2, 3)) > 0.5).long()[:, None]


def _labels(centres, taus, seed=0):
    return fork_labels(point_mass_score(centres), SDE, brightness_label, shape=SHAPE, taus=taus, n_base=4,
                       n_forks=12, steps=24, method="em", snr=0.16, seed=seed, device=torch.device("cpu"),
                       keep_images={0})


def _entropy_bits(labels):
    p = labels.mean(axis=2)  # (taus, bases, 1): fraction of bright forks
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -np.nan_to_num(p * np.log2(p)) - np.nan_to_num((1 - p) * np.log2(1 - p))
    return h.mean(axis=(1, 2))


def test_one_point_data_gives_zero_entropy_everywhere():
    taus = np.array([0.0, 0.5, 1.0])
    labels, kept = _labels([np.full(SHAPE, 0.8)], taus)
    assert labels.shape == (3, 4, 12, 1) and (labels == 1).all()
    assert kept[0].shape == (12, *SHAPE) and torch.allclose(kept[0], torch.full((12, *SHAPE), 0.8), atol=0.05)


def test_two_point_data_is_undecided_from_noise_and_decided_at_the_end():
    taus = np.array([0.0, 0.95, 1.0])
    labels, _ = _labels([np.full(SHAPE, 0.2), np.full(SHAPE, 0.8)], taus)
    h = _entropy_bits(labels)
    assert h[0] > 0.6          # forks from pure noise split between the two points
    assert h[1] == 0 and h[2] == 0  # near the data every fork of one base lands on the same point
    again, _ = _labels([np.full(SHAPE, 0.2), np.full(SHAPE, 0.8)], taus)
    assert np.array_equal(labels, again)  # seeded
