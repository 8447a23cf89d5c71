"""Per-sample random number generators: sample k depends only on seed k, whatever the batch."""

from __future__ import annotations

from typing import Sequence

import torch


def make_generators(seeds: Sequence[int], device: torch.device | str = "cpu") -> list[torch.Generator]:
    """One ``torch.Generator`` per sample, seeded with ``seeds[k]``, on ``device``."""
    return [torch.Generator(device=device).manual_seed(int(s)) for s in seeds]


def randn_per_sample(shape: tuple[int, ...], generators: Sequence[torch.Generator],
                     device: torch.device | str = "cpu") -> torch.Tensor:
    """Standard normal (B, *shape[1:]) with row k drawn from ``generators[k]``."""
    if shape[0] != len(generators):
        raise ValueError(f"batch of {shape[0]} but {len(generators)} generators")
    return torch.stack([torch.randn(shape[1:], generator=g, device=device) for g in generators])


def randn_like_per_sample(x: torch.Tensor, generators: Sequence[torch.Generator]) -> torch.Tensor:
    """Like ``torch.randn_like(x)`` with row k from ``generators[k]``."""
    return randn_per_sample(tuple(x.shape), generators, x.device).to(x.dtype)
