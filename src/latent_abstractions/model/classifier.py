"""Attribute classifier: a small CNN predicting all six factors of a clean image.

Used to label generated images (sample scores, forking). One head per factor over the official levels;
predictions are restricted to the levels present in the training data.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from ..data.factors import FACTOR_NAMES, N_LEVELS

log = logging.getLogger(__name__)


def present_level_mask(levels_present: list[list[int]]) -> tuple[torch.Tensor, list[int]]:
    """(mask, offsets) for six heads over the official levels concatenated: the mask is 0 at the levels present
    and -inf elsewhere (added to the logits), offsets[k]:offsets[k + 1] is factor k's slice."""
    mask = torch.full((sum(N_LEVELS),), float("-inf"))
    offsets = np.cumsum([0, *N_LEVELS])
    for k, present in enumerate(levels_present):
        mask[offsets[k] + np.asarray(present, dtype=np.int64)] = 0.0
    return mask, offsets.tolist()


class AttributeClassifier(nn.Module):
    """Conv-GN-SiLU blocks with stride-2 downsampling to 4x4, an MLP on the flattened map, six heads.

    Args:
        resolution: input side.
        width: channels of the first block (doubled at each downsampling, at most 4x).
        levels_present: per factor, the official level indices that can be predicted.
    """

    def __init__(self, resolution: int, width: int, levels_present: list[list[int]]):
        super().__init__()
        self.hparams = dict(
            resolution=resolution, width=width, levels_present=[list(map(int, v)) for v in levels_present]
        )
        layers, ch, res, i = [], 3, resolution, 0
        while True:  # stride-2 blocks down to a 4x4 (or smaller) map
            out = width * min(4, 2**i)
            stride = 1 if i == 0 else 2
            layers += [
                nn.Conv2d(ch, out, 3, stride=stride, padding=1),
                nn.GroupNorm(min(8, out // 4), out),
                nn.SiLU(),
                nn.Conv2d(out, out, 3, padding=1),
                nn.GroupNorm(min(8, out // 4), out),
                nn.SiLU(),
            ]
            ch, res, i = out, res // stride, i + 1
            if res <= 4:
                break
        self.body = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(4), nn.Flatten())
        # the flattened 4x4 map keeps where things are (orientation, scale); global pooling would lose it
        self.head = nn.Sequential(nn.Linear(ch * 16, 8 * width), nn.SiLU(), nn.Linear(8 * width, sum(N_LEVELS)))
        mask, self.offsets = present_level_mask(levels_present)
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Per-factor logits (absent levels at -inf) for images in [0, 1]."""
        z = self.head(self.body(x * 2 - 1)) + self.mask
        return [z[:, a:b] for a, b in zip(self.offsets[:-1], self.offsets[1:])]


@torch.no_grad()
def predict(model: AttributeClassifier, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Official level indices (B, 6) for float images (B, 3, H, W) in [0, 1]."""
    dev = next(model.parameters()).device
    out = []
    for i in range(0, len(x), batch_size):
        logits = model(x[i : i + batch_size].to(dev).float())
        out.append(torch.stack([lg.argmax(1) for lg in logits], 1).cpu())
    return torch.cat(out) if out else torch.empty(0, 6, dtype=torch.long)


def fit_classifier(
    images: torch.Tensor,
    labels: torch.Tensor,
    levels_present: list[list[int]],
    *,
    width: int,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    device: torch.device,
    progress: bool = True,
) -> AttributeClassifier:
    """Train on uint8 images (N, 3, H, W) with official level labels (N, 6); cross-entropy summed over heads."""
    torch.manual_seed(seed)
    model = AttributeClassifier(images.shape[-1], width, levels_present).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
    gen = torch.Generator(device=device).manual_seed(seed)
    data, lab = images.to(device), labels.to(device)
    model.train()
    t0 = time.perf_counter()
    for _ in tqdm(range(steps), desc="classifier", disable=not progress, mininterval=5):
        idx = torch.randint(len(data), (batch_size,), device=device, generator=gen)
        logits = model((data[idx].float() / 255).contiguous())
        loss = sum(F.cross_entropy(lg, lab[idx, k]) for k, lg in enumerate(logits))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    log.info(
        "classifier trained: %d steps in %.1f s, last loss %.4f", steps, time.perf_counter() - t0, float(loss.detach())
    )
    return model.eval()


def accuracy_table(
    model: AttributeClassifier, images: torch.Tensor, labels: torch.Tensor, n_levels_present: list[int], seed: int
) -> pd.DataFrame:
    """Held-out accuracy per factor: columns factor, accuracy, n_levels, n_test, seed.

    Args:
        model: the trained classifier; images: uint8 (N, 3, H, W); labels: official level indices (N, 6);
        n_levels_present: per factor, the levels present (chance is 1 / n); seed: recorded in the table.
    """
    pred = torch.cat([predict(model, images[i : i + 4096].float() / 255) for i in range(0, len(images), 4096)])
    acc = (pred == labels).float().mean(0).numpy()
    return pd.DataFrame(
        {
            "factor": list(FACTOR_NAMES),
            "accuracy": acc.astype(np.float64),
            "n_levels": np.asarray(n_levels_present, dtype=np.int64),
            "n_test": np.int64(len(labels)),
            "seed": np.int64(seed),
        }
    )
