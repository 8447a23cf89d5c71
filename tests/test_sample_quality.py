"""Sample-quality measures: nearest-training-image distance and classifier confidence, on known answers."""

import math

import numpy as np
import pytest
import torch

from latent_abstractions.measure.sample_quality import classifier_confidence, nearest_distances


def test_nearest_distance_is_the_rms_gap_to_the_closest_reference():
    ref = torch.stack([torch.full((3, 4, 4), v) for v in (0.1, 0.5, 0.9)])
    q = torch.stack([torch.full((3, 4, 4), 0.5), torch.full((3, 4, 4), 0.62), torch.full((3, 4, 4), -0.3)])
    q[1, 0, 0, 0] = 0.5  # one pixel off the constant: rms = sqrt((47 * 0.12^2 + 0) / 48)
    d = nearest_distances(q, ref, batch_size=2).numpy()
    assert d[0] == pytest.approx(0.0, abs=1e-7)
    assert d[1] == pytest.approx(math.sqrt(47 * 0.12**2 / 48), rel=1e-6)
    assert d[2] == pytest.approx(0.4, rel=1e-6)  # nearest is 0.1
    with pytest.raises(ValueError, match="differ in shape"):
        nearest_distances(q[:, :, :2], ref)


class FixedLogits(torch.nn.Module):
    """A stand-in classifier: every image gets the same logits per factor."""

    def __init__(self, logits):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.logits = logits

    def forward(self, x):
        return [torch.as_tensor(lg, dtype=torch.float32).expand(len(x), -1) for lg in self.logits]


def test_confidence_is_the_mean_top_probability():
    logits = [[0.0, 0.0]] * 5 + [[math.log(3.0), 0.0, -math.inf]]  # 1/2 each; last factor 3/4 (third level absent)
    conf = classifier_confidence(FixedLogits(logits), torch.zeros(7, 3, 4, 4), batch_size=3)
    np.testing.assert_allclose(conf, [0.5] * 5 + [0.75], rtol=1e-6)
