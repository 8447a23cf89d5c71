"""The tau grid shared by the three measurements (generative time: 0 = noise, 1 = data)."""

from __future__ import annotations

import numpy as np


def tau_grid(start: float, stop: float, n: int) -> np.ndarray:
    """linspace(start, stop, n) in generative time, rounded to 10 decimals so table keys compare equal."""
    if not 0 <= start < stop <= 1 or n < 2:
        raise ValueError(f"need 0 <= start < stop <= 1 and n >= 2, got {start}, {stop}, {n}")
    return np.round(np.linspace(start, stop, n), 10)


def shard_range(n_taus: int, n_shards: int, shard: int) -> range:
    """The grid indices of shard ``shard`` of ``n_shards`` (``tau_shards``): contiguous, in order, sizes differing
    by at most one (the first ``n_taus % n_shards`` shards take one more), together every index exactly once."""
    if not 1 <= n_shards <= n_taus:
        raise ValueError(f"need 1 <= tau_shards <= {n_taus} (one tau per shard at least), got {n_shards}")
    if not 0 <= shard < n_shards:
        raise ValueError(f"shard must be in 0..{n_shards - 1}, got {shard}")
    size, extra = divmod(n_taus, n_shards)
    start = shard * size + min(shard, extra)
    return range(start, start + size + (shard < extra))
