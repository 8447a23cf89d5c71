r"""A noise-conditional classifier q(phi | y, sigma) and the score gap of the classifier-guided conditional model.

Song et al. (2021, "controllable generation") build the conditional score of a VE SDE from the unconditional
one and a classifier trained on noised images: s(y, t | phi) = s(y, t) + grad_y log q(phi | y, sigma(t)). For
that conditional model the score gap in the MI integrand (:mod:`latent_abstractions.measure.mutual_info`) is the
classifier's input gradient alone,

    s(y, t | phi_k) - s(y, t) = grad_y log q(phi_k | y, sigma(t)),

and it is learned from a cross-entropy per factor (about one nat of signal per example and factor) instead of
from the small difference between two denoising losses of ~100 nats each, which is what a label-input score
network must resolve. With the exact posterior p(phi | y) in place of q the gap is exact (the mixture's
conditional minus unconditional score).

Time convention: the classifier is indexed by the noise level sigma = sigma(t), t = 1 - tau (tau generative).
"""

from __future__ import annotations

import logging
import math
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from latent_abstractions.data.factors import N_LEVELS
from latent_abstractions.model.classifier import present_level_mask
from latent_abstractions.model.ema import EMA
from latent_abstractions.model.layers import FourierEmbedding
from latent_abstractions.model.sde import VESDE
from latent_abstractions.model.trainer import data_statistics

log = logging.getLogger(__name__)


class _FiLMBlock(nn.Module):
    """Two 3x3 convolutions with GroupNorm, the second scaled and shifted by the noise embedding; residual."""

    def __init__(self, cin: int, cout: int, stride: int, emb: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1)
        self.norm1 = nn.GroupNorm(min(8, cout // 4), cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.norm2 = nn.GroupNorm(min(8, cout // 4), cout)
        self.film = nn.Linear(emb, 2 * cout)
        self.skip = nn.Conv2d(cin, cout, 1, stride=stride) if (cin != cout or stride != 1) else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = F.silu(self.norm1(self.conv1(x)))
        scale, shift = self.film(emb)[:, :, None, None].chunk(2, 1)
        h = self.norm2(self.conv2(h)) * (1 + scale) + shift
        return F.silu(h + self.skip(x))


class NoisyClassifier(nn.Module):
    """q(phi_k | y, sigma) for the six factors: FiLM-conditioned conv blocks down to a ~6x6 map, six heads.

    The input is scaled by c_in = 1 / sqrt(sigma^2 + sigma_data^2) about ``data_mean`` (unit variance at every
    noise level); the noise level enters as Fourier features of log sigma. Predictions are restricted to the
    levels present in the training data (absent levels get -inf logits).

    Args:
        resolution: input side; width: channels of the first block (doubled per downsampling, at most 4x).
        levels_present: per factor, the official level indices present.
        sigma_data: the training images' std about their per-channel mean; data_mean: their mean pixel value.
    """

    def __init__(
        self,
        resolution: int,
        width: int,
        levels_present: list[list[int]],
        sigma_data: float = 0.5,
        data_mean: float = 0.5,
    ):
        super().__init__()
        self.hparams = dict(
            resolution=resolution,
            width=width,
            levels_present=[list(map(int, v)) for v in levels_present],
            sigma_data=float(sigma_data),
            data_mean=float(data_mean),
        )
        emb = 4 * width
        self.fourier = FourierEmbedding(64, 1.0)  # log sigma, smooth over the SDE's range
        self.embed = nn.Sequential(nn.Linear(64, emb), nn.SiLU(), nn.Linear(emb, emb))
        blocks, ch, res, i = [], 3, resolution, 0
        while True:
            out, stride = width * min(4, 2**i), 1 if i == 0 else 2
            blocks.append(_FiLMBlock(ch, out, stride, emb))
            ch, res, i = out, math.ceil(res / stride), i + 1
            if res <= 6:
                break
        self.blocks = nn.ModuleList(blocks)
        self.pool = nn.AdaptiveAvgPool2d(3)  # keeps where things are (orientation, scale)
        self.head = nn.Sequential(nn.Linear(ch * 9 + emb, 4 * width), nn.SiLU(), nn.Linear(4 * width, sum(N_LEVELS)))
        mask, self.offsets = present_level_mask(levels_present)
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, y: torch.Tensor, sigma: torch.Tensor) -> list[torch.Tensor]:
        """Per-factor logits over the official levels for noised images y (B, 3, H, W) at noise levels (B,)."""
        emb = self.embed(self.fourier(sigma.log()))
        sd, mean = self.hparams["sigma_data"], self.hparams["data_mean"]
        h = (y - mean) / torch.sqrt(sigma**2 + sd**2)[:, None, None, None]
        for block in self.blocks:
            h = block(h, emb)
        z = self.head(torch.cat([self.pool(h).flatten(1), emb], 1)) + self.mask
        return [z[:, a:b] for a, b in zip(self.offsets[:-1], self.offsets[1:])]


def train_noisy_classifier(
    images: torch.Tensor,
    labels: torch.Tensor,
    levels_present: list[list[int]],
    sde: VESDE,
    *,
    width: int,
    steps: int,
    batch_size: int,
    lr: float,
    ema_decay: float,
    seed: int,
    device: torch.device,
    progress: bool = True,
) -> tuple[NoisyClassifier, list[float]]:
    """Fit q(phi | x + sigma z, sigma) with sigma log-uniform over the SDE's range (the MI integral's measure).

    Args:
        images: uint8 (N, 3, H, W); labels: official level indices (N, 6).
        sde: the VE SDE whose noise levels are learned.
        ema_decay: the returned model is the EMA of the weights (smoother input gradients than the last iterate).

    Returns:
        (EMA model in eval mode, the summed cross-entropy of every step).
    """
    torch.manual_seed(seed)
    means, sigma_data = data_statistics(images, "channel")  # chunked: the images stay uint8 (64x64: 5.9 GB)
    model = NoisyClassifier(images.shape[-1], width, levels_present, sigma_data, sum(means) / len(means)).to(device)
    ema = EMA(model, ema_decay)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=lr, total_steps=steps, pct_start=max(0.05, 2 / steps)
    )  # >= 2 warm-up steps
    gen = torch.Generator().manual_seed(seed)
    losses, t0 = [], time.perf_counter()
    for _ in tqdm(range(steps), desc="noisy classifier", disable=not progress, mininterval=5):
        idx = torch.randint(len(images), (batch_size,), generator=gen)
        sigma = sde.sigma(torch.rand(batch_size, generator=gen))
        x = images[idx].float().div(255)
        y = x + sigma[:, None, None, None] * torch.randn(x.shape, generator=gen)
        logits = model(y.to(device), sigma.to(device))
        loss = sum(F.cross_entropy(lg, labels[idx, k].to(device)) for k, lg in enumerate(logits))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        ema.update(model)
        losses.append(float(loss.detach()))
    log.info(
        "noisy classifier: %d steps in %.1f s, mean loss of the last 100 %.4f",
        steps,
        time.perf_counter() - t0,
        float(np.mean(losses[-100:])),
    )
    ema.copy_to(model)
    return model.eval(), losses


def guidance_gap_fn(model: NoisyClassifier, sde: VESDE):
    """``score(x, t, labels)`` of the classifier-guided conditional model up to the unconditional score.

    Rows whose labels (B, 6) give factors get sum over the given k of grad_x log q(phi_k | x, sigma(t)); rows with
    every label -1 (the unconditional score) get 0. The unconditional score s(y, t) is left out: it cancels in
    the score gap s(y, t | phi) - s(y, t), so this function is exact for the "gap" MI estimator only.
    """

    def score(x: torch.Tensor, t, labels: torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(t, dtype=torch.float32, device=x.device)
        t = t.expand(x.shape[0]) if t.ndim == 0 else t
        out = torch.zeros_like(x)
        rows = (labels >= 0).any(1)
        if not bool(rows.any()):
            return out
        with torch.enable_grad():
            y = x[rows].detach().requires_grad_(True)
            logits = model(y, sde.sigma(t[rows]))
            lab = labels[rows].to(x.device)
            total = 0.0
            for k, lg in enumerate(logits):  # rows are independent (GroupNorm is per example): one backward
                given = lab[:, k] >= 0
                if bool(given.any()):
                    total = total + F.log_softmax(lg[given], 1).gather(1, lab[given, k, None]).sum()
            (grad,) = torch.autograd.grad(total, y)
        out[rows] = grad
        return out

    return score
