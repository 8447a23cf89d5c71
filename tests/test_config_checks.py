"""Config checks before any job runs: typed command-line overrides, one short line per problem, and the
pre-flight checks the schema cannot express."""

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import run_snakemake
from snakemake.utils import update_config, validate

from latent_abstractions.config import ConfigError, coerce
from latent_abstractions.model.feature_maps import feature_map_names, level_sides
from latent_abstractions.model.networks import NCSNpp
from latent_abstractions.preflight import check_config

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"
DEFAULT = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
TINY = yaml.safe_load((ROOT / "config" / "tiny.yaml").read_text())


def tiny(**patch) -> dict:
    cfg = copy.deepcopy(DEFAULT)
    update_config(cfg, copy.deepcopy(TINY))
    update_config(cfg, patch)
    return cfg


def problems_of(cfg: dict) -> list[str]:
    with pytest.raises(ConfigError) as err:
        check_config(cfg, SCHEMA)
    lines = str(err.value).splitlines()
    assert lines[0] == "invalid configuration:" and lines[-1].startswith("(every key")
    return [line.strip() for line in lines[1:-1]]


def test_defaults_are_the_ones_snakemake_validate_fills():
    mine, theirs = {}, {}
    check_config(mine, SCHEMA)
    validate(theirs, str(SCHEMA))
    assert mine == theirs == DEFAULT


@pytest.mark.parametrize("path", sorted((ROOT / "config").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_passes_the_preflight(path):
    cfg = copy.deepcopy(DEFAULT)
    if path.name == "rehearsal.yaml":  # layered over the paper config, whose shapes it rehearses
        update_config(cfg, yaml.safe_load((ROOT / "config" / "paper.yaml").read_text()))
    update_config(cfg, yaml.safe_load(path.read_text()))
    check_config(cfg, SCHEMA)


# --- command-line strings take the schema's types -----------------------------------------------------------


def test_nested_command_line_strings_are_coerced_to_the_schema_types():
    # what `--config 'training={...}'` delivers: YAML's base loader makes every nested scalar a string
    cfg = tiny(
        training={"steps": "30", "lr": "1e-3", "bf16": "false"},
        probes={"C": "0.5"},
        score_model={"ch_mult": ["1", "2"], "dropout": "0"},
        sde={"sigma_max": "null"},
        sampling={"method": "em"},
        dataset={"sha256": "null", "synthetic": {"levels": {"orientation": "3"}}},
        forking={"strip_taus": ["0.5"]},
        report={"thresholds": ["0.25", "0.75"]},
        run_name=2024,
    )
    check_config(cfg, SCHEMA)
    assert cfg["dataset"]["synthetic"]["levels"]["orientation"] == 3 and cfg["forking"]["strip_taus"] == [0.5]
    assert cfg["report"]["thresholds"] == [0.25, 0.75] and cfg["sampling"]["method"] == "em"
    assert cfg["training"]["steps"] == 30 and type(cfg["training"]["steps"]) is int
    assert cfg["training"]["lr"] == 1e-3 and cfg["training"]["bf16"] is False
    assert cfg["probes"]["C"] == 0.5 and cfg["score_model"]["ch_mult"] == [1, 2]
    assert cfg["score_model"]["dropout"] == 0 and cfg["sde"]["sigma_max"] is None
    assert cfg["dataset"]["sha256"] is None and cfg["run_name"] == "2024"


def test_a_string_that_is_no_number_stays_a_problem():
    assert problems_of(tiny(training={"steps": "thirty"})) == ["training.steps = 'thirty': allowed is an integer >= 1"]
    assert coerce("007", {"type": "string"}) == "007"  # a string where strings are allowed is left alone


def test_override_form_of_the_docs_works_on_the_command_line(workflow_copy):
    run_snakemake(
        workflow_copy,
        "-n",
        "--configfile",
        "config/tiny.yaml",
        "--config",
        "training={steps: 30, lr: 0.002, bf16: false}",
        "probes={C: 0.5}",
        "score_model={ch_mult: [1, 2]}",
        "sde={sigma_max: null}",
    )


# --- one short message per problem ----------------------------------------------------------------------------


def test_misspelt_top_level_key_is_one_line_with_a_suggestion():
    cfg = tiny()
    cfg["trainin"] = {"steps": 30}
    (line,) = problems_of(cfg)
    assert line.startswith("trainin: unknown key (allowed here: run_name, seed, exact_score_controls, dataset,")
    assert line.endswith("did you mean 'training'?")


def test_every_problem_names_key_value_and_what_is_allowed():
    cfg = tiny(sampling={"method": "ddim", "stepz": 3}, dataset={"test_fraction": 1.5}, score_model={"ch_mult": []})
    assert problems_of(cfg) == [
        "dataset.test_fraction = 1.5: allowed is a number > 0 and < 1",
        "sampling.method = 'ddim': allowed is one of: pc, em",
        "sampling.stepz: unknown key (allowed here: method, steps, snr, n_samples, batch_size, corrector); "
        "did you mean 'sampling.steps'?",
        "score_model.ch_mult = []: needs at least 1 item(s)",
    ]


def test_snakemake_prints_a_short_message(workflow_copy):
    proc = run_snakemake(
        workflow_copy, "-n", "--configfile", "config/tiny.yaml", "--config", "trainin={steps: 30}", check=False
    )
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "trainin: unknown key" in out and "did you mean 'training'?" in out
    assert len(out.splitlines()) < 12, out  # was 410 lines (the schema and the config dumped)


# --- everything checkable before a job runs ---------------------------------------------------------------------


def test_checking_the_config_imports_no_torch():
    # common.smk checks the config at the start of every snakemake command, dry runs included
    code = f"import sys; from latent_abstractions.preflight import check_config; check_config({{}}, {str(SCHEMA)!r}); "
    code += "print(sorted(m for m in ('torch', 'sklearn', 'matplotlib') if m in sys.modules))"
    env = {"PYTHONPATH": str(ROOT / "src"), "PATH": ""}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_feature_map_names_of_a_two_level_network():
    assert feature_map_names(16, 2) == ["enc_16", "enc_8", "bottleneck", "dec_8", "dec_16"]
    assert level_sides(24, 3) == [24, 12, 6]


@pytest.mark.parametrize("res, ch_mult", [(16, [1, 2]), (24, [1, 2, 2]), (64, [1, 2, 2, 2]), (8, [1])])
def test_feature_map_names_are_those_of_the_network_and_name_each_maps_side(res, ch_mult):
    net = NCSNpp(res, nf=4, ch_mult=ch_mult, num_res_blocks=1, attn_resolutions=())
    names = feature_map_names(res, len(ch_mult))
    assert net.feature_names() == names
    maps = net.forward_features(torch.randn(2, 3, res, res), torch.tensor(1.0), names)
    sides = [res // 2**k for k in range(len(ch_mult))]  # each level halves the side
    assert [tuple(maps[name].shape[-2:]) for name in names] == [
        *((s, s) for s in sides),
        (sides[-1], sides[-1]),
        *((s, s) for s in reversed(sides)),
    ]


def test_unknown_feature_layer_is_caught_before_training(workflow_copy):
    assert problems_of(tiny(features={"layers": ["no_such_layer", "pixels"]})) == [
        "features.layers = ['no_such_layer', 'pixels']: unknown feature map(s) ['no_such_layer', 'pixels'] "
        "('pixels' is always included as the baseline); allowed: enc_16, enc_8, bottleneck, dec_8, dec_16 "
        "(image side 16, score_model.ch_mult [1, 2])"
    ]
    proc = run_snakemake(
        workflow_copy,
        "-n",
        "--configfile",
        "config/tiny.yaml",
        "--config",
        "features={layers: [no_such_layer]}",
        check=False,
    )
    assert proc.returncode != 0 and "features.layers = ['no_such_layer']" in proc.stdout + proc.stderr


def test_layer_names_follow_the_dataset_resolution():
    # the official file is 64 x 64: enc_16 exists there, not at the synthetic 16 x 16
    official = dict(dataset={"source": "download"}, score_model={"attn_resolutions": [32]})
    check_config(tiny(**official, features={"layers": ["enc_32", "enc_64"]}), SCHEMA)
    assert problems_of(tiny(**official, features={"layers": ["enc_16"]}))[0].startswith(
        "features.layers = ['enc_16']: unknown feature map(s) ['enc_16']; allowed: enc_64, enc_32, "
    )
    assert problems_of(tiny(features={"layers": ["enc_64"]}))[0].startswith(
        "features.layers = ['enc_64']: unknown feature map(s) ['enc_64']; allowed: enc_16, enc_8, "
    )


def test_network_shape_against_the_resolution():
    assert problems_of(tiny(score_model={"ch_mult": [1, 1, 1, 1, 1, 1]})) == [
        "score_model.ch_mult = [1, 1, 1, 1, 1, 1]: 6 resolution levels halve the image 5 times, but the image "
        "side 16 is not divisible by 32; use at most 5 levels"
    ]
    assert problems_of(tiny(score_model={"attn_resolutions": [8, 6]})) == [
        "score_model.attn_resolutions = [8, 6]: [6] not a feature-map side of this network; allowed: [16, 8] "
        "(image side 16, ch_mult [1, 2])"
    ]


def test_sizes_against_the_split():
    # tiny: 2^6 = 64 images, test_fraction 0.25 -> 48 train / 16 test
    assert problems_of(tiny(features={"n_train": 49, "n_test": 17}, mutual_info={"n_images": 100})) == [
        "features.n_train = 49: more than the 48 images available (the dataset's 64 images split 48 train / "
        "16 test); allowed: 2..48",
        "features.n_test = 17: more than the 16 images available (the dataset's 64 images split 48 train / "
        "16 test); allowed: 2..16",
        "mutual_info.n_images = 100: more than the 16 images available (the dataset's 64 images split 48 "
        "train / 16 test); allowed: 2..16",
    ]
    check_config(tiny(features={"n_train": 48, "n_test": 16}, mutual_info={"n_images": 16}), SCHEMA)


def test_strip_taus_against_the_tau_grid():
    # tiny grid: 0, 1/3, 2/3, 1
    assert problems_of(tiny(taus={"start": 0.0, "stop": 0.5, "n": 4}, forking={"strip_taus": [0.7]})) == [
        "forking.strip_taus: 0.7 is outside the tau grid [0.0, 0.5]; allowed: values in that range (the "
        "nearest of taus [0.0, 0.1666666667, 0.3333333333, 0.5] is used)"
    ]
    assert problems_of(tiny(forking={"strip_taus": [0.3, 0.35]})) == [
        "forking.strip_taus: 0.3 and 0.35 both select the grid tau 0.3333333333; allowed: values nearest to "
        "distinct taus of [0.0, 0.3333333333, 0.6666666667, 1.0]"
    ]


def test_relations_between_keys():
    assert problems_of(tiny(mutual_info={"n_times": 2})) == [
        "mutual_info.n_times = 2: fewer quadrature times than the 3 intervals of the tau grid; allowed: at least 3 "
        "(one per interval)"
    ]
    assert problems_of(tiny(taus={"start": 0.8, "stop": 0.2})) == [
        "taus.start = 0.8, taus.stop = 0.2: start must be below stop"
    ]
    assert problems_of(tiny(sde={"sigma_min": 0.5, "sigma_max": 0.1})) == [
        "sde.sigma_max = 0.1: must exceed sde.sigma_min = 0.5 (or be null: the largest pairwise distance in "
        "the training data)"
    ]


@pytest.mark.parametrize("name", ["..", ".", ".hidden"])
def test_run_name_cannot_leave_results(name):
    (line,) = problems_of(tiny(run_name=name))
    assert line.startswith(f"run_name = {name!r}: the run's files go to results/<run_name>/") and "'..'" in line
    check_config(tiny(run_name="v1.2_final-b"), SCHEMA)  # dots inside a name are fine


def test_run_name_with_a_slash_is_refused_by_the_schema():
    (line,) = problems_of(tiny(run_name="../elsewhere"))
    assert line.startswith("run_name = '../elsewhere': allowed is a string matching")


def test_path_source_needs_a_readable_file(tmp_path):
    missing = tmp_path / "nope.h5"
    assert problems_of(tiny(dataset={"source": "path", "path": str(missing)})) == [
        f"dataset.path = '{missing}': dataset.source is 'path', so this must be an existing file"
    ]
    junk = tmp_path / "junk.h5"
    junk.write_text("not hdf5")
    (line,) = problems_of(tiny(dataset={"source": "path", "path": str(junk)}))
    assert line.startswith(f"dataset.path = '{junk}': cannot read an 'images' dataset from it")


def test_path_source_sizes_come_from_the_file_header(tmp_path):
    import numpy as np

    from latent_abstractions.data.render import GridSpec
    from latent_abstractions.data.shapes3d import write_subset, write_synthetic

    write_synthetic(tmp_path / "grid.h5", GridSpec.from_counts(16, [2] * 6), progress=False)
    write_subset(tmp_path / "grid.h5", tmp_path / "half.h5", np.arange(0, 64, 2))  # 32 images: 24 / 8
    cfg = tiny(dataset={"source": "path", "path": str(tmp_path / "half.h5")})
    assert problems_of(cfg) == [
        "features.n_train = 32: more than the 24 images available (the dataset's 32 images split 24 train / 8 "
        "test); allowed: 2..24",
        "features.n_test = 16: more than the 8 images available (the dataset's 32 images split 24 train / 8 "
        "test); allowed: 2..8",
        "mutual_info.n_images = 16: more than the 8 images available (the dataset's 32 images split 24 train / 8 "
        "test); allowed: 2..8",
    ]


def test_single_level_factor_is_a_warning_not_an_error():
    warnings = check_config(
        tiny(
            dataset={"synthetic": {"levels": {"orientation": 1}}},
            features={"n_train": 24, "n_test": 8},
            mutual_info={"n_images": 8},
        ),
        SCHEMA,
    )
    assert warnings == [
        "dataset.synthetic.levels: orientation rendered with 1 level: constant, so not measurable "
        "(reported as such, left out of ranks and agreement)"
    ]
