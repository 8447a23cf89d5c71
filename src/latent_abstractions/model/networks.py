"""The NCSN++-style backbone in pure PyTorch (after Song et al., 2021), written for this project.

BigGAN-style residual blocks with noise-embedding injection and skip rescaling, a Gaussian Fourier
embedding of the noise conditioning value, self-attention at configured resolutions, FIR (1, 3, 3, 1)
resampling inside the residual blocks (the filter is a buffer built once), and optional conditioning on the six
Shapes3D factors (one embedding table per factor with a null token, zero-initialised so that s(y | phi) = s(y)
until training moves them apart, and scaled per channel by a learned function of the noise level, so that the
labels can matter at large sigma and be ignored at small sigma, where the image alone decides them).

The backbone maps an (already scaled) input and a noise conditioning value to its raw output F, as EDM's
``SongUNet`` does; how F becomes a score or a denoiser is the noise parametrisation, a wrapper around it
(``precond.py``). Named intermediate feature maps (``feature_names`` / ``forward_features``, named by
``feature_maps.py``) are the explicit API that the linear probes use.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .feature_maps import BOTTLENECK, decoder_map, encoder_map
from .layers import FIR, Attention, FourierEmbedding, ResBlock, group_count


class NCSNpp(nn.Module):
    """NCSN++-style backbone F(x, c_noise[, labels]).

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
    ):
        super().__init__()
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
            self._mark_last(self.down, encoder_map(res))
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
            self._mark_last(self.up, decoder_map(res))
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
        return enc + [BOTTLENECK] + dec

    def _embedding(self, c_noise: torch.Tensor, labels: torch.Tensor | None, batch: int) -> torch.Tensor:
        if c_noise.numel() not in (1, batch):
            raise ValueError(
                f"the noise level must be a scalar or have one value per example ({batch}), "
                f"got shape {tuple(c_noise.shape)}"
            )
        c_noise = c_noise.reshape(-1).expand(batch) if c_noise.numel() == 1 else c_noise.reshape(-1)
        noise = self.fourier(c_noise)
        emb = self.emb0(noise)
        if self.label_emb is not None:
            if labels is None:
                labels = torch.full((batch, len(self.label_emb)), -1, dtype=torch.long, device=c_noise.device)
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

    def _run(self, x, c_noise, labels, want: set[str] | None):
        """Shared forward pass; with ``want``, returns the named maps as soon as all are computed."""
        feats: dict[str, torch.Tensor] = {}

        def keep(name, h):
            if want is not None and name in want:
                feats[name] = h
            return want is not None and want <= feats.keys()

        c_noise = torch.as_tensor(c_noise, device=x.device, dtype=torch.float32)
        emb = F.silu(self._embedding(c_noise, labels, x.shape[0]))
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
        if keep(BOTTLENECK, h):
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
        return self.conv_out(F.silu(self.norm_out(h)))

    def forward(
        self, x: torch.Tensor, c_noise: torch.Tensor | float, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The raw output F(x, c_noise[, labels]).

        Args:
            x: the (already scaled) input (B, C, H, W) (any memory format).
            c_noise: the noise conditioning value (both parametrisations pass log sigma), a float, a 0-d or a
                (B,) tensor.
            labels: conditional networks only: (B, n_factors) official level indices, -1 = null (that
                factor not given); None = all null. Unconditional networks accept None or all -1.

        Returns:
            (B, C, H, W): the last layer's output, in the autocast dtype if autocast is on.
        """
        return self._run(x, c_noise, labels, None)

    def forward_features(
        self,
        x: torch.Tensor,
        c_noise: torch.Tensor | float,
        names: Sequence[str],
        labels: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Named intermediate feature maps, computed by the same pass as :meth:`forward`.

        ``enc_<r>``: output of the last block (after attention) of the encoder level at resolution r;
        ``bottleneck``: output of the middle ResBlock-Attention-ResBlock; ``dec_<r>``: output of the last
        block of the decoder level at resolution r (before upsampling). The pass stops as soon as every
        requested map is computed.

        Args:
            x, c_noise, labels: as for :meth:`forward`.
            names: a subset of :meth:`feature_names`.

        Returns:
            {name: (B, C, h, w) tensor}.
        """
        unknown = set(names) - set(self.feature_names())
        if unknown:
            raise KeyError(f"unknown feature maps {sorted(unknown)}; available: {self.feature_names()}")
        return self._run(x, c_noise, labels, set(names))


def backbone_kwargs(score_model: dict, img_resolution: int, conditional: bool) -> dict:
    """:class:`NCSNpp`'s arguments for the config's ``score_model`` section on images of side ``img_resolution``
    (conditional: one label table per Shapes3D factor, with every official level). The trainer and the cost plan
    both build the network from these."""
    from ..data.factors import N_LEVELS

    return dict(
        img_resolution=img_resolution,
        nf=score_model["nf"],
        ch_mult=list(score_model["ch_mult"]),
        num_res_blocks=score_model["num_res_blocks"],
        attn_resolutions=list(score_model["attn_resolutions"]),
        dropout=score_model["dropout"],
        fourier_scale=score_model["fourier_scale"],
        n_levels=list(N_LEVELS) if conditional else None,
    )
