"""Unconditional samples of a trained score model and their scores by the attribute classifier."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from .rng import derive_seeds, make_generators
from .sampling import sample, time_grid
from .sde import VESDE
from .shapes3d import to_uint8


def sample_seeds(seed: int, n: int) -> np.ndarray:
    """Per-sample seeds of a run (``rng.derive_seeds(seed, "sample", n)``)."""
    return derive_seeds(seed, "sample", n)


def generate(score_fn: Callable, sde: VESDE, resolution: int, seeds: np.ndarray, *, steps: int, method: str,
             snr: float, batch_size: int, device: torch.device) -> np.ndarray:
    """One sample per seed (uint8, (n, H, W, 3)) from tau = 0 to 1; the batch size does not change them."""
    out = []
    for i in range(0, len(seeds), batch_size):
        gens = make_generators(seeds[i:i + batch_size], device)
        x = sde.prior_sampling((len(gens), 3, resolution, resolution), gens, device)
        out.append(to_uint8(sample(score_fn, sde, x, time_grid(steps), gens, method=method, snr=snr,
                                   progress=True).x))
    return np.concatenate(out)


def tv_to_uniform(pred: np.ndarray, levels_present: list[list[int]]) -> np.ndarray:
    """Per factor, total variation distance between predicted label frequencies and uniform over present levels."""
    tv = []
    for k, present in enumerate(levels_present):
        freq = np.array([(pred[:, k] == lv).mean() for lv in present])
        tv.append(0.5 * np.abs(freq - 1 / len(present)).sum() + 0.5 * (1 - freq.sum()))
    return np.asarray(tv)
