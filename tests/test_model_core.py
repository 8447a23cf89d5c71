"""VE SDE maths, the NCSN++ network, the loss, and the sampler's determinism guarantees."""

import math

import pytest
import torch

from latent_abstractions.ema import EMA
from latent_abstractions.losses import dsm_loss, drop_labels
from latent_abstractions.networks import NCSNpp
from latent_abstractions.rng import make_generators
from latent_abstractions.sampling import sample, time_grid
from latent_abstractions.score import get_score_fn
from latent_abstractions.sde import VESDE, sigma_max_from_data

torch.set_num_threads(1)
SDE = VESDE(0.01, 10.0)


def tiny_net(**kw):
    torch.manual_seed(0)
    return NCSNpp(8, nf=8, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(4,), **kw)


def test_sigma_g2_and_prior_match_the_formulas():
    t = torch.tensor([0.0, 0.25, 0.5, 1.0], dtype=torch.float64)
    expected = 0.01 * (10.0 / 0.01) ** t
    torch.testing.assert_close(SDE.sigma(t), expected)
    torch.testing.assert_close(SDE.marginal_std(t), expected)
    h = 1e-6  # g^2 = d sigma^2 / dt, checked by central differences
    fd = (SDE.sigma(t[1:3] + h) ** 2 - SDE.sigma(t[1:3] - h) ** 2) / (2 * h)
    torch.testing.assert_close(SDE.g2(t[1:3]), fd, rtol=1e-5, atol=0)
    z = SDE.prior_sampling((4000, 3, 2, 2), make_generators(range(4000)))
    assert abs(float(z.std()) - 10.0) < 0.2
    assert SDE.tau_to_t(0.0) == 1.0 and SDE.t_to_tau(1.0) == 0.0  # tau = 0 is noise
    lp = SDE.prior_logp(torch.zeros(1, 2))
    assert math.isclose(float(lp), -math.log(2 * math.pi * 100.0), rel_tol=1e-6)


def test_perturb_marginal_statistics():
    x0 = torch.full((20000, 1), 3.0)
    x = SDE.perturb(x0, 0.5, torch.randn(20000, 1, generator=torch.Generator().manual_seed(0)))
    assert abs(float(x.mean()) - 3.0) < 0.05 and abs(float(x.std()) - float(SDE.sigma(0.5))) < 0.05


def test_sigma_max_is_the_largest_pairwise_distance():
    x = torch.zeros(5, 1, 2, 2)
    x[3] = 1.0
    x[4, 0, 0, 0] = -2.0
    assert math.isclose(sigma_max_from_data(x, chunk=2), sigma_max_from_data(x))
    assert math.isclose(sigma_max_from_data(x), math.sqrt(9 + 3), rel_tol=1e-9)


def test_network_shapes_features_and_conditioning():
    net = tiny_net(n_levels=[10, 10, 10, 8, 4, 15]).eval()
    x = torch.randn(3, 3, 8, 8)
    sigma = torch.tensor([0.1, 1.0, 5.0])
    assert net(x, sigma).shape == x.shape
    assert net.feature_names() == ["enc_8", "enc_4", "bottleneck", "dec_4", "dec_8"]
    feats = net.forward_features(x, sigma, ["enc_4", "bottleneck"])
    assert feats["bottleneck"].shape == (3, 16, 4, 4) and feats["enc_4"].shape == (3, 16, 4, 4)
    with pytest.raises(KeyError, match="available"):
        net.forward_features(x, sigma, ["nope"])
    null = torch.full((3, 6), -1)
    torch.testing.assert_close(net(x, sigma, null), net(x, sigma, None))
    for p in net.parameters():  # make the label embeddings matter
        torch.nn.init.normal_(p, std=0.05) if p.ndim > 1 else None
    lab = torch.tensor([[1, 2, 3, 4, 1, 0]] * 3)
    assert not torch.allclose(net(x, sigma, lab), net(x, sigma, null))
    with pytest.raises(ValueError, match="unconditional"):
        tiny_net()(x, sigma, lab)


def test_paper_architecture_parameter_count():
    with torch.device("meta"):
        net = NCSNpp(64, nf=128, ch_mult=(1, 2, 2, 2), num_res_blocks=4, attn_resolutions=(16,))
    n = sum(p.numel() for p in net.parameters())
    assert 55e6 < n < 70e6, n  # reference NCSN++ 64x64 VE: 62.7M


def test_loss_falls_and_ema_tracks():
    net = tiny_net()
    data = torch.rand(16, 3, 8, 8)
    sde = VESDE(0.01, float(sigma_max_from_data(data)))
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    ema = EMA(net, 0.9)
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(150):
        loss = dsm_loss(net, sde, data[torch.randint(16, (16,), generator=g)], generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        ema.update(net)
        losses.append(float(loss.detach()))
    first, last = sum(losses[:20]) / 20, sum(losses[-20:]) / 20
    assert last < 0.75 * first, (first, last)  # starts at E||z||^2 = 192
    w = dict(net.named_parameters())["conv_out.weight"]
    assert not torch.equal(ema.shadow["conv_out.weight"], w.detach())  # lagging average, not a copy
    other = tiny_net()
    ema.copy_to(other)
    torch.testing.assert_close(other.state_dict()["conv_out.weight"], ema.shadow["conv_out.weight"])


def test_drop_labels_rate():
    lab = torch.zeros(20000, 6, dtype=torch.long)
    frac = float((drop_labels(lab, 0.3, torch.Generator().manual_seed(1)) == -1).float().mean())
    assert abs(frac - 0.3) < 0.02


def _sampler_setup():
    net = tiny_net().eval()
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.02)
    return get_score_fn(net, SDE)


@pytest.mark.parametrize("method", ["pc", "em"])
def test_sampling_seeds_batch_independence_and_stop_continue(method):
    score = _sampler_setup()
    taus = time_grid(10)
    def run(seeds, taus, x=None, gens=None, **kw):
        gens = gens or make_generators(seeds)
        x = SDE.prior_sampling((len(seeds), 3, 8, 8), gens) if x is None else x
        return sample(score, SDE, x, taus, gens, method=method, **kw), gens

    full, _ = run([0, 1, 2, 3], taus, record_taus=[float(taus[4])])
    again, _ = run([0, 1, 2, 3], taus)
    torch.testing.assert_close(full.x, again.x, rtol=0, atol=0)
    single, _ = run([2], taus)
    torch.testing.assert_close(single.x[0], full.x[2], rtol=1e-5, atol=1e-5)  # batch-size independent
    other, _ = run([7], taus)
    assert not torch.allclose(other.x[0], full.x[2])
    a = float(taus[4])  # stop at a, continue with the same generators
    first, gens = run([0, 1, 2, 3], time_grid(10, 0.0, a))
    torch.testing.assert_close(first.x, full.states[a], rtol=0, atol=0)
    rest, _ = run([0, 1, 2, 3], time_grid(10, a, 1.0), x=first.x, gens=gens)
    torch.testing.assert_close(rest.x, full.x, rtol=1e-6, atol=1e-6)
    assert torch.isfinite(full.x).all()


def test_time_grid_pieces_share_points():
    whole = time_grid(8)
    assert whole[0] == 0 and abs(float(whole[-1]) - (1 - 1e-5)) < 1e-12 and len(whole) == 9
    left, right = time_grid(8, 0.0, float(whole[3])), time_grid(8, float(whole[3]), 1.0)
    torch.testing.assert_close(torch.cat([left, right[1:]]), whole)
    mid = time_grid(8, 0.3, 0.6)
    assert float(mid[0]) == 0.3 and float(mid[-1]) == 0.6 and (mid.diff() > 0).all()
