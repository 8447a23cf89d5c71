"""Shared fixtures: a throw-away copy of the workflow to run Snakemake in."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# What a run of the workflow needs; results/, logs and .snakemake/ of the real checkout stay behind.
WORKFLOW_PARTS = ("Snakefile", "workflow", "config", "src", "envs", "profiles", "scripts", "pyproject.toml")


def rule_blocks() -> dict[str, str]:
    """{rule name: its text} from workflow/rules/*.smk (static: no Snakemake run)."""
    blocks = {}
    for smk in sorted((ROOT / "workflow" / "rules").glob("*.smk")):
        for block in re.split(r"^(?=rule )", smk.read_text(), flags=re.M)[1:]:
            blocks[re.match(r"rule (\w+):", block).group(1)] = block
    return blocks


def gpu_rules() -> set[str]:
    """The GPU rules: those whose `resources:` declare `gpu=GPUS` (training: `GPUS * TRAIN_GPUS`), the one place
    they are named."""
    return {name for name, block in rule_blocks().items() if re.search(r"\n        gpu=GPUS\b", block)}


def cluster_rules() -> set[str]:
    """The rules a cluster executor submits as jobs: every rule not marked `localrule: True`."""
    return {name for name, block in rule_blocks().items() if "\n    localrule: True" not in block}


def snakemake_exe() -> str:
    """The snakemake next to the running interpreter (the project's venv)."""
    exe = Path(sys.executable).with_name("snakemake")
    return str(exe) if exe.exists() else "snakemake"


def copy_workflow(dest: Path) -> Path:
    """Copy the workflow's files into ``dest`` (created) and return it."""
    dest.mkdir(parents=True, exist_ok=True)
    for part in WORKFLOW_PARTS:
        src = ROOT / part
        if src.is_dir():
            shutil.copytree(src, dest / part, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        elif src.exists():
            shutil.copy2(src, dest / part)
    return dest


# A stand-in for Slurm's `scontrol` that fails at once. The Slurm executor plugin is imported by every snakemake
# command, local ones included, and probes `scontrol show config` (10 s timeout) at import; where Slurm's client is
# installed but its controller is down (CI: it runs only inside tests/test_slurm.py) each probe waits ~9 s, about
# 5 of the suite's minutes over its ~35 snakemake commands. Local runs and dry runs never need the controller;
# tests/test_slurm.py runs with the real PATH.
_NO_SCONTROL = Path(__file__).resolve().parent / "bin_no_scontrol"


def local_env(**extra: str) -> dict:
    """Environment of a local snakemake run: no GPU, Slurm's scontrol shadowed (see _NO_SCONTROL), ``extra``."""
    path = os.pathsep.join(p for p in (str(_NO_SCONTROL), os.environ.get("PATH", "")) if p)
    return {**os.environ, "LATENT_ABSTRACTIONS_GPUS": "0", "PATH": path, **extra}


def run_snakemake(
    workdir: Path, *args: str, timeout: float = 600, check: bool = True, env: dict | None = None
) -> subprocess.CompletedProcess:
    """Run snakemake locally (``local_env``) in ``workdir`` with a hard timeout; on failure, show its output."""
    full_env = local_env(**(env or {}))
    proc = subprocess.run(
        [snakemake_exe(), *args],
        cwd=workdir,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"snakemake {' '.join(args)} exited {proc.returncode}\n--- stdout\n{proc.stdout[-6000:]}"
            f"\n--- stderr\n{proc.stderr[-6000:]}"
        )
    return proc


@pytest.fixture
def workflow_copy(tmp_path: Path) -> Path:
    """A fresh copy of the workflow in a temporary directory."""
    return copy_workflow(tmp_path / "wf")


TINY_RUN_ARGS = ("--cores", "2", "--max-threads", "1", "--configfile", "config/tiny.yaml")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """The whole tiny workflow run once locally (one thread per job, as the Slurm test runs it)."""
    wf = copy_workflow(tmp_path_factory.mktemp("tiny") / "wf")
    run_snakemake(wf, *TINY_RUN_ARGS, timeout=900)
    return wf


@pytest.fixture(scope="session")
def two_level_grid(tmp_path_factory):
    """A rendered 16x16 grid with two levels of every factor (64 images): (dataset, images as uint8 (N, 3, H, W),
    official level labels (N, 6)). The classifiers' tests train on it."""
    import torch

    from latent_abstractions.data.render import GridSpec
    from latent_abstractions.data.shapes3d import load_shapes3d, write_synthetic

    path = tmp_path_factory.mktemp("grid") / "d.h5"
    write_synthetic(path, GridSpec.from_counts(16, [2, 2, 2, 2, 2, 2]), progress=False)
    data = load_shapes3d(path)
    images = torch.from_numpy(data.images()).permute(0, 3, 1, 2).contiguous()
    return data, images, torch.from_numpy(data.label_indices)
