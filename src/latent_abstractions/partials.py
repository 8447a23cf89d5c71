"""Partial results of a long job, kept where Snakemake does not delete them, so that a killed job resumes.

A job that loops over independent steps (``run_forking``: one step per tau) saves each step's arrays as soon as it
is done, into a directory that is not a rule output (Snakemake deletes a failed job's outputs; training's
``state/`` directory works the same way). Every file carries the key of the run that computed it (a JSON-able
dict: the settings, the seed, the checkpoints' sha256): a rerun reuses a step only when its key is exactly the
current run's, and recomputes (and overwrites) it otherwise, so a changed setting or model never mixes in.
"""

from __future__ import annotations

import json
import logging
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from .io import atomic_path

log = logging.getLogger(__name__)
_KEY = "__key__"


class PartialResults:
    """Step-by-step results of one run in ``directory``: ``step_<i>.npz`` files with the arrays and the run's key."""

    def __init__(self, directory: str | os.PathLike, key: dict[str, Any]):
        self.directory = Path(directory)
        self.key = json.dumps(key, sort_keys=True, default=str)

    def path(self, step: int) -> Path:
        return self.directory / f"step_{step:04d}.npz"

    def load(self, step: int) -> dict[str, np.ndarray] | None:
        """The saved arrays of ``step``, or None when there are none of this run (absent, unreadable, other key)."""
        path = self.path(step)
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as f:
                arrays = {name: f[name] for name in f.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
            log.warning("%s: unreadable partial result (%s); recomputing this step", path, err)
            return None
        if str(arrays.pop(_KEY, "")) != self.key:
            log.warning("%s: computed with other settings, seed or checkpoints; recomputing this step", path)
            return None
        return arrays

    def save(self, step: int, arrays: dict[str, np.ndarray]) -> None:
        """Write ``step``'s arrays with the run's key, atomically."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.path(step)) as tmp, open(tmp, "wb") as f:
            np.savez(f, **arrays, **{_KEY: np.array(self.key)})
