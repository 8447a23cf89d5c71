"""The MI and forking stages on the exact score of a small rendered file: the same measurements with no model
error, so their known answer is the exact filter's curve (computed independently, from the posterior over images)."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from latent_abstractions.data.factors import FACTOR_NAMES
from latent_abstractions.data.shapes3d import make_split, to_model_input
from latent_abstractions.io import read_parquet_metadata
from latent_abstractions.model.checkpoint import save_classifier
from latent_abstractions.model.classifier import fit_classifier
from latent_abstractions.model.sde import sigma_max_from_data
from latent_abstractions.stages.exact import compute_exact_filter
from latent_abstractions.stages.measurements import (
    EXACT_CHECKPOINT,
    estimate_mutual_information,
    load_score,
    run_forking,
)

torch.set_num_threads(1)
TAUS = [0.0, 0.25, 0.5, 0.75, 1.0]
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def files(tmp_path_factory, two_level_grid):
    """The 16x16 two-level grid (64 images), a split with 48 held-out images, the SDE's hparams.json and the exact
    filter's table of the file (its reference curves, from 2,000 query states)."""
    data, images, _ = two_level_grid
    d = tmp_path_factory.mktemp("exact_score")
    make_split(data.n, 0.75, 0).to_parquet(d / "split.parquet")
    sigma_max = sigma_max_from_data(to_model_input(data.images()))
    (d / "hparams.json").write_text(json.dumps({"sigma_min": 0.01, "sigma_max": sigma_max}))
    exact = compute_exact_filter(
        str(data.path),
        str(d / "split.parquet"),
        str(d / "hparams.json"),
        str(d / "exact.parquet"),
        taus=TAUS,
        n_samples=2000,
        n_forks=3,
        n_base=4,
        mixtures=["all"],
        chunk_size=64,
        seed=0,
        device=CPU,
    )
    return data, d, exact.set_index(["factor", "tau"])


def test_mi_on_the_exact_score_meets_the_exact_filter_within_3_se(files):
    data, d, exact = files
    df = estimate_mutual_information(
        None,
        str(d / "hparams.json"),
        str(data.path),
        str(d / "split.parquet"),
        str(d / "mi_exact.parquet"),
        score="exact",
        taus=TAUS,
        n_images=48,
        n_times=384,  # the integrand is heavy-tailed late in generation: at 96 strata 2 seeds of 10 miss by > 3 SE
        batch_size=448,
        seed=0,
        device=CPU,
    )
    assert (df["checkpoint"] == EXACT_CHECKPOINT).all() and (df["n_images"] == 48).all()
    assert "exact score of the 64 images" in read_parquet_metadata(d / "mi_exact.parquet")["score"]
    ref = exact.loc[df.set_index(["factor", "tau"]).index]
    gain = (ref["mi"] - ref["mi_at_noise"]).to_numpy()
    # both are Monte Carlo estimates: the difference's SE holds the estimator's and the filter's (at tau and at 0)
    noise_se = exact.xs(0.0, level="tau")["mi_se"].reindex(df["factor"]).to_numpy()
    se = np.sqrt(df["se"] ** 2 + ref["mi_se"].to_numpy() ** 2 + noise_se**2).to_numpy()
    assert np.all(np.abs(df["mi"].to_numpy() - gain) <= 3 * se + 1e-9), pd.DataFrame(
        {"factor": df["factor"], "tau": df["tau"], "mi": df["mi"], "exact": gain, "se": se}
    )
    assert gain.max() > 0.5  # not two curves near zero


@pytest.fixture(scope="module")
def classifier(files, two_level_grid, tmp_path_factory):
    data, images, labels = two_level_grid
    levels = [v.tolist() for v in data.levels_present]
    model = fit_classifier(
        images, labels, levels, width=8, steps=150, batch_size=32, lr=3e-3, seed=0, device=CPU, progress=False
    )
    d = tmp_path_factory.mktemp("classifier")
    save_classifier(d / "model.pt", d / "hparams.json", model)
    return str(d / "model.pt"), str(d / "hparams.json")


def test_forking_on_the_exact_score_lies_in_the_exact_filters_range(files, classifier, tmp_path):
    data, d, exact = files
    df = run_forking(
        None,
        str(d / "hparams.json"),
        *classifier,
        str(tmp_path / "forking_exact.parquet"),
        str(tmp_path / "strips_exact.h5"),
        score="exact",
        h5=str(data.path),
        taus=TAUS,
        n_base=4,
        n_forks=3,
        steps=30,
        method="pc",
        snr=0.16,
        strip_taus=[0.5],
        seed=0,
        device=CPU,
        n_bootstrap=50,
    )
    assert (df["checkpoint"] == EXACT_CHECKPOINT).all() and set(df["factor"]) == set(FACTOR_NAMES)
    ref = exact.loc[df.set_index(["factor", "tau"]).index]
    inside = (ref["entropy_k_low"].to_numpy() - 1e-9 <= df["entropy"].to_numpy()) & (
        df["entropy"].to_numpy() <= ref["entropy_k_high"].to_numpy() + 1e-9
    )
    assert inside.all(), df.assign(low=ref["entropy_k_low"].to_numpy(), high=ref["entropy_k_high"].to_numpy())
    # the range decides something: late in generation every base is decided, so every fork must agree
    assert (ref.xs(0.75, level="tau")["entropy_k_high"] == 0).all()
    assert (tmp_path / "strips_exact.h5").exists()


def test_a_score_is_the_network_or_the_exact_one(files):
    data, d, _ = files
    with pytest.raises(ValueError, match=r"score must be one of \('network', 'exact'\), got 'ema'"):
        load_score("ema", None, str(d / "hparams.json"), data, CPU)
    with pytest.raises(ValueError, match="needs the model file"):
        load_score("network", None, str(d / "hparams.json"), data, CPU)
    with pytest.raises(ValueError, match="needs the dataset file"):
        load_score("exact", None, str(d / "hparams.json"), None, CPU)
    source = load_score("exact", None, str(d / "hparams.json"), data, CPU)
    # the exact score's SDE is the one the hparams file names (the exact filter's path)
    assert source.sde.sigma_min == 0.01 and source.hparams is None and source.checkpoint == EXACT_CHECKPOINT
