"""Sample quality beside the same numbers for real held-out images, so a reader can judge it.

- classifier confidence: per factor, the mean over images of the classifier's largest class probability (a
  scene the classifier recognises scores near its held-out value; noise scores near 1 / levels or is
  confidently wrong, so read it with the TV distance);
- nearest-image distance: the root-mean-square pixel distance (on the [0, 1] scale) from each image to its
  nearest training image. Held-out images are not in the training set, so their distances are the scale of a
  real but new scene; samples much farther away are not scenes of the dataset, samples at ~0 are copies.
"""

from __future__ import annotations

import numpy as np
import torch

from ..data.factors import FACTOR_NAMES


@torch.no_grad()
def nearest_distances(queries: torch.Tensor, reference: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """RMS pixel distance from each query image to its nearest reference image (float64, one per query).

    Args:
        queries: (Q, C, H, W) float images; reference: (N, C, H, W) float images of the same shape.
    """
    if queries.shape[1:] != reference.shape[1:]:
        raise ValueError(
            f"query images {tuple(queries.shape[1:])} and reference images {tuple(reference.shape[1:])} differ in shape"
        )
    ref = reference.flatten(1).double()
    ref_norm = ref.pow(2).sum(1)
    out = []
    for i in range(0, len(queries), batch_size):
        q = queries[i : i + batch_size].flatten(1).double()
        d2 = (q.pow(2).sum(1, keepdim=True) - 2 * q @ ref.T + ref_norm[None]).clamp_min(0)
        out.append(d2.min(1).values.div(q.shape[1]).sqrt())
    return torch.cat(out) if out else torch.empty(0, dtype=torch.float64)


@torch.no_grad()
def classifier_confidence(clf, x: torch.Tensor, batch_size: int = 512) -> np.ndarray:
    """Per factor, the mean over images of the classifier's largest class probability; shape (6,)."""
    dev = next(clf.parameters()).device
    total = np.zeros(len(FACTOR_NAMES))
    for i in range(0, len(x), batch_size):
        logits = clf(x[i : i + batch_size].to(dev).float())
        total += np.array([float(lg.softmax(1).max(1).values.sum()) for lg in logits])
    return total / max(1, len(x))


def tv_to_uniform(pred: np.ndarray, levels_present: list[list[int]]) -> np.ndarray:
    """Per factor, total variation distance between predicted label frequencies and uniform over present levels."""
    tv = []
    for k, present in enumerate(levels_present):
        freq = np.array([(pred[:, k] == lv).mean() for lv in present])
        tv.append(0.5 * np.abs(freq - 1 / len(present)).sum() + 0.5 * (1 - freq.sum()))
    return np.asarray(tv)
