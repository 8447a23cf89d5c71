"""The local and Slurm profiles: parseable, commented, and asking for GPUs exactly on the GPU rules."""

import re
from pathlib import Path

import pytest
import yaml
from conftest import run_snakemake

ROOT = Path(__file__).resolve().parents[1]
PROFILES = sorted((ROOT / "profiles").glob("*/config.yaml"))


@pytest.mark.parametrize("path", PROFILES, ids=lambda p: p.parent.name)
def test_profile_parses_and_every_key_is_commented(path):
    assert isinstance(yaml.safe_load(path.read_text()), dict)
    lines = path.read_text().splitlines()
    bare, section = [], None
    for i, line in enumerate(lines):
        m = re.match(r"^(\s*)([A-Za-z_][\w-]*):", line)
        if not m:
            continue
        if not m.group(1):
            section = m.group(2)
        rule_name = section == "set-resources" and len(m.group(1)) == 2  # a rule's block: its entries count
        if "#" not in line and not lines[i - 1].strip().startswith("#") and not rule_name:
            bare.append(m.group(2))
    assert not bare, f"{path}: keys without a comment: {bare}"


def test_profiles_keys_are_disjoint():
    # Snakemake loads profiles/default/ next to --profile profiles/slurm, and the default's keys win, so a key in
    # both would be silently ignored on the cluster.
    default, slurm = (yaml.safe_load((ROOT / "profiles" / p / "config.yaml").read_text()) for p in ("default", "slurm"))
    assert not set(default) & set(slurm)
    # the local per-machine GPU limit must not throttle cluster jobs
    assert "gpu" in default["resources"] and slurm["set-resource-scopes"] == {"gpu": "local"}


def test_slurm_profile_lists_exactly_the_rules_that_declare_a_gpu(gpu_rules):
    slurm = yaml.safe_load((ROOT / "profiles" / "slurm" / "config.yaml").read_text())
    asked = {rule for rule, res in slurm["set-resources"].items() if res.get("gpu") == 1}
    assert asked == gpu_rules and "train_score_model" in gpu_rules


def test_slurm_profile_requests_a_gpu_on_gpu_rules_only(workflow_copy, gpu_rules):
    proc = run_snakemake(
        workflow_copy,
        "-n",
        "--forceall",
        "--profile",
        "profiles/slurm",
        "--configfile",
        "config/tiny.yaml",
        timeout=120,
    )
    assert "workflow specific profile profiles/default" in proc.stderr  # loaded as well: see the test above
    jobs = re.findall(r"^(?:local)?rule (\w+):\n(?:    .*\n)*?    resources: (.*)$", proc.stdout, flags=re.M)
    assert jobs, proc.stdout[-2000:]
    seen = set()
    for rule, resources in jobs:
        seen.add(rule)
        has_gpu = re.search(r"\bgpu=1\b", resources) is not None
        assert has_gpu == (rule in gpu_rules), f"{rule}: {resources}"
        assert "slurm_partition=main" in resources
    assert gpu_rules <= seen
