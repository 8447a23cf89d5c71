"""The Shapes3D HDF5 file: validation, loading, writing, the train/test split.

Layout (the official ``3dshapes.h5``): dataset ``images`` (N, H, W, 3) uint8 and dataset ``labels``
(N, 6) float64 with the official factor values in the order of :data:`factors.FACTOR_NAMES`, the images
in row-major order of the factor grid. Every later stage opens the file through :func:`load_shapes3d`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import h5py
import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from . import io
from .factors import FACTOR_NAMES, FACTORS, values_to_indices
from .render import GridSpec, iter_grid_images


class DatasetError(ValueError):
    """A dataset or split file does not have the expected layout."""


def validate_file(path: str | os.PathLike, check_grid: bool = True) -> None:
    """Raise :class:`DatasetError` naming ``path`` and the problem unless it is a valid 3dshapes.h5."""
    load_shapes3d(path, check_grid=check_grid)


class Shapes3D:
    """A validated Shapes3D file. Images are read lazily; labels are held in memory."""

    def __init__(self, path: str | os.PathLike, check_grid: bool = True):
        self.path = Path(path)
        where = f"{self.path}"
        if not self.path.is_file():
            raise DatasetError(f"{where}: no such file")
        try:
            f = h5py.File(self.path, "r")
        except OSError as err:
            raise DatasetError(f"{where}: not a readable HDF5 file ({err})") from err
        with f:
            for key in ("images", "labels"):
                if key not in f or not isinstance(f[key], h5py.Dataset):
                    raise DatasetError(f"{where}: missing dataset {key!r} (expected 'images' and 'labels')")
            img, lab = f["images"], f["labels"]
            if img.ndim != 4 or img.shape[-1] != 3 or img.shape[1] != img.shape[2]:
                raise DatasetError(f"{where}: 'images' has shape {img.shape}, expected (N, H, H, 3)")
            if img.dtype != np.uint8:
                raise DatasetError(f"{where}: 'images' has dtype {img.dtype}, expected uint8")
            if lab.shape != (img.shape[0], len(FACTORS)):
                raise DatasetError(f"{where}: 'labels' has shape {lab.shape}, expected ({img.shape[0]}, 6)")
            if lab.dtype != np.float64:
                raise DatasetError(f"{where}: 'labels' has dtype {lab.dtype}, expected float64")
            self.n = int(img.shape[0])
            self.resolution = int(img.shape[1])
            self.labels = lab[...]
        if self.n == 0:
            raise DatasetError(f"{where}: the file holds no images")
        try:
            self.label_indices = values_to_indices(self.labels)
        except ValueError as err:
            raise DatasetError(f"{where}: 'labels': {err}") from err
        self.levels_present = [np.unique(self.label_indices[:, k]) for k in range(len(FACTORS))]
        self.n_levels_present = tuple(len(v) for v in self.levels_present)
        if check_grid:
            expected = GridSpec(self.resolution, tuple(self.levels_present)).label_indices()
            if expected.shape != self.label_indices.shape or not np.array_equal(expected, self.label_indices):
                raise DatasetError(
                    f"{where}: labels are not the full factor grid in row-major order "
                    f"({self.n} images; levels present per factor {self.n_levels_present})"
                )

    def images(self, indices: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
        """uint8 images (n, H, W, 3) at ``indices`` (all if None), in the order given."""
        with h5py.File(self.path, "r") as f:
            if indices is None:
                return f["images"][...]
            idx = np.asarray(indices, dtype=np.int64)
            if idx.size and (idx.min() < 0 or idx.max() >= self.n):
                raise IndexError(f"{self.path}: image index out of range 0..{self.n - 1}")
            order = np.argsort(idx, kind="stable")
            uniq, inverse = np.unique(idx[order], return_inverse=True)
            block = f["images"][uniq] if uniq.size else np.empty((0, self.resolution, self.resolution, 3), np.uint8)
            out = np.empty((idx.size, self.resolution, self.resolution, 3), np.uint8)
            out[order] = block[inverse]
            return out


def load_shapes3d(path: str | os.PathLike, check_grid: bool = True) -> Shapes3D:
    """Open and validate a 3dshapes.h5 file (see :class:`Shapes3D`)."""
    return Shapes3D(path, check_grid=check_grid)


def to_model_input(images: np.ndarray) -> torch.Tensor:
    """uint8 (n, H, W, 3) -> float32 (n, 3, H, W) in [0, 1] (the VE models' data scale)."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255.0)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """float (n, 3, H, W) in [0, 1] -> uint8 (n, H, W, 3), clipped."""
    return (x.detach().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def write_synthetic(path: str | os.PathLike, spec: GridSpec, chunk_images: int = 4096,
                    progress: bool = True) -> None:
    """Render the grid ``spec`` into an HDF5 file in the official layout, streamed and compressed.

    Written under a temporary name and renamed when complete.
    """
    n, r = spec.n_images, spec.resolution
    labels = np.stack([FACTORS[k].values[idx] for k, idx in enumerate(spec.label_indices().T)], axis=1)
    with io.atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            chunk = (min(n, max(1, chunk_images // 16)), r, r, 3)
            images = f.create_dataset("images", (n, r, r, 3), np.uint8, chunks=chunk,
                                      compression="gzip", compression_opts=1, shuffle=False)
            f.create_dataset("labels", data=labels.astype(np.float64))
            f.attrs["factor_names"] = list(FACTOR_NAMES)
            f.attrs["source"] = "synthetic (latent_abstractions.render)"
            with tqdm(total=n, desc="render", unit="img", disable=not progress, mininterval=2) as bar:
                n_geometry = int(np.prod(spec.shape[3:]))  # images per hue triple
                for start, block in iter_grid_images(spec, chunk_hues=max(1, chunk_images // n_geometry)):
                    images[start:start + len(block)] = block
                    bar.update(len(block))
        validate_file(tmp)


def make_split(n: int, test_fraction: float, seed: int) -> pd.DataFrame:
    """A seeded random train/test split of ``n`` images: columns ``index`` (int64), ``split``."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    rng = np.random.default_rng(seed)
    n_test = max(1, int(round(n * test_fraction)))
    is_test = np.zeros(n, dtype=bool)
    is_test[rng.permutation(n)[:n_test]] = True
    return pd.DataFrame({"index": np.arange(n, dtype=np.int64),
                         "split": np.where(is_test, "test", "train")})


def load_split(path: str | os.PathLike, n: int | None = None) -> dict[str, np.ndarray]:
    """Read a split file; return {"train": indices, "test": indices} (sorted int64).

    Raises:
        DatasetError: if columns are missing, splits are unknown or empty, or indices do not cover 0..n-1.
    """
    path = Path(path)
    try:
        df = pd.read_parquet(path)
    except Exception as err:  # noqa: BLE001 - any reader error becomes a clear dataset error
        raise DatasetError(f"{path}: cannot read split table ({err})") from err
    if not {"index", "split"} <= set(df.columns):
        raise DatasetError(f"{path}: expected columns 'index' and 'split', got {list(df.columns)}")
    bad = set(df["split"]) - {"train", "test"}
    if bad:
        raise DatasetError(f"{path}: unknown split names {sorted(bad)} (expected 'train'/'test')")
    out = {s: np.sort(df.loc[df["split"] == s, "index"].to_numpy(np.int64)) for s in ("train", "test")}
    if not len(out["train"]) or not len(out["test"]):
        raise DatasetError(f"{path}: the train or test split is empty")
    if n is not None and not np.array_equal(np.sort(df["index"].to_numpy()), np.arange(n)):
        raise DatasetError(f"{path}: indices do not cover the dataset's {n} images exactly once")
    return out
