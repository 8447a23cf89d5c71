r"""The exact nonlinear filter pi_tau of a finite dataset: the ground truth of all three measurements.

Time convention: tau is generative time (0 = noise, 1 = data); the forward SDE runs in t = 1 - tau and a
state at tau carries noise of std sigma = sigma(1 - tau) of the VE SDE (:mod:`latent_abstractions.sde`).

Maths. Let x_1..x_N be the images of a finite dataset on the model's input scale (uint8 / 255) and let the
data distribution be their empirical distribution (Shapes3D is a complete finite grid, so this *is* the data
distribution). The VE perturbation kernel is N(y; x, sigma^2 I), so the noised marginal is the mixture

    p_tau(y) = (1/N) sum_i N(y; x_i, sigma^2 I),

and by Bayes' rule the filter, the posterior over which image the path ends at, is

    pi_tau(i | y) = softmax_i( -||y - x_i||^2 / (2 sigma^2) ).

A factor phi_k is a function of the image, so p(phi_k = l | y) = sum of pi_tau(i | y) over the images whose
factor k has level l (taken from the labels, never from the file's order). From these:

- Mutual information. I(Y_tau; phi_k) = H(phi_k) - E_y H(phi_k | Y_tau = y), with y = x_j + sigma z, j uniform
  over the mixture and z ~ N(0, I); H(phi_k) is the entropy of the levels' frequencies in the mixture. The
  learned estimator (:mod:`mutual_info`) integrates the score gap from tau = 0 and so measures
  I(Y_tau; phi_k) - I(Y_0; phi_k); I(Y_0; phi_k) (at sigma_max) is reported separately as ``mi_at_noise``.
- Forking. With the exact score, the reverse SDE started from y at tau ends, in law, at a sample of the
  posterior (the reverse process has the forward process's joint law), i.e. at x_i with probability
  pi_tau(i | y); a predictor-only sampler (Euler-Maruyama) approximates it up to discretisation error, while a
  Langevin corrector additionally relaxes the fork towards the marginal p_tau and forgets y. So the fork label
  law is p(phi_k | y): the normalised entropy E_y H(phi_k | y) / log L_k is the forking curve for infinitely many
  forks, and the expected normalised plug-in entropy of K labels drawn from p(phi_k | y) the reference for K
  forks. By linearity, E[-sum_l (c_l/K) log(c_l/K)] only needs the marginals c_l ~ Binomial(K, p_l).
  The measurement averages that plug-in entropy over n_base base paths, so even a perfect model's curve scatters
  about the reference; :func:`plugin_entropy_band` simulates the measurement on the exact law (n_base states y
  drawn from p_tau, K labels from p(phi_k | y) each) and gives the central 95% range of its mean: the reference's
  CI, inside which a learned curve that follows the exact filter lies.
- Bayes accuracy. E_y max_l p(phi_k = l | y): no classifier on any features of Y_tau does better (the ceiling
  of every linear probe).
- Exact scores. grad_y log p_tau(y) = (E_pi[x] - y) / sigma^2, and the score conditional on phi_k = l is the same
  with pi restricted (renormalised) to the images of that level: :func:`exact_score_fn` has the network's call
  signature, so the project's MI estimator and forking code run on it unchanged.

Numerics. For y = x_j + sigma z,

    -||y - x_i||^2 / (2 sigma^2) = -D_ji / (2 sigma^2) + z . x_i / sigma + c_j(z, sigma),   D_ji = ||x_j - x_i||^2,

with c_j the same for every i (it cancels in the softmax). D_ji = (|u_j|^2 + |u_i|^2 - 2 u_j . u_i) / 255^2 for the
uint8 pixels u is computed exactly: the products of integers up to 255 summed over <= 2^35 terms are exact in
float64 (no fp32 cancellation of |x|^2 ~ D/3 against the tiny D_ji / sigma_min^2 differences). So per (query
block, data chunk) one float64 GEMM [u_q; z_q] @ u_c^T gives both the Gram and z . x, and every tau then costs
O(Q N) elementwise work. The dataset is streamed in chunks; per (query, tau) a running maximum and running
level sums (one small GEMM with the chunk's one-hot level matrix) accumulate a logsumexp across chunks.
"""

from __future__ import annotations

import math
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
from scipy.special import xlogy

from ..model.sde import VESDE


def level_codes(label_indices: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """Official level indices (N, F) -> codes 0..L_k - 1 of the levels present, and those levels per factor."""
    label_indices = np.asarray(label_indices)
    if label_indices.ndim != 2:
        raise ValueError(f"label_indices must be (N, F), got shape {label_indices.shape}")
    present, codes = [], np.empty(label_indices.shape, dtype=np.int64)
    for k in range(label_indices.shape[1]):
        levels, inverse = np.unique(label_indices[:, k], return_inverse=True)
        present.append(levels)
        codes[:, k] = inverse.reshape(-1)
    return codes, present


def _one_hot(codes: torch.Tensor, n_levels: Sequence[int]) -> torch.Tensor:
    """(n, F) codes -> (n, sum L_k) float64 one-hot, factor blocks side by side."""
    offsets = torch.tensor(np.concatenate([[0], np.cumsum(n_levels)[:-1]]), device=codes.device)
    out = torch.zeros(codes.shape[0], int(sum(n_levels)), dtype=torch.float64, device=codes.device)
    out.scatter_(1, codes + offsets[None], 1.0)
    return out


@torch.no_grad()
def level_posteriors(
    chunks: Iterable[tuple[np.ndarray, np.ndarray]],
    queries: np.ndarray,
    noise: torch.Tensor,
    sigmas: Sequence[float],
    n_levels: Sequence[int],
    *,
    scale: float = 1 / 255,
    device: torch.device | str = "cpu",
    query_block: int = 1024,
) -> list[np.ndarray]:
    """p(phi_k = l | y) for y = scale * queries + sigma * noise, streamed over the mixture's images.

    Args:
        chunks: the mixture, as (pixels (n, D) uint8 (or integer-valued), codes (n, F) int level codes) blocks;
            every image of the mixture appears exactly once (weights 1/N).
        queries: (Q, D) uint8 pixels of the query images x_j (drawn from the mixture).
        noise: (Q, D) standard normal z (float64 recommended), the same for every sigma.
        sigmas: noise stds (one per tau).
        n_levels: L_k per factor (codes of factor k lie in 0..L_k - 1).
        scale: pixel -> model input scale (x = scale * pixels).
        device: where the GEMMs run (float64 on CUDA too; TF32 does not touch float64).
        query_block: queries per GEMM row block.

    Returns:
        One float64 array (Q, len(sigmas), L_k) per factor: the level probabilities (rows sum to 1).
    """
    device = torch.device(device)
    sig = torch.as_tensor(np.asarray(sigmas, dtype=np.float64), device=device)
    if sig.ndim != 1 or bool((sig <= 0).any()):
        raise ValueError(f"sigmas must be a 1-D sequence of positive stds, got {sig.tolist()}")
    q_pix = torch.as_tensor(np.asarray(queries)).to(device, torch.float64)
    z = torch.as_tensor(noise).to(device, torch.float64)
    if q_pix.ndim != 2 or z.shape != q_pix.shape:
        raise ValueError(f"queries and noise must both be (Q, D), got {tuple(q_pix.shape)} and {tuple(z.shape)}")
    nq, n_t, n_lev = q_pix.shape[0], len(sig), int(sum(n_levels))
    q_norm = q_pix.pow(2).sum(1)
    run_max = torch.full((nq, n_t), -math.inf, dtype=torch.float64, device=device)
    sums = torch.zeros(nq, n_t, n_lev, dtype=torch.float64, device=device)
    inv2s2, invs = (1 / (2 * sig**2)).tolist(), (1 / sig).tolist()
    seen = 0
    for pixels, codes in chunks:
        c_pix = torch.as_tensor(np.asarray(pixels)).to(device, torch.float64)
        if c_pix.ndim != 2 or c_pix.shape[1] != q_pix.shape[1]:
            raise ValueError(f"chunk pixels must be (n, {q_pix.shape[1]}), got {tuple(c_pix.shape)}")
        onehot = _one_hot(torch.as_tensor(np.asarray(codes), device=device).long(), n_levels)
        c_norm = c_pix.pow(2).sum(1)
        seen += c_pix.shape[0]
        for a in range(0, nq, query_block):
            b = min(nq, a + query_block)
            g = torch.cat([q_pix[a:b], z[a:b]]) @ c_pix.T  # (2 (b - a), n), exact Gram
            d2 = (q_norm[a:b, None] + c_norm[None] - 2 * g[: b - a]) * scale**2  # ||x_j - x_i||^2
            zx = g[b - a :] * scale  # z . x_i
            logit = torch.empty_like(zx)
            for t in range(n_t):  # in place: a few passes over (Q, n) per tau, no temporaries of that size
                torch.mul(zx, invs[t], out=logit)
                logit.add_(d2, alpha=-float(inv2s2[t]))
                new_max = torch.maximum(run_max[a:b, t], logit.amax(1))
                sums[a:b, t] *= torch.exp(run_max[a:b, t] - new_max)[:, None]
                logit.sub_(new_max[:, None]).exp_()
                sums[a:b, t].addmm_(logit, onehot)
                run_max[a:b, t] = new_max
    if seen == 0:
        raise ValueError("the mixture is empty (no chunks)")
    out, start = [], 0
    total = sums[:, :, : n_levels[0]].sum(-1, keepdim=True)  # every image has one level of factor 0
    for L in n_levels:
        out.append((sums[:, :, start : start + L] / total).cpu().numpy())
        start += L
    return out


def entropy(p: np.ndarray, axis: int = -1) -> np.ndarray:
    """Shannon entropy (nats) along ``axis``, with 0 log 0 = 0."""
    p = np.asarray(p, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
    return -terms.sum(axis=axis)


def expected_plugin_entropy(p: np.ndarray, k: int) -> np.ndarray:
    """E of the plug-in entropy (nats) of k i.i.d. draws from p (along the last axis), exactly.

    The plug-in entropy is -sum_l f(c_l) with f(c) = (c/k) log(c/k) and counts c ~ Multinomial(k, p); by linearity
    only the marginals c_l ~ Binomial(k, p_l) enter.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    p = np.clip(np.asarray(p, dtype=np.float64), 0.0, 1.0)
    c = np.arange(k + 1, dtype=np.float64)
    f = np.zeros(k + 1)
    f[1:] = (c[1:] / k) * np.log(c[1:] / k)
    log_binom = np.array([math.lgamma(k + 1) - math.lgamma(j + 1) - math.lgamma(k - j + 1) for j in range(k + 1)])
    # P(c_l = j) = C(k, j) p^j (1 - p)^(k - j); xlogy keeps 0 * log 0 = 0 at p in {0, 1}
    logpmf = log_binom + xlogy(c, p[..., None]) + xlogy(k - c, 1 - p[..., None])
    return -(np.exp(logpmf) * f).sum(axis=(-1, -2))


def plugin_entropy_band(
    p: np.ndarray, k: int, n_base: int, *, n_sim: int, rng: np.random.Generator, level: float = 0.95
) -> tuple[np.ndarray, np.ndarray]:
    """Central ``level`` range of the forking measurement on the exact law, per noise level.

    The measurement is the mean over ``n_base`` base states of the plug-in entropy (nats) of ``k`` labels drawn from
    p(phi | y). Here the states are drawn uniformly from the Q query states of ``p`` (draws from p_tau) and the
    labels from their rows, ``n_sim`` times; the range is the (1 - level)/2 and (1 + level)/2 quantiles of the
    simulated means, taken on the empirical CDF (the mean is discrete: at a tau where every base is decided the
    range is [0, 0], which a learned curve meets only when all its forks agree).

    Args:
        p: (Q, T, L) level probabilities p(phi = l | y_q) at T noise levels.
        k: forks per base state; n_base: base states per measurement.
    Returns:
        (low, high), each (T,) nats.
    """
    if k < 1 or n_base < 1 or n_sim < 1:
        raise ValueError(f"k, n_base and n_sim must be >= 1, got {k}, {n_base}, {n_sim}")
    p = np.clip(np.asarray(p, dtype=np.float64), 0.0, None)
    p = p / p.sum(-1, keepdims=True)
    n_q, n_t, _ = p.shape
    low, high = np.empty(n_t), np.empty(n_t)
    for t in range(n_t):
        counts = rng.multinomial(k, p[rng.integers(0, n_q, size=(n_sim, n_base)), t])  # (n_sim, n_base, L)
        means = entropy(counts / k).mean(axis=1)
        low[t], high[t] = np.quantile(means, [(1 - level) / 2, (1 + level) / 2], method="inverted_cdf")
    return low, high


def filter_curves(
    probs: list[np.ndarray],
    marginals: list[np.ndarray],
    n_forks: int,
    n_base: int | None = None,
    *,
    n_sim: int = 4000,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Summaries over queries of the level posteriors of :func:`level_posteriors`.

    Args:
        probs: per factor (Q, T, L_k) level probabilities p(phi_k | y_q) at each of T noise levels.
        marginals: per factor (L_k,) level frequencies in the mixture (the prior of phi_k).
        n_forks: K for the finite-K forking reference.
        n_base: base paths of the forking measurement, for the reference's 95% range (NaN when None).
        n_sim, seed: simulated measurements and the seed of :func:`plugin_entropy_band`.

    Returns:
        dict of (T, F) arrays: ``mi`` (nats), ``mi_se`` (standard error over queries), ``entropy``
        (E H(phi|y) / log L_k: forking with K -> infinity), ``entropy_k`` (expected normalised plug-in entropy of
        K draws), ``entropy_k_low`` / ``entropy_k_high`` (the central 95% range of the measurement's mean over
        n_base paths on the exact law, normalised likewise), ``bayes_accuracy`` (E max_l p), and ``ceiling``
        (H(phi_k); log L_k on a full grid).
    """
    cols: dict[str, list[np.ndarray]] = {
        k: []
        for k in ("mi", "mi_se", "entropy", "entropy_k", "entropy_k_low", "entropy_k_high", "bayes_accuracy", "ceiling")
    }
    rng = np.random.default_rng(seed)
    for p, m in zip(probs, marginals):
        n_q, n_t, n_l = p.shape
        h_prior = float(entropy(np.asarray(m, dtype=np.float64) / np.sum(m)))
        h_cond = entropy(p)  # (Q, T)
        norm = math.log(n_l) if n_l > 1 else 1.0
        cols["mi"].append(h_prior - h_cond.mean(0))
        cols["mi_se"].append(h_cond.std(0, ddof=1) / math.sqrt(n_q) if n_q > 1 else np.full(n_t, np.nan))
        cols["entropy"].append(h_cond.mean(0) / norm if n_l > 1 else np.zeros(n_t))
        cols["entropy_k"].append(expected_plugin_entropy(p, n_forks).mean(0) / norm if n_l > 1 else np.zeros(n_t))
        if n_base is None:
            band = (np.full(n_t, np.nan),) * 2
        elif n_l > 1:
            band = tuple(b / norm for b in plugin_entropy_band(p, n_forks, n_base, n_sim=n_sim, rng=rng))
        else:
            band = (np.zeros(n_t),) * 2
        cols["entropy_k_low"].append(band[0])
        cols["entropy_k_high"].append(band[1])
        cols["bayes_accuracy"].append(p.max(-1).mean(0))
        cols["ceiling"].append(np.full(n_t, h_prior))
    return {k: np.stack(v, axis=1) for k, v in cols.items()}


def exact_score_fn(
    images: torch.Tensor, label_indices: np.ndarray | torch.Tensor, sde: VESDE, batch_size: int = 512
) -> Callable[..., torch.Tensor]:
    """The exact score of the noised empirical distribution, with the score network's call signature.

    Args:
        images: (N, C, H, W) the mixture's images on the model's input scale.
        label_indices: (N, F) official level indices of the images.
        sde: the VE SDE (sigma(t)).
        batch_size: queries per distance block.

    Returns:
        ``score(x, t, labels=None)``: x (B, C, H, W) at forward time t (float or (B,)); labels (B, F) with -1 =
        not given (all -1 or None: the unconditional score). Given labels restrict the posterior to the images
        with those levels: s(y, t | phi) = (E_pi[x | phi] - y) / sigma^2. Returned in x's dtype.

    Raises:
        ValueError: if no image has a requested label combination.
    """
    data = images.flatten(1).to(torch.float64)
    lab = torch.as_tensor(np.asarray(label_indices), device=data.device).long()
    d_norm = data.pow(2).sum(1)

    def score(x: torch.Tensor, t, labels: torch.Tensor | None = None) -> torch.Tensor:
        t = torch.as_tensor(t, dtype=torch.float64)
        sigma = sde.sigma(t.expand(x.shape[0]) if t.ndim == 0 else t).to(data.device, torch.float64)
        y = x.flatten(1).to(data.device, torch.float64)
        out = torch.empty_like(y)
        for a in range(0, len(y), batch_size):
            b = min(len(y), a + batch_size)
            s2 = sigma[a:b, None] ** 2
            # the MI estimator asks for each state under several labels: its distances are computed once
            states, state = torch.unique(torch.cat([y[a:b], s2], 1), dim=0, return_inverse=True)
            u = states[:, :-1]
            d2 = (u.pow(2).sum(1, keepdim=True) - 2 * u @ data.T + d_norm[None]).clamp_min(0)
            logit = (-d2 / (2 * states[:, -1:]))[state]
            if labels is not None:
                lb = labels[a:b].to(data.device).long()
                match = torch.ones(logit.shape, dtype=torch.bool, device=data.device)
                for k in torch.nonzero((lb >= 0).any(0)).flatten().tolist():  # only the factors given here
                    match &= (lb[:, k, None] < 0) | (lab[None, :, k] == lb[:, k, None])
                if not bool(match.any(1).all()):
                    bad = lb[~match.any(1)][0].tolist()
                    raise ValueError(f"no image of the mixture has the labels {bad} (-1 = not given)")
                logit = logit.masked_fill(~match, -math.inf)
            w = torch.softmax(logit, dim=1)
            out[a:b] = (w @ data - y[a:b]) / s2
        return out.reshape(x.shape).to(x.device, x.dtype)

    return score
