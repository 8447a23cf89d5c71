"""Finishing a result table: provenance columns, a stable row order, an atomic Parquet write."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd

from ..io import write_parquet

#: recorded in the metadata of every table and HDF5 file with a tau axis
TIME_CONVENTION = "tau generative: 0 = noise, 1 = data"


def finish_table(
    df: pd.DataFrame, path: str, *, seed: int, checkpoint: str, sort_by: Sequence[str], metadata: dict[str, Any]
) -> pd.DataFrame:
    """Add the ``seed`` (int64) and ``checkpoint`` (sha256) columns, sort rows stably by ``sort_by``, write.

    ``metadata`` goes into the Parquet schema with the time convention. Returns the written frame.
    """
    df = df.copy()
    df["seed"] = np.int64(seed)
    df["checkpoint"] = checkpoint
    df = df.sort_values(list(sort_by), kind="stable").reset_index(drop=True)
    write_parquet(df, path, {**metadata, "time_convention": TIME_CONVENTION})
    return df
