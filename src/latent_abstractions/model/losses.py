"""Denoising score matching for the VE SDE: noise-level samplers and loss weightings.

For y = x0 + sigma z, the per-example error e = sigma s(y, sigma) + z equals (D(y; sigma) - x0) / sigma with
D = y + sigma^2 s the denoiser, since grad log p(y | x0) = -z / sigma. The loss (:func:`dsm_loss`) is
E_sigma [ w(sigma) ||e||^2 ] (summed over pixels, averaged over the batch), with the noise level drawn by a
sampler and w one of the named weightings, each a function of sigma and the data's std sd:

- :func:`sigma2`: w = 1, Song et al.'s continuous objective with lambda(t) = sigma(t)^2, i.e. the denoiser's
  error weighted by 1 / sigma^2;
- :func:`edm`: w = (sigma^2 + sd^2) / sd^2, i.e. Karras et al. (2022)'s lambda = (sigma^2 + sd^2) / (sigma sd)^2 on
  ||D - x0||^2. With the EDM preconditioning (precond.py) this is exactly ||F - F_target||^2, the backbone's
  error with unit weight at every sigma, F_target = (x0 - mu - c_skip (y - mu)) / c_out;
- :func:`geometric`: w = sqrt((sigma^2 + sd^2) / sd^2), the geometric mean of the two: on the backbone's error the
  weight sd / sqrt(sigma^2 + sd^2) is 1 where sigma << sd (like both) and falls as 1 / sigma, not as 1 / sigma^2
  (sigma2) or not at all (edm).

Noise-level samplers: :class:`LogUniformSigma` draws t ~ U(eps, 1), i.e. log sigma uniform on the SDE's whole
range (the measure the mutual-information integral uses); :class:`LogNormalSigma` draws log sigma ~
N(p_mean, p_std^2) (Karras et al.), clipped to [sigma_min, sigma_max]. :func:`weighting` and
:func:`sigma_sampler` turn the config's names into these objects.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

import torch

from .sde import VESDE

Weighting = Callable[[torch.Tensor, float], torch.Tensor]


def sigma2(sigma: torch.Tensor, sigma_data: float) -> torch.Tensor:
    """w = 1 (Song et al.'s lambda(t) = sigma^2 on the score; ``sigma_data`` is unused)."""
    return torch.ones_like(sigma)


def edm(sigma: torch.Tensor, sigma_data: float) -> torch.Tensor:
    """w = (sigma^2 + sd^2) / sd^2 (Karras et al.'s weighting; unit weight on the EDM backbone's error)."""
    return (sigma.float() ** 2 + sigma_data**2) / sigma_data**2


def geometric(sigma: torch.Tensor, sigma_data: float) -> torch.Tensor:
    """w = sqrt((sigma^2 + sd^2) / sd^2), the geometric mean of :func:`sigma2` and :func:`edm`."""
    return edm(sigma, sigma_data).sqrt()


WEIGHTINGS: dict[str, Weighting] = {"sigma2": sigma2, "edm": edm, "geometric": geometric}
SIGMA_SAMPLINGS = ("log_uniform", "log_normal")  # the names :func:`sigma_sampler` knows


class SigmaSampler(Protocol):
    def __call__(self, n: int, device, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` training noise levels, float32 on ``device``."""
        ...


@dataclass(frozen=True)
class LogUniformSigma:
    """t ~ U(eps, 1), sigma = sde.sigma(t): log sigma uniform on [log sigma(eps), log sigma_max].

    Args:
        sde: the VE SDE.
        eps: the smallest forward time drawn.
    """

    sde: VESDE
    eps: float = 1e-5

    def __call__(self, n: int, device, generator: torch.Generator | None = None) -> torch.Tensor:
        t = torch.rand(n, device=device, generator=generator) * (1 - self.eps) + self.eps
        return self.sde.sigma(t).float()


@dataclass(frozen=True)
class LogNormalSigma:
    """log sigma ~ N(p_mean, p_std^2), clipped to the SDE's [sigma_min, sigma_max] (Karras et al.).

    Args:
        sde: the VE SDE.
        p_mean, p_std: mean and std of log sigma.
    """

    sde: VESDE
    p_mean: float = -1.2
    p_std: float = 1.2

    def __call__(self, n: int, device, generator: torch.Generator | None = None) -> torch.Tensor:
        log_sigma = self.p_mean + self.p_std * torch.randn(n, device=device, generator=generator)
        return log_sigma.exp().clamp(self.sde.sigma_min, self.sde.sigma_max)


def weighting(name: str) -> Weighting:
    """The weighting the config calls ``name`` (a key of :data:`WEIGHTINGS`)."""
    if name not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {sorted(WEIGHTINGS)}, got {name!r}")
    return WEIGHTINGS[name]


def sigma_sampler(name: str, sde: VESDE, *, p_mean: float, p_std: float) -> SigmaSampler:
    """The noise-level sampler the config calls ``name`` (one of :data:`SIGMA_SAMPLINGS`; log_normal: p_mean, p_std)."""
    if name == "log_uniform":
        return LogUniformSigma(sde)
    if name == "log_normal":
        return LogNormalSigma(sde, p_mean, p_std)
    raise ValueError(f"sigma sampling must be one of {list(SIGMA_SAMPLINGS)}, got {name!r}")


def draw_noise(
    sampler: SigmaSampler,
    shape: tuple[int, ...],
    device,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The noise levels (B,) and standard normal noise ``shape`` of one training batch, in :func:`dsm_loss`'s order.

    A caller that splits a batch (over data-parallel ranks, or into micro-batches) draws the whole batch's noise
    once here and passes each part's slice to :func:`dsm_loss`, so the parts see exactly what one pass would.
    """
    sigma = sampler(shape[0], device, generator)
    z = torch.randn(shape, device=device, generator=generator, dtype=dtype)
    return sigma, z


def dsm_loss(
    net: torch.nn.Module,
    x0: torch.Tensor,
    labels: torch.Tensor | None = None,
    *,
    sampler: SigmaSampler,
    weighting: Weighting = sigma2,
    sigma_data: float = 0.5,
    generator: torch.Generator | None = None,
    noise: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Mean over the batch of w(sigma) || sigma * s(x0 + sigma z, sigma) + z ||^2 (summed over pixels).

    Args:
        net: score network ``net(y, sigma, labels)``.
        x0: clean images (B, C, H, W).
        labels: (B, 6) conditioning labels (-1 = null) or None.
        sampler: draws the noise levels (:class:`LogUniformSigma`, :class:`LogNormalSigma`).
        weighting: w(sigma, sigma_data) (:func:`sigma2`, :func:`edm`, :func:`geometric`).
        sigma_data: the data's std, passed to the weighting.
        generator: RNG for sigma, then z (for reproducible, resumable training).
        noise: (sigma, z) drawn beforehand (:func:`draw_noise`) for exactly these rows; None: drawn here.
    """
    if noise is None:
        sigma, z = draw_noise(sampler, tuple(x0.shape), x0.device, generator, x0.dtype)
    else:
        sigma, z = noise
        if sigma.shape != x0.shape[:1] or z.shape != x0.shape:
            raise ValueError(f"noise of shapes {tuple(sigma.shape)}, {tuple(z.shape)} for images {tuple(x0.shape)}")
    y = x0 + sigma[:, None, None, None] * z
    score = net(y, sigma, labels)
    err = sigma[:, None, None, None] * score.float() + z
    per_example = err.pow(2).flatten(1).sum(1)
    return (per_example * weighting(sigma, sigma_data)).mean()


def drop_labels(labels: torch.Tensor, p: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Replace each factor of each example by the null token -1, independently with probability p."""
    drop = torch.rand(labels.shape, device=labels.device, generator=generator) < p
    return torch.where(drop, torch.full_like(labels, -1), labels)


@torch.no_grad()
def denoiser_mse(
    net: torch.nn.Module,
    x0: torch.Tensor,
    sigmas,
    generator: torch.Generator | None = None,
    labels: torch.Tensor | None = None,
    batch_size: int = 256,
) -> dict[str, torch.Tensor]:
    """Per-pixel MSE of the network's denoiser D(y; sigma) = y + sigma^2 s(y, sigma) at fixed noise levels.

    Beside it, the two baselines every denoiser should beat: the dataset-mean image (the optimal denoiser as
    sigma -> infinity; its MSE is the data's per-pixel variance about its mean image, independent of sigma) and
    the identity D = y (optimal as sigma -> 0; MSE sigma^2).

    Args:
        net: score network ``net(x, sigma, labels)``.
        x0: clean images (N, C, H, W); their mean image is the baseline.
        sigmas: noise levels (sequence of floats).
        generator: RNG for the noise (one draw per image and sigma).
        labels: conditioning labels for x0, or None.

    Returns:
        {"sigma", "mse", "mean_image", "identity"}: float64 tensors, one value per sigma.
    """
    sigmas = torch.as_tensor(sigmas, dtype=torch.float64).reshape(-1)
    mean_img = x0.double().mean(0, keepdim=True)
    mean_mse = (x0.double() - mean_img).pow(2).mean()
    mse = torch.zeros(len(sigmas), dtype=torch.float64)
    for j, s in enumerate(sigmas.tolist()):
        z = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)
        total = 0.0
        for i in range(0, len(x0), batch_size):
            sl = slice(i, i + batch_size)
            y = x0[sl] + s * z[sl]
            sig = torch.full((y.shape[0],), s, dtype=torch.float32, device=y.device)
            d = y.double() + s**2 * net(y, sig, None if labels is None else labels[sl]).double()
            total += float((d - x0[sl].double()).pow(2).sum())
        mse[j] = total / x0.numel()
    return {"sigma": sigmas, "mse": mse, "mean_image": mean_mse.expand(len(sigmas)).clone(), "identity": sigmas**2}
