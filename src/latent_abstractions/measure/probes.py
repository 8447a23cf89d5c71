"""Linear probes: how linearly decodable each factor is from the network's features at each tau.

For each tau, layer and factor: StandardScaler + multinomial logistic regression fitted on train-split
features, accuracy on test-split features with a percentile bootstrap CI over test images, next to chance
level 1 / (levels present). The layer "pixels" (noisy pixels, pooled) is the baseline.
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ..data.factors import FACTOR_NAMES
from .stats import bootstrap_ci


def probe_accuracy(x_train, y_train, x_test, y_test, C: float, max_iter: int) -> np.ndarray:
    """0/1 correctness of a standardised multinomial logistic regression on each test example."""
    if len(np.unique(y_train)) < 2:  # a constant factor: every prediction is that level
        return (y_test == y_train[0]).astype(np.float64)
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter))
    clf.fit(x_train, y_train)
    return (clf.predict(x_test) == y_test).astype(np.float64)


def probe_rows(
    feats: dict[str, np.ndarray],
    labs: dict[str, np.ndarray],
    *,
    tau: float,
    layer: str,
    C: float,
    max_iter: int,
    n_bootstrap: int,
    rngs: list[np.random.Generator],
    n_levels: list[int],
) -> list[dict]:
    """One table row per factor: probe accuracy of one layer at one tau, with its bootstrap CI.

    Args:
        feats, labs: {"train"/"test": features (n, D)}, {"train"/"test": level indices (n, 6)}.
        rngs: one bootstrap generator per factor; n_levels: levels present per factor (chance = 1 / n).
    """
    rows = []
    for k, factor in enumerate(FACTOR_NAMES):
        correct = probe_accuracy(feats["train"], labs["train"][:, k], feats["test"], labs["test"][:, k], C, max_iter)
        lo, hi = bootstrap_ci(correct, n_bootstrap, rngs[k])
        rows.append(
            {
                "tau": float(tau),
                "factor": factor,
                "layer": layer,
                "accuracy": float(correct.mean()),
                "ci_low": lo,
                "ci_high": hi,
                "chance": 1.0 / n_levels[k],
                "n_levels": int(n_levels[k]),
                "n_train": len(feats["train"]),
                "n_test": len(feats["test"]),
            }
        )
    return rows
