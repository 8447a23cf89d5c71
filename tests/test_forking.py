"""Forking entropy on a two-point data set whose exact score is known (answers: 1 bit early, 0 at the end)."""

import numpy as np
import torch

from latent_abstractions.measure.forking import fork_labels
from latent_abstractions.model.sde import VESDE

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
    return fork_labels(
        point_mass_score(centres),
        SDE,
        brightness_label,
        shape=SHAPE,
        taus=taus,
        n_base=4,
        n_forks=12,
        steps=24,
        method="em",
        snr=0.16,
        seed=seed,
        device=torch.device("cpu"),
        keep_images={0},
    )


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
    assert h[0] > 0.6  # forks from pure noise split between the two points
    assert h[1] == 0 and h[2] == 0  # near the data every fork of one base lands on the same point
    again, _ = _labels([np.full(SHAPE, 0.2), np.full(SHAPE, 0.8)], taus)
    assert np.array_equal(labels, again)  # seeded


def test_predictor_only_forks_follow_the_exact_posterior_of_the_fork_state():
    # From one state y at sigma = 1 between two points, p(bright | y) = sigmoid(delta |c1 - c0| / sigma^2) = 0.3
    # exactly; predictor-only forks with the exact score must land on the bright point with that frequency.
    from latent_abstractions.model.sampling import sample, time_grid
    from latent_abstractions.rng import make_generators

    c0, c1 = np.full(SHAPE, 0.2), np.full(SHAPE, 0.8)
    gap = np.sqrt(((c1 - c0) ** 2).sum())
    tau = 1 / 3  # t = 2/3: sigma = 0.01 * 1000^(2/3) = 1
    assert abs(float(SDE.sigma(SDE.tau_to_t(tau))) - 1) < 1e-9
    delta = np.log(0.3 / 0.7) / gap
    y = torch.tensor((c0 + c1) / 2 + delta * (c1 - c0) / gap, dtype=torch.float32)
    n = 3000
    x = y.expand(n, *SHAPE).clone()
    out = sample(
        point_mass_score([c0, c1]),
        SDE,
        x,
        time_grid(60, tau, 1.0),
        make_generators(np.arange(n)),
        method="pc",
        n_corrector=0,
    ).x
    frac = float(brightness_label(out).float().mean())
    assert abs(frac - 0.3) < 3 * np.sqrt(0.3 * 0.7 / n), frac


def test_corrector_flag_reaches_the_sampler():
    taus = np.array([0.0, 0.5])
    kw = dict(
        shape=SHAPE, taus=taus, n_base=2, n_forks=4, steps=12, method="pc", snr=0.16, seed=0, device=torch.device("cpu")
    )

    def score(x, t, labels=None):  # exact score of Gaussian data N(0.5, I): end points vary continuously
        sigma = SDE.sigma(torch.as_tensor(t, dtype=torch.float64)).float().reshape(-1, 1, 1, 1)
        return -(x - 0.5) / (sigma**2 + 1)

    with_c, kept_c = fork_labels(score, SDE, brightness_label, keep_images={1}, corrector=True, **kw)
    without, kept = fork_labels(score, SDE, brightness_label, keep_images={1}, **kw)  # default: no corrector
    assert not torch.equal(kept_c[1], kept[1])
    again, kept2 = fork_labels(score, SDE, brightness_label, keep_images={1}, corrector=False, **kw)
    assert torch.equal(kept[1], kept2[1]) and np.array_equal(without, again)


def test_tau_shards_fork_the_whole_runs_labels():
    """Forking only a shard's taus (the others skipped; the base paths stop at the shard's last tau) gives exactly
    the labels and kept images of the whole run at those taus."""
    taus = np.array([0.0, 0.3, 0.6, 0.8, 1.0])
    centres = [np.full(SHAPE, 0.2), np.full(SHAPE, 0.8)]
    whole, kept = _labels(centres, taus)
    for shard in ([0, 1], [2], [3, 4], [1, 2, 3]):
        skip = set(range(len(taus))) - set(shard)
        got, got_kept = fork_labels(
            point_mass_score(centres),
            SDE,
            brightness_label,
            shape=SHAPE,
            taus=taus,
            n_base=4,
            n_forks=12,
            steps=24,
            method="em",
            snr=0.16,
            seed=0,
            device=torch.device("cpu"),
            keep_images={0},
            skip=skip,
        )
        assert np.array_equal(got, whole[shard]), shard
        assert set(got_kept) == ({0} & set(shard)) and all(torch.equal(got_kept[j], kept[j]) for j in got_kept)
    assert 0 < _entropy_bits(whole)[1] and _entropy_bits(whole)[-1] == 0  # not a constant answer
