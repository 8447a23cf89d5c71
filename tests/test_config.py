"""Config validation: the schema's defaults are the embedded default, and bad configs fail clearly."""

import copy
from pathlib import Path

import pytest
import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import update_config, validate

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = str(ROOT / "workflow" / "schemas" / "config.schema.yaml")
DEFAULT = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())


def test_schema_defaults_equal_embedded_default():
    cfg = {}
    validate(cfg, SCHEMA)
    assert cfg == DEFAULT


@pytest.mark.parametrize("path", sorted((ROOT / "config").glob("*.yaml")), ids=lambda p: p.name)
def test_every_config_file_validates_over_the_default(path):
    cfg = copy.deepcopy(DEFAULT)
    update_config(cfg, yaml.safe_load(path.read_text()))  # what --configfile does
    validate(cfg, SCHEMA)
    if path.name != "config.yaml":
        assert cfg["run_name"] != DEFAULT["run_name"], f"{path.name} must use its own run_name"


@pytest.mark.parametrize(
    "patch, needle",
    [
        ({"dataset": {"source": "ftp"}}, "source"),
        ({"training": {"steps": 0}}, "steps"),
        ({"taus": {"n": 1}}, "n"),
        ({"score_model": {"nf": "wide"}}, "nf"),
        ({"sampling": {"typo_key": 1}}, "typo_key"),
    ],
)
def test_bad_values_are_rejected_with_the_key_named(patch, needle):
    cfg = copy.deepcopy(DEFAULT)
    update_config(cfg, patch)
    with pytest.raises(WorkflowError) as err:
        validate(cfg, SCHEMA)
    assert needle in str(err.value)


def test_every_schema_key_has_a_description():
    schema = yaml.safe_load(Path(SCHEMA).read_text())
    missing = []

    def walk(node, path):
        for key, sub in node.get("properties", {}).items():
            if not str(sub.get("description", "")).strip():
                missing.append("/".join([*path, key]))
            walk(sub, [*path, key])

    walk(schema, [])
    assert not missing, f"schema keys without a description: {missing}"


def test_schema_levels_are_the_factors_with_their_official_level_counts():
    # the schema cannot import the factors, so it restates them; this keeps the two in step
    from latent_abstractions.data.factors import FACTOR_NAMES, N_LEVELS

    schema = yaml.safe_load(Path(SCHEMA).read_text())
    levels = schema["properties"]["dataset"]["properties"]["synthetic"]["properties"]["levels"]["properties"]
    assert list(levels) == list(FACTOR_NAMES)
    assert [levels[name]["maximum"] for name in FACTOR_NAMES] == list(N_LEVELS)
