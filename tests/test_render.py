"""The synthetic renderer has Shapes3D's layout and semantics."""

import h5py
import numpy as np
import pytest

from latent_abstractions.data import render
from latent_abstractions.data.factors import FACTORS
from latent_abstractions.data.render import FLOOR, OBJECT, WALL, GridSpec
from latent_abstractions.data.shapes3d import load_shapes3d, write_synthetic

RES = 24


def view(scale=1.0, shape=0, orientation=0.0):
    return render.render_geometry(RES, scale, shape, orientation)


def img(cover, fh=0.0, wh=0.4, oh=0.7):
    return render.colourise(cover, fh, wh, oh).astype(int)


@pytest.mark.parametrize("region, hues", [(FLOOR, (0.5, 0.4, 0.7)), (WALL, (0.0, 0.9, 0.7)), (OBJECT, (0.0, 0.4, 0.2))])
def test_one_hue_changes_only_its_region(region, hues):
    cover = view()
    changed = np.any(img(cover) != img(cover, *hues), axis=-1)
    covered = cover[region] > 0
    assert changed.any()
    assert not (changed & ~covered).any(), "a pixel outside the region changed colour"
    # every pixel mostly made of that region changes
    assert changed[cover[region] > 0.3].all()


def test_regions_partition_the_image():
    cover = view(shape=2)
    assert (cover > 0).any(axis=(1, 2)).all(), "floor, wall and object must all be visible"
    assert ((cover > 0).sum(axis=0) >= 1).all()


def test_shape_changes_the_silhouette_only_near_the_object():
    masks = [view(shape=s)[OBJECT] > 0.5 for s in range(4)]
    for a in range(4):
        for b in range(a + 1, 4):
            assert (masks[a] != masks[b]).sum() >= 3, f"shapes {a} and {b} have the same silhouette"


def test_scale_changes_the_size():
    areas = [(view(scale=s)[OBJECT] > 0).sum() for s in FACTORS[3].values]
    assert all(np.diff(areas) >= 0) and areas[-1] > 1.5 * areas[0], areas


def test_orientation_changes_the_view():
    a, b = view(orientation=-30.0), view(orientation=30.0)
    assert np.abs(a - b).mean() > 0.01
    # a sphere looks the same from every azimuth, up to the room behind it: its silhouette barely moves
    sa, sb = view(shape=2, orientation=-30)[OBJECT] > 0, view(shape=2, orientation=30)[OBJECT] > 0
    assert (sa != sb).sum() <= 0.05 * sa.sum()


def test_grid_file_layout_and_row_major_order(tmp_path):
    spec = GridSpec.from_counts(16, [2, 2, 2, 2, 2, 3])
    path = tmp_path / "s.h5"
    write_synthetic(path, spec, chunk_images=16, progress=False)
    with h5py.File(path) as f:
        assert f["images"].shape == (96, 16, 16, 3) and f["images"].dtype == np.uint8
        assert f["labels"].shape == (96, 6) and f["labels"].dtype == np.float64
        labels = f["labels"][...]
        images = f["images"][...]
    # row-major: orientation fastest, floor hue slowest; official values of the chosen levels
    np.testing.assert_allclose(labels[:3, 5], [-30.0, 0.0, 30.0])
    np.testing.assert_allclose(labels[[0, 48], 0], [0.0, 0.9])
    data = load_shapes3d(path)
    assert data.n_levels_present == (2, 2, 2, 2, 2, 3)
    # each image equals a direct render of its own labels
    for i in (0, 17, 95):
        fh, wh, oh, sc, sh, ori = labels[i]
        direct = render.colourise(render.render_geometry(16, sc, int(sh), ori), fh, wh, oh)
        np.testing.assert_array_equal(images[i], direct)


def test_level_subset_is_evenly_spaced():
    np.testing.assert_array_equal(render.level_subset(10, 4), [0, 3, 6, 9])
    np.testing.assert_array_equal(render.level_subset(4, 4), [0, 1, 2, 3])
    with pytest.raises(ValueError):
        render.level_subset(4, 5)


def test_fixed_point_colour_matches_the_float_formula():
    """uint16 fixed-point colouring is sum_r cover_r * 255 * rgb(hue_r), rounded, to within one level."""
    cover = view(scale=1.25, shape=3, orientation=12.0)
    hues = (0.1, 0.5, 0.8)
    rgb = np.stack([render.hue_rgb(h) for h in hues])
    exact = np.einsum("rhw,rc->hwc", cover.astype(np.float64), rgb.astype(np.float64)) * 255
    got = render.colourise(cover, *hues).astype(float)
    assert np.abs(got - exact).max() <= 1.0
    assert np.abs(got - np.rint(exact)).mean() < 0.05
