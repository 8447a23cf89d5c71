"""Denoising score matching for the VE SDE: noise-level sampling and weighting.

For x = x0 + sigma z, the per-example error e = sigma s(x, sigma) + z equals (D(x; sigma) - x0) / sigma with
D = x + sigma^2 s the denoiser, since grad log p(x | x0) = -z / sigma. The loss is
E_sigma [ w(sigma) ||e||^2 ] (summed over pixels, averaged over the batch) with

- weighting "sigma2": w = 1, Song et al.'s continuous objective with lambda(t) = sigma(t)^2, i.e. the denoiser's
  error weighted by 1 / sigma^2;
- weighting "edm": w = (sigma^2 + sd^2) / sd^2, i.e. Karras et al. (2022)'s lambda = (sigma^2 + sd^2) / (sigma sd)^2
  on ||D - x0||^2. With the "edm" preconditioning (networks.py) this is exactly ||F - F_target||^2, the
  backbone's error with unit weight at every sigma, F_target = (x0 - mu - c_skip (x - mu)) / c_out;
- weighting "geometric": w = sqrt((sigma^2 + sd^2) / sd^2), the geometric mean of the two: on the backbone's error
  the weight sd / sqrt(sigma^2 + sd^2) is 1 where sigma << sd (like both) and falls as 1 / sigma, not as
  1 / sigma^2 (sigma2) or not at all (edm).

Noise levels: "log_uniform" draws t ~ U(eps, 1), i.e. log sigma uniform on the SDE's whole range (the measure the
mutual-information integral uses); "log_normal" draws log sigma ~ N(p_mean, p_std^2) (Karras et al.), clipped to
[sigma_min, sigma_max].
"""

from __future__ import annotations

import torch

from .sde import VESDE

WEIGHTINGS = ("sigma2", "edm", "geometric")
SIGMA_SAMPLINGS = ("log_uniform", "log_normal")


def sample_sigma(
    sde: VESDE,
    n: int,
    device,
    generator: torch.Generator | None = None,
    sampling: str = "log_uniform",
    p_mean: float = -1.2,
    p_std: float = 1.2,
    eps: float = 1e-5,
) -> torch.Tensor:
    """``n`` training noise levels (float32, on ``device``) drawn as ``sampling`` says (module docstring)."""
    if sampling == "log_uniform":
        t = torch.rand(n, device=device, generator=generator) * (1 - eps) + eps
        return sde.sigma(t).float()
    if sampling == "log_normal":
        log_sigma = p_mean + p_std * torch.randn(n, device=device, generator=generator)
        return log_sigma.exp().clamp(sde.sigma_min, sde.sigma_max)
    raise ValueError(f"sigma sampling must be one of {SIGMA_SAMPLINGS}, got {sampling!r}")


def draw_noise(
    sde: VESDE,
    shape: tuple[int, ...],
    device,
    generator: torch.Generator | None = None,
    sampling: str = "log_uniform",
    p_mean: float = -1.2,
    p_std: float = 1.2,
    eps: float = 1e-5,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The noise levels (B,) and standard normal noise ``shape`` of one training batch, in :func:`dsm_loss`'s order.

    A caller that splits a batch (over data-parallel ranks, or into micro-batches) draws the whole batch's noise
    once here and passes each part's slice to :func:`dsm_loss`, so the parts see exactly what one pass would.
    """
    sigma = sample_sigma(sde, shape[0], device, generator, sampling, p_mean, p_std, eps)
    z = torch.randn(shape, device=device, generator=generator, dtype=dtype)
    return sigma, z


def dsm_loss(
    net: torch.nn.Module,
    sde: VESDE,
    x0: torch.Tensor,
    labels: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    eps: float = 1e-5,
    weighting: str = "sigma2",
    sigma_data: float = 0.5,
    sampling: str = "log_uniform",
    p_mean: float = -1.2,
    p_std: float = 1.2,
    noise: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Mean over the batch of w(sigma) || sigma * s(x0 + sigma z, sigma) + z ||^2 (summed over pixels).

    Args:
        net: score network ``net(x, sigma, labels)``.
        sde: the VE SDE.
        x0: clean images (B, C, H, W).
        labels: (B, 6) conditioning labels (-1 = null) or None.
        generator: RNG for sigma and z (for reproducible, resumable training).
        eps: smallest forward time sampled (log_uniform).
        weighting: "sigma2" (w = 1), "edm" (w = (sigma^2 + sigma_data^2) / sigma_data^2) or "geometric"
            (the square root of edm's w); module docstring.
        sigma_data: the data's std (weighting "edm").
        sampling, p_mean, p_std: noise-level distribution (:func:`sample_sigma`).
        noise: (sigma, z) drawn beforehand (:func:`draw_noise`) for exactly these rows; None: drawn here.
    """
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    if noise is None:
        sigma, z = draw_noise(sde, tuple(x0.shape), x0.device, generator, sampling, p_mean, p_std, eps, x0.dtype)
    else:
        sigma, z = noise
        if sigma.shape != x0.shape[:1] or z.shape != x0.shape:
            raise ValueError(f"noise of shapes {tuple(sigma.shape)}, {tuple(z.shape)} for images {tuple(x0.shape)}")
    x = x0 + sigma[:, None, None, None] * z
    score = net(x, sigma, labels)
    err = sigma[:, None, None, None] * score.float() + z
    per_example = err.pow(2).flatten(1).sum(1)
    if weighting != "sigma2":
        w = (sigma.float() ** 2 + sigma_data**2) / sigma_data**2  # edm's; geometric takes its square root
        per_example = per_example * (w if weighting == "edm" else w.sqrt())
    return per_example.mean()


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
