"""The tau grid shared by the three measurements (generative time: 0 = noise, 1 = data)."""

from __future__ import annotations

import numpy as np


def tau_grid(start: float, stop: float, n: int) -> np.ndarray:
    """linspace(start, stop, n) in generative time, rounded to 10 decimals so table keys compare equal."""
    if not 0 <= start < stop <= 1 or n < 2:
        raise ValueError(f"need 0 <= start < stop <= 1 and n >= 2, got {start}, {stop}, {n}")
    return np.round(np.linspace(start, stop, n), 10)
