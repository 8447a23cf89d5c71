"""Exponential moving average of a network's parameters (fp32 shadow, fused update, no host syncs)."""

from __future__ import annotations

import torch
from torch import nn


class EMA:
    """Shadow copy ``s <- decay * s + (1 - decay) * p`` of every floating-point parameter and buffer.

    The shadow lives on the network's device in fp32; ``update`` is one fused ``_foreach_lerp_`` with no
    host synchronisation.

    Args:
        net: the network being trained (its current weights initialise the shadow).
        decay: per-update decay in [0, 1).
    """

    def __init__(self, net: nn.Module, decay: float):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = float(decay)
        self.shadow = {k: v.detach().float().clone() for k, v in net.state_dict().items()}
        self._keys = [k for k, v in self.shadow.items() if v.is_floating_point()]

    @torch.no_grad()
    def update(self, net: nn.Module) -> None:
        """Move the shadow towards ``net``'s current weights."""
        state = net.state_dict()
        torch._foreach_lerp_(
            [self.shadow[k] for k in self._keys], [state[k].detach().float() for k in self._keys], 1.0 - self.decay
        )

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The shadow weights (fp32), keyed like ``net.state_dict()``."""
        return dict(self.shadow)

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore the shadow (keys must match the network's exactly)."""
        missing = set(self.shadow) ^ set(state)
        if missing:
            raise KeyError(f"EMA state does not match the network: {sorted(missing)[:5]}")
        self.shadow = {k: v.float().clone() for k, v in state.items()}

    @torch.no_grad()
    def copy_to(self, net: nn.Module) -> None:
        """Load the averaged weights into ``net`` (strict)."""
        ref = net.state_dict()
        net.load_state_dict({k: v.to(ref[k].dtype) for k, v in self.shadow.items()}, strict=True)
