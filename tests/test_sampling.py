"""Reverse-time VE SDE samplers (generative time: tau = 0 noise, tau = 1 data): the right distribution for
an exact score, seeds, batch-size independence, stop-and-continue, recorded states, and the time grid."""

import pytest
import torch

from latent_abstractions.model.networks import NCSNpp
from latent_abstractions.model.precond import RawVE
from latent_abstractions.model.sampling import sample, time_grid
from latent_abstractions.model.score import get_score_fn
from latent_abstractions.model.sde import VESDE
from latent_abstractions.rng import make_generators

torch.set_num_threads(1)
SDE = VESDE(0.01, 10.0)


def gaussian_score(sde, mu, s0):
    """Exact score at forward time t of data ~ N(mu, s0^2 I) noised by the VE kernel: N(mu, s0^2 + sigma(t)^2)."""

    def score(x, t, labels=None):
        var = s0**2 + float(sde.sigma(torch.tensor(float(t), dtype=torch.float64))) ** 2
        return (mu - x) / var

    return score


@pytest.mark.parametrize("method", ["pc", "em"])
def test_exact_score_gives_the_data_distribution(method):
    sde = VESDE(0.01, 20.0)
    mu, s0, n = 2.0, 0.5, 100
    gens = make_generators(range(n))
    x = mu + (s0**2 + 20.0**2) ** 0.5 * torch.cat([torch.randn(1, 3, 8, 8, generator=g) for g in gens])
    out = sample(gaussian_score(sde, mu, s0), sde, x, time_grid(40), gens, method=method, denoise=False).x
    # expected N(2, 0.5^2 + sigma_min^2); measured pc 2.00 / 0.52, em 2.01 / 0.51 (19200 values)
    assert abs(float(out.mean()) - mu) < 0.03 and abs(float(out.std()) - s0) < 0.04, (out.mean(), out.std())
    wider = sample(gaussian_score(sde, mu, 1.5), sde, x, time_grid(40), gens, method=method, denoise=False).x
    assert abs(float(wider.std()) - 1.5) < 0.1  # the same code follows a different target


def test_denoise_is_tweedie_at_the_last_grid_point():
    c = torch.rand(1, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    gens = make_generators([0, 1])
    x = c + 10.0 * torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    point = gaussian_score(SDE, c, 0.0)  # data = the single image c
    out = sample(point, SDE, x, time_grid(20), gens, method="em").x
    torch.testing.assert_close(out, c.expand(2, -1, -1, -1), rtol=0, atol=1e-5)
    raw = sample(point, SDE, x, time_grid(20), make_generators([0, 1]), method="em", denoise=False).x
    assert 0.002 < float((raw - c).std()) < 0.05  # sigma_min-level noise is left without the last step
    mid = sample(point, SDE, x, time_grid(20, 0.0, 0.5), make_generators([0, 1]), method="em").x
    assert float((mid - c).std()) > 0.05  # no denoising when the path stops before the end
    last = time_grid(20, 1.0, 1.0)  # zero-length piece at the end: only the denoising step
    assert len(last) == 1
    torch.testing.assert_close(
        sample(point, SDE, raw, last, make_generators([5, 6])).x, c.expand(2, -1, -1, -1), rtol=0, atol=1e-5
    )


def _net_score():
    torch.manual_seed(0)
    net = RawVE(NCSNpp(8, nf=8, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(4,))).eval()
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.02)
    return get_score_fn(net, SDE)


@pytest.mark.parametrize("method", ["pc", "em"])
def test_seeds_batch_independence_stop_and_continue(method):
    score = _net_score()
    taus = time_grid(10)

    def run(seeds, taus, x=None, gens=None, **kw):
        gens = gens or make_generators(seeds)
        x = SDE.prior_sampling((len(seeds), 3, 8, 8), gens) if x is None else x
        return sample(score, SDE, x, taus, gens, method=method, **kw), gens

    a = float(taus[4])
    full, _ = run([0, 1, 2, 3], taus, record_at=[0, 4, len(taus) - 1])
    assert sorted(full.states) == [0, 4, len(taus) - 1] and full.states[4].device.type == "cpu"
    again, _ = run([0, 1, 2, 3], taus)
    torch.testing.assert_close(full.x, again.x, rtol=0, atol=0)  # same seeds, same samples
    single, _ = run([2], taus)
    torch.testing.assert_close(single.x[0], full.x[2], rtol=1e-5, atol=1e-5)  # batch-size independent
    other, _ = run([7], taus)
    assert not torch.allclose(other.x[0], full.x[2])
    first, gens = run([0, 1, 2, 3], time_grid(10, 0.0, a))  # stop at a, continue with the same generators
    torch.testing.assert_close(first.x, full.states[4], rtol=0, atol=0)
    rest, _ = run([0, 1, 2, 3], time_grid(10, a, 1.0), x=first.x, gens=gens)
    torch.testing.assert_close(rest.x, full.x, rtol=1e-6, atol=1e-6)
    fork, _ = run([10, 11, 12, 13], time_grid(10, a, 1.0), x=first.x)  # forking: fresh generators
    assert not torch.allclose(fork.x, full.x) and torch.isfinite(fork.x).all()


def test_sampler_rejects_bad_input():
    score = gaussian_score(SDE, 0.0, 1.0)
    x, gens = torch.zeros(2, 1, 2, 2), make_generators([0, 1])
    with pytest.raises(ValueError, match="not indices of the sampling grid"):
        sample(score, SDE, x, time_grid(4), gens, record_at=[5])
    with pytest.raises(ValueError, match="one per sample"):
        sample(score, SDE, x, time_grid(4), gens[:1])
    with pytest.raises(ValueError, match="strictly increasing"):
        sample(score, SDE, x, torch.tensor([0.5, 0.2]), gens)
    with pytest.raises(ValueError, match="method"):
        sample(score, SDE, x, time_grid(4), gens, method="ode")


def test_time_grid_pieces_share_points():
    whole = time_grid(8)
    assert whole[0] == 0 and abs(float(whole[-1]) - (1 - 1e-5)) < 1e-12 and len(whole) == 9
    left, right = time_grid(8, 0.0, float(whole[3])), time_grid(8, float(whole[3]), 1.0)
    torch.testing.assert_close(torch.cat([left, right[1:]]), whole)
    mid = time_grid(8, 0.3, 0.6)
    assert float(mid[0]) == 0.3 and float(mid[-1]) == 0.6 and (mid.diff() > 0).all()
    assert set(mid[1:-1].tolist()) <= set(whole.tolist())
    with pytest.raises(ValueError, match="tau_start <= tau_end"):
        time_grid(8, 0.7, 0.2)
