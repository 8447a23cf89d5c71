"""Noise parametrisations of the VE SDE: small wrappers that turn the backbone's raw output F into the score.

The backbone (``networks.NCSNpp``) knows nothing of sigma except as a conditioning value; a wrapper scales its
input, conditions it on c_noise = log sigma and maps its output F to the score s(y, sigma) ~ grad log p_sigma(y)
and the denoiser D(y; sigma) = y + sigma^2 s(y, sigma) (Tweedie's E[x_0 | y]). The model file names the wrapper
(``hparams["precond"]["name"]``, the config's ``score_model.precond``):

- ``"none"`` (:class:`RawVE`): NCSN++'s ``scale_by_sigma``, s = F(y, log sigma) / sigma (Song et al. 2021), i.e.
  D = y + sigma F. At large sigma, where every data law looks Gaussian, the backbone must output exactly -z.
- ``"edm"`` (:class:`EDMPrecond`): Karras et al. (2022)'s preconditioning of the same SDE,
  D(y; sigma) = mu + c_skip (y - mu) + c_out F(c_in (y - mu), log sigma) with c_skip = sd^2 / (sigma^2 + sd^2),
  c_out = sigma sd / sqrt(sigma^2 + sd^2), c_in = 1 / sqrt(sigma^2 + sd^2), sd = ``sigma_data`` the data's std and
  mu = ``data_mean`` its mean (per channel or the mean image; our images are not centred). The score is
  (D - y) / sigma^2 = -(y - mu) / (sigma^2 + sd^2) + c_out F / sigma^2. With F = 0 this is the exact score of
  Gaussian data N(mu, sd^2 I), so the backbone's target is small and bounded at every sigma.

Both return the score in float32, computed from the backbone's output in float32 (also under bf16 autocast).
The weights are the backbone's alone: a wrapper holds no parameters and no persistent buffers, so a model file is
``backbone.state_dict()`` and the wrapper is rebuilt from the hyperparameters (:func:`build_score_network`).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .networks import NCSNpp


def _per_example(sigma: torch.Tensor | float, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(sigma as float32 on x's device, its (B,) expansion), checking it is a scalar or one value per example."""
    sigma = torch.as_tensor(sigma, device=x.device, dtype=torch.float32)
    batch = x.shape[0]
    if sigma.numel() not in (1, batch):
        raise ValueError(
            f"sigma must be a scalar or have one value per example ({batch}), got shape {tuple(sigma.shape)}"
        )
    return sigma, sigma.reshape(-1).expand(batch) if sigma.numel() == 1 else sigma.reshape(-1)


def _broadcast(sigma: torch.Tensor) -> torch.Tensor:
    """sigma shaped to broadcast against (B, C, H, W): (B, 1, 1, 1), or as it is when it is one value."""
    return sigma.reshape(-1, 1, 1, 1) if sigma.numel() > 1 else sigma


class ScoreNetwork(nn.Module):
    """A backbone in a noise parametrisation: ``net(y, sigma, labels)`` is the score (subclasses say how).

    Attributes:
        backbone: the :class:`NCSNpp` whose ``state_dict`` is the model file.
        evaluations: rows put through the backbone by :meth:`forward` and :meth:`forward_features` so far (one
            image each, as the cost plan counts them); a plain int, in no state_dict. Calls traced by
            ``torch.compile`` are not counted (a Python counter there would be a guard that changes every call):
            the trainer counts its own rows.
    """

    name: str  # the parametrisation's name in the hyperparameters and the config

    def __init__(self, backbone: NCSNpp):
        super().__init__()
        self.backbone = backbone
        self.evaluations = 0

    def _count(self, y: torch.Tensor) -> None:
        if not torch.compiler.is_compiling():
            self.evaluations += int(y.shape[0])

    def precond_hparams(self) -> dict:
        """The wrapper's constructor arguments besides the backbone, with its ``name``."""
        return {"name": self.name}

    @property
    def hparams(self) -> dict:
        """``{"net": backbone constructor arguments, "precond": wrapper's}``; :func:`build_score_network` inverts it."""
        return {"net": self.backbone.hparams, "precond": self.precond_hparams()}

    def feature_names(self) -> list[str]:
        """The backbone's named feature maps, input to output (:meth:`NCSNpp.feature_names`)."""
        return self.backbone.feature_names()

    def _input(self, y: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """The backbone's input for noisy images y at noise level ``sigma`` (broadcastable)."""
        raise NotImplementedError

    def forward_features(
        self,
        y: torch.Tensor,
        sigma: torch.Tensor | float,
        names: Sequence[str],
        labels: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """The backbone's named feature maps (:meth:`NCSNpp.forward_features`) for noisy images y at ``sigma``.

        Args:
            y, sigma, labels: as for :meth:`forward`.
            names: a subset of :meth:`feature_names`.
        """
        sigma, per_example = _per_example(sigma, y)
        self._count(y)
        return self.backbone.forward_features(self._input(y, _broadcast(sigma)), per_example.log(), names, labels)

    def denoise(self, y: torch.Tensor, sigma: torch.Tensor | float, labels: torch.Tensor | None = None) -> torch.Tensor:
        """The denoiser D(y; sigma) = y + sigma^2 s(y, sigma) (float32)."""
        sigma = torch.as_tensor(sigma, device=y.device, dtype=torch.float32)
        return y.float() + _broadcast(sigma) ** 2 * self(y, sigma, labels).float()


class RawVE(ScoreNetwork):
    """NCSN++'s raw VE parametrisation (precond "none"): s(y, sigma) = F(y, log sigma) / sigma.

    Args:
        backbone: the NCSN++ backbone.
    """

    name = "none"

    def _input(self, y: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return y

    def forward(self, y: torch.Tensor, sigma: torch.Tensor | float, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Score estimate s(y, sigma) ~ grad_y log p_sigma(y), float32.

        Args:
            y: noisy images (B, C, H, W) (any memory format).
            sigma: noise std, a float, a 0-d or a (B,) tensor.
            labels: conditional networks only: (B, n_factors) official level indices, -1 = null (that
                factor not given); None = all null. Unconditional networks accept None or all -1.
        """
        sigma, per_example = _per_example(sigma, y)
        self._count(y)
        out = self.backbone(y, per_example.log(), labels)
        return out.float() / _broadcast(sigma)  # float32 also under autocast (out is bf16 there)


class EDMPrecond(ScoreNetwork):
    """Karras et al. (2022)'s preconditioning (precond "edm"; module docstring), as a score.

    Args:
        backbone: the NCSN++ backbone.
        sigma_data: the data's standard deviation about ``data_mean``.
        data_mean: the data's mean (None: zeros): ``in_channels`` values (per channel) or
            ``in_channels * img_resolution**2`` values (the mean image, channel-major).
    """

    name = "edm"

    def __init__(self, backbone: NCSNpp, sigma_data: float = 0.5, data_mean: Sequence[float] | None = None):
        super().__init__(backbone)
        if not sigma_data > 0:
            raise ValueError(f"sigma_data must be > 0, got {sigma_data}")
        channels, res = backbone.hparams["in_channels"], backbone.hparams["img_resolution"]
        n_img = channels * res**2
        if data_mean is not None and len(data_mean) not in (channels, n_img):
            raise ValueError(
                f"data_mean needs {channels} values (one per channel) or {n_img} (the mean image), got {len(data_mean)}"
            )
        self.sigma_data = float(sigma_data)
        self._data_mean = [float(m) for m in data_mean] if data_mean is not None else None
        mean = torch.tensor(self._data_mean if data_mean is not None else [0.0] * channels)
        shape = (1, channels, res, res) if len(mean) == n_img else (1, channels, 1, 1)
        self.register_buffer("data_mean", mean.reshape(shape), persistent=False)

    def precond_hparams(self) -> dict:
        return {"name": self.name, "sigma_data": self.sigma_data, "data_mean": self._data_mean}

    def _centred_and_var(self, y: torch.Tensor, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(y - mu, sigma^2 + sd^2), the second in float32."""
        return y - self.data_mean.to(y.dtype), sigma**2 + self.sigma_data**2

    def _input(self, y: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        centred, var = self._centred_and_var(y, sigma)
        return centred * var.rsqrt().to(y.dtype)  # c_in (y - mu)

    def forward(self, y: torch.Tensor, sigma: torch.Tensor | float, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Score estimate (D(y; sigma) - y) / sigma^2, float32; arguments as for :meth:`RawVE.forward`."""
        sigma, per_example = _per_example(sigma, y)
        sig = _broadcast(sigma)
        centred, var = self._centred_and_var(y, sig)
        self._count(y)
        out = self.backbone(centred * var.rsqrt().to(y.dtype), per_example.log(), labels)
        # (D - y) / sigma^2 written without the cancellation of D - y: -(y - mu) / var + (c_out / sigma^2) F
        c_out_over_s2 = self.sigma_data / (sig * var.sqrt())
        return -centred.float() / var + c_out_over_s2 * out.float()


PRECONDS: dict[str, type[ScoreNetwork]] = {RawVE.name: RawVE, EDMPrecond.name: EDMPrecond}


def build_score_network(net: dict, precond: dict) -> ScoreNetwork:
    """The score network that ``net`` (backbone arguments) and ``precond`` (``name`` + wrapper arguments) describe.

    Raises:
        ValueError: for an unknown parametrisation name or bad values; TypeError for unknown arguments.
    """
    kwargs = dict(precond)
    name = kwargs.pop("name", None)
    if name not in PRECONDS:
        raise ValueError(f"precond name must be one of {sorted(PRECONDS)}, got {name!r}")
    return PRECONDS[name](NCSNpp(**net), **kwargs)
