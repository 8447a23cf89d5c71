# Shared helpers: config validation, the run directory, GPU detection, the final-target list.
# Rule files register their final outputs with register_final(); `rule all` asks for all of them.

import os

import sys

from snakemake.exceptions import WorkflowError

# Make the package importable from script: directives without installing it (scripts run in
# subprocesses that inherit this environment), and this workflow's own copy of it first in this process too.
_SRC = os.path.abspath(os.path.join(workflow.basedir, "src"))
os.environ.update(PYTHONPATH=os.pathsep.join(p for p in (_SRC, os.environ.get("PYTHONPATH", "")) if p))
sys.path.insert(0, _SRC)

from latent_abstractions.config import check_config_or_exit

# Command-line strings coerced to the schema's types, defaults filled, pre-flight checks; one line per problem.
check_config_or_exit(config, os.path.join(workflow.basedir, "workflow", "schemas", "config.schema.yaml"), WorkflowError)

RUN = config["run_name"]
# Everything a run produces lives under results/<run_name>/ (logs and benchmarks included).
RESULTS = f"results/{RUN}"
LOGS = f"results/{RUN}/logs"
BENCH = f"results/{RUN}/benchmarks"


def detect_gpus():
    """GPUs per GPU job: LATENT_ABSTRACTIONS_GPUS if set, else 1 when this host has CUDA, else 0.

    Scripts use CUDA exactly when their job was given gpu > 0 (profiles may override per rule).
    """
    env = os.environ.get("LATENT_ABSTRACTIONS_GPUS")
    if env is not None:
        return int(env)
    try:
        import torch

        return 1 if torch.cuda.is_available() else 0
    except ImportError:
        return 0


GPUS = detect_gpus()

_FINAL = []


def register_final(*paths):
    """Add outputs that `rule all` must build."""
    _FINAL.extend(paths)


def get_final_outputs():
    return list(_FINAL)


# --- dataset (data.smk) ---

FACTOR_NAMES = ["floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation"]


def get_dataset():
    """Path of the 3dshapes.h5 file for the configured dataset.source."""
    source = config["dataset"]["source"]
    if source == "synthetic":
        return f"{RESULTS}/data/shapes3d.h5"
    if source == "download":
        return "resources/shapes3d/3dshapes.h5"
    path = config["dataset"]["path"]
    if not path or not os.path.isfile(path):
        raise WorkflowError(f"dataset.source is 'path' but dataset.path={path!r} is not an existing file")
    return path


def get_level_counts():
    levels = config["dataset"]["synthetic"]["levels"]
    return [levels[name] for name in FACTOR_NAMES]


# --- measurements (measure.smk) ---

def get_taus():
    """The shared tau grid, as a list (params must be plain values)."""
    from latent_abstractions.taus import tau_grid

    t = config["taus"]
    return tau_grid(t["start"], t["stop"], t["n"]).tolist()


def model_file(model, name):
    return f"{RESULTS}/models/{model}/{name}"


# Light rules run on the submit host when a cluster executor is used; so does the download (compute nodes
# often have no internet access).
localrules:
    all,
    download_shapes3d,
    split_dataset,
    plot_contact_sheet,
    plot_probes,
    plot_mutual_info,
    plot_forking,
    plot_samples_forks,
    plot_training_loss,
    make_emergence_table,
    make_report,
