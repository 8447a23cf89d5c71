"""Building blocks of the NCSN++-style network (after Song et al., 2021), written for this project.

- :class:`FIR`: depthwise FIR up/down-sampling by 2 with a separable kernel (default (1, 3, 3, 1)) built once
  as a buffer, implemented with grouped ``conv2d`` / ``conv_transpose2d`` (no custom kernels).
- :class:`ResBlock`: BigGAN-style residual block with noise-embedding injection, optional FIR resampling and
  1/sqrt(2) skip rescaling.
- :class:`Attention`: single-head spatial self-attention, residual.
- :class:`FourierEmbedding`: Gaussian Fourier features of log(sigma).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def group_count(ch: int) -> int:
    """GroupNorm groups for ``ch`` channels: min(32, ch // 4), as NCSN++ (at least 1)."""
    return min(32, max(1, ch // 4))


class FIR(nn.Module):
    """Depthwise FIR up/down-sampling by 2 with a separable kernel built once as a buffer.

    ``down`` low-pass filters and keeps every second pixel (H -> H/2); ``up`` inserts zeros and filters with
    the kernel scaled by 4 (H -> 2H), so both preserve a constant image away from the borders.

    Args:
        taps: 1-D filter taps, even length (the 2-D kernel is their outer product, normalised to sum 1).
    """

    def __init__(self, taps: Sequence[float] = (1, 3, 3, 1)):
        super().__init__()
        if len(taps) < 2 or len(taps) % 2 or sum(taps) <= 0:
            raise ValueError(
                "resample_filter must have an even number (>= 2) of taps with a positive sum, got "
                f"{[float(t) for t in taps]}"
            )
        k = torch.tensor(taps, dtype=torch.float32)
        k = torch.outer(k, k)
        self.register_buffer("kernel", k / k.sum(), persistent=False)
        self.pad = (len(taps) - 2) // 2

    def down(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        w = self.kernel.to(x.dtype).expand(c, 1, *self.kernel.shape)
        return F.conv2d(F.pad(x, (self.pad,) * 4), w, stride=2, groups=c)

    def up(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        w = (self.kernel * 4).to(x.dtype).expand(c, 1, *self.kernel.shape)
        return F.conv_transpose2d(x, w, stride=2, padding=self.pad, groups=c)


class ResBlock(nn.Module):
    """BigGAN-style residual block: GN-SiLU-(resample)-conv, + noise embedding, GN-SiLU-dropout-conv.

    The skip path is resampled the same way and goes through a 1x1 conv when the channels change or the
    block resamples; the sum is divided by sqrt(2) when ``skip_rescale``. The last conv starts at zero, so a
    fresh block is (a rescaled) identity.

    Args:
        in_ch, out_ch: channels in and out.
        emb_dim: width of the (already activated) noise/label embedding.
        dropout: dropout probability before the last conv.
        skip_rescale: divide the residual sum by sqrt(2).
        resample: None, "down" or "up".
        fir: the shared FIR module (required when resampling).
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        emb_dim: int,
        dropout: float,
        skip_rescale: bool,
        resample: str | None = None,
        fir: FIR | None = None,
    ):
        super().__init__()
        if resample not in (None, "down", "up") or (resample and fir is None):
            raise ValueError(f"resample must be None, 'down' or 'up' (with a FIR module), got {resample!r}")
        self.norm0 = nn.GroupNorm(group_count(in_ch), in_ch, eps=1e-6)
        self.conv0 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.emb = nn.Linear(emb_dim, out_ch)
        self.norm1 = nn.GroupNorm(group_count(out_ch), out_ch, eps=1e-6)
        self.dropout = nn.Dropout(dropout)
        self.conv1 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        nn.init.zeros_(self.conv1.weight)
        nn.init.zeros_(self.conv1.bias)
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if (in_ch != out_ch or resample) else None
        self.resample, self.fir = resample, fir
        self.scale = 1 / math.sqrt(2) if skip_rescale else 1.0

    def _resample(self, x):
        if self.resample == "down":
            return self.fir.down(x)
        if self.resample == "up":
            return self.fir.up(x)
        return x

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = F.silu(self.norm0(x))
        h = self.conv0(self._resample(h))
        x = self._resample(x)
        h = h + self.emb(emb)[:, :, None, None]
        h = self.conv1(self.dropout(F.silu(self.norm1(h))))
        if self.skip is not None:
            x = self.skip(x)
        return (x + h) * self.scale


class Attention(nn.Module):
    """Single-head self-attention over spatial positions, residual with skip rescaling (output proj starts at 0)."""

    def __init__(self, ch: int, skip_rescale: bool):
        super().__init__()
        self.norm = nn.GroupNorm(group_count(ch), ch, eps=1e-6)
        self.qkv = nn.Conv2d(ch, 3 * ch, 1)
        self.proj = nn.Conv2d(ch, ch, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)
        self.scale = 1 / math.sqrt(2) if skip_rescale else 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, hh, ww = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, c, hh * ww).unbind(1)
        h = F.scaled_dot_product_attention(
            q.transpose(1, 2)[:, None], k.transpose(1, 2)[:, None], v.transpose(1, 2)[:, None]
        )[:, 0]
        h = self.proj(h.transpose(1, 2).reshape(b, c, hh, ww))
        return (x + h) * self.scale


class FourierEmbedding(nn.Module):
    """Gaussian Fourier features [sin, cos](2 pi f log sigma) with fixed random frequencies f ~ N(0, scale^2).

    The frequencies are a persistent buffer (drawn from the global RNG at construction), so a checkpoint
    carries them.
    """

    def __init__(self, dim: int, scale: float):
        super().__init__()
        self.register_buffer("freqs", torch.randn(dim // 2) * scale)

    def forward(self, log_sigma: torch.Tensor) -> torch.Tensor:
        arg = 2 * math.pi * log_sigma[:, None] * self.freqs[None]
        return torch.cat([arg.sin(), arg.cos()], dim=1)
