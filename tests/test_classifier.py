"""The attribute classifier learns the factors, predicts only present levels; TV scores of sample labels."""

import numpy as np
import pytest
import torch

from latent_abstractions.data.factors import N_LEVELS
from latent_abstractions.measure.sample_quality import tv_to_uniform
from latent_abstractions.model.checkpoint import load_classifier, save_classifier
from latent_abstractions.model.classifier import AttributeClassifier, accuracy_table, fit_classifier, predict

torch.set_num_threads(1)


def test_classifier_learns_the_factors(tmp_path, two_level_grid):
    d, x, y = two_level_grid
    levels = [v.tolist() for v in d.levels_present]
    model = fit_classifier(
        x, y, levels, width=8, steps=150, batch_size=32, lr=3e-3, seed=0, device=torch.device("cpu"), progress=False
    )
    acc = accuracy_table(model, x, y, list(d.n_levels_present), seed=0)
    assert list(acc.columns) == ["factor", "accuracy", "n_levels", "n_test", "seed"]
    assert (acc["accuracy"] > 0.8).all(), acc  # chance is 0.5
    save_classifier(tmp_path / "clf.pt", tmp_path / "clf.json", model)
    again = load_classifier(tmp_path / "clf.pt", tmp_path / "clf.json")
    assert again.sde is None and again.hparams == model.hparams
    torch.testing.assert_close(predict(again.net, x.float() / 255), predict(model, x.float() / 255), rtol=0, atol=0)


def test_predictions_are_restricted_to_present_levels():
    present = [[0, 9], [3], [1, 4, 7], [0, 7], [2, 3], [0, 5, 10, 14]]
    torch.manual_seed(0)
    model = AttributeClassifier(8, 4, present).eval()
    with torch.no_grad():  # an untrained head would otherwise spread its argmax over all official levels
        model.head[-1].bias.copy_(torch.linspace(0, 5, sum(N_LEVELS)))
    pred = predict(model, torch.rand(64, 3, 8, 8), batch_size=16)
    assert pred.shape == (64, 6) and pred.dtype == torch.long
    for k in range(6):
        assert set(pred[:, k].tolist()) <= set(present[k]), k


def test_load_classifier_names_the_missing_file(tmp_path):
    paths = (tmp_path / "model.pt", tmp_path / "hparams.json")
    save_classifier(*paths, AttributeClassifier(8, 4, [list(range(n)) for n in N_LEVELS]))
    paths[0].unlink()
    with pytest.raises(ValueError, match="model.pt"):
        load_classifier(*paths)
    with pytest.raises(ValueError, match="nowhere.json"):
        load_classifier(paths[0], tmp_path / "nowhere.json")


def test_tv_to_uniform_known_answers():
    present = [[0, 1], [0, 1, 2, 3], [5, 7], [0, 1], [0, 1], [0, 1]]
    pred = np.zeros((4, 6), dtype=np.int64)
    pred[:, 0] = [0, 1, 0, 1]  # exactly uniform -> 0
    pred[:, 1] = [0, 0, 0, 0]  # all mass on one of four levels -> 3/4
    pred[:, 2] = [5, 5, 5, 7]  # (3/4, 1/4) vs (1/2, 1/2) -> 1/4
    pred[:, 3] = [0, 0, 1, 1]
    pred[:, 4] = [2, 2, 2, 2]  # an absent level (impossible for a masked classifier) counts as mass off-support
    pred[:, 5] = [1, 1, 1, 1]
    np.testing.assert_allclose(tv_to_uniform(pred, present), [0, 0.75, 0.25, 0, 1.0, 0.5])
