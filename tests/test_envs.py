"""The conda environments in envs/ pin exactly what requirements.txt pins."""

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
# Workflow-engine packages: needed where Snakemake runs, not inside the per-rule environments.
ENGINE = {"snakemake", "snakemake-executor-plugin-slurm", "snakemake-executor-plugin-slurm-jobstep"}


def parse_pins(lines, source):
    pins = {}
    for raw in lines:
        line = raw.split("#", 1)[0].strip()
        if not line or line.startswith("-r"):
            continue
        name, sep, version = line.partition("==")
        assert sep, f"{source}: {raw!r} is not pinned exactly (name==version)"
        pins[name.strip().lower()] = version.strip()
    return pins


def requirements():
    return parse_pins((ROOT / "requirements.txt").read_text().splitlines(), "requirements.txt")


def env_pins(path):
    spec = yaml.safe_load(path.read_text())
    assert "nodefaults" in spec["channels"], f"{path.name}: channels must include nodefaults"
    deps = spec["dependencies"]
    conda = [d for d in deps if isinstance(d, str)]
    assert "python=3.11" in conda, f"{path.name}: python must be pinned to 3.11"
    pip = [d for d in deps if isinstance(d, dict)]
    assert len(pip) == 1 and "pip" in pip[0], f"{path.name}: expected one pip: section"
    return parse_pins(pip[0]["pip"], path.name)


ENV_FILES = sorted((ROOT / "envs").glob("*.yaml"))


@pytest.mark.parametrize("path", ENV_FILES, ids=lambda p: p.name)
def test_env_pins_match_requirements(path):
    req = requirements()
    for name, version in env_pins(path).items():
        assert name in req, f"{path.name}: {name} is not in requirements.txt"
        assert version == req[name], f"{path.name}: {name}=={version}, requirements.txt has {req[name]}"


def test_envs_cover_every_runtime_requirement():
    covered = set().union(*(env_pins(p) for p in ENV_FILES))
    missing = set(requirements()) - ENGINE - covered
    assert not missing, f"requirements.txt pins {sorted(missing)} but no env in envs/ lists them"


def test_every_rule_env_exists():
    n_rules = 0
    for smk in (ROOT / "workflow" / "rules").glob("*.smk"):
        lines = [line.strip() for line in smk.read_text().splitlines()]
        for i, line in enumerate(lines):
            if line.startswith("conda:"):
                rel = (line.split(":", 1)[1].strip() or lines[i + 1]).strip(",").strip('"')
                assert (smk.parent / rel).resolve().is_file(), f"{smk.name}: conda env {rel} not found"
                n_rules += 1
    assert n_rules >= 10
