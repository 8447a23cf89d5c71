"""Small statistics shared by the measurements."""

from __future__ import annotations

import numpy as np


def bootstrap_ci(values: np.ndarray, n_bootstrap: int, rng: np.random.Generator, level: float = 0.95):
    """Percentile bootstrap CI of the mean of ``values`` by resampling its entries.

    With one value, the CI is that value.
    """
    n = len(values)
    if n == 1:
        return float(values[0]), float(values[0])
    means = values[rng.integers(0, n, size=(n_bootstrap, n))].mean(axis=1)
    return float(np.quantile(means, (1 - level) / 2)), float(np.quantile(means, (1 + level) / 2))
