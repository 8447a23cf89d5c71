"""VE SDE maths: sigma(t), g^2 = d sigma^2/dt, the forward/reverse coefficients, perturbation, the prior,
the tau <-> t mapping (tau = 0 noise, tau = 1 data; t = 1 - tau), and sigma_max from the data."""

import math

import pytest
import torch

from latent_abstractions.model.sde import VESDE, sigma_max_from_data
from latent_abstractions.rng import make_generators, randn_like_per_sample

torch.set_num_threads(1)
SDE = VESDE(0.01, 10.0)


def test_sigma_and_g2_match_the_formulas():
    t = torch.tensor([0.0, 0.25, 0.5, 1.0], dtype=torch.float64)
    expected = 0.01 * (10.0 / 0.01) ** t
    torch.testing.assert_close(SDE.sigma(t), expected)
    torch.testing.assert_close(SDE.marginal_std(t), expected)
    assert math.isclose(float(SDE.sigma(0.0)), 0.01) and math.isclose(float(SDE.sigma(1.0)), 10.0)
    torch.testing.assert_close(SDE.g2(t), 2 * expected**2 * math.log(1000.0))
    h = 1e-6  # g^2 = d sigma^2 / dt, checked by central differences
    fd = (SDE.sigma(t[1:3] + h) ** 2 - SDE.sigma(t[1:3] - h) ** 2) / (2 * h)
    torch.testing.assert_close(SDE.g2(t[1:3]), fd, rtol=1e-5, atol=0)


def test_forward_coefficients_are_the_ve_sde():
    # VE SDE: no drift, and g(t)^2 = d sigma(t)^2 / dt (checked by a central difference, not by the formula);
    # the reverse drift is checked by behaviour: test_sampling's Euler-Maruyama run with the exact score.
    x = torch.randn(3, 2, 4, 4)
    t = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)
    drift, diffusion = SDE.sde(x, t)
    assert torch.equal(drift, torch.zeros_like(x))
    h = 1e-6
    fd = (SDE.sigma(t + h) ** 2 - SDE.sigma(t - h) ** 2) / (2 * h)
    torch.testing.assert_close(diffusion.double() ** 2, fd, rtol=1e-5, atol=0)


def test_tau_t_mapping():
    assert SDE.tau_to_t(0.0) == 1.0 and SDE.t_to_tau(1.0) == 0.0  # tau = 0 is pure noise
    assert SDE.tau_to_t(1.0) == 0.0 and SDE.t_to_tau(0.25) == 0.75
    tau = torch.linspace(0, 1, 5)
    torch.testing.assert_close(SDE.t_to_tau(SDE.tau_to_t(tau)), tau)


def test_t_of_sigma_inverts_sigma():
    t = torch.linspace(0, 1, 7, dtype=torch.float64)
    torch.testing.assert_close(SDE.t_of_sigma(SDE.sigma(t)), t)
    assert float(SDE.t_of_sigma(SDE.sigma_min / 2)) == 0.0 and float(SDE.t_of_sigma(SDE.sigma_max * 2)) == 1.0


def test_perturb_marginal_statistics_per_example_times():
    n = 20000
    x0 = torch.full((n, 1, 1, 1), 3.0)
    t = torch.where(torch.arange(n) < n // 2, 0.2, 0.8)
    z = torch.randn(n, 1, 1, 1, generator=torch.Generator().manual_seed(0))
    x = SDE.perturb(x0, t, z)
    for half, tt in ((x[: n // 2], 0.2), (x[n // 2 :], 0.8)):
        assert abs(float(half.mean()) - 3.0) < 0.03 * float(SDE.sigma(tt)) * 3
        assert abs(float(half.std()) / float(SDE.sigma(tt)) - 1) < 0.03
    torch.testing.assert_close(SDE.perturb(x0[:2], 0.5, z[:2]), x0[:2] + float(SDE.sigma(0.5)) * z[:2])


def test_prior_std_logp_and_per_sample_generators():
    z = SDE.prior_sampling((4000, 3, 2, 2), make_generators(range(4000)))
    assert abs(float(z.std()) / 10.0 - 1) < 0.02 and abs(float(z.mean())) < 0.2  # SE 0.046
    again = SDE.prior_sampling((2, 3, 2, 2), make_generators([2, 3]))
    torch.testing.assert_close(again, z[2:4], rtol=0, atol=0)  # row k depends only on seed k
    lp = SDE.prior_logp(torch.zeros(1, 2))
    assert math.isclose(float(lp), -math.log(2 * math.pi * 100.0), rel_tol=1e-6)
    ref = torch.distributions.Normal(0.0, 10.0).log_prob(z[:3]).flatten(1).sum(1)
    torch.testing.assert_close(SDE.prior_logp(z[:3]), ref, rtol=1e-5, atol=1e-4)
    noise = randn_like_per_sample(torch.empty(2, 3, 2, 2), make_generators([2, 3]))
    torch.testing.assert_close(noise * 10.0, again, rtol=0, atol=0)


def test_invalid_schedule_is_rejected():
    with pytest.raises(ValueError, match="sigma_min < sigma_max"):
        VESDE(1.0, 0.5)
    with pytest.raises(ValueError, match="sigma_min < sigma_max"):
        VESDE(0.0, 5.0)


def test_sigma_max_is_the_largest_pairwise_distance():
    x = torch.zeros(5, 1, 2, 2)
    x[3] = 1.0
    x[4, 0, 0, 0] = -2.0
    assert math.isclose(sigma_max_from_data(x), math.sqrt(9 + 3), rel_tol=1e-9)
    y = torch.rand(37, 3, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    brute = max(float((y[i] - y[j]).norm()) for i in range(37) for j in range(37))
    for chunk in (1, 5, 64):  # blocks cover every pair, whatever their size
        assert math.isclose(sigma_max_from_data(y, chunk=chunk), brute, rel_tol=1e-9)
    sub = max(float((y[i] - y[j]).norm()) for i in range(10) for j in range(10))
    assert math.isclose(sigma_max_from_data(y, max_pairs=45), sub, rel_tol=1e-9)  # 45 pairs = first 10 images
    with pytest.raises(ValueError, match="N >= 2"):
        sigma_max_from_data(torch.zeros(1, 3, 2, 2))
    with pytest.raises(ValueError, match="float"):
        sigma_max_from_data(torch.zeros(4, 3, 2, 2, dtype=torch.uint8))
