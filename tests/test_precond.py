"""The noise parametrisations around the backbone (raw VE and EDM), the loss weightings on them, and the
denoiser-MSE diagnostic, against known answers: a stand-in backbone that outputs the exact target, and Gaussian
data N(mu, sd^2 I), where a zero backbone output is the exact answer of the EDM parametrisation."""

import json
import math

import pytest
import torch
from torch import nn

from latent_abstractions.model.losses import WEIGHTINGS, LogUniformSigma, denoiser_mse, dsm_loss, edm, sigma2
from latent_abstractions.model.networks import NCSNpp
from latent_abstractions.model.precond import EDMPrecond, RawVE, build_score_network
from latent_abstractions.model.sde import VESDE
from latent_abstractions.model.trainer import data_statistics

torch.set_num_threads(1)
MU, SD = [0.2, 0.5, 0.7], 0.3
ARCH = dict(img_resolution=8, nf=8, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(4,))


def edm_net(zero_head: bool = True, **kw) -> EDMPrecond:
    torch.manual_seed(0)
    net = EDMPrecond(NCSNpp(**ARCH, **kw), sigma_data=SD, data_mean=MU)
    if not zero_head:
        for p in net.parameters():
            if p.ndim > 1:
                torch.nn.init.normal_(p, std=0.1)
    return net.eval()


def gaussian_data(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.tensor(MU).reshape(1, 3, 1, 1) + SD * torch.randn(n, 3, 8, 8, generator=g)


class Oracle(nn.Module):
    """A stand-in backbone for a dataset of one image c: it outputs the exact target F of its wrapper, computed
    from what the wrapper passes in (the scaled input and c_noise = log sigma), and records those inputs."""

    hparams = dict(in_channels=3, img_resolution=8)

    def __init__(self, c: torch.Tensor, edm: bool):
        super().__init__()
        self.c, self.edm, self.seen = c, edm, []

    def forward(self, x_in, c_noise, labels=None):
        self.seen.append((x_in, c_noise))
        sigma = c_noise.exp().reshape(-1, 1, 1, 1)
        if not self.edm:  # y = c + sigma z and D = y + sigma F: F = -z
            return -(x_in - self.c) / sigma
        mu = torch.tensor(MU).reshape(1, 3, 1, 1)
        var = sigma**2 + SD**2
        centred = x_in * var.sqrt()  # the wrapper passed c_in (y - mu)
        c_skip, c_out = SD**2 / var, sigma * SD / var.sqrt()
        return (self.c - mu - c_skip * centred) / c_out  # D = mu + c_skip (y - mu) + c_out F = c


@pytest.mark.parametrize("wrapper", ["none", "edm"])
def test_the_exact_backbone_target_gives_the_exact_denoiser_score_and_a_zero_loss(wrapper):
    c = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    oracle = Oracle(c, wrapper == "edm")
    net = RawVE(oracle) if wrapper == "none" else EDMPrecond(oracle, SD, MU)
    z = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    sigma = torch.tensor([0.01, 0.3, 2.0, 40.0])
    y = c + sigma.reshape(-1, 1, 1, 1) * z
    torch.testing.assert_close(net.denoise(y, sigma), c.expand(4, -1, -1, -1), rtol=0, atol=1e-4)  # D = c
    torch.testing.assert_close(sigma.reshape(-1, 1, 1, 1) * net(y, sigma), -z, rtol=0, atol=1e-5)  # s = -z / sigma
    x_in, c_noise = oracle.seen[-1]  # what the wrapper gave the backbone
    torch.testing.assert_close(c_noise, sigma.log(), rtol=0, atol=0)
    mu = torch.tensor(MU).reshape(1, 3, 1, 1)
    expected_in = y if wrapper == "none" else (y - mu) / (sigma.reshape(-1, 1, 1, 1) ** 2 + SD**2).sqrt()
    torch.testing.assert_close(x_in, expected_in)
    sampler = LogUniformSigma(VESDE(0.01, 40.0))
    for name, w in WEIGHTINGS.items():  # sigma s + z = 0 for every example: no loss under any weighting
        loss = dsm_loss(net, c.expand(16, -1, -1, -1), sampler=sampler, weighting=w, sigma_data=SD)
        assert float(loss) < 1e-6, (name, float(loss))


def test_raw_ve_score_is_the_backbone_output_over_sigma_in_float32():
    torch.manual_seed(0)
    net = RawVE(NCSNpp(**ARCH)).eval()
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.1)
    y, sigma = torch.randn(3, 3, 8, 8), torch.tensor([0.05, 1.0, 17.0])
    for autocast in (False, True):  # under bf16 autocast F is bf16; the division by sigma stays in float32
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            out = net.backbone(y, sigma.log())
            s = net(y, sigma)
        assert out.dtype == (torch.bfloat16 if autocast else torch.float32) and s.dtype == torch.float32
        assert torch.equal(s, out.float() / sigma.reshape(-1, 1, 1, 1))
    torch.testing.assert_close(net(y, 2.0), net.backbone(y, math.log(2.0)) / 2.0, rtol=0, atol=0)  # scalar sigma


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
    h = net.backbone.conv_out.register_forward_hook(lambda m, i, o: seen.append(o.detach()))
    d = net.denoise(y, sigma)
    h.remove()
    s = sigma.reshape(-1, 1, 1, 1)
    c_skip, c_out = SD**2 / (s**2 + SD**2), s * SD / (s**2 + SD**2).sqrt()
    torch.testing.assert_close(d, mu + c_skip * (y - mu) + c_out * seen[0], rtol=1e-5, atol=1e-5)
    inp = []
    h = net.backbone.conv_in.register_forward_hook(lambda m, i, o: inp.append(i[0].detach()))
    net(y, sigma)
    h.remove()
    torch.testing.assert_close(inp[0], (y - mu) / (s**2 + SD**2).sqrt())  # c_in (y - mu)


def test_edm_weighting_is_unit_weight_on_the_backbone_target():
    net = edm_net(zero_head=False)
    sampler = LogUniformSigma(VESDE(0.01, 20.0))
    x0 = gaussian_data(16)
    g = torch.Generator().manual_seed(3)
    loss = dsm_loss(net, x0, sampler=sampler, weighting=edm, sigma_data=SD, generator=g)
    g = torch.Generator().manual_seed(3)  # replay the loss's draws: sigma, then z
    sigma = sampler(16, "cpu", g)
    z = torch.randn(x0.shape, generator=g)
    s = sigma.reshape(-1, 1, 1, 1)
    y = x0 + s * z
    seen = []
    h = net.backbone.conv_out.register_forward_hook(lambda m, i, o: seen.append(o.detach()))
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
    g = torch.Generator().manual_seed(4)
    loss = dsm_loss(net, x0, sampler=LogUniformSigma(sde), weighting=edm, sigma_data=SD, generator=g).detach()
    assert abs(float(loss) / d - 1) < 0.01, float(loss) / d  # MC error of a mean of n chi2_d / d: ~0.003
    g = torch.Generator().manual_seed(4)
    raw = dsm_loss(net, x0, sampler=LogUniformSigma(sde, eps=0.0), weighting=sigma2, generator=g).detach()
    # E over u = log sigma uniform on [a, b] of 1 / (1 + sigma^2 / sd^2) = 1 - (1/(2(b-a))) [log(1 + e^{2u}/sd^2)]_a^b
    a, b = math.log(0.01), math.log(20.0)
    f = lambda u: math.log1p(math.exp(2 * u) / SD**2)  # noqa: E731
    closed = 1 - (f(b) - f(a)) / (2 * (b - a))
    assert abs(float(raw) / d / closed - 1) < 0.05, (float(raw) / d, closed)


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
    other = build_score_network(**json.loads(json.dumps(net.hparams)))
    assert isinstance(other, EDMPrecond) and other.hparams["precond"] == {
        "name": "edm",
        "sigma_data": SD,
        "data_mean": MU,
    }
    other.backbone.load_state_dict(net.backbone.state_dict(), strict=True)
    x, sigma = torch.randn(2, 3, 8, 8), torch.tensor([0.5, 3.0])
    torch.testing.assert_close(other.eval()(x, sigma), net(x, sigma), rtol=0, atol=0)
    raw = build_score_network(dict(ARCH), {"name": "none"})
    assert isinstance(raw, RawVE) and raw.hparams["precond"] == {"name": "none"}
    with pytest.raises(ValueError, match="precond name must be one of"):
        build_score_network(dict(ARCH), {"name": "vp"})
    img_mean = torch.rand(3 * 8 * 8).tolist()
    per_image = EDMPrecond(NCSNpp(**ARCH), sigma_data=SD, data_mean=img_mean).eval()
    y = torch.randn(2, 3, 8, 8)  # zero backbone: the Gaussian score around the mean image
    torch.testing.assert_close(per_image(y, 2.0), -(y - torch.tensor(img_mean).reshape(1, 3, 8, 8)) / (4 + SD**2))
    with pytest.raises(ValueError, match="data_mean needs 3"):
        EDMPrecond(NCSNpp(**ARCH), data_mean=[0.5])
    with pytest.raises(ValueError, match="sigma_data must be > 0"):
        EDMPrecond(NCSNpp(**ARCH), sigma_data=0.0)


def test_the_weights_are_the_backbones_alone():
    # a wrapper adds no parameters or persistent buffers: the optimiser sees the backbone's parameters in order,
    # and a state_dict is the backbone's under one prefix
    for net in (edm_net(), RawVE(NCSNpp(**ARCH))):
        assert [id(p) for p in net.parameters()] == [id(p) for p in net.backbone.parameters()]
        assert list(net.state_dict()) == ["backbone." + k for k in net.backbone.state_dict()]


def test_features_are_the_backbones_on_the_wrappers_input():
    net = edm_net(zero_head=False)
    y, sigma = torch.randn(2, 3, 8, 8), torch.tensor([0.1, 6.0])
    mu, s = torch.tensor(MU).reshape(1, 3, 1, 1), sigma.reshape(-1, 1, 1, 1)
    feats = net.forward_features(y, sigma, ["enc_4", "bottleneck"])
    direct = net.backbone.forward_features((y - mu) / (s**2 + SD**2).sqrt(), sigma.log(), ["enc_4", "bottleneck"])
    for name in ("enc_4", "bottleneck"):
        torch.testing.assert_close(feats[name], direct[name])
    assert net.feature_names() == net.backbone.feature_names()


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
