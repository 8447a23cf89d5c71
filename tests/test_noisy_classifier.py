"""The noise-conditional classifier learns the factors where the noise leaves them visible, and its guidance gap is
the input gradient of log q for exactly the factors a row gives."""

import numpy as np
import torch
import torch.nn.functional as F

from diagnostics.noisy_classifier import NoisyClassifier, guidance_gap_fn, train_noisy_classifier
from latent_abstractions.model.sde import VESDE

torch.set_num_threads(1)


def test_learns_factors_at_low_noise_and_not_at_the_prior(two_level_grid):
    d, x, y = two_level_grid
    sde = VESDE(0.01, 20.0)
    model, losses = train_noisy_classifier(
        x,
        y,
        [v.tolist() for v in d.levels_present],
        sde,
        width=8,
        steps=300,
        batch_size=32,
        lr=3e-3,
        ema_decay=0.9,
        seed=0,
        device=torch.device("cpu"),
        progress=False,
    )
    assert len(losses) == 300 and np.mean(losses[-50:]) < np.mean(losses[:50])
    xf = x.float() / 255
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for sigma, lo, hi in [(0.01, 0.85, 1.0), (20.0, 0.0, 0.75)]:  # chance is 0.5; at sigma 20 SNR ~ 0.02
            noisy = xf + sigma * torch.randn(xf.shape, generator=g)
            logits = model(noisy, torch.full((len(x),), sigma))
            acc = torch.stack([lg.argmax(1) == y[:, k] for k, lg in enumerate(logits)], 1).float().mean(0)
            assert ((acc >= lo) & (acc <= hi)).all(), (sigma, acc)


def test_gap_is_the_input_gradient_of_log_q_of_the_given_factor():
    present = [[0, 9], [3, 5], [1, 4, 7], [0, 7], [2, 3], [0, 5, 10, 14]]
    torch.manual_seed(0)
    model = NoisyClassifier(12, 4, present, 0.3, 0.4).double().eval()
    sde = VESDE(0.01, 10.0)
    gap = guidance_gap_fn(model, sde)
    x = torch.rand(3, 3, 12, 12, dtype=torch.float64)
    t = torch.tensor([0.2, 0.5, 0.9], dtype=torch.float64)
    labels = torch.full((3, 6), -1, dtype=torch.long)
    labels[1, 2] = 4  # row 1: object hue level 4
    labels[2, 5] = 10  # row 2: orientation level 10
    g = gap(x, t, labels)
    assert torch.equal(g[0], torch.zeros_like(g[0]))  # no factor given: the unconditional score, left out

    def log_q(xi, row, k, level):
        return F.log_softmax(model(xi[None], sde.sigma(t[row : row + 1]))[k], 1)[0, level]

    v = torch.randn(3, 12, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    eps = 1e-5
    for row, k, level in [(1, 2, 4), (2, 5, 10)]:
        with torch.no_grad():
            fd = (log_q(x[row] + eps * v, row, k, level) - log_q(x[row] - eps * v, row, k, level)) / (2 * eps)
        torch.testing.assert_close((g[row] * v).sum(), fd, rtol=1e-6, atol=1e-8)
