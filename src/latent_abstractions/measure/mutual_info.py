r"""Mutual information between the generative state Y_tau and each latent factor, from score gaps.

Time convention: tau is generative time (0 = noise, 1 = data); the forward SDE runs in t = 1 - tau.

Derivation. The paper (Franzese et al., eq. for the information carried by the path) writes

    I(Y_[0,tau]; phi) = I(Y_0; phi) + 1/2 E int_0^tau || grad log p(Y_T | Y_s) ||^2 ds,

the information the measurement path accumulates about the latent phi. For a diffusion, the path's
information about phi is carried by the difference between the drift of the phi-conditional generative
SDE and the unconditional one. For the VE SDE both reverse SDEs share the diffusion g and differ only in
drift by g^2 (s(y, t | phi) - s(y, t)), with s the (conditional) score. By Girsanov's theorem the KL divergence
between the conditional and unconditional path measures from pure noise up to tau is
1/2 int g^2 E|| s(y, t | phi) - s(y, t) ||^2 dt, and averaging over phi gives the mutual information
(MINDE, Franzese et al. 2024). Since Y_tau is a Markov state of the path, in forward time this reads

    I(Y_tau; phi) = I(Y_{tau=0}; phi) + int_{t = 1 - tau}^{1} 1/2 g(t)^2 E || s(x_t, t | phi) - s(x_t, t) ||^2 dt,

where x_t = x_0 + sigma(t) z, x_0 ~ data. The first term is the information left at sigma_max (the prior
end), which is ~0 when sigma_max is the data's diameter; it is neglected. With u = log sigma(t),
g^2 dt = 2 sigma^2 du, so the integrand per unit t is log(sigma_max/sigma_min) * E||sigma (s_phi - s)||^2,
which stays O(1) over the whole path (a well-conditioned quadrature).

Two integrands with the same expectation for exact scores (``estimator``):
- "gap": 1/2 g^2 || s(y, t | phi) - s(y, t) ||^2 (the formula above);
- "dsm_difference": 1/2 g^2 ( || s(y, t) + z / sigma ||^2 - || s(y, t | phi) + z / sigma ||^2 ), the difference of
  the two denoising score matching errors on the same (x_0, z), where -z / sigma = grad log p(y | x_0). For exact
  scores E||s_u + z/sigma||^2 = E||s_phi + z/sigma||^2 + E||s_phi - s_u||^2 (s_phi is the conditional expectation
  of the DSM target given (y, phi), s_u given y alone), so the two agree. For a network, errors e_u, e_phi of
  its two branches that are independent of each other add E||e_phi - e_u||^2 >= 0 to the gap at every t (a
  bias that g^2 weights equally over log sigma, and that grows the curve past log(levels) late in generation),
  but only E||e_u||^2 - E||e_phi||^2 to the difference, which is ~0 when the branches are equally good.

Estimator. The t-interval of each step of the tau grid is split into equal strata; each image draws one
uniform time per stratum and one noise sample per time (stratified Monte Carlo, unbiased). Per image the
cumulative sums give its estimate at every tau; the MI is the mean over images and its standard error the
standard deviation over images / sqrt(n). The same function takes the network's scores or exact scores (tests).
The two halves are separate functions (:func:`mi_contributions` per interval, :func:`mi_from_contributions` for
the sums), so that contiguous parts of the grid can be estimated apart (tau shards) and finished together; a part
draws, without evaluating the score, the random numbers of the intervals before it, so it gets the whole run's.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from ..model.sde import VESDE

ESTIMATORS = {  # name -> the integral it estimates (written into the table's metadata)
    "gap": "1/2 int_{1-tau}^1 g^2 E||s(y,t|phi) - s(y,t)||^2 dt",
    "dsm_difference": "1/2 int_{1-tau}^1 g^2 E(||s(y,t) + z/sigma||^2 - ||s(y,t|phi) + z/sigma||^2) dt",
}


def mi_edges(taus: np.ndarray) -> np.ndarray:
    """The quadrature's interval edges in generative time: interval j is [edges[j], edges[j + 1]] (forward
    [1 - edges[j + 1], 1 - edges[j]]), from the prior end; a grid starting above 0 gets [0, taus[0]] first."""
    taus = np.asarray(taus, dtype=np.float64)
    if np.any(np.diff(taus) <= 0) or taus[0] < 0 or taus[-1] > 1:
        raise ValueError("taus must be increasing within [0, 1]")
    return np.concatenate([[0.0], taus]) if taus[0] > 0 else taus


def tau_intervals(taus: np.ndarray, tau_indices: range) -> range:
    """The intervals whose upper edges are the taus ``tau_indices`` (contiguous): what a shard of the grid
    estimates. tau = 0 ends no interval (its estimate is 0 by construction)."""
    offset = 1 if taus[0] == 0 else 0
    return range(max(0, tau_indices.start - offset), max(0, tau_indices.stop - offset))


@torch.no_grad()
def mi_contributions(
    score_fn: Callable,
    sde: VESDE,
    x0: torch.Tensor,
    labels: torch.Tensor,
    taus: np.ndarray,
    n_times: int,
    generator: torch.Generator,
    batch_size: int = 256,
    progress: bool = False,
    factors: list[int] | None = None,
    estimator: str = "gap",
    intervals: range | None = None,
) -> torch.Tensor:
    """Per-image contributions of the intervals ``intervals`` (default: all of :func:`mi_edges`) to the integral.

    The strata times and noise of every interval are drawn from ``generator`` in interval order, so the draws of
    the intervals before ``intervals`` are made (and not evaluated: no score call) to reach exactly the draws that
    a run over all intervals gives these: any contiguous set of intervals gets the numbers of the whole run.
    Arguments as :func:`mi_curves`.

    Returns:
        (n images, len(intervals), n factors) float64: each image's integral over each interval.
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {tuple(ESTIMATORS)}, got {estimator!r}")
    edges = mi_edges(taus)
    n_int = len(edges) - 1
    intervals = range(n_int) if intervals is None else intervals
    if intervals.step != 1 or not 0 <= intervals.start <= intervals.stop <= n_int:
        raise ValueError(f"intervals must be a contiguous part of range({n_int}), got {intervals}")
    factors = list(range(labels.shape[1])) if factors is None else factors
    n, dev = len(x0), x0.device
    chunk = max(1, batch_size // (len(factors) + 1))  # images per network call
    per = max(1, n_times // n_int)
    for _ in range(intervals.start * per):  # the earlier intervals' draws, in their order and shapes
        torch.rand(n, generator=generator, dtype=torch.float64)
        torch.randn(x0.shape, generator=generator, dtype=x0.dtype)
    contrib = torch.zeros(n, len(intervals), len(factors), dtype=torch.float64)
    for c, j in enumerate(tqdm(intervals, desc="MI", disable=not progress, mininterval=2)):
        t_hi, t_lo = 1 - edges[j], 1 - edges[j + 1]
        width = (t_hi - t_lo) / per
        for m in range(per):
            u = torch.rand(n, generator=generator, dtype=torch.float64)
            t = (t_lo + (m + u) * width).float()
            z = torch.randn(x0.shape, generator=generator, dtype=x0.dtype)
            for i in range(0, n, chunk):
                sl = slice(i, min(n, i + chunk))
                b = sl.stop - sl.start
                tb = t[sl].to(dev)
                xt = sde.perturb(x0[sl], tb, z[sl].to(dev))
                lab = torch.full((len(factors) + 1, b, labels.shape[1]), -1, dtype=torch.long, device=dev)
                for r, k in enumerate(factors):
                    lab[r + 1, :, k] = labels[sl, k].to(dev)
                s = score_fn(
                    xt.repeat(len(factors) + 1, *([1] * (xt.ndim - 1))),
                    tb.repeat(len(factors) + 1),
                    lab.reshape(-1, labels.shape[1]),
                )
                s = s.reshape(len(factors) + 1, b, -1).double()
                if estimator == "gap":
                    gap = (s[1:] - s[:1]).pow(2).sum(-1)  # (F, b)
                else:  # DSM error of the unconditional branch minus that of each conditional one
                    sig = sde.sigma(tb.double()).reshape(1, -1, 1)
                    err = (s + z[sl].to(dev).double().reshape(1, b, -1) / sig).pow(2).sum(-1)  # (F + 1, b)
                    gap = err[:1] - err[1:]
                integrand = 0.5 * sde.g2(tb.double()).cpu()[None] * gap.cpu()  # 1/2 g^2 ||ds||^2
                contrib[sl, c] += (integrand * width).T
    return contrib


def mi_from_contributions(contrib: torch.Tensor, taus: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mi, se), each (len(taus), n factors), from every interval's per-image contributions ((n, intervals, F), all
    intervals of :func:`mi_edges` in order): per image the cumulative sums, then the mean and its standard error
    over images."""
    n, n_int, n_f = contrib.shape
    if n_int != len(mi_edges(taus)) - 1:
        raise ValueError(f"contributions of {n_int} intervals, but the tau grid has {len(mi_edges(taus)) - 1}")
    per_image = contrib.cumsum(dim=1)  # (n, intervals, F): I at each edge
    if taus[0] == 0:  # the estimate at tau = 0 is 0 by construction
        per_image = torch.cat([torch.zeros(n, 1, n_f, dtype=torch.float64), per_image], dim=1)
    mi = per_image.mean(0).numpy()
    se = (per_image.std(0, unbiased=True) / math.sqrt(n)).numpy()
    return mi, se


def mi_curves(
    score_fn: Callable,
    sde: VESDE,
    x0: torch.Tensor,
    labels: torch.Tensor,
    taus: np.ndarray,
    n_times: int,
    generator: torch.Generator,
    batch_size: int = 256,
    progress: bool = False,
    factors: list[int] | None = None,
    estimator: str = "gap",
) -> tuple[np.ndarray, np.ndarray]:
    """Estimate I(Y_tau; phi_k) for every tau of ``taus`` and factor k.

    Args:
        score_fn: ``score(x, t, labels)`` at forward time t ((B,) tensor); labels (B, K) with -1 = not given.
            All -1 is the unconditional score; only column k set is the score conditional on factor k.
        sde: the VE SDE.
        x0: clean data (n, ...); labels: (n, K) level indices of x0.
        taus: increasing generative times in [0, 1] (tau = 0: the estimate is 0 there).
        n_times: total strata over the whole path (at least one per tau interval).
        generator: CPU generator for the strata times and the noise.
        batch_size: rows per network call; each image takes one row per factor plus the unconditional one,
            so a call holds batch_size // (n_factors + 1) images (one-thread CPU throughput falls by ~30% from
            256 rows to 672).
        factors: which label columns to evaluate (default: all).
        estimator: "gap" or "dsm_difference" (module docstring).

    Returns:
        (mi, se), each (len(taus), n_factors), in nats.
    """
    contrib = mi_contributions(
        score_fn, sde, x0, labels, taus, n_times, generator, batch_size, progress, factors, estimator
    )
    return mi_from_contributions(contrib, np.asarray(taus, dtype=np.float64))
