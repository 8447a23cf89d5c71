"""An NCSN++-style U-Net in pure PyTorch (after Song et al., 2021), written for this project.

BigGAN-style residual blocks with noise-embedding injection and skip rescaling, a Gaussian Fourier
embedding of log(sigma), self-attention at configured resolutions, FIR (1, 3, 3, 1) resampling inside the
residual blocks (the filter is a buffer built once), and optional conditioning on the six Shapes3D factors
(one embedding table per factor with a null token, zero-initialised so that s(y | phi) = s(y) until training
moves them apart, and scaled per channel by a learned function of the noise level, so that the labels can
matter at large sigma and be ignored at small sigma, where the image alone decides them). The network always
returns the score; how the backbone's output F becomes the score is the noise parametrisation (``precond``),
kept apart from the backbone:

- ``"none"``: NCSN++'s ``scale_by_sigma``, s = F(y, sigma) / sigma (Song et al. 2021; config/paper.yaml).
- ``"edm"``: Karras et al. (2022)'s preconditioning of the same VE SDE, the denoiser
  D(y; sigma) = mu + c_skip (y - mu) + c_out F(c_in (y - mu), log sigma) with c_skip = sd^2 / (sigma^2 + sd^2),
  c_out = sigma sd / sqrt(sigma^2 + sd^2), c_in = 1 / sqrt(sigma^2 + sd^2), sd = ``sigma_data`` the data's std
  and mu = ``data_mean`` its per-channel mean (our images are not centred). The score is
  (D - y) / sigma^2 = -(y - mu) / (sigma^2 + sd^2) + c_out F / sigma^2. With F = 0 this is the exact score of
  Gaussian data N(mu, sd^2 I), so at large sigma (where every data law looks Gaussian) the backbone's target
  is small and bounded; with ``"none"`` it must output exactly -z there.

Named intermediate feature maps (``feature_names`` / ``forward_features``) are the explicit API that the
linear probes use.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .layers import FIR, Attention, FourierEmbedding, ResBlock, group_count


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
        precond: noise parametrisation, "none" (score = F / sigma) or "edm" (see the module docstring).
        sigma_data: the data's standard deviation (precond "edm").
        data_mean: the data's mean (precond "edm"; None: zeros): ``in_channels`` values (per channel) or
            ``in_channels * img_resolution**2`` values (the mean image, channel-major).
    """

    def __init__(
        self,
        img_resolution: int,
        in_channels: int = 3,
        nf: int = 128,
        ch_mult: Sequence[int] = (1, 2, 2, 2),
        num_res_blocks: int = 4,
        attn_resolutions: Sequence[int] = (16,),
        dropout: float = 0.0,
        fourier_scale: float = 16.0,
        n_levels: Sequence[int] | None = None,
        skip_rescale: bool = True,
        resample_filter: Sequence[float] = (1, 3, 3, 1),
        precond: str = "none",
        sigma_data: float = 0.5,
        data_mean: Sequence[float] | None = None,
    ):
        super().__init__()
        if precond not in ("none", "edm"):
            raise ValueError(f"precond must be 'none' or 'edm', got {precond!r}")
        if not sigma_data > 0:
            raise ValueError(f"sigma_data must be > 0, got {sigma_data}")
        n_img = in_channels * img_resolution**2
        if data_mean is not None and len(data_mean) not in (in_channels, n_img):
            raise ValueError(
                f"data_mean needs {in_channels} values (one per channel) or {n_img} (the mean image), "
                f"got {len(data_mean)}"
            )
        if img_resolution % 2 ** (len(ch_mult) - 1):
            raise ValueError(f"img_resolution {img_resolution} is not divisible by 2^{len(ch_mult) - 1}")
        self.hparams = dict(
            img_resolution=img_resolution,
            in_channels=in_channels,
            nf=nf,
            ch_mult=list(ch_mult),
            num_res_blocks=num_res_blocks,
            attn_resolutions=list(attn_resolutions),
            dropout=dropout,
            fourier_scale=fourier_scale,
            n_levels=list(n_levels) if n_levels is not None else None,
            skip_rescale=skip_rescale,
            resample_filter=list(resample_filter),
        )
        if precond != "none":  # the raw parametrisation keeps its original hparams (older model files load)
            self.hparams.update(
                precond=precond,
                sigma_data=float(sigma_data),
                data_mean=[float(m) for m in data_mean] if data_mean is not None else None,
            )
        self.precond, self.sigma_data = precond, float(sigma_data)
        mean = torch.tensor([float(m) for m in data_mean] if data_mean is not None else [0.0] * in_channels)
        shape = (1, in_channels, img_resolution, img_resolution) if len(mean) == n_img else (1, in_channels, 1, 1)
        self.register_buffer("data_mean", mean.reshape(shape), persistent=False)
        emb_dim = 4 * nf
        self.fourier = FourierEmbedding(2 * nf, fourier_scale)
        self.emb0 = nn.Linear(2 * nf, emb_dim)
        self.emb1 = nn.Linear(emb_dim, emb_dim)
        self.label_emb = None
        if n_levels is not None:
            self.label_emb = nn.ModuleList(nn.Embedding(n + 1, emb_dim) for n in n_levels)
            for table in self.label_emb:  # labels start with no effect: s(y | phi) = s(y) at initialisation
                nn.init.zeros_(table.weight)
            # a per-channel gate on the labels' embedding from the noise level, so the network can make the labels
            # matter where they inform the denoiser (large sigma) and not where the image alone decides (small
            # sigma, where s(y | phi) = s(y) exactly for labels that are functions of the image)
            self.label_gate = nn.Linear(2 * nf, emb_dim)
            nn.init.zeros_(self.label_gate.weight)
            nn.init.ones_(self.label_gate.bias)
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
        self.norm_out = nn.GroupNorm(group_count(ch), ch, eps=1e-6)
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
        if sigma.numel() not in (1, batch):
            raise ValueError(
                f"sigma must be a scalar or have one value per example ({batch}), got shape {tuple(sigma.shape)}"
            )
        sigma = sigma.reshape(-1).expand(batch) if sigma.numel() == 1 else sigma.reshape(-1)
        noise = self.fourier(sigma.log())
        emb = self.emb0(noise)
        if self.label_emb is not None:
            if labels is None:
                labels = torch.full((batch, len(self.label_emb)), -1, dtype=torch.long, device=sigma.device)
            if labels.ndim != 2 or labels.shape != (batch, len(self.label_emb)):
                raise ValueError(
                    f"labels must be (batch={batch}, {len(self.label_emb)}) level indices "
                    f"(-1 = null), got shape {tuple(labels.shape)}"
                )
            labels = torch.where(labels < 0, self.null_index, labels.long())
            given = sum(table(labels[:, k]) for k, table in enumerate(self.label_emb))
            emb = emb + self.label_gate(noise) * given
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
        sig = sigma.reshape(-1, 1, 1, 1) if sigma.numel() > 1 else sigma
        if self.precond == "edm":
            centred = x - self.data_mean.to(x.dtype)
            h = self.conv_in(centred * (sig**2 + self.sigma_data**2).rsqrt().to(x.dtype))
        else:
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
        if self.precond == "edm":  # (D - y) / sigma^2, written without the cancellation of D - y
            var = sig**2 + self.sigma_data**2
            c_out_over_s2 = self.sigma_data / (sig * var.sqrt())
            return -centred.float() / var + c_out_over_s2 * out.float()
        return out.float() / sig  # in fp32: under bf16 autocast ``out`` is bf16, and sigma in bf16 is off by <0.4%

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | float, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Score estimate s(x, sigma) ~ grad_x log p_sigma(x).

        Args:
            x: noisy images (B, C, H, W) (any memory format).
            sigma: noise std, a float, a 0-d or a (B,) tensor.
            labels: conditional networks only: (B, n_factors) official level indices, -1 = null (that
                factor not given); None = all null. Unconditional networks accept None or all -1.

        Returns:
            (B, C, H, W): the score; precond "none": the last layer's output divided by sigma; "edm":
            (D(y; sigma) - y) / sigma^2 (module docstring).
        """
        return self._run(x, sigma, labels, None)

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor | float, labels: torch.Tensor | None = None) -> torch.Tensor:
        """The denoiser D(y; sigma) = y + sigma^2 s(y, sigma) (Tweedie's E[x_0 | y]), for any ``precond``."""
        sigma = torch.as_tensor(sigma, device=x.device, dtype=torch.float32)
        sig = sigma.reshape(-1, 1, 1, 1) if sigma.numel() > 1 else sigma
        return x.float() + sig**2 * self(x, sigma, labels).float()

    def forward_features(
        self, x: torch.Tensor, sigma: torch.Tensor | float, names: Sequence[str], labels: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Named intermediate feature maps, computed by the same pass as :meth:`forward`.

        ``enc_<r>``: output of the last block (after attention) of the encoder level at resolution r;
        ``bottleneck``: output of the middle ResBlock-Attention-ResBlock; ``dec_<r>``: output of the last
        block of the decoder level at resolution r (before upsampling). The pass stops as soon as every
        requested map is computed.

        Args:
            x, sigma, labels: as for :meth:`forward`.
            names: a subset of :meth:`feature_names`.

        Returns:
            {name: (B, C, h, w) tensor}.
        """
        unknown = set(names) - set(self.feature_names())
        if unknown:
            raise KeyError(f"unknown feature maps {sorted(unknown)}; available: {self.feature_names()}")
        return self._run(x, sigma, labels, set(names))
