"""Reverse-time VE SDE sampling from any (x, tau), in generative time (tau = 0 noise, tau = 1 data).

Two samplers on one time grid:
- ``pc``: predictor-corrector (Song et al., 2021): a Langevin corrector step with signal-to-noise ratio
  ``snr`` at the current time, then the reverse-diffusion predictor to the next grid point.
- ``em``: Euler-Maruyama on the reverse SDE.

All randomness comes from per-sample generators, so sample k depends only on its generator (its seed),
never on the batch size. Sampling 0 -> a and then a -> 1 with the same generator objects gives exactly the
result of 0 -> 1 when a is on the grid, so forking is "continue from (x_a, a) with fresh generators".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
from tqdm import tqdm

from ..data.shapes3d import to_uint8
from ..rng import derive_seeds, make_generators, randn_like_per_sample
from .sde import VESDE


@dataclass
class SampleResult:
    """Output of :func:`sample`."""

    x: torch.Tensor  # final states (B, C, H, W)
    states: dict[int, torch.Tensor] = field(default_factory=dict)  # grid index i -> x at taus[i] (on CPU)


def time_grid(steps: int, tau_start: float = 0.0, tau_end: float = 1.0, eps: float = 1e-5) -> torch.Tensor:
    """Generative-time grid of a sampler with ``steps`` steps over the whole path, cut to [tau_start, tau_end].

    The global grid is linspace(0, 1 - eps, steps + 1) (tau = 1 - eps is forward time eps, where the SDE
    stops). Points inside [tau_start, tau_end] are kept and the ends are inserted when not on the grid, so
    consecutive pieces of one path share their grid points. tau_end is clipped to 1 - eps.

    Args:
        steps: number of steps of the whole path 0 -> 1 - eps.
        tau_start, tau_end: the piece of the path wanted, 0 <= tau_start <= tau_end <= 1.
        eps: forward time at which sampling stops.

    Returns:
        Increasing float64 generative times; a single point when the piece has length zero.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if not 0 <= tau_start <= tau_end <= 1:
        raise ValueError(f"need 0 <= tau_start <= tau_end <= 1, got {tau_start}, {tau_end}")
    end = min(tau_end, 1 - eps)
    start = min(tau_start, end)
    if end - start < 1e-9:
        return torch.tensor([end], dtype=torch.float64)
    full = np.linspace(0.0, 1 - eps, steps + 1)
    inside = full[(full > start + 1e-9) & (full < end - 1e-9)]
    return torch.tensor(np.concatenate([[start], inside, [end]]), dtype=torch.float64)


def _per_sample_norm(v: torch.Tensor) -> torch.Tensor:
    return v.flatten(1).norm(dim=1).reshape(-1, *([1] * (v.ndim - 1)))


@torch.no_grad()
def sample(
    score_fn: Callable,
    sde: VESDE,
    x: torch.Tensor,
    taus: torch.Tensor,
    generators: Sequence[torch.Generator],
    method: str = "pc",
    snr: float = 0.16,
    n_corrector: int = 1,
    labels: torch.Tensor | None = None,
    record_at: Sequence[int] = (),
    denoise: bool = True,
    progress: bool = False,
    eps: float = 1e-5,
) -> SampleResult:
    """Integrate the reverse SDE from x at taus[0] to taus[-1].

    Args:
        score_fn: ``score(x, t, labels)`` at forward time t.
        sde: the VE SDE.
        x: states at generative time taus[0] (B, C, H, W).
        taus: increasing generative times (see :func:`time_grid`).
        generators: one torch.Generator per sample (advanced in place).
        method: "pc" (reverse-diffusion predictor + Langevin corrector) or "em" (Euler-Maruyama).
        snr: corrector signal-to-noise ratio (pc only). The Langevin step is 2 (snr ||z|| / ||score||)^2
            with norms taken per sample (Song et al. average them over the batch; per-sample keeps each
            sample independent of its batch; this is accurate for image-sized samples, where the norms
            concentrate, but biased for samples of a handful of dimensions).
        n_corrector: corrector steps per grid point (pc only).
        labels: conditioning labels (B, 6) with -1 = null, or None.
        record_at: indices into ``taus`` at which to keep a copy of x (returned on CPU, keyed by the index).
        denoise: at the end, replace x by its Tweedie denoised mean x + sigma^2 score (only when the path
            ends at the last grid point, tau = 1 - eps; also for a zero-length path that starts there).
        progress: show a tqdm bar.
        eps: the grid's eps (see :func:`time_grid`), to recognise the last grid point.

    Returns:
        SampleResult with the final x and the recorded states.
    """
    if method not in ("pc", "em"):
        raise ValueError(f"method must be 'pc' or 'em', got {method!r}")
    taus = torch.as_tensor(taus, dtype=torch.float64).reshape(-1)
    if len(taus) == 0 or bool((taus.diff() <= 0).any()) or float(taus[0]) < 0 or float(taus[-1]) > 1:
        raise ValueError(f"taus must be a non-empty strictly increasing grid in [0, 1], got {taus.tolist()}")
    if len(generators) != x.shape[0]:
        raise ValueError(f"{x.shape[0]} samples but {len(generators)} generators (one per sample)")
    record = {int(i) for i in record_at}
    off_grid = sorted(i for i in record if not 0 <= i < len(taus))
    if off_grid:
        raise ValueError(f"record_at {off_grid} are not indices of the sampling grid (length {len(taus)})")
    states: dict[int, torch.Tensor] = {}

    def sigma(t: float) -> float:  # float64 maths for the step sizes
        return float(sde.sigma(torch.tensor(t, dtype=torch.float64)))

    def maybe_record(i: int, x: torch.Tensor) -> None:
        if i in record:
            states[i] = x.detach().cpu().clone()

    maybe_record(0, x)
    for i in tqdm(range(len(taus) - 1), disable=not progress, desc=f"sample ({method})", mininterval=2):
        t_now = float(sde.tau_to_t(taus[i]))
        t_next = float(sde.tau_to_t(taus[i + 1]))
        if method == "pc":
            for _ in range(n_corrector):
                grad = score_fn(x, t_now, labels)
                z = randn_like_per_sample(x, generators)
                step = 2 * (snr * _per_sample_norm(z) / _per_sample_norm(grad).clamp_min(1e-12)) ** 2
                x = x + step * grad + (2 * step).sqrt() * z
            # reverse-diffusion predictor: the discretised VE SDE x_{i+1} = x_i + sqrt(s_i^2 - s_{i+1}^2) z, reversed
            var = sigma(t_now) ** 2 - sigma(t_next) ** 2
            x = x + var * score_fn(x, t_now, labels)
            x = x + var**0.5 * randn_like_per_sample(x, generators)
        else:
            # Euler-Maruyama backwards in t: x(t - dt) = x(t) - f_rev dt + g sqrt(dt) z, f_rev = -g^2 score
            dt = t_now - t_next
            g2 = float(sde.g2(torch.tensor(t_now, dtype=torch.float64)))
            x = x - dt * sde.reverse_drift(x, t_now, score_fn(x, t_now, labels))
            x = x + (g2 * dt) ** 0.5 * randn_like_per_sample(x, generators)
        maybe_record(i + 1, x)
    t_end = float(sde.tau_to_t(taus[-1]))
    if denoise and abs(float(taus[-1]) - (1 - eps)) < 1e-9:
        x = x + sigma(t_end) ** 2 * score_fn(x, t_end, labels)  # Tweedie: E[x_0 | x_t]
    return SampleResult(x=x, states=states)


def sample_seeds(seed: int, n: int) -> np.ndarray:
    """Per-sample seeds of a run (``rng.derive_seeds(seed, "sample", n)``)."""
    return derive_seeds(seed, "sample", n)


def generate(
    score_fn: Callable,
    sde: VESDE,
    resolution: int,
    seeds: np.ndarray,
    *,
    steps: int,
    method: str,
    snr: float,
    batch_size: int,
    device: torch.device,
    n_corrector: int = 1,
) -> np.ndarray:
    """One sample per seed (uint8, (n, H, W, 3)) from tau = 0 to 1; the batch size does not change them.

    ``n_corrector``: Langevin corrector steps per predictor step (method "pc"; 0 = predictor only).
    """
    out = []
    for i in range(0, len(seeds), batch_size):
        gens = make_generators(seeds[i : i + batch_size], device)
        x = sde.prior_sampling((len(gens), 3, resolution, resolution), gens, device)
        out.append(
            to_uint8(
                sample(
                    score_fn,
                    sde,
                    x,
                    time_grid(steps),
                    gens,
                    method=method,
                    snr=snr,
                    n_corrector=n_corrector,
                    progress=True,
                ).x
            )
        )
    return np.concatenate(out)
