"""The variance-exploding SDE (Song et al., 2021), pure maths.

Forward (noising) time t in [0, 1]: dX = g(t) dW with sigma(t) = sigma_min (sigma_max / sigma_min)^t and
g(t)^2 = d sigma^2 / dt = 2 sigma(t)^2 log(sigma_max / sigma_min). The perturbation kernel used for training
and for noising data is X_t = X_0 + sigma(t) Z (data at t = 0 already carries sigma_min noise, as in Song et al.).

Generative time tau = 1 - t: tau = 0 is the prior N(0, sigma_max^2 I) (pure noise), tau = 1 is data.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch


def _as_tensor(t, like: torch.Tensor | None = None) -> torch.Tensor:
    if isinstance(t, torch.Tensor):
        return t
    dev = like.device if like is not None else None
    return torch.tensor(float(t), dtype=torch.float64 if like is None else torch.float32, device=dev)


def _bcast(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Reshape a scalar or (B,) tensor to broadcast against x (B, ...)."""
    v = v.to(x.device, x.dtype)
    return v.reshape(-1, *([1] * (x.ndim - 1))) if v.ndim else v


class VESDE:
    """Variance-exploding SDE with geometric noise schedule.

    Args:
        sigma_min: noise std at t = 0 (tau = 1, the data end).
        sigma_max: noise std at t = 1 (tau = 0, the prior).
    """

    def __init__(self, sigma_min: float, sigma_max: float):
        if not 0 < sigma_min < sigma_max:
            raise ValueError(f"need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
        self.sigma_min = float(sigma_min)
        self.sigma_max = float(sigma_max)
        self.log_ratio = math.log(self.sigma_max / self.sigma_min)

    def sigma(self, t) -> torch.Tensor:
        """Marginal noise std sigma(t) at forward time t."""
        t = _as_tensor(t)
        return self.sigma_min * torch.exp(t * self.log_ratio)

    marginal_std = sigma

    def t_of_sigma(self, sigma) -> torch.Tensor:
        """Forward time t at which sigma(t) = ``sigma`` (clamped to [0, 1] outside [sigma_min, sigma_max])."""
        sigma = _as_tensor(sigma)
        return (torch.log(sigma / self.sigma_min) / self.log_ratio).clamp(0, 1)

    def g2(self, t) -> torch.Tensor:
        """Squared diffusion coefficient g(t)^2 = d sigma(t)^2 / dt."""
        return 2 * self.sigma(t) ** 2 * self.log_ratio

    def sde(self, x: torch.Tensor, t) -> tuple[torch.Tensor, torch.Tensor]:
        """Drift (zero) and diffusion g(t) of the forward SDE."""
        return torch.zeros_like(x), self.g2(t).sqrt()

    def reverse_drift(self, x: torch.Tensor, t, score: torch.Tensor) -> torch.Tensor:
        """Forward-time drift of the reverse SDE: f - g^2 * score (f = 0 for VE)."""
        return -_bcast(self.g2(_as_tensor(t, x)), x) * score

    def perturb(self, x0: torch.Tensor, t, noise: torch.Tensor) -> torch.Tensor:
        """Sample of the perturbation kernel: x0 + sigma(t) * noise."""
        return x0 + _bcast(self.sigma(_as_tensor(t, x0)), x0) * noise

    def prior_sampling(
        self,
        shape: Sequence[int],
        generators: Sequence[torch.Generator] | None = None,
        device: torch.device | str = "cpu",
    ) -> torch.Tensor:
        """Samples of the prior N(0, sigma_max^2 I); row k from ``generators[k]`` when given."""
        from ..rng import randn_per_sample

        if generators is None:
            return torch.randn(*shape, device=device) * self.sigma_max
        return randn_per_sample(tuple(shape), generators, device) * self.sigma_max

    def prior_logp(self, z: torch.Tensor) -> torch.Tensor:
        """Log density of the prior at z, per sample."""
        d = z[0].numel()
        return -d / 2 * math.log(2 * math.pi * self.sigma_max**2) - z.flatten(1).pow(2).sum(1) / (2 * self.sigma_max**2)

    @staticmethod
    def tau_to_t(tau):
        """Generative time tau (0 = noise, 1 = data) -> forward time t."""
        return 1 - tau

    @staticmethod
    def t_to_tau(t):
        """Forward time t -> generative time tau."""
        return 1 - t


def sigma_max_from_data(images: torch.Tensor, max_pairs: int | None = None, chunk: int = 1024) -> float:
    """Largest pairwise Euclidean distance between images (Song & Ermon 2020, technique 1).

    Exact: every pair i < j is visited, in (chunk x chunk) blocks of ``torch.cdist`` in float64 on the
    images' device (memory O(chunk^2 + N D)), so N up to ~50k is practical on a GPU.

    Args:
        images: (N, C, H, W) float tensor on the scale the model sees, N >= 2.
        max_pairs: if given and N (N - 1) / 2 exceeds it, only the first n images are used, with n the
            largest such that n (n - 1) / 2 <= max_pairs (pass a shuffled tensor for a random subset).
        chunk: rows per block.

    Returns:
        The largest distance, a Python float.
    """
    if images.ndim != 4 or not images.is_floating_point() or images.shape[0] < 2:
        raise ValueError(f"images must be a float (N >= 2, C, H, W) tensor, got {images.dtype} {tuple(images.shape)}")
    n = images.shape[0]
    if max_pairs is not None:
        if max_pairs < 1:
            raise ValueError(f"max_pairs must be >= 1, got {max_pairs}")
        n = min(n, int((1 + math.isqrt(1 + 8 * int(max_pairs))) // 2))
    x = images[:n].flatten(1).double()
    best = torch.zeros((), dtype=torch.float64, device=x.device)
    for i in range(0, n, chunk):
        for j in range(i, n, chunk):  # the upper triangle of blocks suffices
            best = torch.maximum(best, torch.cdist(x[i : i + chunk], x[j : j + chunk]).max())
    return float(best)
