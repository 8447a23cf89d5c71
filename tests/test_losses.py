"""Denoising score matching (known answers and a falling loss), the named weightings and noise-level samplers,
label dropout, and the EMA."""

import math

import pytest
import torch
from torch import nn

from latent_abstractions.model.ema import EMA
from latent_abstractions.model.losses import (
    WEIGHTINGS,
    LogNormalSigma,
    LogUniformSigma,
    drop_labels,
    dsm_loss,
    edm,
    geometric,
    sigma2,
    sigma_sampler,
    weighting,
)
from latent_abstractions.model.networks import NCSNpp
from latent_abstractions.model.precond import RawVE, build_score_network
from latent_abstractions.model.sde import VESDE, sigma_max_from_data

torch.set_num_threads(1)


class ExactPointScore(nn.Module):
    """The exact score of p_sigma = N(c, sigma^2 I), the noised version of a dataset with one image c."""

    def __init__(self, c: torch.Tensor, factor: float = 1.0):
        super().__init__()
        self.c, self.factor = c, factor

    def forward(self, x, sigma, labels=None):
        return self.factor * (self.c - x) / sigma.reshape(-1, 1, 1, 1) ** 2


def test_dsm_loss_known_answers():
    sde = VESDE(0.01, 5.0)
    c = torch.rand(1, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    x0 = c.expand(64, -1, -1, -1)
    sampler = LogUniformSigma(sde)
    exact = dsm_loss(ExactPointScore(c), x0, sampler=sampler, generator=torch.Generator().manual_seed(1))
    assert float(exact) < 1e-8  # sigma * s + z = 0 exactly for the true score of a point mass
    half = dsm_loss(ExactPointScore(c, 0.5), x0, sampler=sampler, generator=torch.Generator().manual_seed(1))
    zero = dsm_loss(ExactPointScore(c, 0.0), x0, sampler=sampler, generator=torch.Generator().manual_seed(1))
    # loss = mean ||(1 - factor) z||^2 summed over 48 pixels: 48 for the zero score, 12 for half of it
    assert abs(float(zero) / 48 - 1) < 0.1 and math.isclose(float(half), float(zero) / 4, rel_tol=1e-5)
    again = dsm_loss(ExactPointScore(c, 0.0), x0, sampler=sampler, generator=torch.Generator().manual_seed(1))
    assert float(again) == float(zero)  # the generator drives t and z


def test_weightings_have_their_closed_forms():
    sd = 0.4
    sigma = torch.tensor([0.0, sd, 3**0.5 * sd, 7 * sd])
    # w_edm = 1 + (sigma / sd)^2: 1, 2, 4, 50; the geometric weight is its square root; sigma2's is 1
    torch.testing.assert_close(edm(sigma, sd), torch.tensor([1.0, 2.0, 4.0, 50.0]))
    torch.testing.assert_close(geometric(sigma, sd), torch.tensor([1.0, 2**0.5, 2.0, 50**0.5]))
    assert torch.equal(sigma2(sigma, sd), torch.ones(4))
    assert weighting("geometric") is geometric and set(WEIGHTINGS) == {"sigma2", "edm", "geometric"}
    with pytest.raises(ValueError, match="weighting must be one of"):
        weighting("sigma")


def test_weightings_multiply_the_per_example_loss():
    # one example: sigma2 gives ||e||^2, edm w ||e||^2 with w = (sigma^2 + sd^2) / sd^2, geometric sqrt(w) ||e||^2,
    # so geometric^2 = sigma2 * edm whatever sigma and z were drawn; edm / sigma2 = w >= 1 and grows with sigma
    sampler = LogUniformSigma(VESDE(0.01, 50.0))
    c = torch.rand(1, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    for seed in range(5):
        loss = {
            name: float(
                dsm_loss(
                    ExactPointScore(c, 0.3),
                    c,
                    sampler=sampler,
                    weighting=w,
                    sigma_data=0.4,
                    generator=torch.Generator().manual_seed(seed),
                )
            )
            for name, w in WEIGHTINGS.items()
        }
        assert math.isclose(loss["geometric"] ** 2, loss["sigma2"] * loss["edm"], rel_tol=1e-5)
        assert loss["edm"] > loss["geometric"] > loss["sigma2"]
        sigma = float(sampler(1, "cpu", torch.Generator().manual_seed(seed)))  # the loss's first draw, replayed
        assert math.isclose(loss["edm"] / loss["sigma2"], 1 + sigma**2 / 0.4**2, rel_tol=1e-5)


def test_log_uniform_noise_levels_are_uniform_in_log_sigma():
    sde = VESDE(0.01, 50.0)
    s = LogUniformSigma(sde, eps=0.0)(40000, "cpu", torch.Generator().manual_seed(0))
    assert s.dtype == torch.float32 and float(s.min()) >= 0.01 * (1 - 1e-6) and float(s.max()) <= 50.0 * (1 + 1e-6)
    u = (s.double().log() - math.log(0.01)) / (math.log(50.0) - math.log(0.01))  # U(0, 1) if log-uniform
    for q in (0.1, 0.5, 0.9):  # quantiles of U(0, 1); the binomial SE of each is ~0.0025
        assert abs(float((u < q).double().mean()) - q) < 0.01, q
    assert float(LogUniformSigma(sde)(1000, "cpu", torch.Generator().manual_seed(0)).min()) >= float(sde.sigma(1e-5))


def test_log_normal_noise_levels_are_clipped_to_the_sde_range():
    sde = VESDE(0.01, 2.0)
    s = LogNormalSigma(sde, p_mean=-1.2, p_std=1.2)(20000, "cpu", torch.Generator().manual_seed(0))
    assert float(s.min()) == pytest.approx(0.01) and float(s.max()) == pytest.approx(2.0)
    assert abs(float(s.log().median()) + 1.2) < 0.03  # the median of log sigma is p_mean (clipping keeps it)
    # the fraction clipped at each end is the normal's tail mass there: Phi(-2.84) = 0.0023, 1 - Phi(1.58) = 0.057
    phi = lambda v: 0.5 * math.erfc(-v / 2**0.5)  # noqa: E731  (the standard normal CDF)
    low, high = phi((math.log(0.01) + 1.2) / 1.2), 1 - phi((math.log(2.0) + 1.2) / 1.2)
    assert abs(float((s <= 0.01).double().mean()) - low) < 0.0015  # ~4 binomial SE
    assert abs(float((s >= 2.0).double().mean()) - high) < 0.0065
    assert sigma_sampler("log_normal", sde, p_mean=-1.2, p_std=1.2) == LogNormalSigma(sde, -1.2, 1.2)
    assert sigma_sampler("log_uniform", sde, p_mean=0.0, p_std=1.0) == LogUniformSigma(sde)
    with pytest.raises(ValueError, match="sigma sampling must be one of"):
        sigma_sampler("uniform", sde, p_mean=0.0, p_std=1.0)


def test_loss_falls_and_ema_tracks():
    torch.manual_seed(0)
    net = RawVE(NCSNpp(8, nf=8, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=()))
    data = torch.rand(16, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    sampler = LogUniformSigma(VESDE(0.01, sigma_max_from_data(data)))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    ema = EMA(net, 0.9)
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(100):
        loss = dsm_loss(net, data[torch.randint(16, (16,), generator=g)], sampler=sampler, generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        ema.update(net)
        losses.append(float(loss.detach()))
    first, last = sum(losses[:20]) / 20, sum(losses[-20:]) / 20
    # starts at E||z||^2 = 192 (zero-initialised output); measured: first 20 steps 171, last 20 121
    assert first > 150 and last < 0.8 * first, (first, last)
    w = net.backbone.conv_out.weight.detach()
    assert not torch.equal(ema.shadow["backbone.conv_out.weight"], w)  # a lagging average, not a copy
    other = build_score_network(**net.hparams)
    ema.copy_to(other)
    torch.testing.assert_close(other.backbone.conv_out.weight, ema.shadow["backbone.conv_out.weight"])


def test_ema_update_rule_and_state():
    net = nn.Linear(3, 2)
    ema = EMA(net, 0.75)
    before = ema.state_dict()["weight"].clone()
    with torch.no_grad():
        net.weight.add_(4.0)
    ema.update(net)
    torch.testing.assert_close(ema.shadow["weight"], 0.75 * before + 0.25 * net.weight.detach())
    restored = EMA(nn.Linear(3, 2), 0.75)
    restored.load_state_dict(ema.state_dict())
    torch.testing.assert_close(restored.shadow["weight"], ema.shadow["weight"], rtol=0, atol=0)
    assert restored.shadow["weight"].dtype == torch.float32
    with pytest.raises(KeyError, match="does not match"):
        EMA(nn.Linear(3, 2, bias=False), 0.75).load_state_dict(ema.state_dict())
    with pytest.raises(ValueError, match="decay"):
        EMA(net, 1.0)


def test_drop_labels_rate_and_independence():
    lab = torch.zeros(20000, 6, dtype=torch.long)
    dropped = drop_labels(lab, 0.3, torch.Generator().manual_seed(1)) == -1
    assert abs(float(dropped.float().mean()) - 0.3) < 0.02
    all_dropped = dropped.all(1).float().mean()  # independent per factor: 0.3^6
    assert float(all_dropped) < 0.003
    assert torch.equal(drop_labels(lab + 2, 0.0), lab + 2) and bool((drop_labels(lab, 1.0) == -1).all())
