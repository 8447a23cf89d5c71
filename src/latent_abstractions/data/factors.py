"""The six Shapes3D factors of variation, in the official order, with their official values, and the size of the
official ``3dshapes.h5``, which holds every combination of levels once.

Labels in ``3dshapes.h5`` are float64 *values* (hue 0.0..0.9, scale 0.75..1.25, shape 0..3,
orientation -30..30). Models and tables work with integer *level indices*; the conversion lives here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Factor:
    name: str
    values: np.ndarray  # official label values, ascending

    @property
    def n_levels(self) -> int:
        return len(self.values)


FACTORS: tuple[Factor, ...] = (
    Factor("floor_hue", np.linspace(0.0, 0.9, 10)),
    Factor("wall_hue", np.linspace(0.0, 0.9, 10)),
    Factor("object_hue", np.linspace(0.0, 0.9, 10)),
    Factor("scale", np.linspace(0.75, 1.25, 8)),
    Factor("shape", np.arange(4, dtype=np.float64)),
    Factor("orientation", np.linspace(-30.0, 30.0, 15)),
)
FACTOR_NAMES: tuple[str, ...] = tuple(f.name for f in FACTORS)
N_LEVELS: tuple[int, ...] = tuple(f.n_levels for f in FACTORS)
SHAPE_NAMES: tuple[str, ...] = ("cube", "cylinder", "sphere", "capsule")
N_IMAGES_FULL = int(np.prod(N_LEVELS))  # 480,000
OFFICIAL_RESOLUTION = 64  # the official file's images are 64 x 64 pixels


def values_to_indices(labels: np.ndarray, atol: float = 1e-6) -> np.ndarray:
    """Map official float label values (N, 6) to integer level indices (N, 6).

    Raises:
        ValueError: if a value is NaN/inf or not one of the factor's official values (within ``atol``).
    """
    labels = np.asarray(labels, dtype=np.float64)
    if labels.ndim != 2 or labels.shape[1] != len(FACTORS):
        raise ValueError(f"labels must have shape (N, {len(FACTORS)}), got {labels.shape}")
    if not np.isfinite(labels).all():  # NaN would otherwise become level 0 (argmin of all-NaN distances)
        row, col = (int(v[0]) for v in np.nonzero(~np.isfinite(labels)))
        raise ValueError(
            f"label row {row}, column {col} ({FACTORS[col].name}) is {labels[row, col]}, not an official value"
        )
    out = np.empty(labels.shape, dtype=np.int64)
    for k, f in enumerate(FACTORS):
        dist = np.abs(labels[:, k, None] - f.values[None, :])
        idx = dist.argmin(axis=1)
        bad = dist[np.arange(len(idx)), idx] > atol
        if bad.any():
            first = labels[bad, k][0]
            raise ValueError(
                f"factor {f.name!r}: value {float(first)} is not one of the official values "
                f"{np.round(f.values, 4).tolist()}"
            )
        out[:, k] = idx
    return out
