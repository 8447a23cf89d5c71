"""The exact filter against known answers: brute-force posteriors, closed forms, and the project's own
MI estimator and forking code run on the exact scores of a small rendered grid."""

import inspect
import itertools
import math

import numpy as np
import pytest
import torch

from latent_abstractions.data.render import GridSpec, iter_grid_images
from latent_abstractions.data.shapes3d import to_model_input
from latent_abstractions.measure.exact_filter import (
    entropy,
    exact_score_fn,
    expected_plugin_entropy,
    filter_curves,
    level_codes,
    level_posteriors,
    plugin_entropy_band,
)
from latent_abstractions.measure.forking import fork_labels, path_grid
from latent_abstractions.measure.mutual_info import mi_curves
from latent_abstractions.model.sampling import sample
from latent_abstractions.model.sde import VESDE, sigma_max_from_data
from latent_abstractions.rng import derive_seeds, make_generators

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def grid():
    """A 2x2x2x2x2x2 grid at 8x8 (64 images), shuffled so that no code may rely on row-major order."""
    spec = GridSpec.from_counts(8, (2, 2, 2, 2, 2, 2))
    images = np.concatenate([block for _, block in iter_grid_images(spec)])
    perm = np.random.default_rng(0).permutation(len(images))
    images, labels = images[perm], spec.label_indices()[perm]
    x = to_model_input(images)
    sde = VESDE(0.01, sigma_max_from_data(x))
    return images, labels, x, sde


def brute_force_level_probs(pixels, codes, y, sigma):
    """p(phi_k = l | y) straight from the definition, in float64: softmax of -||y - x_i||^2 / (2 sigma^2)."""
    x = torch.as_tensor(pixels, dtype=torch.float64) / 255
    logit = -(y[:, None, :] - x[None]).pow(2).sum(-1) / (2 * sigma**2)
    pi = torch.softmax(logit, dim=1).numpy()  # (B, N)
    return [
        np.stack([pi[:, codes[:, k] == lv].sum(1) for lv in range(codes[:, k].max() + 1)], 1)
        for k in range(codes.shape[1])
    ]


def queries(pixels, n, seed):
    rng = np.random.default_rng(seed)
    j = rng.integers(0, len(pixels), n)
    z = torch.randn(n, pixels.shape[1], generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return j, z


def test_streamed_posterior_equals_brute_force(grid):
    images, labels, _, sde = grid
    pix = images.reshape(len(images), -1)
    codes, _ = level_codes(labels)
    j, z = queries(pix, 40, 1)
    sigmas = [0.01, 0.05, 0.3, 1.0, sde.sigma_max]
    chunks = [(pix[a : a + 23], codes[a : a + 23]) for a in range(0, len(pix), 23)]  # uneven chunks
    fast = level_posteriors(chunks, pix[j], z, sigmas, [2] * 6, query_block=16)
    for t, s in enumerate(sigmas):
        y = torch.as_tensor(pix[j], dtype=torch.float64) / 255 + s * z
        for k, ref in enumerate(brute_force_level_probs(pix, codes, y, s)):
            np.testing.assert_allclose(fast[k][:, t], ref, atol=1e-9, rtol=0)


def test_mixture_levels_come_from_labels_not_order(grid):
    """A mixture with uneven level frequencies (a subset) gives the label-based answer and its own prior."""
    images, labels, _, sde = grid
    keep = np.flatnonzero((labels[:, 0] == labels[0, 0]) | (np.arange(len(labels)) % 3 == 0))
    pix, codes = images[keep].reshape(len(keep), -1), level_codes(labels[keep])[0]
    j, z = queries(pix, 30, 2)
    fast = level_posteriors([(pix, codes)], pix[j], z, [0.5], [2] * 6)
    y = torch.as_tensor(pix[j], dtype=torch.float64) / 255 + 0.5 * z
    for k, ref in enumerate(brute_force_level_probs(pix, codes, y, 0.5)):
        np.testing.assert_allclose(fast[k][:, 0], ref, atol=1e-9, rtol=0)


def test_data_end_carries_all_information_and_noise_end_little(grid):
    images, labels, _, sde = grid
    pix = images.reshape(len(images), -1)
    codes, _ = level_codes(labels)
    marg = [np.bincount(codes[:, k]) for k in range(6)]
    j, z = queries(pix, 2000, 3)
    sigmas = [sde.sigma_max, sde.sigma_min]  # tau = 0 and tau = 1
    curves = filter_curves(level_posteriors([(pix, codes)], pix[j], z, sigmas, [2] * 6), marg, n_forks=6)
    # tau = 1: sigma_min = 0.01 is far below half the smallest distance between two images, so y identifies x_j
    np.testing.assert_allclose(curves["mi"][1], math.log(2), atol=1e-9)
    np.testing.assert_allclose(curves["bayes_accuracy"][1], 1.0, atol=1e-9)
    # tau = 0: I(Y_0; phi) from separate queries and the brute-force posterior; six factors at once, so a
    # Bonferroni-sized band of 4 combined SE (a 3 SE band fails one of six with probability ~2%)
    j2, z2 = queries(pix, 2000, 4)
    y0 = torch.as_tensor(pix[j2], dtype=torch.float64) / 255 + sde.sigma_max * z2
    h = np.stack([entropy(p) for p in brute_force_level_probs(pix, codes, y0, sde.sigma_max)], 1)  # (Q, F)
    separate, separate_se = math.log(2) - h.mean(0), h.std(0, ddof=1) / math.sqrt(len(h))
    se = np.hypot(curves["mi_se"][0], separate_se)
    assert np.all(np.abs(curves["mi"][0] - separate) < 4 * se + 1e-12), (curves["mi"][0], separate, se)
    assert np.all(curves["mi"][0] < 0.15 * math.log(2)), curves["mi"][0]  # little is known from noise


def test_expected_plugin_entropy_matches_multinomial_enumeration():
    p = np.array([0.5, 0.3, 0.2, 0.0])
    for k in (1, 2, 5):
        total = 0.0
        for draws in itertools.product(range(len(p)), repeat=k):
            prob = float(np.prod(p[list(draws)]))
            total += prob * float(entropy(np.bincount(draws, minlength=len(p)) / k))
        assert expected_plugin_entropy(p, k) == pytest.approx(total, abs=1e-12)
    # many draws: the plug-in entropy tends to the entropy (bias ~ (L - 1) / (2K))
    assert expected_plugin_entropy(p, 4000) == pytest.approx(float(entropy(p)) - 2 / 8000, abs=1e-4)


def plugin_entropy_law(p: np.ndarray, k: int) -> dict[float, float]:
    """The exact law of the plug-in entropy of k i.i.d. draws from p, by enumerating every sequence of draws."""
    law: dict[float, float] = {}
    for draws in itertools.product(range(len(p)), repeat=k):
        h = round(float(entropy(np.bincount(draws, minlength=len(p)) / k)), 12)
        law[h] = law.get(h, 0.0) + float(np.prod(p[list(draws)]))
    return dict(sorted(law.items()))


def test_plugin_entropy_band_one_base_is_the_exact_laws_quantiles():
    """n_base = 1: the band is a pair of quantiles of the enumerated law (a mixture over the query states)."""
    p = np.array([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]])[:, None, :]  # two query states, one noise level
    k, level = 4, 0.4  # the 0.3 and 0.7 quantiles
    law: dict[float, float] = {}
    for q in range(2):
        for h, w in plugin_entropy_law(p[q, 0], k).items():
            law[h] = law.get(h, 0.0) + w / 2
    atoms, cdf = np.array(sorted(law)), np.cumsum([law[h] for h in sorted(law)])
    qs = [(1 - level) / 2, (1 + level) / 2]
    expected = [atoms[np.searchsorted(cdf, q - 1e-12)] for q in qs]
    assert np.min(np.abs(cdf[:, None] - qs)) > 0.05  # no atom's CDF near a quantile: MC-stable
    low, high = plugin_entropy_band(p, k, 1, n_sim=40_000, rng=np.random.default_rng(0), level=level)
    assert (low[0], high[0]) == pytest.approx(expected, abs=1e-12)
    assert 0 < expected[0] < expected[1] < max(atoms)  # interior quantiles, not the law's ends


def test_plugin_entropy_band_many_bases_is_the_normal_range_of_the_mean():
    """Many bases: the mean is ~ normal with the enumerated law's mean and sd / sqrt(n_base)."""
    p = np.array([[0.6, 0.3, 0.1]])[:, None, :]
    k, n_base = 3, 400
    law = plugin_entropy_law(p[0, 0], k)
    mean = sum(h * w for h, w in law.items())
    sd = math.sqrt(sum((h - mean) ** 2 * w for h, w in law.items()) / n_base)
    assert mean == pytest.approx(expected_plugin_entropy(p[0, 0], k), abs=1e-12)
    low, high = plugin_entropy_band(p, k, n_base, n_sim=4000, rng=np.random.default_rng(1))
    assert low[0] == pytest.approx(mean - 1.96 * sd, abs=0.15 * sd)
    assert high[0] == pytest.approx(mean + 1.96 * sd, abs=0.15 * sd)
    # decided states: every fork agrees, so the measurement is exactly 0
    low, high = plugin_entropy_band(np.eye(3)[:, None, :], k, 12, n_sim=500, rng=np.random.default_rng(2))
    assert low[0] == high[0] == 0.0


def test_exact_score_is_the_gradient_of_the_log_density(grid):
    _, labels, x, sde = grid
    t = torch.tensor([0.3, 0.5, 0.7, 0.9], dtype=torch.float64)
    y = x[:4].double() + sde.sigma(t)[:, None, None, None] * torch.randn(
        4, *x.shape[1:], dtype=torch.float64, generator=torch.Generator().manual_seed(5)
    )
    score = exact_score_fn(x, labels, sde)
    cond = torch.full((4, 6), -1, dtype=torch.long)
    cond[:, 2] = torch.as_tensor(labels[[9, 9, 17, 30], 2])
    for lab in (None, cond):
        keep = (
            torch.ones(4, len(x), dtype=torch.bool)
            if lab is None
            else torch.as_tensor(labels[None, :, 2] == lab[:, 2:3].numpy())
        )
        yy = y.clone().requires_grad_()
        s = sde.sigma(t)[:, None]
        logit = -(yy.flatten(1)[:, None] - x.flatten(1).double()[None]).pow(2).sum(-1) / (2 * s**2)
        logp = torch.logsumexp(logit.masked_fill(~keep, -math.inf), dim=1)
        (grad,) = torch.autograd.grad(logp.sum(), yy)
        torch.testing.assert_close(score(y, t, lab), grad, rtol=1e-7, atol=1e-7)


def test_mi_estimator_on_exact_scores_reproduces_exact_mi_minus_noise_end(grid):
    """The project's estimator integrates from tau = 0, so it measures I(Y_tau) - I(Y_0): compare like with like."""
    images, labels, x, sde = grid
    pix = images.reshape(len(images), -1)
    codes, _ = level_codes(labels)
    taus = np.linspace(0, 1, 6)
    j, z = queries(pix, 3000, 6)
    sig = sde.sigma(torch.as_tensor(1 - taus)).numpy()
    ex = filter_curves(
        level_posteriors([(pix, codes)], pix[j], z, sig, [2] * 6),
        [np.bincount(codes[:, k]) for k in range(6)],
        n_forks=6,
    )
    x0 = x.repeat(4, 1, 1, 1)
    lab = torch.as_tensor(labels).repeat(4, 1)
    mi, se = mi_curves(
        exact_score_fn(x, labels, sde), sde, x0, lab, taus, n_times=100, generator=torch.Generator().manual_seed(7)
    )
    target = ex["mi"] - ex["mi"][0]
    tol = 3 * np.hypot(se, np.hypot(ex["mi_se"], ex["mi_se"][0]))
    assert np.all(np.abs(mi - target) <= tol + 1e-9), (mi - target, tol)
    assert target[-1].min() > 0.5  # the comparison is not between two near-zero curves


def _fork_setup(grid, method, n_forks, tau, seed=11, steps=300):
    images, labels, x, sde = grid
    score = exact_score_fn(x, labels, sde)
    flat = x.flatten(1).double()

    def classify(final):  # nearest image of the grid: the denoised end points are grid images
        return torch.as_tensor(labels[torch.cdist(final.flatten(1).double(), flat).argmin(1).numpy()])

    # "pc" here means predictor + one Langevin corrector step per grid point, however fork_labels spells it
    extra = {"corrector": method == "pc"} if "corrector" in inspect.signature(fork_labels).parameters else {}
    out, _ = fork_labels(
        score,
        sde,
        classify,
        shape=tuple(x.shape[1:]),
        taus=np.array([tau]),
        n_base=1,
        n_forks=n_forks,
        steps=steps,
        method=method,
        snr=0.16,
        seed=seed,
        device="cpu",
        **extra,
    )
    # the base state the forks start from, rebuilt exactly as fork_labels builds it (same seeds and grid)
    grid_t = path_grid(steps, np.array([tau]))
    i = int(np.argmin(np.abs(grid_t.numpy() - tau)))
    at = float(grid_t[i])
    gens = make_generators(derive_seeds(seed, "sample", 1), "cpu")
    y = sample(
        score,
        sde,
        sde.prior_sampling((1, *x.shape[1:]), gens),
        grid_t,
        gens,
        method=method,
        snr=0.16,
        n_corrector=1,
        record_at=[i],
        denoise=False,
    ).states[i]
    codes = level_codes(labels)[0]
    probs = brute_force_level_probs(flat * 255, codes, y.flatten(1).double(), float(sde.sigma(1 - at)))  # NCHW
    return out[0, 0], [p[0] for p in probs]  # (K, 6), per factor (2,)


def _fork_z_scores(labels_out, probs, levels):
    """Per factor: (fork frequency of the second level - its exact probability) / binomial sd."""
    k_forks = len(labels_out)
    return np.array(
        [
            (np.mean(labels_out[:, k] == levels[k][1]) - p[1])
            / math.sqrt(max(p[1] * (1 - p[1]), 1 / k_forks) / k_forks)
            for k, p in enumerate(probs)
        ]
    )


def test_predictor_only_forks_follow_the_exact_label_law(grid):
    """Euler-Maruyama forks from one state land on level l of each factor with frequency p(phi = l | y)."""
    labels_out, probs = _fork_setup(grid, "em", 400, 0.45)
    z = _fork_z_scores(labels_out, probs, level_codes(grid[1])[1])
    assert np.all(np.abs(z) < 4), z  # six factors: a Bonferroni-sized band
    assert sum(0.05 < p[1] < 0.95 for p in probs) >= 2, probs  # the state is undecided on several factors


def test_corrector_forks_deviate_from_the_exact_label_law(grid):
    """Why forking must not use the Langevin corrector: at the configured snr it relaxes every fork towards the
    noised marginal p_tau, so the forks forget their common state and the label law is far too broad."""
    labels_out, probs = _fork_setup(grid, "pc", 400, 0.45)
    z = _fork_z_scores(labels_out, probs, level_codes(grid[1])[1])
    assert np.max(np.abs(z)) > 8, z
