"""The MI estimator, fed exact scores of a labelled Gaussian mixture, matches the exact MI."""

import math

import numpy as np
import pytest
import torch

from latent_abstractions.measure.mutual_info import mi_curves
from latent_abstractions.model.sde import VESDE

CENTRES = torch.tensor([-3.0, -1.0, 1.0, 3.0], dtype=torch.float64)
# factor 0 splits far-apart halves (decided early in generation), factor 1 alternates (decided late)
LABELS = torch.tensor([[0, 0], [0, 1], [1, 0], [1, 1]])
SDE = VESDE(0.05, 20.0)
TAUS = np.array([0.0, 0.3, 0.5, 0.7, 0.85, 1.0])


def exact_score(x, t, labels):
    """Score of (1/M) sum_m N(c_m, sigma^2), restricted to the centres matching the given labels."""
    sigma = SDE.sigma(t.double())[:, None]
    x = x.double()
    allowed = torch.ones(len(x), len(CENTRES), dtype=torch.bool)
    for k in range(LABELS.shape[1]):
        given = labels[:, k] >= 0
        allowed &= ~given[:, None] | (LABELS[None, :, k] == labels[:, k, None])
    logw = -((x - CENTRES[None]) ** 2) / (2 * sigma**2)
    w = torch.where(allowed, logw, torch.tensor(-torch.inf, dtype=torch.float64)).softmax(1)
    return ((w * (CENTRES[None] - x)).sum(1, keepdim=True) / sigma**2).float()


def exact_mi(t, k):
    """I(X_t; phi_k) by quadrature over a fine grid."""
    sigma = float(SDE.sigma(t))
    xs = np.linspace(-3 - 10 * sigma, 3 + 10 * sigma, 40001)
    dx = xs[1] - xs[0]
    comp = np.exp(-((xs[None] - CENTRES.numpy()[:, None]) ** 2) / (2 * sigma**2)) / math.sqrt(2 * math.pi * sigma**2)
    p = comp.mean(0)
    mi = 0.0
    for level in (0, 1):
        sel = (LABELS[:, k] == level).numpy()
        pc = comp[sel].mean(0)
        ok = pc > 1e-300
        mi += sel.mean() * np.sum(pc[ok] * np.log(pc[ok] / p[ok])) * dx
    return mi


@pytest.fixture(scope="module")
def estimate():
    g = torch.Generator().manual_seed(0)
    which = torch.randint(0, 4, (3000,), generator=g)
    x0 = CENTRES[which].float()[:, None]
    return mi_curves(exact_score, SDE, x0, LABELS[which], TAUS, n_times=100, generator=g, batch_size=3000)


def test_estimator_matches_exact_mi_within_its_standard_error(estimate):
    mi, se = estimate
    for k in (0, 1):
        exact = np.array([exact_mi(1 - tau, k) for tau in TAUS]) - exact_mi(1.0, k)
        z = (mi[:, k] - exact) / np.maximum(se[:, k], 1e-12)
        assert np.all(np.abs(z[1:]) < 3.5), (k, mi[:, k], exact, se[:, k])
        assert mi[0, k] == 0.0
        assert abs(mi[-1, k] - math.log(2)) < 0.05  # at the data end each factor is fully determined


def test_the_far_apart_factor_is_decided_first(estimate):
    mi, _ = estimate
    mid = list(TAUS).index(0.5)
    assert mi[mid, 0] > 2 * mi[mid, 1]  # measured 0.50 vs 0.21 nats at tau = 0.5


def test_a_wrong_estimator_is_rejected(estimate):
    mi, se = estimate
    exact = exact_mi(0.0, 0) - exact_mi(1.0, 0)
    assert abs(2 * mi[-1, 0] - exact) > 10 * se[-1, 0]  # forgetting the 1/2 is detected


def test_bad_tau_grid_is_rejected():
    with pytest.raises(ValueError, match="increasing"):
        mi_curves(exact_score, SDE, torch.zeros(2, 1), LABELS[:2], np.array([0.5, 0.2]), 4, torch.Generator())


def test_dsm_difference_estimator_matches_exact_mi_and_ignores_independent_branch_errors():
    g = torch.Generator().manual_seed(1)
    which = torch.randint(0, 4, (3000,), generator=g)
    x0 = CENTRES[which].float()[:, None]
    mi, se = mi_curves(
        exact_score, SDE, x0, LABELS[which], TAUS, n_times=100, generator=g, batch_size=3000, estimator="dsm_difference"
    )
    for k in (0, 1):
        exact = np.array([exact_mi(1 - tau, k) for tau in TAUS]) - exact_mi(1.0, k)
        z = (mi[:, k] - exact) / np.maximum(se[:, k], 1e-12)
        assert np.all(np.abs(z[1:]) < 3.5), (k, mi[:, k], exact, se[:, k])

    def noisy_score(x, t, labels):  # each branch gets its own error of the same size, 0.3 / sigma
        sigma = SDE.sigma(t.double())[:, None].float()
        branch = (labels >= 0).long().argmax(1) + (labels >= 0).any(1).long()  # 0: null, 1 + k: factor k given
        wobble = 0.3 * torch.sin(3.0 * x + 1.7 * branch[:, None].float()) / sigma
        return exact_score(x, t, labels) + wobble

    g = torch.Generator().manual_seed(2)
    args = (SDE, x0, LABELS[which], TAUS)
    gap, _ = mi_curves(noisy_score, *args, n_times=100, generator=g, batch_size=3000)
    g = torch.Generator().manual_seed(2)
    diff, se = mi_curves(noisy_score, *args, n_times=100, generator=g, batch_size=3000, estimator="dsm_difference")
    truth = exact_mi(0.0, 0) - exact_mi(1.0, 0)
    assert gap[-1, 0] > truth + 0.4  # the gap adds E||e_phi - e_u||^2 at every t (measured: 1.29 vs 0.69)
    # the difference keeps only E||e_u||^2 - E||e_phi||^2 (not exactly 0 here: sin^2 averages differ by phase);
    # measured 0.59 vs 0.69, against the gap's 1.29
    assert abs(diff[-1, 0] - truth) < 0.25 * (gap[-1, 0] - truth), (diff[-1, 0], gap[-1, 0], truth)
    with pytest.raises(ValueError, match="estimator"):
        mi_curves(exact_score, *args, n_times=4, generator=g, estimator="kl")


@pytest.mark.parametrize("taus", [TAUS, TAUS[1:]], ids=["from_zero", "from_above_zero"])
def test_tau_shards_draw_what_the_whole_run_draws(taus):
    """Contributions of contiguous interval ranges, each from a fresh generator with the run's seed, are exactly the
    whole run's columns; gathered, they give mi_curves' (mi, se) bit for bit."""
    from latent_abstractions.measure.mutual_info import (
        mi_contributions,
        mi_edges,
        mi_from_contributions,
        tau_intervals,
    )
    from latent_abstractions.taus import shard_range

    g = torch.Generator().manual_seed(1)
    which = torch.randint(0, 4, (64,), generator=g)
    x0, labels = CENTRES[which].float()[:, None], LABELS[which]
    kw = dict(n_times=20, batch_size=30)
    whole = mi_contributions(exact_score, SDE, x0, labels, taus, generator=torch.Generator().manual_seed(7), **kw)
    assert whole.shape == (64, len(mi_edges(taus)) - 1, 2)
    for n_shards in (2, 3, len(taus)):
        intervals = [tau_intervals(taus, shard_range(len(taus), n_shards, k)) for k in range(n_shards)]
        assert [j for r in intervals for j in r] == list(range(whole.shape[1]))  # every interval once, in order
        parts = [
            mi_contributions(
                exact_score, SDE, x0, labels, taus, generator=torch.Generator().manual_seed(7), intervals=r, **kw
            )
            for r in intervals
        ]
        assert torch.equal(torch.cat(parts, dim=1), whole)
    mi, se = mi_curves(exact_score, SDE, x0, labels, taus, generator=torch.Generator().manual_seed(7), **kw)
    mi2, se2 = mi_from_contributions(torch.cat(parts, dim=1), taus)
    assert np.array_equal(mi, mi2) and np.array_equal(se, se2)


def test_shard_range_splits_the_grid_into_contiguous_balanced_parts():
    from latent_abstractions.taus import shard_range

    for n_taus in (1, 2, 7, 12):
        for n_shards in range(1, n_taus + 1):
            parts = [shard_range(n_taus, n_shards, k) for k in range(n_shards)]
            assert [j for r in parts for j in r] == list(range(n_taus))
            assert max(map(len, parts)) - min(map(len, parts)) <= 1 and min(map(len, parts)) >= 1
    assert list(map(list, (shard_range(12, 5, k) for k in range(5)))) == [
        [0, 1, 2],
        [3, 4, 5],
        [6, 7],
        [8, 9],
        [10, 11],
    ]
    with pytest.raises(ValueError, match="tau_shards"):
        shard_range(3, 4, 0)
