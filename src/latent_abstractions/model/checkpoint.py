"""Model files: ``model.pt`` (a state_dict) + ``hparams.json``, written atomically and loaded strictly.

One loader per network kind, one return type: :class:`LoadedModel` (network, SDE, hparams, sha256 of the
weights file), read from explicit paths, the weights file read and hashed once. A score model's weights file is
its backbone's state_dict; ``hparams.json`` holds the backbone's arguments (``net``) and names the noise
parametrisation that wraps it (``precond``: ``name`` and the wrapper's arguments).
"""

from __future__ import annotations

import hashlib
import io as _bytes_io
import json
import pickle
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path

import torch

from ..io import atomic_path, write_json
from .classifier import AttributeClassifier
from .precond import ScoreNetwork, build_score_network
from .sde import VESDE


@dataclass(frozen=True)
class LoadedModel:
    """A trained network as loaded from disk.

    Attributes:
        net: the network in eval mode on the requested device.
        sde: its VE SDE (None for the attribute classifier).
        hparams: the ``hparams.json`` dict.
        sha256: hex sha256 of the weights file (recorded in every table computed from the model).
    """

    net: torch.nn.Module
    sde: VESDE | None
    hparams: dict
    sha256: str


def environment_info() -> dict:
    """Package versions and git commit, recorded next to every model."""
    import numpy
    import sklearn

    try:
        commit = (
            subprocess.run(
                ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=Path(__file__).parent
            ).stdout.strip()
            or None
        )
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "scikit-learn": sklearn.__version__,
        "git_commit": commit,
    }


def save_model(model_path: str | Path, hparams_path: str | Path, net: ScoreNetwork, hparams: dict) -> None:
    """Write the backbone's state_dict to ``model_path`` and ``hparams`` + the environment to ``hparams_path``,
    atomically. ``hparams`` must rebuild ``net`` (its ``net`` and ``precond`` keys, as :attr:`ScoreNetwork.hparams`)."""
    with atomic_path(model_path) as tmp:
        torch.save({k: v.detach().cpu() for k, v in net.backbone.state_dict().items()}, tmp)
    write_json({**hparams, "environment": environment_info()}, hparams_path)


def save_classifier(model_path: str | Path, hparams_path: str | Path, model: AttributeClassifier) -> None:
    """Write the classifier's state_dict and its constructor arguments (``model.hparams``), atomically."""
    with atomic_path(model_path) as tmp:
        torch.save({k: v.cpu() for k, v in model.state_dict().items()}, tmp)
    write_json(model.hparams, hparams_path)


def read_hparams(hparams_path: str | Path) -> dict:
    """The JSON dict at ``hparams_path``; ValueError naming the file if it is missing or not JSON."""
    path = Path(hparams_path)
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: cannot read model hyperparameters ({err})") from err


def _load_state(net: torch.nn.Module, model_path: str | Path, what: str) -> str:
    """Load ``model_path`` into ``net`` strictly; return the file's sha256 (the bytes are read once)."""
    path = Path(model_path)
    try:
        raw = path.read_bytes()
        state = torch.load(_bytes_io.BytesIO(raw), map_location="cpu", weights_only=True)
        net.load_state_dict(state, strict=True)
    except (OSError, RuntimeError, pickle.UnpicklingError) as err:
        raise ValueError(f"{path}: cannot load the {what}'s weights ({err})") from err
    return hashlib.sha256(raw).hexdigest()


def load_score_model(
    model_path: str | Path, hparams_path: str | Path, device: torch.device | str = "cpu"
) -> LoadedModel:
    """Rebuild the score network (its ``precond`` wrapper around NCSN++) from ``hparams_path`` and load
    ``model_path`` (the backbone's EMA weights) strictly.

    Raises:
        ValueError: naming the file, if either file is missing or unreadable, or they do not match each other.
    """
    hp = read_hparams(hparams_path)
    try:
        net = build_score_network(hp["net"], hp["precond"])
        sde = VESDE(hp["sigma_min"], hp["sigma_max"])
    except KeyError as err:
        raise ValueError(f"{hparams_path}: not a score model's hyperparameters (no key {err})") from err
    except (TypeError, ValueError) as err:
        raise ValueError(f"{hparams_path}: not a score model's hyperparameters ({err})") from err
    sha = _load_state(net.backbone, model_path, "score network")
    return LoadedModel(net.to(device).eval(), sde, hp, sha)


def load_classifier(
    model_path: str | Path, hparams_path: str | Path, device: torch.device | str = "cpu"
) -> LoadedModel:
    """Rebuild the attribute classifier from ``hparams_path`` and load ``model_path`` strictly (sde is None).

    Raises:
        ValueError: naming the file, if either file is missing or unreadable, or they do not match.
    """
    hp = read_hparams(hparams_path)
    try:
        model = AttributeClassifier(**hp)
    except TypeError as err:
        raise ValueError(f"{hparams_path}: not a classifier's hyperparameters ({err})") from err
    sha = _load_state(model, model_path, "classifier")
    return LoadedModel(model.to(device).eval(), None, hp, sha)
