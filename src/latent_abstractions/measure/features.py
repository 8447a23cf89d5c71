"""Per-tau features of the unconditional score network, for the linear probes.

Images are noised to generative time tau (forward time t = 1 - tau) with the VE perturbation kernel
x0 + sigma(1 - tau) z, passed through the EMA network, and the configured feature maps are pooled to
fixed-size vectors. The raw noisy pixels, average-pooled, are kept as the baseline layer ``PIXELS``.
The table these feed is written by ``stages.measure.extract_features``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..model.feature_maps import PIXELS


def pool(h: torch.Tensor, pooling: str, grid: int) -> torch.Tensor:
    """(B, C, h, w) -> (B, D): channel means, or an adaptive average pool to grid x grid."""
    if pooling == "mean":
        return h.mean(dim=(2, 3))
    if pooling == "grid":
        return F.adaptive_avg_pool2d(h, grid).flatten(1)
    raise ValueError(f"pooling must be 'mean' or 'grid', got {pooling!r}")


def choose_images(split: dict[str, np.ndarray], n_train: int, n_test: int, seed: int) -> dict[str, np.ndarray]:
    """Seeded, sorted subsets of the train and test splits (all of a split if it is smaller)."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, n in (("train", n_train), ("test", n_test)):
        idx = split[name]
        out[name] = np.sort(rng.choice(idx, size=min(n, len(idx)), replace=False))
    return out


@torch.no_grad()
def pooled_features(
    net,
    xt: torch.Tensor,
    sigma: float,
    layers: list[str],
    *,
    pooling: str,
    grid: int,
    pix_grid: int,
    batch_size: int,
    device: torch.device,
) -> dict[str, np.ndarray]:
    """Pooled feature maps of noisy images ``xt`` (n, 3, H, W) at noise level ``sigma``.

    Returns:
        {layer: float32 (n, D_layer)} for every name in ``layers``, and ``PIXELS``: the noisy images
        average-pooled to pix_grid x pix_grid.
    """
    per_layer: dict[str, list[torch.Tensor]] = {name: [] for name in [*layers, PIXELS]}
    for i in range(0, len(xt), batch_size):
        xb = xt[i : i + batch_size].to(device)
        feats = net.forward_features(xb, torch.full((len(xb),), sigma, device=device), layers)
        for name in layers:
            per_layer[name].append(pool(feats[name].float(), pooling, grid).cpu())
        per_layer[PIXELS].append(F.adaptive_avg_pool2d(xb, pix_grid).flatten(1).cpu())
    return {name: torch.cat(chunks).numpy().astype(np.float32, copy=False) for name, chunks in per_layer.items()}
