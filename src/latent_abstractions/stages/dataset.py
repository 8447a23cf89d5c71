"""Dataset stages: render or download Shapes3D, split it, draw its contact sheet."""

from __future__ import annotations

import logging
from typing import Sequence

from .. import io
from ..data.download import download
from ..data.render import GridSpec
from ..data.shapes3d import load_shapes3d, make_split, write_synthetic
from ..report.plots import contact_sheet

log = logging.getLogger(__name__)


def render_shapes3d(h5_out: str, *, resolution: int, levels: Sequence[int]) -> None:
    """The ``render_shapes3d`` rule: the synthetic factor grid with ``levels[k]`` levels of factor k."""
    spec = GridSpec.from_counts(resolution, list(levels))
    log.info(
        "rendering %d images at %dx%d, levels per factor %s",
        spec.n_images,
        spec.resolution,
        spec.resolution,
        spec.shape,
    )
    write_synthetic(h5_out, spec)


def download_shapes3d(h5_out: str, *, url: str, sha256: str | None) -> None:
    """The ``download_shapes3d`` rule: the official 3dshapes.h5 (resumable, validated)."""
    log.info("downloading %s", url)
    download(url, h5_out, sha256=sha256)


def split_dataset(h5: str, split_out: str, *, test_fraction: float, seed: int) -> None:
    """The ``split_dataset`` rule: a seeded train/test split table (columns index, split)."""
    data = load_shapes3d(h5)
    split = make_split(data.n, test_fraction, seed)
    log.info("%s: %d images, %d test", data.path, data.n, (split["split"] == "test").sum())
    io.write_parquet(split, split_out, {"dataset": str(data.path), "seed": seed, "test_fraction": test_fraction})


def plot_contact_sheet(h5: str, png_out: str, *, seed: int) -> None:
    """The ``plot_contact_sheet`` rule: dataset images with their labels."""
    data = load_shapes3d(h5)
    log.info(
        "%s: %d images at %dx%d, levels present per factor %s",
        data.path,
        data.n,
        data.resolution,
        data.resolution,
        data.n_levels_present,
    )
    contact_sheet(data, png_out, seed=seed)
    log.info("wrote %s", png_out)
