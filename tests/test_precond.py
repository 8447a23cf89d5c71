"""EDM preconditioning of the VE score network, the loss weightings, and the denoiser-MSE diagnostic,
against closed forms for Gaussian data N(mu, sd^2 I) (where a zero backbone output is the exact answer)."""

import json
import math

import pytest
import torch

from latent_abstractions.model.losses import denoiser_mse, dsm_loss, sample_sigma
from latent_abstractions.model.networks import NCSNpp
from latent_abstractions.model.sde import VESDE
from latent_abstractions.model.trainer import data_statistics

torch.set_num_threads(1)
MU, SD = [0.2, 0.5, 0.7], 0.3


def edm_net(zero_head: bool = True, **kw) -> NCSNpp:
    torch.manual_seed(0)
    net = NCSNpp(
        8,
        nf=8,
        ch_mult=(1, 2),
        num_res_blocks=1,
        attn_resolutions=(4,),
        precond="edm",
        sigma_data=SD,
        data_mean=MU,
        **kw,
    )
    if not zero_head:
        for p in net.parameters():
            if p.ndim > 1:
                torch.nn.init.normal_(p, std=0.1)
    return net.eval()


def gaussian_data(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.tensor(MU).reshape(1, 3, 1, 1) + SD * torch.randn(n, 3, 8, 8, generator=g)


def test_zero_backbone_is_the_exact_gaussian_score_and_the_mean_image_denoiser_at_large_sigma():
    net = edm_net()  # conv_out is zero-initialised: F = 0
    mu = torch.tensor(MU).reshape(1, 3, 1, 1)
    y = torch.randn(4, 3, 8, 8) * 3
    for sigma in (0.01, 0.3, 5.0, 1e3):
        exact = -(y - mu) / (sigma**2 + SD**2)  # grad log N(mu, (sd^2 + sigma^2) I)
        torch.testing.assert_close(net(y, sigma), exact, rtol=1e-5, atol=1e-7)
    big = mu + 1e3 * torch.randn(4, 3, 8, 8)
    torch.testing.assert_close(net.denoise(big, 1e3), mu.expand(4, -1, 8, 8), rtol=0, atol=2e-3)  # D -> mu
    torch.testing.assert_close(net.denoise(y, 1e-4), y, rtol=0, atol=1e-6)  # D -> y as sigma -> 0


def test_edm_denoiser_formula_with_a_nonzero_backbone():
    net = edm_net(zero_head=False)
    mu = torch.tensor(MU).reshape(1, 3, 1, 1)
    y, sigma = torch.randn(2, 3, 8, 8), torch.tensor([0.05, 4.0])
    seen = []
    h = net.conv_out.register_forward_hook(lambda m, i, o: seen.append(o.detach()))
    d = net.denoise(y, sigma)
    h.remove()
    s = sigma.reshape(-1, 1, 1, 1)
    c_skip, c_out = SD**2 / (s**2 + SD**2), s * SD / (s**2 + SD**2).sqrt()
    torch.testing.assert_close(d, mu + c_skip * (y - mu) + c_out * seen[0], rtol=1e-5, atol=1e-5)
    inp = []
    h = net.conv_in.register_forward_hook(lambda m, i, o: inp.append(i[0].detach()))
    net(y, sigma)
    h.remove()
    torch.testing.assert_close(inp[0], (y - mu) / (s**2 + SD**2).sqrt())  # c_in (y - mu)


def test_edm_weighting_is_unit_weight_on_the_backbone_target():
    net = edm_net(zero_head=False)
    sde = VESDE(0.01, 20.0)
    x0 = gaussian_data(16)
    loss = dsm_loss(net, sde, x0, generator=torch.Generator().manual_seed(3), weighting="edm", sigma_data=SD)
    g = torch.Generator().manual_seed(3)  # replay the loss's draws: sigma, then z
    sigma = sample_sigma(sde, 16, "cpu", g)
    z = torch.randn(x0.shape, generator=g)
    s = sigma.reshape(-1, 1, 1, 1)
    y = x0 + s * z
    seen = []
    h = net.conv_out.register_forward_hook(lambda m, i, o: seen.append(o.detach()))
    net(y, sigma)
    h.remove()
    mu = torch.tensor(MU).reshape(1, 3, 1, 1)
    c_skip, c_out = SD**2 / (s**2 + SD**2), s * SD / (s**2 + SD**2).sqrt()
    target = (x0 - mu - c_skip * (y - mu)) / c_out
    expected = (seen[0] - target).pow(2).flatten(1).sum(1).mean()
    assert math.isclose(float(loss.detach()), float(expected), rel_tol=1e-4)


def test_losses_of_the_exact_gaussian_denoiser_have_closed_forms():
    # For Gaussian data the zero backbone is the exact posterior mean, whose error has variance
    # c_out^2 = sigma^2 sd^2 / (sigma^2 + sd^2) per pixel: the "edm" loss is d at every sigma and the
    # "sigma2" loss is d * E[sd^2 / (sigma^2 + sd^2)] over log-uniform sigma, an elementary integral.
    net, sde, n, d = edm_net(), VESDE(0.01, 20.0), 4096, 3 * 8 * 8
    x0 = gaussian_data(n, seed=1)
    edm = dsm_loss(net, sde, x0, generator=torch.Generator().manual_seed(4), weighting="edm", sigma_data=SD).detach()
    assert abs(float(edm) / d - 1) < 0.01, float(edm) / d  # MC error of a mean of n chi2_d / d: ~0.003
    raw = dsm_loss(net, sde, x0, generator=torch.Generator().manual_seed(4), weighting="sigma2", eps=0.0).detach()
    # E over u = log sigma uniform on [a, b] of 1 / (1 + sigma^2 / sd^2) = 1 - (1/(2(b-a))) [log(1 + e^{2u}/sd^2)]_a^b
    a, b = math.log(0.01), math.log(20.0)
    f = lambda u: math.log1p(math.exp(2 * u) / SD**2)  # noqa: E731
    closed = 1 - (f(b) - f(a)) / (2 * (b - a))
    assert abs(float(raw) / d / closed - 1) < 0.05, (float(raw) / d, closed)


def test_log_normal_sigma_sampling_is_clipped_to_the_sde_range():
    sde = VESDE(0.01, 2.0)
    s = sample_sigma(sde, 20000, "cpu", torch.Generator().manual_seed(0), "log_normal", p_mean=-1.2, p_std=1.2)
    assert float(s.min()) == pytest.approx(0.01) and float(s.max()) == pytest.approx(2.0)
    assert abs(float(s.log().median()) + 1.2) < 0.03  # the median of log sigma is p_mean (clipping keeps it)
    with pytest.raises(ValueError, match="sigma sampling"):
        sample_sigma(sde, 2, "cpu", None, "uniform")
    with pytest.raises(ValueError, match="weighting"):
        dsm_loss(edm_net(), sde, gaussian_data(2), weighting="sigma")


def test_denoiser_mse_baselines_and_the_exact_gaussian_denoiser():
    net, x0 = edm_net(), gaussian_data(512, seed=2)
    sigmas = [0.01, 0.3, 30.0]
    out = denoiser_mse(net, x0, sigmas, torch.Generator().manual_seed(0))
    torch.testing.assert_close(out["identity"], torch.tensor(sigmas, dtype=torch.float64) ** 2)
    assert abs(float(out["mean_image"][0]) / SD**2 - 1) < 0.02  # the data's variance about its mean image
    for j, s in enumerate(sigmas):  # the exact posterior mean: MSE = sigma^2 sd^2 / (sigma^2 + sd^2)
        exact = s**2 * SD**2 / (s**2 + SD**2)
        assert abs(float(out["mse"][j]) / exact - 1) < 0.03, (s, float(out["mse"][j]), exact)
    assert float(out["mse"][2]) <= float(out["mean_image"][2]) * 1.03  # large sigma: no worse than the mean image
    assert float(out["mse"][0]) <= float(out["identity"][0]) * 1.03  # small sigma: no worse than the identity


def test_precond_hparams_round_trip_and_validation():
    net = edm_net(zero_head=False)
    other = NCSNpp(**json.loads(json.dumps(net.hparams)))
    other.load_state_dict(net.state_dict(), strict=True)
    x, sigma = torch.randn(2, 3, 8, 8), torch.tensor([0.5, 3.0])
    torch.testing.assert_close(other.eval()(x, sigma), net(x, sigma), rtol=0, atol=0)
    assert "precond" not in NCSNpp(8, nf=8, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=()).hparams
    with pytest.raises(ValueError, match="precond"):
        NCSNpp(8, nf=8, ch_mult=(1, 2), precond="vp")
    img_mean = torch.rand(3 * 8 * 8).tolist()
    per_image = NCSNpp(8, nf=8, ch_mult=(1, 2), precond="edm", sigma_data=SD, data_mean=img_mean).eval()
    y = torch.randn(2, 3, 8, 8)  # zero backbone: the Gaussian score around the mean image
    torch.testing.assert_close(per_image(y, 2.0), -(y - torch.tensor(img_mean).reshape(1, 3, 8, 8)) / (4 + SD**2))
    with pytest.raises(ValueError, match="data_mean needs 3"):
        NCSNpp(8, nf=8, ch_mult=(1, 2), precond="edm", data_mean=[0.5])


def test_data_statistics_match_a_direct_computation():
    imgs = torch.randint(0, 256, (37, 3, 5, 5), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    x = imgs.double() / 255
    mean, std = data_statistics(imgs, "channel", chunk=8)
    m = x.mean((0, 2, 3))
    assert mean == pytest.approx(m.tolist(), abs=1e-6)
    assert std == pytest.approx(float((x - m.reshape(1, 3, 1, 1)).pow(2).mean().sqrt()), abs=1e-6)
    mean, std = data_statistics(imgs, "image", chunk=8)
    m = x.mean(0)
    assert mean == pytest.approx(m.reshape(-1).tolist(), abs=1e-6)
    assert std == pytest.approx(float((x - m).pow(2).mean().sqrt()), abs=1e-6)
