"""An NCSN++-style U-Net in pure PyTorch (after Song et al., 2021), written for this project.

BigGAN-style residual blocks with noise-embedding injection and skip rescaling, a Gaussian Fourier
embedding of log(sigma), self-attention at configured resolutions, FIR (1, 3, 3, 1) resampling inside the
residual blocks (the filter is a buffer built once), and optional conditioning on the six Shapes3D factors
(one embedding table per factor with a null token). The network outputs the score: its last layer is
divided by sigma, as NCSN++'s ``scale_by_sigma``.

Named intermediate feature maps (``feature_names`` / ``forward_features``) are the explicit API that the
linear probes use.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def _groups(ch: int) -> int:
    return min(32, max(1, ch // 4))


class FIR(nn.Module):
    """Depthwise FIR up/down-sampling by 2 with a separable kernel built once as a buffer."""

    def __init__(self, taps: Sequence[float] = (1, 3, 3, 1)):
        super().__init__()
        k = torch.tensor(taps, dtype=torch.float32)
        k = torch.outer(k, k)
        self.register_buffer("kernel", k / k.sum(), persistent=False)
        self.pad = (len(taps) - 2) // 2 + (len(taps) % 2)

    def down(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        w = self.kernel.to(x.dtype).expand(c, 1, *self.kernel.shape)
        return F.conv2d(F.pad(x, (self.pad,) * 4), w, stride=2, groups=c)

    def up(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        w = (self.kernel * 4).to(x.dtype).expand(c, 1, *self.kernel.shape)
        return F.conv_transpose2d(x, w, stride=2, padding=self.pad, groups=c)


class ResBlock(nn.Module):
    """BigGAN-style residual block: GN-SiLU-(resample)-conv, + noise embedding, GN-SiLU-dropout-conv."""

    def __init__(self, in_ch: int, out_ch: int, emb_dim: int, dropout: float, skip_rescale: bool,
                 resample: str | None = None, fir: FIR | None = None):
        super().__init__()
        self.norm0 = nn.GroupNorm(_groups(in_ch), in_ch, eps=1e-6)
        self.conv0 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.emb = nn.Linear(emb_dim, out_ch)
        self.norm1 = nn.GroupNorm(_groups(out_ch), out_ch, eps=1e-6)
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
    """Single-head self-attention over spatial positions, residual with skip rescaling."""

    def __init__(self, ch: int, skip_rescale: bool):
        super().__init__()
        self.norm = nn.GroupNorm(_groups(ch), ch, eps=1e-6)
        self.qkv = nn.Conv2d(ch, 3 * ch, 1)
        self.proj = nn.Conv2d(ch, ch, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)
        self.scale = 1 / math.sqrt(2) if skip_rescale else 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, hh, ww = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, c, hh * ww).unbind(1)
        h = F.scaled_dot_product_attention(q.transpose(1, 2)[:, None], k.transpose(1, 2)[:, None],
                                           v.transpose(1, 2)[:, None])[:, 0]
        h = self.proj(h.transpose(1, 2).reshape(b, c, hh, ww))
        return (x + h) * self.scale


class FourierEmbedding(nn.Module):
    """Gaussian Fourier features of log(sigma) with fixed random frequencies."""

    def __init__(self, dim: int, scale: float):
        super().__init__()
        self.register_buffer("freqs", torch.randn(dim // 2) * scale)

    def forward(self, log_sigma: torch.Tensor) -> torch.Tensor:
        arg = 2 * math.pi * log_sigma[:, None] * self.freqs[None]
        return torch.cat([arg.sin(), arg.cos()], dim=1)


class NCSNpp(nn.Module):
    """NCSN++-style score network s(x, sigma[, labels]).

    Args:
        img_resolution: input side (square images).
        in_channels: image channels.
        nf: base width; level i has nf * ch_mult[i] channels.
        ch_mult: channel multiplier per resolution level (the number of levels).
        num_res_blocks: residual blocks per level in the encoder (decoder: one more).
        attn_resolutions: feature-map sides at which attention follows each residual block.
        dropout: dropout probability inside residual blocks.
        fourier_scale: std of the Fourier embedding's frequencies.
        n_levels: levels per conditioning factor (None: unconditional). Labels are official level
            indices, -1 meaning "not given" (the null token).
        skip_rescale: divide residual sums by sqrt(2).
        resample_filter: FIR taps for up/down-sampling.
    """

    def __init__(self, img_resolution: int, in_channels: int = 3, nf: int = 128,
                 ch_mult: Sequence[int] = (1, 2, 2, 2), num_res_blocks: int = 4,
                 attn_resolutions: Sequence[int] = (16,), dropout: float = 0.0, fourier_scale: float = 16.0,
                 n_levels: Sequence[int] | None = None, skip_rescale: bool = True,
                 resample_filter: Sequence[float] = (1, 3, 3, 1)):
        super().__init__()
        if img_resolution % 2 ** (len(ch_mult) - 1):
            raise ValueError(f"img_resolution {img_resolution} is not divisible by 2^{len(ch_mult) - 1}")
        self.hparams = dict(img_resolution=img_resolution, in_channels=in_channels, nf=nf, ch_mult=list(ch_mult),
                            num_res_blocks=num_res_blocks, attn_resolutions=list(attn_resolutions),
                            dropout=dropout, fourier_scale=fourier_scale,
                            n_levels=list(n_levels) if n_levels is not None else None,
                            skip_rescale=skip_rescale, resample_filter=list(resample_filter))
        emb_dim = 4 * nf
        self.fourier = FourierEmbedding(2 * nf, fourier_scale)
        self.emb0 = nn.Linear(2 * nf, emb_dim)
        self.emb1 = nn.Linear(emb_dim, emb_dim)
        self.label_emb = None
        if n_levels is not None:
            self.label_emb = nn.ModuleList(nn.Embedding(n + 1, emb_dim) for n in n_levels)
            self.register_buffer("null_index", torch.tensor(list(n_levels)), persistent=False)
        self.fir = FIR(resample_filter)
        block = dict(emb_dim=emb_dim, dropout=dropout, skip_rescale=skip_rescale, fir=self.fir)

        self.conv_in = nn.Conv2d(in_channels, nf, 3, padding=1)
        self.down = nn.ModuleList()
        self._down_names: list[str | None] = []
        skips = [nf]
        ch, res = nf, img_resolution
        for level, mult in enumerate(ch_mult):
            out = nf * mult
            for _ in range(num_res_blocks):
                self.down.append(ResBlock(ch, out, **block))
                ch = out
                skips.append(ch)
                if res in attn_resolutions:
                    self.down.append(Attention(ch, skip_rescale))
            self._mark_last(self.down, f"enc_{res}")
            if level < len(ch_mult) - 1:
                self.down.append(ResBlock(ch, ch, resample="down", **block))
                skips.append(ch)
                res //= 2
        self.mid = nn.ModuleList([ResBlock(ch, ch, **block), Attention(ch, skip_rescale), ResBlock(ch, ch, **block)])
        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(ch_mult))):
            out = nf * mult
            for _ in range(num_res_blocks + 1):
                self.up.append(ResBlock(ch + skips.pop(), out, **block))
                ch = out
                if res in attn_resolutions:
                    self.up.append(Attention(ch, skip_rescale))
            self._mark_last(self.up, f"dec_{res}")
            if level > 0:
                self.up.append(ResBlock(ch, ch, resample="up", **block))
                res *= 2
        self.norm_out = nn.GroupNorm(_groups(ch), ch, eps=1e-6)
        self.conv_out = nn.Conv2d(ch, in_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    @staticmethod
    def _mark_last(blocks: nn.ModuleList, name: str) -> None:
        blocks[-1].feature_name = name

    def feature_names(self) -> list[str]:
        """Names of the feature maps ``forward_features`` can return, input to output."""
        enc = [m.feature_name for m in self.down if hasattr(m, "feature_name")]
        dec = [m.feature_name for m in self.up if hasattr(m, "feature_name")]
        return enc + ["bottleneck"] + dec

    def _embedding(self, sigma: torch.Tensor, labels: torch.Tensor | None, batch: int) -> torch.Tensor:
        sigma = sigma.reshape(-1).expand(batch) if sigma.numel() == 1 else sigma.reshape(-1)
        emb = self.emb0(self.fourier(sigma.log()))
        if self.label_emb is not None:
            if labels is None:
                labels = torch.full((batch, len(self.label_emb)), -1, dtype=torch.long, device=sigma.device)
            labels = torch.where(labels < 0, self.null_index, labels)
            for k, table in enumerate(self.label_emb):
                emb = emb + table(labels[:, k])
        elif labels is not None and bool((labels >= 0).any()):
            raise ValueError("labels given to an unconditional network")
        return self.emb1(F.silu(emb))

    def _run(self, x, sigma, labels, want: set[str] | None):
        """Shared forward pass; with ``want``, returns the named maps as soon as all are computed."""
        feats: dict[str, torch.Tensor] = {}

        def keep(name, h):
            if want is not None and name in want:
                feats[name] = h
            return want is not None and want <= feats.keys()

        sigma = torch.as_tensor(sigma, device=x.device, dtype=torch.float32)
        emb = F.silu(self._embedding(sigma, labels, x.shape[0]))
        h = self.conv_in(x)
        hs = [h]
        for m in self.down:
            if isinstance(m, Attention):
                h = m(h)
                hs[-1] = h
            else:
                h = m(h, emb)
                hs.append(h)
            if hasattr(m, "feature_name") and keep(m.feature_name, h):
                return feats
        h = self.mid[2](self.mid[1](self.mid[0](h, emb)), emb)
        if keep("bottleneck", h):
            return feats
        for m in self.up:
            if isinstance(m, Attention):
                h = m(h)
            elif m.resample == "up":
                h = m(h, emb)
            else:
                h = m(torch.cat([h, hs.pop()], dim=1), emb)
            if hasattr(m, "feature_name") and keep(m.feature_name, h):
                return feats
        out = self.conv_out(F.silu(self.norm_out(h)))
        sig = sigma.reshape(-1, 1, 1, 1) if sigma.numel() > 1 else sigma
        return out / sig.to(out.dtype)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | float, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Score estimate at noise level ``sigma`` (scalar or (B,)); ``labels`` (B, 6) or None."""
        return self._run(x, sigma, labels, None)

    def forward_features(self, x: torch.Tensor, sigma: torch.Tensor | float, names: Sequence[str],
                         labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The named feature maps (B, C, h, w); stops as soon as all are computed."""
        unknown = set(names) - set(self.feature_names())
        if unknown:
            raise KeyError(f"unknown feature maps {sorted(unknown)}; available: {self.feature_names()}")
        return self._run(x, sigma, labels, set(names))
