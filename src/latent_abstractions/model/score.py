"""Adapter from the network to the score function s(x, t[, labels]) at forward time t."""

from __future__ import annotations

from typing import Callable

import torch

from .sde import VESDE

ScoreFn = Callable[..., torch.Tensor]


def get_score_fn(net: torch.nn.Module, sde: VESDE) -> ScoreFn:
    """Return ``score(x, t, labels=None)``: the network's score at sigma = sde.sigma(t).

    Args:
        net: a score network ``net(x, sigma, labels)`` (a ``precond`` wrapper around the backbone).
        sde: the VE SDE giving sigma(t).

    Returns:
        A function of x (B, C, H, W), forward time t (float or (B,)) and optional labels (B, 6).
    """

    def score(x: torch.Tensor, t, labels: torch.Tensor | None = None) -> torch.Tensor:
        t = torch.as_tensor(t, dtype=torch.float32, device=x.device)
        sigma = sde.sigma(t.expand(x.shape[0]) if t.ndim == 0 else t)
        return net(x, sigma, labels).float()

    return score
