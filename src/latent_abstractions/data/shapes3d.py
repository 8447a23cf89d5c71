"""The Shapes3D HDF5 file: validation, loading, writing, the train/test split.

Layout (the official ``3dshapes.h5``): dataset ``images`` (N, H, W, 3) uint8 and dataset ``labels``
(N, 6) float64 with the official factor values in the order of :data:`factors.FACTOR_NAMES`. The official
file (and the renderer's, and a download) hold the full factor grid in row-major order, which
:func:`validate_file` checks; a user's file may be any subset of the official grid in any row order (a random
10%, one shape, ...): every stage works from the labels. Every later stage opens the file through
:func:`load_shapes3d`, which logs a warning for unbalanced levels and for constant (single-level) factors,
which cannot be measured.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Sequence

import h5py
import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from .. import io
from .factors import FACTOR_NAMES, FACTORS, values_to_indices
from .render import GridSpec, iter_grid_images
from .split import split_sizes

log = logging.getLogger(__name__)


class DatasetError(ValueError):
    """A dataset or split file does not have the expected layout."""


def validate_file(path: str | os.PathLike, check_grid: bool = True) -> None:
    """Raise :class:`DatasetError` naming ``path`` and the problem unless it is a valid 3dshapes.h5.

    With ``check_grid`` (the renderer's and the download's check) the labels must be the full grid of the
    levels present, in the official row-major order.
    """
    load_shapes3d(path, check_grid=check_grid)


#: A factor is reported as unbalanced when its rarest present level has less than this fraction of the
#: images of its most frequent one.
UNBALANCED_RATIO = 0.5


class Shapes3D:
    """A validated Shapes3D file. Images are read lazily; labels are held in memory.

    Attributes:
        labels, label_indices: (N, 6) official values and level indices, in file order.
        levels_present, n_levels_present: per factor, the level indices that occur and their number.
        level_counts: per factor, images per present level.
        constant_factors: names of factors with a single level in the file (not measurable).
        warnings: unbalanced levels, constant factors, repeated label rows (also logged).
    """

    def __init__(self, path: str | os.PathLike, check_grid: bool = False):
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
        finite = np.isfinite(self.labels)
        if not finite.all():
            rows, cols = np.nonzero(~finite)
            raise DatasetError(
                f"{where}: 'labels' row {rows[0]}, column {cols[0]} ({FACTOR_NAMES[cols[0]]}) is "
                f"{self.labels[rows[0], cols[0]]}; labels must be official factor values "
                f"({len(np.unique(rows))} row(s) with NaN/inf)"
            )
        try:
            self.label_indices = values_to_indices(self.labels)
        except ValueError as err:
            raise DatasetError(f"{where}: 'labels': {err}") from err
        self.levels_present = [np.unique(self.label_indices[:, k]) for k in range(len(FACTORS))]
        self.n_levels_present = tuple(len(v) for v in self.levels_present)
        self.level_counts = [np.bincount(self.label_indices[:, k])[v] for k, v in enumerate(self.levels_present)]
        self.constant_factors = [f for f, n in zip(FACTOR_NAMES, self.n_levels_present) if n == 1]
        self.warnings = self._label_warnings()
        for text in self.warnings:
            log.warning("%s: %s", where, text)
        if check_grid:
            expected = GridSpec(self.resolution, tuple(self.levels_present)).label_indices()
            if expected.shape != self.label_indices.shape or not np.array_equal(expected, self.label_indices):
                raise DatasetError(
                    f"{where}: labels are not the full factor grid in row-major order "
                    f"({self.n} images; levels present per factor {self.n_levels_present})"
                )

    def _label_warnings(self) -> list[str]:
        out = []
        if self.constant_factors:
            out.append(
                f"constant factor(s) {', '.join(self.constant_factors)} (one level in the file): not "
                "measurable; reported as such and left out of emergence ranks and agreement"
            )
        for name, counts in zip(FACTOR_NAMES, self.level_counts):
            if len(counts) > 1 and counts.min() < UNBALANCED_RATIO * counts.max():
                out.append(
                    f"factor {name} is unbalanced: {counts.min()} to {counts.max()} images per level; "
                    f"chance accuracy is then above 1/{len(counts)} (majority level "
                    f"{counts.max() / counts.sum():.2f})"
                )
        n_distinct = len(np.unique(self.label_indices, axis=0))
        if n_distinct < self.n:
            out.append(
                f"{self.n - n_distinct} image(s) repeat the labels of another one (the official grid has "
                "each combination once)"
            )
        return out

    def images(self, indices: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
        """Read images from the HDF5 file.

        Reads are sorted and grouped into contiguous slabs along the file's chunks, so each compressed
        chunk is decompressed at most once, whatever the order or density of ``indices`` (h5py's
        point-wise fancy indexing is orders of magnitude slower on compressed files). Each slab is scattered
        straight into the returned array, so the images are held once (plus one slab of at most
        ``_MAX_SLAB`` images), not once sorted and again in the requested order.

        Args:
            indices: image indices in ``0..n-1`` (any order, repeats allowed), or None for all images.

        Returns:
            uint8 array (len(indices), H, W, 3), in the order of ``indices``.

        Raises:
            IndexError: if an index is out of range.
        """
        with h5py.File(self.path, "r") as f:
            dset = f["images"]
            if indices is None:
                return dset[...]
            idx = np.asarray(indices, dtype=np.int64).reshape(-1)
            if idx.size and (idx.min() < 0 or idx.max() >= self.n):
                raise IndexError(f"{self.path}: image index out of range 0..{self.n - 1}")
            monotone = bool(np.all(idx[1:] >= idx[:-1]))  # the usual request: a sorted split
            order = None if monotone else np.argsort(idx, kind="stable")
            ordered = idx if monotone else idx[order]  # out[order[k]] is image ordered[k]
            uniq = np.unique(ordered)
            out = np.empty((idx.size, self.resolution, self.resolution, 3), np.uint8)
            for lo, hi in _slabs(uniq, dset.chunks[0] if dset.chunks else _CONTIGUOUS_WINDOW):
                first, last = int(uniq[lo]), int(uniq[hi - 1])
                slab = dset[first : last + 1]
                a, b = np.searchsorted(ordered, [first, last + 1])
                if monotone:  # this run's images go to out[a:b], gathered in place (mode "raise" would buffer)
                    np.take(slab, ordered[a:b] - first, axis=0, out=out[a:b], mode="clip")
                else:
                    out[order[a:b]] = slab[ordered[a:b] - first]
                del slab  # before the next read: one slab at a time
            return out


_CONTIGUOUS_WINDOW = 256  # images per read window for an unchunked dataset
_MAX_SLAB = 8192  # images per slab read (bounds the temporary buffer)


def _slabs(sorted_idx: np.ndarray, chunk: int) -> list[tuple[int, int]]:
    """Split sorted unique indices into runs [lo, hi) that touch consecutive chunks of ``chunk`` images.

    A new run starts where a chunk is skipped or the run would span more than ``_MAX_SLAB`` images.
    """
    if not sorted_idx.size:
        return []
    cid = sorted_idx // chunk
    starts = [0]
    for i in np.flatnonzero(np.diff(cid) > 1) + 1:
        starts.append(int(i))
    runs = []
    for a, b in zip(starts, starts[1:] + [sorted_idx.size]):
        while a < b:  # cap the span of one read
            end = min(int(np.searchsorted(sorted_idx, sorted_idx[a] + _MAX_SLAB)), b)
            runs.append((a, end))
            a = end
    return runs


def load_shapes3d(path: str | os.PathLike, check_grid: bool = False) -> Shapes3D:
    """Open and validate a 3dshapes.h5 file: the full grid or any subset of it, in any order (see :class:`Shapes3D`)."""
    return Shapes3D(path, check_grid=check_grid)


def to_model_input(images: np.ndarray) -> torch.Tensor:
    """uint8 (n, H, W, 3) -> float32 (n, 3, H, W) in [0, 1] (the VE models' data scale)."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255.0)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """float (n, 3, H, W) in [0, 1] -> uint8 (n, H, W, 3), clipped."""
    return (x.detach().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def write_synthetic(path: str | os.PathLike, spec: GridSpec, chunk_images: int = 4096, progress: bool = True) -> None:
    """Render the grid ``spec`` into an HDF5 file in the official 3dshapes.h5 layout.

    The images are streamed to a gzip-compressed, chunked dataset, so the full 480,000-image grid is never
    held in memory. The file is written under a temporary name, validated, and renamed when complete.

    Args:
        path: output file.
        spec: resolution and the official levels of each factor to render.
        chunk_images: about how many images are coloured per block (memory ~ 16 bytes per pixel each).
        progress: show a tqdm progress bar.
    """
    n, r = spec.n_images, spec.resolution
    labels = np.stack([FACTORS[k].values[idx] for k, idx in enumerate(spec.label_indices().T)], axis=1)
    with io.atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            # ~128 KiB chunks (10 images at 64x64): a random image costs ~2 ms to decompress, while the
            # file is only ~3% larger than with 64-image chunks (measured on the full 64x64 grid).
            chunk = (min(n, max(1, (1 << 17) // (r * r * 3))), r, r, 3)
            images = f.create_dataset(
                "images", (n, r, r, 3), np.uint8, chunks=chunk, compression="gzip", compression_opts=1, shuffle=False
            )
            f.create_dataset("labels", data=labels.astype(np.float64))
            f.attrs["factor_names"] = list(FACTOR_NAMES)
            f.attrs["source"] = "synthetic (latent_abstractions.render)"
            with tqdm(total=n, desc="render", unit="img", disable=not progress, mininterval=2) as bar:
                n_geometry = int(np.prod(spec.shape[3:]))  # images per hue triple
                for start, block in iter_grid_images(spec, chunk_hues=max(1, chunk_images // n_geometry)):
                    images[start : start + len(block)] = block
                    bar.update(len(block))
        validate_file(tmp)


def write_subset(src: str | os.PathLike, out: str | os.PathLike, rows: Sequence[int] | np.ndarray) -> None:
    """Write the images and labels of ``rows`` of ``src`` (in that order) as a new file in the same layout.

    For a random or filtered subset of the official file (e.g. 10% of the images, or one shape); the result
    is validated (as a subset: any order) before it is renamed into place.
    """
    data = load_shapes3d(src)
    rows = np.asarray(rows, dtype=np.int64)
    with io.atomic_path(out) as tmp:
        with h5py.File(tmp, "w") as f:
            r = data.resolution
            f.create_dataset(
                "images",
                data=data.images(rows),
                chunks=(min(max(1, len(rows)), 64), r, r, 3),
                compression="gzip",
                compression_opts=1,
            )
            f.create_dataset("labels", data=data.labels[rows])
            f.attrs["factor_names"] = list(FACTOR_NAMES)
            f.attrs["source"] = f"subset of {data.path.name} ({len(rows)} of {data.n} images)"
        load_shapes3d(tmp)


def make_split(n: int, test_fraction: float, seed: int) -> pd.DataFrame:
    """A seeded random train/test split of ``n`` images: columns ``index`` (int64), ``split``."""
    _, n_test = split_sizes(n, test_fraction)
    rng = np.random.default_rng(seed)
    is_test = np.zeros(n, dtype=bool)
    is_test[rng.permutation(n)[:n_test]] = True
    return pd.DataFrame({"index": np.arange(n, dtype=np.int64), "split": np.where(is_test, "test", "train")})


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
    all_idx = df["index"].to_numpy()
    if len(np.unique(all_idx)) != len(all_idx) or all_idx.min() < 0:
        raise DatasetError(f"{path}: indices must be distinct and non-negative")
    if n is not None and not np.array_equal(np.sort(df["index"].to_numpy()), np.arange(n)):
        raise DatasetError(f"{path}: indices do not cover the dataset's {n} images exactly once")
    return out
