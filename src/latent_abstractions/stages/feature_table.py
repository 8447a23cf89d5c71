"""The features table on disk: written as it is computed, in bounded row groups; read one (layer, tau) cell at a time.

The table (schema in docs/architecture.md) has one row per image x tau x layer, in the order ``extract_features``
computes them: tau by tau, and within a tau layer by layer, so each (layer, tau) cell is a run of consecutive rows.
:class:`FeatureTableWriter` buffers consecutive cells into one row group while it holds at most
:data:`ROW_GROUP_BYTES` of Arrow data and gives a larger cell row groups of its own of at most that size; the writer
thus holds one tau's features and one row group, never the table, and a table that fits in one row group (the
default and tiny configs) has exactly the bytes of a one-shot ``pq.write_table``. :func:`read_cell` decodes only the
row groups whose statistics admit the cell, so a reader holds one cell and at most one row group beside it.

pyarrow and numpy only: the probes stage runs in the analysis environment, without torch.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..data.factors import FACTOR_NAMES
from ..io import atomic_path, read_parquet_metadata, with_provenance

#: Upper bound of one row group's Arrow data (the features column is ~all of it). At paper scale one cell is
#: 25,000 images x 1,024 floats (~100 MB), so it is written as two row groups.
ROW_GROUP_BYTES = 64 << 20

SCHEMA = pa.schema(
    [
        ("image_index", pa.int64()),
        ("split", pa.string()),
        ("tau", pa.float64()),
        ("layer", pa.string()),
        *[(f, pa.int64()) for f in FACTOR_NAMES],
        ("features", pa.list_(pa.float32())),
    ]
)


def cell_table(
    image_index: np.ndarray, split: np.ndarray, tau: float, layer: str, labels: np.ndarray, features: np.ndarray
) -> pa.Table:
    """The rows of one (layer, tau) cell: n images with their split names, (n, 6) level indices, (n, D) features."""
    n, d = features.shape
    if n * d >= 2**31:
        raise ValueError(f"layer {layer!r} at tau {tau}: {n} x {d} feature values exceed one Arrow list array")
    features = pa.ListArray.from_arrays(
        pa.array(np.arange(n + 1, dtype=np.int32) * np.int32(d)),
        pa.array(np.ascontiguousarray(features, dtype=np.float32).reshape(-1)),
    )
    columns = [
        pa.array(np.asarray(image_index, dtype=np.int64)),
        pa.array(np.asarray(split, dtype=str), pa.string()),
        pa.array(np.full(n, tau, dtype=np.float64)),
        pa.array(np.full(n, layer), pa.string()),
        *[pa.array(np.asarray(labels[:, k], dtype=np.int64)) for k in range(len(FACTOR_NAMES))],
        features,
    ]
    return pa.Table.from_arrays(columns, schema=SCHEMA)


class FeatureTableWriter:
    """Stream cells into a Parquet file written atomically: ``with FeatureTableWriter(path) as w: w.open(meta);
    w.add(cell) ...``. ``open`` takes the provenance metadata (known once the first tau has given the layers'
    widths); the file appears at ``path`` only when the block ends without error.
    """

    def __init__(self, path: str | os.PathLike, max_row_group_bytes: int | None = None):
        self.path = path
        self.max_bytes = int(ROW_GROUP_BYTES if max_row_group_bytes is None else max_row_group_bytes)
        self._stack = contextlib.ExitStack()
        self._writer: pq.ParquetWriter | None = None
        self._pending: list[pa.Table] = []
        self._pending_bytes = 0

    def __enter__(self) -> FeatureTableWriter:
        self._tmp = self._stack.enter_context(atomic_path(self.path))
        return self

    def open(self, metadata: dict[str, Any]) -> None:
        self._writer = self._stack.enter_context(pq.ParquetWriter(self._tmp, with_provenance(SCHEMA, metadata)))

    @property
    def is_open(self) -> bool:
        return self._writer is not None

    def add(self, cell: pa.Table) -> None:
        """Append one cell's rows (after those added before)."""
        size = cell.nbytes
        if self._pending and self._pending_bytes + size > self.max_bytes:
            self._flush()
        if size > self.max_bytes:
            self._writer.write_table(cell, row_group_size=max(1, self.max_bytes * cell.num_rows // size))
        else:
            self._pending.append(cell)
            self._pending_bytes += size

    def _flush(self) -> None:
        if self._pending:  # one chunk per column: the same pages as a one-shot write of these rows
            self._writer.write_table(pa.concat_tables(self._pending).combine_chunks())
            self._pending, self._pending_bytes = [], 0

    def __exit__(self, *exc) -> bool:
        if exc[0] is None:
            if self._writer is None:
                raise ValueError(f"{self.path}: no rows were written (the features table needs at least one tau)")
            self._flush()
        return self._stack.__exit__(*exc)


def iter_cells(path: str | os.PathLike) -> Iterator[pa.Table]:
    """The (layer, tau) cells of a features table in file order, each as :func:`cell_table` builds it, decoding one
    row group at a time (a cell split over row groups is joined: one cell and one row group are held at most)."""
    pf = pq.ParquetFile(path)
    pieces: list[pa.Table] = []
    current = None  # the (tau, layer) of pieces

    def cell() -> pa.Table:
        rows = pa.concat_tables(pieces)
        labels = np.stack([rows[f].to_numpy() for f in FACTOR_NAMES], axis=1)
        split_names = rows["split"].to_numpy(zero_copy_only=False)
        return cell_table(rows["image_index"].to_numpy(), split_names, *current, labels, features_matrix(rows))

    for i in range(pf.metadata.num_row_groups):
        group = pf.read_row_group(i, use_threads=False)
        tau, layer = group["tau"].to_numpy(), group["layer"].to_numpy(zero_copy_only=False)
        starts = np.flatnonzero(np.r_[True, (tau[1:] != tau[:-1]) | (layer[1:] != layer[:-1])])  # runs of one cell
        for a, b in zip(starts, np.r_[starts[1:], len(tau)]):
            key = (float(tau[a]), str(layer[a]))
            if pieces and key != current:
                yield cell()
                pieces = []
            pieces.append(group.slice(a, b - a))
            current = key
    if pieces:
        yield cell()


def gather_feature_tables(parts: Sequence[str | os.PathLike], out: str | os.PathLike) -> None:
    """The ``gather_features`` rule: the tau shards' feature tables (in shard order) as one table, with the bytes
    an unsharded ``extract_features`` writes: their cells fed in order to the same :class:`FeatureTableWriter`,
    which groups rows as it does while computing them. Holds one cell and one row group at a time."""
    meta = read_parquet_metadata(parts[0])
    for path in parts[1:]:
        other = read_parquet_metadata(path)
        if other != meta:
            differ = sorted(k for k in meta.keys() | other.keys() if meta.get(k) != other.get(k))
            raise ValueError(f"{path}: features computed with other settings than {parts[0]} (differ: {differ})")
    with FeatureTableWriter(out) as table:
        table.open(meta)
        for path in parts:
            for cell in iter_cells(path):
                table.add(cell)


def _may_contain(stats, value) -> bool:
    return stats is None or not stats.has_min_max or stats.min <= value <= stats.max


def cell_row_groups(pf: pq.ParquetFile, layer: str, tau: float) -> list[int]:
    """The row groups of ``pf`` whose min/max statistics admit rows of (``layer``, ``tau``)."""
    out = []
    for i in range(pf.metadata.num_row_groups):
        rg = pf.metadata.row_group(i)
        stats = {rg.column(j).path_in_schema: rg.column(j).statistics for j in range(rg.num_columns)}
        if _may_contain(stats["layer"], layer) and _may_contain(stats["tau"], float(tau)):
            out.append(i)
    return out


def read_cell(path: str | os.PathLike, layer: str, tau: float) -> pa.Table:
    """The rows of one (layer, tau) cell, in file order, decoding only the row groups that may hold them."""
    pf = pq.ParquetFile(path)
    table = pf.read_row_groups(cell_row_groups(pf, layer, tau), use_threads=False)
    return table.filter(pc.and_(pc.equal(table["layer"], layer), pc.equal(table["tau"], float(tau))))


def features_matrix(cell: pa.Table) -> np.ndarray:
    """(n, D) float32 features of a cell's rows (every row of one layer has the same width)."""
    if not cell.num_rows:
        return np.empty((0, 0), dtype=np.float32)
    values = pc.list_flatten(cell["features"]).to_numpy()
    return values.reshape(cell.num_rows, -1)
