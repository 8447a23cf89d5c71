"""Training lowers the loss and resumes bitwise on CPU; sampling writes the documented layout."""

import hashlib
import json

import h5py
import numpy as np
import pandas as pd
import pytest
import torch

from latent_abstractions.data.factors import FACTOR_NAMES, N_LEVELS
from latent_abstractions.data.render import GridSpec
from latent_abstractions.data.shapes3d import make_split, write_synthetic
from latent_abstractions.model import trainer as train_mod
from latent_abstractions.model.checkpoint import load_score_model, save_classifier, save_model
from latent_abstractions.model.classifier import AttributeClassifier
from latent_abstractions.model.networks import NCSNpp
from latent_abstractions.model.precond import EDMPrecond, RawVE
from latent_abstractions.model.sampling import generate, sample_seeds
from latent_abstractions.model.score import get_score_fn
from latent_abstractions.model.sde import VESDE
from latent_abstractions.model.trainer import TrainSettings, fit_score_model
from latent_abstractions.stages.sample import sample_images

torch.set_num_threads(1)
NET = dict(img_resolution=8, nf=8, ch_mult=[1, 2], num_res_blocks=1, attn_resolutions=[], n_levels=[10] * 6)
RAW = {"name": "none"}


def settings(steps):
    return TrainSettings(
        steps=steps,
        batch_size=8,
        lr=1e-3,
        warmup_steps=3,
        grad_clip=1.0,
        ema_decay=0.9,
        checkpoint_every=3,
        log_every=2,
        label_dropout=0.3,
        seed=3,
    )


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (32, 3, 8, 8), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 10, (32, 6), generator=g)
    return images, labels


def test_killed_and_resumed_training_equals_an_uninterrupted_run(tmp_path, data, monkeypatch):
    sde = VESDE(0.01, 5.0)
    cpu = torch.device("cpu")
    full, full_log, info = fit_score_model(*data, NET, RAW, sde, settings(12), tmp_path / "a", cpu, progress=False)
    assert info["resumed_from"] == 0
    # the process dies right after its checkpoint at step 9, between two log rows (later work is lost) ...
    real_save = train_mod._save_checkpoint

    def save_then_die(state_dir, hparams, payload):
        real_save(state_dir, hparams, payload)
        if payload["step"] == 9:
            raise KeyboardInterrupt("killed")

    monkeypatch.setattr(train_mod, "_save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        fit_score_model(*data, NET, RAW, sde, settings(12), tmp_path / "b", cpu, progress=False)
    monkeypatch.setattr(train_mod, "_save_checkpoint", real_save)
    # ... and the same job run again resumes from step 9
    resumed, resumed_log, info = fit_score_model(
        *data, NET, RAW, sde, settings(12), tmp_path / "b", cpu, progress=False
    )
    assert info["resumed_from"] == 9
    for k, v in full.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k
    np.testing.assert_array_equal(full_log["loss"], resumed_log["loss"])
    assert list(full_log["step"]) == [2, 4, 6, 8, 10, 12]


def test_checkpoint_of_other_hyperparameters_is_not_reused(tmp_path, data):
    sde = VESDE(0.01, 5.0)
    fit_score_model(*data, NET, RAW, sde, settings(4), tmp_path, torch.device("cpu"), progress=False)
    _, _, info = fit_score_model(
        *data, NET, RAW, VESDE(0.01, 6.0), settings(4), tmp_path, torch.device("cpu"), progress=False
    )
    assert info["resumed_from"] == 0
    edm = {"name": "edm", "sigma_data": 0.3, "data_mean": [0.5, 0.5, 0.5]}  # the same backbone, another wrapper
    _, _, info = fit_score_model(
        *data, NET, edm, VESDE(0.01, 6.0), settings(4), tmp_path, torch.device("cpu"), progress=False
    )
    assert info["resumed_from"] == 0


def test_checkpoint_of_another_network_version_is_not_reused(tmp_path, data):
    sde = VESDE(0.01, 5.0)
    fit_score_model(*data, NET, RAW, sde, settings(3), tmp_path, torch.device("cpu"), progress=False)
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    ckpt["model"] = {k: v for k, v in ckpt["model"].items() if "label_gate." not in k}  # an older layout
    torch.save(ckpt, tmp_path / "checkpoint.pt")
    _, _, info = fit_score_model(*data, NET, RAW, sde, settings(6), tmp_path, torch.device("cpu"), progress=False)
    assert info["resumed_from"] == 0


def test_rejects_float_images(data):
    with pytest.raises(ValueError, match="uint8"):
        fit_score_model(
            data[0].float(),
            None,
            NET,
            RAW,
            VESDE(0.01, 5.0),
            settings(1),
            "/nonexistent",
            torch.device("cpu"),
            progress=False,
        )


def test_loss_falls_over_training(tmp_path, data):
    s = TrainSettings(
        steps=40,
        batch_size=16,
        lr=2e-3,
        warmup_steps=5,
        grad_clip=1.0,
        ema_decay=0.9,
        checkpoint_every=40,
        log_every=5,
        seed=0,
    )
    _, log, _ = fit_score_model(
        data[0],
        None,
        {**NET, "n_levels": None},
        RAW,
        VESDE(0.01, 5.0),
        s,
        tmp_path,
        torch.device("cpu"),
        progress=False,
    )
    assert list(log.columns) == ["step", "loss", "lr", "images_seen", "seconds"]
    assert log["images_seen"].iloc[-1] == 40 * 16 and log["lr"].iloc[-1] == pytest.approx(2e-3)
    # an untrained network outputs 0, so the loss starts at E||z||^2 = 3 * 8 * 8 = 192
    assert log["loss"].iloc[0] > 120
    # (uniform-noise images: most of the remaining loss is irreducible at small sigma)
    assert log["loss"].iloc[-2:].mean() < 0.85 * log["loss"].iloc[:2].mean(), log


def test_unreadable_checkpoint_is_a_clear_error(tmp_path, data):
    sde = VESDE(0.01, 5.0)
    fit_score_model(*data, NET, RAW, sde, settings(4), tmp_path, torch.device("cpu"), progress=False)
    (tmp_path / "checkpoint.pt").write_bytes(b"not a checkpoint")
    (tmp_path / "checkpoint.prev.pt").write_bytes(b"not one either")
    with pytest.raises(ValueError, match=r"checkpoint.prev.pt: unreadable .* the latest is damaged .*: delete "):
        fit_score_model(*data, NET, RAW, sde, settings(4), tmp_path, torch.device("cpu"), progress=False)
    (tmp_path / "checkpoint.prev.pt").unlink()
    (tmp_path / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"checkpoint.pt: unreadable .* no previous checkpoint to fall back to"):
        fit_score_model(*data, NET, RAW, sde, settings(4), tmp_path, torch.device("cpu"), progress=False)


@pytest.mark.parametrize("damage", ["truncated", "incomplete"])
def test_damaged_latest_checkpoint_falls_back_to_the_previous_one_bitwise(tmp_path, data, monkeypatch, caplog, damage):
    sde, cpu = VESDE(0.01, 5.0), torch.device("cpu")
    full, full_log, _ = fit_score_model(*data, NET, RAW, sde, settings(12), tmp_path / "a", cpu, progress=False)
    real_save = train_mod._save_checkpoint

    def save_then_die(state_dir, hparams, payload):
        real_save(state_dir, hparams, payload)
        if payload["step"] == 9:
            raise KeyboardInterrupt("killed")

    monkeypatch.setattr(train_mod, "_save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        fit_score_model(*data, NET, RAW, sde, settings(12), tmp_path / "b", cpu, progress=False)
    monkeypatch.setattr(train_mod, "_save_checkpoint", real_save)
    state = tmp_path / "b"
    assert torch.load(state / "checkpoint.prev.pt", weights_only=True)["step"] == 6
    latest = state / "checkpoint.pt"
    if damage == "truncated":  # a write cut short on disk
        latest.write_bytes(latest.read_bytes()[: latest.stat().st_size // 2])
    else:  # readable, but not a whole training state
        ckpt = torch.load(latest, weights_only=True)
        del ckpt["opt"]
        torch.save(ckpt, latest)
    with caplog.at_level("WARNING", logger="latent_abstractions.model.trainer"):
        resumed, resumed_log, info = fit_score_model(*data, NET, RAW, sde, settings(12), state, cpu, progress=False)
    assert info["resumed_from"] == 6
    (warning,) = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert "checkpoint.pt: " in warning and "resuming from the previous checkpoint" in warning
    assert (state / "checkpoint.damaged.pt").exists()
    for k, v in full.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k
    np.testing.assert_array_equal(full_log["loss"], resumed_log["loss"])
    steps = [torch.load(state / f, weights_only=True)["step"] for f in ("checkpoint.prev.pt", "checkpoint.pt")]
    assert steps == [9, 12]


def test_previous_checkpoint_of_other_hyperparameters_is_dropped(tmp_path, data):
    sde, cpu = VESDE(0.01, 5.0), torch.device("cpu")
    fit_score_model(*data, NET, RAW, sde, settings(6), tmp_path, cpu, progress=False)  # checkpoints at 3 and 6
    assert (tmp_path / "checkpoint.prev.pt").exists()
    fit_score_model(*data, NET, RAW, VESDE(0.01, 6.0), settings(2), tmp_path, cpu, progress=False)  # one checkpoint
    assert not (tmp_path / "checkpoint.prev.pt").exists()


def test_extending_a_finished_run_continues_it(tmp_path, data):
    sde, cpu = VESDE(0.01, 5.0), torch.device("cpu")
    longer, _, _ = fit_score_model(*data, NET, RAW, sde, settings(10), tmp_path / "a", cpu, progress=False)
    fit_score_model(*data, NET, RAW, sde, settings(5), tmp_path / "b", cpu, progress=False)  # ends off the cadence
    extended, log, info = fit_score_model(*data, NET, RAW, sde, settings(10), tmp_path / "b", cpu, progress=False)
    assert info["resumed_from"] == 5
    for k, v in longer.state_dict().items():
        assert torch.equal(v, extended.state_dict()[k]), k
    # a checkpoint past the steps asked for is not used
    _, _, info = fit_score_model(*data, NET, RAW, sde, settings(6), tmp_path / "b", cpu, progress=False)
    assert info["resumed_from"] == 0


def test_sample_images_writes_the_documented_layout(tmp_path):
    torch.manual_seed(0)
    net = RawVE(
        NCSNpp(img_resolution=8, nf=8, ch_mult=[1, 2], num_res_blocks=1, attn_resolutions=[], n_levels=list(N_LEVELS))
    )  # a conditional model, sampled unconditionally
    model = (tmp_path / "cond.pt", tmp_path / "cond.json")
    save_model(*model, net, {**net.hparams, "sigma_min": 0.01, "sigma_max": 5.0})
    present = [[0, 1]] * 6
    save_classifier(tmp_path / "clf.pt", tmp_path / "clf.json", AttributeClassifier(8, 4, present))
    data = (tmp_path / "data.h5", tmp_path / "split.parquet")
    write_synthetic(data[0], GridSpec.from_counts(8, [2] * 6), progress=False)
    make_split(64, 0.25, seed=0).to_parquet(data[1])
    out = {k: tmp_path / f"out.{k}" for k in ("h5", "png", "parquet")}
    sample_images(
        *model,
        tmp_path / "clf.pt",
        tmp_path / "clf.json",
        *data,
        out["h5"],
        out["png"],
        out["parquet"],
        model="cond",
        n_samples=5,
        steps=3,
        method="pc",
        snr=0.16,
        corrector=True,
        batch_size=2,
        seed=7,
        device=torch.device("cpu"),
    )
    with h5py.File(out["h5"], "r") as f:
        images, seeds = f["images"][()], f["seeds"][()]
        attrs = dict(f.attrs)
    assert images.dtype == np.uint8 and images.shape == (5, 8, 8, 3)
    assert seeds.dtype == np.int64 and len(set(seeds.tolist())) == 5
    assert attrs["steps"] == 3 and attrs["method"] == "pc"
    assert attrs["checkpoint_sha256"] == hashlib.sha256(model[0].read_bytes()).hexdigest()
    assert "tau" in attrs["time_convention"] and "0 = noise" in attrs["time_convention"]
    assert out["png"].stat().st_size > 1000
    scores = pd.read_parquet(out["parquet"])
    assert list(scores["factor"]) == list(FACTOR_NAMES)
    assert (scores["n_samples"] == 5).all()
    # per-sample seeds: the same samples whatever the batch size
    loaded = load_score_model(*model)
    again = generate(
        get_score_fn(loaded.net, loaded.sde),
        loaded.sde,
        8,
        sample_seeds(7, 5),
        steps=3,
        method="pc",
        snr=0.16,
        batch_size=5,
        device=torch.device("cpu"),
    )
    np.testing.assert_array_equal(again, images)
    np.testing.assert_array_equal(sample_seeds(7, 5), seeds)


def test_load_score_model_round_trip_and_errors(tmp_path):
    torch.manual_seed(0)
    backbone = NCSNpp(**{**NET, "n_levels": None})
    for p in backbone.parameters():  # non-zero everywhere, so that the loaded score depends on every weight
        torch.nn.init.normal_(p, std=0.05)
    img_mean = torch.rand(3 * 8 * 8, generator=torch.Generator().manual_seed(1)).tolist()
    net = EDMPrecond(backbone, sigma_data=0.3, data_mean=img_mean).eval()
    paths = (tmp_path / "model.pt", tmp_path / "hparams.json")
    save_model(*paths, net, {**net.hparams, "sigma_min": 0.01, "sigma_max": 5.0})
    # the weights file is the backbone's state_dict, keys in order, with no trace of the wrapper
    assert list(torch.load(paths[0], weights_only=True)) == list(NCSNpp(**{**NET, "n_levels": None}).state_dict())
    loaded = load_score_model(*paths)
    assert isinstance(loaded.net, EDMPrecond) and loaded.hparams["precond"]["name"] == "edm"
    assert not loaded.net.training and loaded.sde.sigma_max == 5.0
    assert loaded.hparams["environment"]["torch"] == torch.__version__
    assert loaded.sha256 == hashlib.sha256(paths[0].read_bytes()).hexdigest()
    x, sigma = torch.randn(3, 3, 8, 8), torch.tensor([0.02, 0.7, 4.0])
    with torch.no_grad():
        torch.testing.assert_close(loaded.net(x, sigma), net(x, sigma), rtol=0, atol=0)
    hp = json.loads(paths[1].read_text())
    for broken, match in (
        ({k: v for k, v in hp.items() if k != "precond"}, "no key 'precond'"),
        ({**hp, "precond": {"name": "vp"}}, "precond name must be one of"),
    ):
        paths[1].write_text(json.dumps(broken))
        with pytest.raises(ValueError, match=f"hparams.json: .*{match}"):
            load_score_model(*paths)
    paths[1].write_text(json.dumps(hp))
    paths[0].write_bytes(b"garbage")
    with pytest.raises(ValueError, match="model.pt"):
        load_score_model(*paths)
    with pytest.raises(ValueError, match="nowhere.json"):
        load_score_model(paths[0], tmp_path / "nowhere.json")


def test_conditional_model_can_have_its_own_noise_levels():
    import pathlib

    import yaml

    from latent_abstractions.stages.train import model_training, train_settings

    shipped = yaml.safe_load((pathlib.Path(__file__).parents[1] / "config" / "config.yaml").read_text())["training"]
    base = {**shipped, "sigma_sampling": "log_normal", "sigma_sampling_cond": "log_uniform"}
    assert model_training(base, "cond")["sigma_sampling"] == "log_uniform"
    assert model_training(base, "uncond")["sigma_sampling"] == "log_normal"
    same = {**base, "sigma_sampling_cond": None}
    assert model_training(same, "cond")["sigma_sampling"] == "log_normal"
    assert "sigma_sampling_cond" not in model_training(base, "cond")  # TrainSettings has no such field
    assert train_settings(model_training(base, "cond"), label_dropout=0.8, seed=0).sigma_sampling == "log_uniform"


def test_previous_checkpoint_is_kept_without_hard_links_and_used_when_the_latest_is_missing(
    tmp_path, data, monkeypatch
):
    sde, cpu = VESDE(0.01, 5.0), torch.device("cpu")

    def no_links(src, dst):
        raise OSError(1, "Operation not permitted")

    monkeypatch.setattr(train_mod.os, "link", no_links)
    fit_score_model(*data, NET, RAW, sde, settings(6), tmp_path, cpu, progress=False)  # checkpoints at 3 and 6
    assert torch.load(tmp_path / "checkpoint.prev.pt", weights_only=True)["step"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.json", "checkpoint.prev.pt", "checkpoint.pt"]
    (tmp_path / "checkpoint.pt").unlink()  # killed between moving the latest aside and renaming the new one
    _, _, info = fit_score_model(*data, NET, RAW, sde, settings(6), tmp_path, cpu, progress=False)
    assert info["resumed_from"] == 3
