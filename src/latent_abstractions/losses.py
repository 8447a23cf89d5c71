"""Denoising score matching for the VE SDE, with the usual lambda(t) = sigma(t)^2 weighting."""

from __future__ import annotations

import torch

from .sde import VESDE


def dsm_loss(net: torch.nn.Module, sde: VESDE, x0: torch.Tensor, labels: torch.Tensor | None = None,
             generator: torch.Generator | None = None, eps: float = 1e-5) -> torch.Tensor:
    """Mean over the batch of || sigma * s(x0 + sigma z, sigma) + z ||^2 (summed over pixels).

    This is sigma^2 * || s - grad log p(x_t | x0) ||^2 with grad log p = -z / sigma: Song et al.'s
    continuous-time objective with likelihood-free weighting lambda = sigma^2.

    Args:
        net: score network ``net(x, sigma, labels)``.
        sde: the VE SDE.
        x0: clean images (B, C, H, W).
        labels: (B, 6) conditioning labels (-1 = null) or None.
        generator: RNG for t and z (for reproducible, resumable training).
        eps: smallest forward time sampled.
    """
    b = x0.shape[0]
    t = torch.rand(b, device=x0.device, generator=generator) * (1 - eps) + eps
    z = torch.randn(x0.shape, device=x0.device, generator=generator, dtype=x0.dtype)
    sigma = sde.sigma(t)
    x = x0 + sigma[:, None, None, None] * z
    score = net(x, sigma, labels)
    err = sigma[:, None, None, None] * score.float() + z
    return err.pow(2).flatten(1).sum(1).mean()


def drop_labels(labels: torch.Tensor, p: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Replace each factor of each example by the null token -1, independently with probability p."""
    drop = torch.rand(labels.shape, device=labels.device, generator=generator) < p
    return torch.where(drop, torch.full_like(labels, -1), labels)
