"""Probes, forking entropy and emergence times on inputs whose answers are known."""

import numpy as np
import pandas as pd
import pytest

from latent_abstractions.data.factors import FACTOR_NAMES
from latent_abstractions.measure.emergence import crossing_tau, emergence_table, factor_order
from latent_abstractions.measure.forking import fork_entropies, normalised_entropy, path_grid
from latent_abstractions.measure.probes import probe_accuracy
from latent_abstractions.measure.stats import bootstrap_ci
from latent_abstractions.taus import tau_grid


def test_probe_on_separable_features_is_perfect_and_on_noise_is_chance():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 400)
    informative = np.eye(4)[y] * 3 + rng.normal(size=(400, 4)) * 0.1
    acc = probe_accuracy(informative[:300], y[:300], informative[300:], y[300:], C=1.0, max_iter=200).mean()
    assert acc > 0.98
    noise = rng.normal(size=(400, 16))
    acc = probe_accuracy(noise[:300], y[:300], noise[300:], y[300:], C=1.0, max_iter=200).mean()
    assert abs(acc - 0.25) < 0.12
    lo, hi = bootstrap_ci(np.r_[np.ones(70), np.zeros(30)], 500, np.random.default_rng(0))
    assert lo < 0.7 < hi and hi - lo < 0.25


def test_fork_entropy_normalisation():
    assert normalised_entropy(np.array([2, 2, 2, 2]), 4) == 0.0
    assert normalised_entropy(np.array([0, 1, 2, 3]), 4) == pytest.approx(1.0)
    assert normalised_entropy(np.array([0, 0, 1, 1]), 4) == pytest.approx(0.5)
    labels = np.zeros((3, 4, 6), dtype=int)
    labels[1, :, 5] = [0, 1, 2, 3]
    ent = fork_entropies(labels, [4] * 6)
    assert ent.shape == (3, 6) and ent[1, 5] == pytest.approx(1.0) and ent.sum() == pytest.approx(1.0)


def test_path_grid_contains_the_measurement_taus():
    taus = tau_grid(0.0, 1.0, 7)
    grid = path_grid(10, taus).numpy()
    for t in taus[:-1]:
        assert np.isclose(grid, t).any()
    assert grid[-1] == pytest.approx(1 - 1e-5) and np.all(np.diff(grid) > 0)


def _sigmoids(midpoints, taus, rising=True):
    rows = []
    for factor, mid in zip(FACTOR_NAMES, midpoints):
        v = 1 / (1 + np.exp(-(taus - mid) * 40))
        for tau, val in zip(taus, v if rising else 1 - v):
            rows.append({"tau": tau, "factor": factor, "value": val})
    return pd.DataFrame(rows)


def test_crossing_taus_recover_known_midpoints_and_orders_agree():
    taus = tau_grid(0.0, 1.0, 101)
    mids = [0.2, 0.25, 0.4, 0.6, 0.5, 0.7]
    v = 1 / (1 + np.exp(-(taus - 0.3) * 40))
    assert crossing_tau(taus, v, 0.5, True) == pytest.approx(0.3, abs=0.005)
    assert crossing_tau(taus, 1 - v, 0.5, False) == pytest.approx(0.3, abs=0.005)
    assert np.isnan(crossing_tau(taus, np.ones_like(taus), 0.5, True))
    up, down = _sigmoids(mids, taus), _sigmoids(mids, taus, rising=False)
    curves = {
        "probes": up.rename(columns={"value": "accuracy"}).assign(
            ci_low=lambda d: d.accuracy - 0.01, ci_high=lambda d: d.accuracy + 0.01
        ),
        "mutual_info": up.rename(columns={"value": "mi"}).assign(se=0.005),
        "forking": down.rename(columns={"value": "entropy"}).assign(
            ci_low=lambda d: d.entropy - 0.01, ci_high=lambda d: d.entropy + 0.01
        ),
    }
    table, agreement = emergence_table(curves, [0.5, 0.9], n_bootstrap=50, seed=0)
    half = table[(table.threshold == 0.5) & (table.measurement == "mutual_info")].set_index("factor")
    for factor, mid in zip(FACTOR_NAMES, mids):
        assert half.loc[factor, "tau"] == pytest.approx(mid, abs=0.01)
        assert half.loc[factor, "ci_low"] <= half.loc[factor, "tau"] + 1e-9 <= half.loc[factor, "ci_high"] + 2e-9
    assert factor_order(table, "forking", 0.5) == [FACTOR_NAMES[i] for i in np.argsort(mids)]
    assert (agreement["spearman"] > 0.99).all() and len(agreement) == 3
    late = table[(table.threshold == 0.9) & (table.measurement == "probes")].set_index("factor")["tau"]
    assert (late > half["tau"]).all()  # 90% is reached after 50%
