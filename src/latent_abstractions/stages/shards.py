"""A measurement's tau shards on disk: each shard job's part of the result, and their gathering.

With ``tau_shards`` > 1 the per-tau measurements run as that many jobs over contiguous parts of the tau grid
(:func:`taus.shard_range`); each writes a *part* (not a final table): ``.npz`` arrays plus a JSON header with the
settings the part was computed with and which shard it is. The gather checks that its parts are the shards
0..n-1 of one run (the same header but for the shard) and hands them to the measurement's own finishing code,
the same code an unsharded run ends with, so the gathered table has the bytes of the unsharded one.

numpy only: the probes' gather runs in the analysis environment.
"""

from __future__ import annotations

import json
import os
from typing import Any, NamedTuple, Sequence

import numpy as np

from ..io import atomic_path

_HEADER = "__header__"


class Part(NamedTuple):
    """One shard's arrays and header (``header["shard"]`` = [index, count])."""

    arrays: dict[str, np.ndarray]
    header: dict[str, Any]


def save_part(path: str | os.PathLike, arrays: dict[str, np.ndarray], header: dict[str, Any]) -> None:
    """Write a part atomically: ``arrays`` and the JSON ``header`` (which must name the shard: [index, count])."""
    if "shard" not in header:
        raise ValueError("a part's header must name its shard ([index, count])")
    text = json.dumps(header, sort_keys=True, default=str)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays, **{_HEADER: np.array(text)})


def load_parts(paths: Sequence[str | os.PathLike]) -> list[Part]:
    """The parts at ``paths``, checked to be shards 0..n-1 (in this order) of one computation.

    Raises ValueError naming the file when a part is not readable as one, is another shard than its place in
    ``paths`` says, or was computed with other settings than the first part.
    """
    parts = []
    for path in paths:
        try:
            with np.load(path, allow_pickle=False) as f:
                arrays = {name: f[name] for name in f.files}
            header = json.loads(str(arrays.pop(_HEADER)))
        except (OSError, ValueError, KeyError) as err:
            raise ValueError(f"{path}: not a tau-shard part (.npz with a header) ({err})") from err
        parts.append(Part(arrays, header))
    for i, (path, part) in enumerate(zip(paths, parts)):
        if part.header.get("shard") != [i, len(paths)]:
            raise ValueError(f"{path}: shard {part.header.get('shard')} where shard [{i}, {len(paths)}] was expected")
        first = {k: v for k, v in parts[0].header.items() if k != "shard"}
        mine = {k: v for k, v in part.header.items() if k != "shard"}
        if mine != first:
            differ = sorted(k for k in first.keys() | mine.keys() if first.get(k) != mine.get(k))
            raise ValueError(f"{path}: computed with other settings than {paths[0]} (differ: {', '.join(differ)})")
    return parts
