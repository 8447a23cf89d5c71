"""Small I/O helpers shared by every stage: atomic writes, Parquet with provenance, JSON.

Every output is written under a temporary name in the same directory and renamed into place only
when complete, so a crash never leaves a file that looks finished.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any, Iterator

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` if the block succeeds.

    On error the temporary file is removed and ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_parquet(df: pd.DataFrame | pa.Table, path: str | os.PathLike, metadata: dict[str, Any] | None = None) -> None:
    """Write a frame (or Arrow table) atomically as Parquet; ``metadata`` goes into the schema metadata.

    The row order and column dtypes are kept as given, so the same frame gives the same bytes.
    """
    table = df if isinstance(df, pa.Table) else pa.Table.from_pandas(df, preserve_index=False)
    if metadata:
        table = table.replace_schema_metadata(with_provenance(table.schema, metadata).metadata)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def with_provenance(schema: pa.Schema, metadata: dict[str, Any] | None) -> pa.Schema:
    """``schema`` with ``metadata`` stored as :func:`write_parquet` stores it (JSON, keys sorted), for writers that
    stream a table in row groups (``pq.ParquetWriter``) instead of writing it at once."""
    if not metadata:
        return schema
    meta = dict(schema.metadata or {})
    meta[b"latent_abstractions"] = json.dumps(metadata, sort_keys=True, default=str).encode()
    return schema.with_metadata(meta)


def read_parquet_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The provenance dict written by :func:`write_parquet` (empty if none)."""
    meta = pq.read_schema(path).metadata or {}
    raw = meta.get(b"latent_abstractions")
    return json.loads(raw) if raw else {}


def write_json(obj: Any, path: str | os.PathLike) -> None:
    """Write JSON atomically, keys sorted."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
