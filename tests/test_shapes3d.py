"""The one loader validates files and names the file and the problem."""

import h5py
import numpy as np
import pandas as pd
import pytest

from latent_abstractions.data import shapes3d
from latent_abstractions.data.render import GridSpec
from latent_abstractions.data.shapes3d import (
    DatasetError,
    load_shapes3d,
    load_split,
    make_split,
    to_model_input,
    write_synthetic,
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("d") / "tiny.h5"
    write_synthetic(path, GridSpec.from_counts(8, [2] * 6), progress=False)
    return path


def write(path, images, labels):
    with h5py.File(path, "w") as f:
        if images is not None:
            f["images"] = images
        if labels is not None:
            f["labels"] = labels


def test_loader_reads_images_in_requested_order(tiny):
    data = load_shapes3d(tiny)
    assert (data.n, data.resolution) == (64, 8)
    idx = np.array([5, 1, 5, 63])
    got = data.images(idx)
    allim = data.images()
    np.testing.assert_array_equal(got, allim[idx])
    x = to_model_input(got)
    assert x.shape == (4, 3, 8, 8) and float(x.min()) >= 0 and float(x.max()) <= 1


@pytest.mark.parametrize("chunks", [(5, 8, 8, 3), None])
def test_images_reads_any_selection_from_chunked_and_contiguous_files(tiny, tmp_path, monkeypatch, chunks):
    """Slab reads along the chunks give exactly the requested images, in order, repeats included."""
    with h5py.File(tiny) as f:
        images, labels = f["images"][...], f["labels"][...]
    path = tmp_path / "c.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("images", data=images, chunks=chunks)
        f["labels"] = labels
    monkeypatch.setattr(shapes3d, "_MAX_SLAB", 7)  # force several slabs per run
    monkeypatch.setattr(shapes3d, "_CONTIGUOUS_WINDOW", 4)
    data = load_shapes3d(path)
    rng = np.random.default_rng(0)
    for idx in (rng.integers(0, 64, 40), np.arange(64)[::-1], np.array([63, 0, 0, 31]), np.array([], int)):
        np.testing.assert_array_equal(data.images(idx), images[idx])
    with pytest.raises(IndexError, match="out of range"):
        data.images([64])


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda im, lab: (None, lab), "missing dataset 'images'"),
        (lambda im, lab: (im.astype(np.float32), lab), "dtype float32, expected uint8"),
        (lambda im, lab: (im[..., :2], lab), "expected (N, H, H, 3)"),
        (lambda im, lab: (im, lab[:, :5]), "expected (64, 6)"),
        (lambda im, lab: (im, lab + 0.05), "not one of the official values"),
    ],
)
def test_bad_files_are_rejected_with_file_and_reason(tiny, tmp_path, mutate, message):
    with h5py.File(tiny) as f:
        images, labels = f["images"][...], f["labels"][...]
    bad = tmp_path / "bad.h5"
    write(bad, *mutate(images, labels))
    with pytest.raises(DatasetError) as err:
        load_shapes3d(bad)
    assert str(bad) in str(err.value) and message in str(err.value)


def test_not_hdf5_and_missing_file(tmp_path):
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not an hdf5 file")
    with pytest.raises(DatasetError, match="not a readable HDF5"):
        load_shapes3d(junk)
    with pytest.raises(DatasetError, match="no such file"):
        load_shapes3d(tmp_path / "absent.h5")


def test_split_is_seeded_and_validated(tmp_path):
    a, b, c = make_split(100, 0.2, 0), make_split(100, 0.2, 0), make_split(100, 0.2, 1)
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(c)
    assert (a["split"] == "test").sum() == 20
    path = tmp_path / "split.parquet"
    a.to_parquet(path)
    s = load_split(path, n=100)
    assert len(s["train"]) == 80 and not set(s["train"]) & set(s["test"])
    with pytest.raises(DatasetError, match="cover"):
        load_split(path, n=101)
    pd.concat([a, a.iloc[:1]]).to_parquet(path)
    with pytest.raises(DatasetError, match="distinct"):
        load_split(path)
    a.rename(columns={"split": "part"}).to_parquet(path)
    with pytest.raises(DatasetError, match="expected columns"):
        load_split(path)


@pytest.mark.parametrize("order", ["sorted", "shuffled"])
def test_images_holds_one_copy_of_the_selection(tmp_path, monkeypatch, order):
    """The returned array plus one slab is all that is allocated, in any request order (traced by tracemalloc, which
    sees numpy's buffers): a second full copy of the selection would double the peak."""
    import tracemalloc

    path = tmp_path / "grid.h5"
    write_synthetic(path, GridSpec.from_counts(32, [4, 4, 4, 2, 2, 4]), progress=False)  # 1024 images, 3 KiB each
    data = load_shapes3d(path)
    monkeypatch.setattr(shapes3d, "_MAX_SLAB", 32)
    idx = np.sort(make_split(data.n, 0.2, 0).query("split == 'train'")["index"].to_numpy())
    if order == "shuffled":
        idx = np.random.default_rng(0).permutation(idx)
    image_bytes = 32 * 32 * 3
    tracemalloc.start()
    try:
        got = data.images(idx)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert got.nbytes == len(idx) * image_bytes
    # the result, one slab and its gather (<= 2 x 32 images), the index arrays (8 bytes per image each)
    assert peak < got.nbytes + 2 * 32 * image_bytes + 6 * 8 * len(idx) + (64 << 10), (peak, got.nbytes)
    with h5py.File(path) as f:
        np.testing.assert_array_equal(got, f["images"][...][idx])
