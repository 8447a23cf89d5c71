"""Training resumes bitwise on CPU; the classifier learns the factors."""

import numpy as np
import pytest
import torch

from latent_abstractions.classifier import accuracy_table, load_classifier, predict, save_classifier, train_classifier
from latent_abstractions.render import GridSpec
from latent_abstractions.sde import VESDE
from latent_abstractions.shapes3d import load_shapes3d, write_synthetic
from latent_abstractions import train as train_mod
from latent_abstractions.train import TrainSettings, train_score_model

torch.set_num_threads(1)
NET = dict(img_resolution=8, nf=8, ch_mult=[1, 2], num_res_blocks=1, attn_resolutions=[], n_levels=[10] * 6)


def settings(steps):
    return TrainSettings(steps=steps, batch_size=8, lr=1e-3, warmup_steps=3, grad_clip=1.0, ema_decay=0.9,
                         checkpoint_every=4, log_every=2, label_dropout=0.3, seed=3)


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (32, 3, 8, 8), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 10, (32, 6), generator=g)
    return images, labels


def test_killed_and_resumed_training_equals_an_uninterrupted_run(tmp_path, data, monkeypatch):
    sde = VESDE(0.01, 5.0)
    cpu = torch.device("cpu")
    full, full_log, info = train_score_model(*data, NET, sde, settings(12), tmp_path / "a", cpu, progress=False)
    assert info["resumed_from"] == 0
    # the process dies right after its checkpoint at step 8 (later work is lost) ...
    real_save = train_mod._save_checkpoint

    def save_then_die(state_dir, hparams, payload):
        real_save(state_dir, hparams, payload)
        if payload["step"] == 8:
            raise KeyboardInterrupt("killed")

    monkeypatch.setattr(train_mod, "_save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train_score_model(*data, NET, sde, settings(12), tmp_path / "b", cpu, progress=False)
    monkeypatch.setattr(train_mod, "_save_checkpoint", real_save)
    # ... and the same job run again resumes from step 8
    resumed, resumed_log, info = train_score_model(*data, NET, sde, settings(12), tmp_path / "b", cpu,
                                                   progress=False)
    assert info["resumed_from"] == 8
    for k, v in full.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k
    np.testing.assert_array_equal(full_log["loss"], resumed_log["loss"])
    assert list(full_log["step"]) == [2, 4, 6, 8, 10, 12]


def test_checkpoint_of_other_hyperparameters_is_not_reused(tmp_path, data):
    sde = VESDE(0.01, 5.0)
    train_score_model(*data, NET, sde, settings(4), tmp_path, torch.device("cpu"), progress=False)
    _, _, info = train_score_model(*data, NET, VESDE(0.01, 6.0), settings(4), tmp_path, torch.device("cpu"),
                                   progress=False)
    assert info["resumed_from"] == 0


def test_rejects_float_images(data):
    with pytest.raises(ValueError, match="uint8"):
        train_score_model(data[0].float(), None, NET, VESDE(0.01, 5.0), settings(1), "/nonexistent",
                          torch.device("cpu"), progress=False)


def test_classifier_learns_the_factors(tmp_path):
    path = tmp_path / "d.h5"
    write_synthetic(path, GridSpec.from_counts(16, [2, 2, 2, 2, 2, 2]), progress=False)
    d = load_shapes3d(path)
    x = torch.from_numpy(d.images()).permute(0, 3, 1, 2).contiguous()
    y = torch.from_numpy(d.label_indices)
    levels = [v.tolist() for v in d.levels_present]
    model = train_classifier(x, y, levels, width=8, steps=150, batch_size=32, lr=3e-3, seed=0,
                             device=torch.device("cpu"), progress=False)
    acc = accuracy_table(model, x, y, list(d.n_levels_present), seed=0)
    assert (acc["accuracy"] > 0.8).all(), acc  # chance is 0.5
    save_classifier(tmp_path / "clf", model)
    again = load_classifier(tmp_path / "clf")
    pred = predict(again, x.float() / 255)
    for k in range(6):  # only present levels are ever predicted
        assert set(pred[:, k].tolist()) <= set(levels[k])
