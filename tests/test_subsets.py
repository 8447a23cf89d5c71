"""A user's file may be any subset of the official grid in any order; degenerate labels fail or are reported."""

import logging

import h5py
import numpy as np
import pandas as pd
import pytest
from conftest import TINY_RUN_ARGS, run_snakemake

from latent_abstractions import io
from latent_abstractions.data.factors import FACTOR_NAMES
from latent_abstractions.data.render import GridSpec
from latent_abstractions.data.shapes3d import (
    DatasetError,
    load_shapes3d,
    load_split,
    make_split,
    validate_file,
    write_subset,
    write_synthetic,
)
from latent_abstractions.measure.emergence import emergence_table, factor_order
from latent_abstractions.measure.features import choose_images
from latent_abstractions.report.html import not_measurable_note

SHAPE = FACTOR_NAMES.index("shape")


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    """The full rendered grid, 2 levels per factor but 4 shapes (128 images), in the official order."""
    path = tmp_path_factory.mktemp("grid") / "grid.h5"
    write_synthetic(path, GridSpec.from_counts(8, [2, 2, 2, 2, 4, 2]), progress=False)
    return path


def test_random_ten_percent_in_random_order_loads_from_its_labels(grid, tmp_path):
    full = load_shapes3d(grid)
    rows = np.random.default_rng(0).permutation(full.n)[:13]  # 10% of 128, shuffled
    write_subset(grid, tmp_path / "sub.h5", rows)
    sub = load_shapes3d(tmp_path / "sub.h5")
    assert sub.n == 13
    np.testing.assert_array_equal(sub.label_indices, full.label_indices[rows])
    np.testing.assert_array_equal(sub.images(), full.images(rows))
    # downstream: the split and the probes' image choice are indices into the file; the labels go with them
    io.write_parquet(make_split(sub.n, 0.25, 0), tmp_path / "split.parquet", {})
    split = load_split(tmp_path / "split.parquet", sub.n)
    chosen = choose_images(split, 100, 100, 0)
    np.testing.assert_array_equal(sub.label_indices[chosen["test"]], full.label_indices[rows[chosen["test"]]])
    # the renderer's and the download's own check still demands the full grid in row-major order
    validate_file(grid)
    with pytest.raises(DatasetError, match="not the full factor grid in row-major order"):
        validate_file(tmp_path / "sub.h5")


def test_one_shape_subset_has_shape_as_a_constant_factor(grid, tmp_path, caplog):
    full = load_shapes3d(grid)
    rows = np.random.default_rng(1).permutation(np.flatnonzero(full.label_indices[:, SHAPE] == 2))  # spheres
    write_subset(grid, tmp_path / "spheres.h5", rows)
    with caplog.at_level(logging.WARNING, logger="latent_abstractions.data.shapes3d"):
        sub = load_shapes3d(tmp_path / "spheres.h5")
    assert sub.n == 32 and sub.n_levels_present == (2, 2, 2, 2, 1, 2)
    assert sub.constant_factors == ["shape"]
    assert sub.warnings == [
        "constant factor(s) shape (one level in the file): not measurable; reported as such "
        "and left out of emergence ranks and agreement"
    ]
    assert "constant factor(s) shape" in caplog.text


def test_unbalanced_levels_and_repeated_rows_are_warned(grid, tmp_path):
    full = load_shapes3d(grid)
    lo, hi = full.levels_present[0]  # the two floor hues rendered
    floor0 = np.flatnonzero(full.label_indices[:, 0] == lo)  # 64 images
    floor1 = np.flatnonzero(full.label_indices[:, 0] == hi)[::4]  # 16 images
    write_subset(grid, tmp_path / "unb.h5", np.concatenate([floor1, floor0, floor0[:3]]))
    sub = load_shapes3d(tmp_path / "unb.h5")
    assert sub.warnings == [
        "factor floor_hue is unbalanced: 16 to 67 images per level; chance accuracy is then above 1/2 "
        "(majority level 0.81)",
        "3 image(s) repeat the labels of another one (the official grid has each combination once)",
    ]


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_or_inf_label_names_row_and_column(grid, tmp_path, bad):
    with h5py.File(grid) as f:
        images, labels = f["images"][...], f["labels"][...]
    labels[5, 2] = bad
    labels[9, 0] = bad
    path = tmp_path / "bad.h5"
    with h5py.File(path, "w") as f:
        f["images"], f["labels"] = images, labels
    with pytest.raises(DatasetError) as err:
        load_shapes3d(path)
    assert str(err.value) == (
        f"{path}: 'labels' row 5, column 2 (object_hue) is {bad}; labels must be official "
        "factor values (2 row(s) with NaN/inf)"
    )


def _curves(n_levels_shape: int) -> dict[str, pd.DataFrame]:
    """Three measurements whose five varying factors rise with known crossing order; 'shape' is noise."""
    taus = np.linspace(0, 1, 11)
    rng = np.random.default_rng(0)
    out = {}
    for name, col in (("probes", "accuracy"), ("mutual_info", "mi"), ("forking", "entropy")):
        rows = []
        for k, factor in enumerate(FACTOR_NAMES):
            if factor == "shape":
                v = rng.random(len(taus))
            else:
                v = np.clip((taus - 0.1 * k) / 0.3, 0, 1)  # reaches 50% at 0.1 k + 0.15
            v = 1 - v if name == "forking" else v
            rows += [
                {
                    "tau": t,
                    "factor": factor,
                    col: x,
                    "se": 0.0,
                    "ci_low": x,
                    "ci_high": x,
                    "n_levels": n_levels_shape if factor == "shape" else 2,
                }
                for t, x in zip(taus, v)
            ]
        out[name] = pd.DataFrame(rows)
    return out


def test_constant_factor_gets_no_emergence_rank_or_agreement_vote():
    table, agree = emergence_table(_curves(n_levels_shape=1), [0.5], n_bootstrap=20, seed=0)
    shape = table[table["factor"] == "shape"]
    assert len(shape) == 3 and not shape["measurable"].any()
    assert shape[["tau", "ci_low", "ci_high", "rank"]].isna().all().all()
    probes = table[table["measurement"] == "probes"].set_index("factor")
    np.testing.assert_allclose(
        probes.loc[["floor_hue", "wall_hue", "object_hue", "scale", "orientation"], "tau"],
        [0.15, 0.25, 0.35, 0.45, 0.65],
    )
    assert probes["rank"].dropna().tolist() == [1, 2, 3, 4, 5]
    assert agree["n_factors"].tolist() == [5, 5, 5] and agree["spearman"].tolist() == pytest.approx([1.0] * 3)
    assert factor_order(table, "probes", 0.5) == ["floor_hue", "wall_hue", "object_hue", "scale", "orientation"]
    assert "<b>Not measurable:</b> shape" in not_measurable_note(table)
    # the same noise with two levels is a (meaningless but) measurable curve: it gets a time and a vote
    table2, agree2 = emergence_table(_curves(n_levels_shape=2), [0.5], n_bootstrap=20, seed=0)
    assert table2[table2["factor"] == "shape"]["measurable"].all() and agree2["n_factors"].tolist() == [6, 6, 6]
    assert not_measurable_note(table2) == ""


# 6 min measured on 2 shared, loaded cores; the tests above cover loader, split, emergence and report one by one
@pytest.mark.slow
def test_tiny_workflow_on_a_shuffled_one_shape_subset(tmp_path, workflow_copy):
    """The whole tiny workflow from a user's file: one shape of a 16 x 16 grid, rows shuffled."""
    src = tmp_path / "grid16.h5"
    write_synthetic(src, GridSpec.from_counts(16, [2] * 6), progress=False)
    full = load_shapes3d(src)
    one = full.levels_present[SHAPE][0]
    rows = np.random.default_rng(2).permutation(np.flatnonzero(full.label_indices[:, SHAPE] == one))
    write_subset(src, tmp_path / "mine.h5", rows)  # 32 images: 24 train / 8 test
    run_snakemake(
        workflow_copy,
        *TINY_RUN_ARGS,
        "--config",
        f"dataset={{source: path, path: {tmp_path}/mine.h5}}",
        "features={n_train: 24, n_test: 8}",
        timeout=1200,
    )
    res = workflow_copy / "results" / "tiny"
    mi = pd.read_parquet(res / "tables" / "mutual_info.parquet")
    assert (mi.loc[mi["factor"] == "shape", ["mi", "se"]] == 0).all().all()  # I(Y; constant) = 0, not estimated
    assert (mi.loc[mi["factor"] == "shape", "n_levels"] == 1).all()
    em = pd.read_parquet(res / "tables" / "emergence.parquet")
    assert not em.loc[em["factor"] == "shape", "measurable"].any()
    assert em.loc[em["factor"] != "shape", "measurable"].all()
    assert "<b>Not measurable:</b> shape" in (res / "report" / "report.html").read_text()
    assert "constant factor(s) shape" in (res / "logs" / "split_dataset" / "split_dataset.log").read_text()
