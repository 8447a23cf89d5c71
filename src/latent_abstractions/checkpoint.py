"""Final model files: ``model.pt`` (EMA state_dict) + ``hparams.json``, loaded strictly everywhere."""

from __future__ import annotations

import json
import pickle
import platform
import subprocess
from pathlib import Path

import torch

from .io import atomic_path, sha256_file, write_json
from .networks import NCSNpp
from .sde import VESDE


def environment_info() -> dict:
    """Package versions and git commit, recorded next to every model."""
    import numpy
    import sklearn

    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                                cwd=Path(__file__).parent).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {"python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__,
            "scikit-learn": sklearn.__version__, "git_commit": commit}


def save_model(model_dir: str | Path, net: torch.nn.Module, hparams: dict) -> None:
    """Write ``model.pt`` (state_dict) and ``hparams.json`` (``hparams`` + environment) atomically."""
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(model_dir / "model.pt") as tmp:
        torch.save({k: v.detach().cpu() for k, v in net.state_dict().items()}, tmp)
    write_json({**hparams, "environment": environment_info()}, model_dir / "hparams.json")


def read_hparams(model_dir: str | Path) -> dict:
    path = Path(model_dir) / "hparams.json"
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: cannot read model hyperparameters ({err})") from err


def model_sha256(model_dir: str | Path) -> str:
    return sha256_file(Path(model_dir) / "model.pt")


def load_score_model(model_dir: str | Path, device: torch.device | str = "cpu") -> tuple[NCSNpp, VESDE, dict]:
    """Rebuild the score network from ``hparams.json`` and load ``model.pt`` (EMA weights) strictly.

    Returns:
        (network in eval mode on ``device``, its VE SDE, the hparams dict).

    Raises:
        ValueError: naming the file, if ``hparams.json`` or ``model.pt`` is missing, unreadable, or they
            do not match each other (strict loading).
    """
    hp = read_hparams(model_dir)
    path = Path(model_dir) / "model.pt"
    try:
        net = NCSNpp(**hp["net"])
        sde = VESDE(hp["sigma_min"], hp["sigma_max"])
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{Path(model_dir) / 'hparams.json'}: not a score model's hyperparameters ({err})") from err
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        net.load_state_dict(state, strict=True)
    except (OSError, RuntimeError, pickle.UnpicklingError) as err:
        raise ValueError(f"{path}: cannot load the score network's weights ({err})") from err
    return net.to(device).eval(), sde, hp
