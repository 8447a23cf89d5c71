"""run_forking resumes from per-tau partial results after a kill, and never reuses another run's."""

import numpy as np
import pandas as pd
import pytest
import torch

from latent_abstractions.model.checkpoint import save_classifier, save_model
from latent_abstractions.model.classifier import AttributeClassifier
from latent_abstractions.model.networks import NCSNpp
from latent_abstractions.model.precond import RawVE
from latent_abstractions.stages import measurements
from latent_abstractions.stages.measurements import run_forking
from latent_abstractions.taus import tau_grid

torch.set_num_threads(1)
TAUS = tau_grid(0.0, 1.0, 4)


def write_models(d, weight_seed=0):
    """A small score network with random (not zero) output weights, so forks differ, and a random classifier."""
    torch.manual_seed(weight_seed)
    net = RawVE(NCSNpp(8, nf=8, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=()))
    torch.nn.init.normal_(net.backbone.conv_out.weight, std=0.3)
    save_model(d / "model.pt", d / "hparams.json", net, {**net.hparams, "sigma_min": 0.01, "sigma_max": 5.0})
    save_classifier(d / "clf.pt", d / "clf.json", AttributeClassifier(8, 4, [[0, 1, 2]] * 6))
    return [d / "model.pt", d / "hparams.json", d / "clf.pt", d / "clf.json"]


def fork(models, out, seed=0, partial_dir=None, shard=None, names=("table.parquet", "strips.h5")):
    return run_forking(
        *models,
        out / names[0],
        out / names[1],
        taus=TAUS,
        n_base=3,
        n_forks=4,
        steps=6,
        method="em",
        snr=0.16,
        strip_taus=[1 / 3],
        seed=seed,
        device=torch.device("cpu"),
        n_bootstrap=50,
        partial_dir=partial_dir,
        shard=shard,
    )


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    d = tmp_path_factory.mktemp("forking")
    models = write_models(d)
    fork(models, d / "full")
    return d, models


def strips(out):
    import h5py

    with h5py.File(out if out.suffix == ".h5" else out / "strips.h5") as f:
        return f["images"][...]


def test_a_killed_run_resumes_the_taus_not_done_and_writes_the_same_table(uninterrupted, tmp_path, monkeypatch):
    d, models = uninterrupted
    partial = tmp_path / "state" / "forking"
    real_save = measurements.PartialResults.save

    def save_then_die(self, step, arrays):
        real_save(self, step, arrays)
        if step == 1:
            raise KeyboardInterrupt("killed after two taus")

    monkeypatch.setattr(measurements.PartialResults, "save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        fork(models, tmp_path / "out", partial_dir=partial)
    assert not (tmp_path / "out" / "table.parquet").exists()
    assert sorted(p.name for p in partial.iterdir()) == ["step_0000.npz", "step_0001.npz"]
    monkeypatch.setattr(measurements.PartialResults, "save", real_save)
    skipped = []
    real_fork_labels = measurements.fork_labels

    def recording(*args, **kwargs):
        skipped.append(set(kwargs["skip"]))
        return real_fork_labels(*args, **kwargs)

    monkeypatch.setattr(measurements, "fork_labels", recording)
    fork(models, tmp_path / "out", partial_dir=partial)
    assert skipped == [{0, 1}]  # the strip's tau (index 1) came from its saved strip
    assert (tmp_path / "out" / "table.parquet").read_bytes() == (d / "full" / "table.parquet").read_bytes()
    np.testing.assert_array_equal(strips(tmp_path / "out"), strips(d / "full"))
    # a rerun with everything saved forks nothing
    skipped.clear()
    fork(models, tmp_path / "again", partial_dir=partial)
    assert skipped == []
    assert (tmp_path / "again" / "table.parquet").read_bytes() == (d / "full" / "table.parquet").read_bytes()


def test_partial_results_of_another_run_are_recomputed(uninterrupted, tmp_path, caplog):
    d, models = uninterrupted
    partial = tmp_path / "state" / "forking"
    fork(models, tmp_path / "seed1", seed=1, partial_dir=partial)  # every tau saved, by a run with another seed
    with caplog.at_level("WARNING", logger="latent_abstractions.partials"):
        fork(models, tmp_path / "seed0", seed=0, partial_dir=partial)
    assert (tmp_path / "seed0" / "table.parquet").read_bytes() == (d / "full" / "table.parquet").read_bytes()
    assert len([r for r in caplog.records if "computed with other settings" in r.getMessage()]) == len(TAUS)
    # a retrained score model (another checkpoint hash) does not reuse them either
    (tmp_path / "other").mkdir()
    other = write_models(tmp_path / "other", weight_seed=1)
    fork(other, tmp_path / "other_model", partial_dir=partial)
    fork(other, tmp_path / "other_model_alone")
    a = pd.read_parquet(tmp_path / "other_model" / "table.parquet")
    assert a.equals(pd.read_parquet(tmp_path / "other_model_alone" / "table.parquet"))
    assert not a.equals(pd.read_parquet(d / "full" / "table.parquet"))
    # a damaged file is recomputed, not an error
    (partial / "step_0002.npz").write_bytes(b"truncated")
    fork(other, tmp_path / "after_damage", partial_dir=partial)
    assert (tmp_path / "after_damage" / "table.parquet").read_bytes() == (
        tmp_path / "other_model_alone" / "table.parquet"
    ).read_bytes()


def test_tau_shards_resume_from_the_shared_state_and_gather_the_uninterrupted_outputs(
    uninterrupted, tmp_path, monkeypatch
):
    d, models = uninterrupted
    partial = tmp_path / "state" / "forking"
    names = [(f"part.{k}.npz", f"strips.{k}.h5") for k in range(2)]
    real_save = measurements.PartialResults.save

    def save_then_die(self, step, arrays):
        real_save(self, step, arrays)
        if step == 2:
            raise KeyboardInterrupt("killed after the shard's first tau")

    monkeypatch.setattr(measurements.PartialResults, "save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        fork(models, tmp_path, partial_dir=partial, shard=(1, 2), names=names[1])
    monkeypatch.setattr(measurements.PartialResults, "save", real_save)
    assert sorted(p.name for p in partial.iterdir()) == ["step_0002.npz"]
    skipped = []
    real_fork_labels = measurements.fork_labels

    def recording(*args, **kwargs):
        skipped.append(set(kwargs["skip"]))
        return real_fork_labels(*args, **kwargs)

    monkeypatch.setattr(measurements, "fork_labels", recording)
    for k in (1, 0):
        assert fork(models, tmp_path, partial_dir=partial, shard=(k, 2), names=names[k]) is None
    assert skipped == [{0, 1, 2}, {2, 3}]  # shard 1 forks only its tau not saved; shard 0 only its own taus
    measurements.gather_forking(
        [tmp_path / a for a, _ in names], [tmp_path / b for _, b in names], tmp_path / "t.parquet", tmp_path / "s.h5"
    )
    assert (tmp_path / "t.parquet").read_bytes() == (d / "full" / "table.parquet").read_bytes()
    np.testing.assert_array_equal(strips(tmp_path / "s.h5"), strips(d / "full" / "strips.h5"))
