# Shared helpers: config validation, the run directory, the model list, GPU detection, params and targets.
# Every list lives here once: MODELS (from the package), FACTOR_NAMES, the final targets (get_final_outputs).

import os
import sys

from snakemake.exceptions import WorkflowError

# Make this checkout's package importable: here (helpers below import it) and in the script: directives'
# subprocesses, which inherit PYTHONPATH. The checkout's src/ goes first, before any installed copy.
_SRC = os.path.abspath(os.path.join(workflow.basedir, "src"))
sys.path.insert(0, _SRC)
os.environ.update(PYTHONPATH=os.pathsep.join(p for p in (_SRC, os.environ.get("PYTHONPATH", "")) if p))

from latent_abstractions.preflight import check_config_or_exit  # noqa: E402

# Command-line strings coerced to the schema's types, defaults filled, pre-flight checks; one line per problem.
check_config_or_exit(config, os.path.join(workflow.basedir, "workflow", "schemas", "config.schema.yaml"), WorkflowError)

from latent_abstractions import SCORE_MODELS  # noqa: E402
from latent_abstractions.data.factors import FACTOR_NAMES  # noqa: E402
from latent_abstractions.measure.agreement import SCORES  # noqa: E402
from latent_abstractions.runtime import TRAINING_EXECUTION_KEYS  # noqa: E402
from latent_abstractions.plan import MEM_MB_FLOOR, RUNTIME_FLOOR_MIN, rule_resources  # noqa: E402
from latent_abstractions.taus import tau_grid  # noqa: E402

RUN = config["run_name"]
# Everything a run produces lives under results/<run_name>/; logs and benchmarks mirror the rules:
# results/<run>/logs/<rule>/<wildcards>.log and results/<run>/benchmarks/<rule>/<wildcards>.tsv.
RESULTS = f"results/{RUN}"
LOGS = f"results/{RUN}/logs"
BENCH = f"results/{RUN}/benchmarks"
# The score models ({model} wildcard): the unconditional and the factor-conditional network.
MODELS = list(SCORE_MODELS)
# The scores MI and forking run on ({score} wildcard): a file-name suffix per score, none for the network (its
# files keep their names: tables/mutual_info.parquet) and "_exact" for the exact score (mutual_info_exact.parquet).
SCORE_SUFFIX = {score: "" if score == "network" else f"_{score}" for score in SCORES}


wildcard_constraints:
    model="|".join(MODELS),
    score="|".join(SCORE_SUFFIX.values()),
    shard=r"\d+",


def detect_gpus():
    """GPUs per GPU job: LATENT_ABSTRACTIONS_GPUS if set, else 1 when this host has CUDA, else 0.

    Scripts use CUDA exactly when their job was given gpu > 0 (profiles may override per rule). The GPU rules
    are exactly the rules that declare `resources: gpu=GPUS`; tests and docs derive the list from them.
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

# Threads of each compute job. One: the DAG has two independent branches at every stage (the two score models;
# then MI beside classifier -> sampling -> forking and features -> probes), and on the default 2 cores two
# one-thread jobs side by side beat one two-thread job after another (torch scales 1.3-1.65x from one thread to
# two on these small networks). Measured on the default run, the stages after training: 229 s at 2 threads,
# 174 s at 1. On a bigger CPU-only box raise it per rule: --set-threads estimate_mutual_information=8.
THREADS = 1

# Each compute rule's Slurm runtime (minutes) and memory (MB) come from the cost plan of this config on its
# `accelerator` (python -m latent_abstractions.plan --configfile ... prints the whole plan and its assumptions).
# The plan measures each network shape once and caches it (LATENT_ABSTRACTIONS_CACHE, default ~/.cache).
PLAN = rule_resources(config, threads=THREADS)


def get_mem_mb(rule):
    """The plan's mem_mb for ``rule`` (its floor for a rule this config does not run, e.g. the renderer)."""
    return PLAN.get(rule, {}).get("mem_mb", MEM_MB_FLOOR)


def get_runtime(rule):
    """The plan's runtime (minutes) for ``rule`` (its floor for a rule this config does not run)."""
    return PLAN.get(rule, {}).get("runtime", RUNTIME_FLOOR_MIN)


# --- config values for params: each rule's params hold exactly the keys it uses ---


def cfg(dpath):
    """The config value at ``dpath`` ("section/key"), for a rule's params."""
    return lookup(dpath=dpath, within=config)


def cfg_keys(section, *keys):
    """{key: config[section][key]} for the named keys only (a params entry that documents its dependencies)."""
    return {key: config[section][key] for key in keys}


def get_label_dropout(wildcards):
    """The conditional model's label dropout; the unconditional model has no labels to drop (0)."""
    return config["score_model"]["label_dropout"] if wildcards.model == "cond" else 0.0


# --- training (train.smk) ---

# GPUs, i.e. data-parallel processes, of one training job.
TRAIN_GPUS = config["training"]["gpus"]


def get_training_settings():
    """The training section without its execution settings (TRAINING_EXECUTION_KEYS: the script reads them from
    the config), a params entry: a change reruns the training, a change of how it runs does not."""
    return {key: value for key, value in config["training"].items() if key not in TRAINING_EXECUTION_KEYS}


def get_training_retries():
    """One retry per segment after the first when a training is cut into segments (segment_minutes); else None:
    the profile's or the command line's retries.

    Only the Snakemake that schedules the jobs retries. A cluster job runs Snakemake again for its rule (the
    executor's job step), and a retry there would run the next segment inside the same job, past the time limit
    the segments exist to respect: there it is 0.
    """
    training = config["training"]
    if training["segment_minutes"] is None:
        return None
    return training["max_segments"] - 1 if workflow.is_main_process else 0


def get_taus():
    """The shared tau grid, as a list (params must be plain values)."""
    t = config["taus"]
    return tau_grid(t["start"], t["stop"], t["n"]).tolist()


# --- tau shards ({shard} wildcard) of the per-tau measurements (measure.smk) ---

# Jobs per per-tau measurement. With 1, each measurement is one job writing its final files (no gather jobs, the
# DAG of an unsharded run); with more, each runs as TAU_SHARDS jobs on the {shard} wildcard writing parts, and a
# gather_* rule (a local job, as it only reads and writes) turns the parts into the final files.
TAU_SHARDS = config["tau_shards"]
SHARDS = list(range(TAU_SHARDS))
# the rule that writes each sharded measurement's final files when TAU_SHARDS > 1
GATHERS = {
    "extract_features": "gather_features",
    "fit_linear_probes": "gather_linear_probes",
    "estimate_mutual_information": "gather_mutual_information",
    "run_forking": "gather_forking",
}


def sharded(final, part):
    """A measurement's output: ``final`` (its final file) when unsharded, else ``part`` (one shard's part)."""
    return final if TAU_SHARDS == 1 else part


def shard_log(path):
    """A log or benchmark path of a sharded rule: one per shard (``.{shard}`` before the extension) if sharded."""
    if TAU_SHARDS == 1:
        return path
    stem, ext = os.path.splitext(path)
    return f"{stem}.{{shard}}{ext}"


def for_shards(path):
    """``path`` for every shard (a list; [path] when unsharded); other wildcards are kept."""
    return [path] if TAU_SHARDS == 1 else expand(path, shard=SHARDS, allow_missing=True)


def get_shard(wildcards):
    """[index, count] of a job's tau shard (a params entry), None when unsharded."""
    return [int(wildcards.shard), TAU_SHARDS] if TAU_SHARDS > 1 else None


def measured(rule):
    """The outputs holding the final files of the sharded measurement ``rule`` (its gather's when sharded)."""
    return getattr(rules, GATHERS[rule] if TAU_SHARDS > 1 else rule).output


# --- dataset (data.smk) ---


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


def model_file(model, name):
    return f"{RESULTS}/models/{model}/{name}"


# --- the {score} wildcard of the MI and forking rules (measure.smk) ---


def get_score(wildcards):
    """The score a job runs on ("network" / "exact"), from its {score} suffix."""
    return next(score for score, suffix in SCORE_SUFFIX.items() if suffix == wildcards.score)


def get_score_inputs(model, dataset=False):
    """Input function of a measurement on the {score} wildcard: the network ``model``'s files, or for the exact score
    its SDE (the unconditional model's hparams.json, as compute_exact_filter reads it, so every curve walks one path)
    and, with ``dataset``, the data file whose exact score it is; no network file."""

    def inputs(wildcards):
        if get_score(wildcards) == "network":
            return {"model": model_file(model, "model.pt"), "hparams": model_file(model, "hparams.json")}
        return {"hparams": model_file("uncond", "hparams.json"), **({"h5": get_dataset()} if dataset else {})}

    return inputs


def for_score(path, score):
    """``path`` (a rule's output or log with the {score} wildcard) for the score ``score`` ("network" / "exact")."""
    return expand(path, score=SCORE_SUFFIX[score])[0]


# The scores this run measures on: the network always, the exact score unless exact_score_controls is off.
RUN_SCORES = [score for score in SCORES if score == "network" or config["exact_score_controls"]]


def for_scores(path):
    """``path`` (or paths) for every score this run measures on, in SCORES order."""
    return expand(path, score=[SCORE_SUFFIX[score] for score in RUN_SCORES])


def get_exact_score_tables(wildcards):
    """The MI and forking tables on the exact score, for the agreement table (none if the controls are off)."""
    if "exact" not in RUN_SCORES:
        return {}
    return {
        "mutual_info_exact": for_score(measured("estimate_mutual_information").table, "exact"),
        "forking_exact": for_score(measured("run_forking").table, "exact"),
    }


# --- report (report.smk) ---


# The report's figures, in order; each has its caption in workflow/report/<key>.rst.
REPORT_FIGURES = ["probes", "mutual_info", "forking", "agreement_figure", "samples_forks", "training_loss"]


def get_captions():
    """The caption files of REPORT_FIGURES (inputs of the report), from this workflow's own directory.

    A plain path, not workflow.source_path(): that names a per-run cache copy, so as a param it changed on every
    invocation and made the report rerun forever.
    """
    return [os.path.join(workflow.basedir, "workflow", "report", f"{key}.rst") for key in REPORT_FIGURES]


def get_benchmarks():
    """The benchmark files of every benchmarked rule in this run's DAG (the report's timing table)."""
    files = [
        *expand(rules.train_score_model.benchmark, model=MODELS),
        *expand(rules.sample_images.benchmark, model=MODELS),
        rules.train_classifier.benchmark,
        *for_shards(rules.extract_features.benchmark),
        *for_shards(rules.fit_linear_probes.benchmark),
        *for_scores(for_shards(rules.estimate_mutual_information.benchmark)),
        *for_scores(for_shards(rules.run_forking.benchmark)),
        rules.compute_exact_filter.benchmark,
    ]
    if config["dataset"]["source"] == "synthetic":
        files.append(rules.render_shapes3d.benchmark)
    return files


def get_final_outputs():
    """The default target list (the `all` rule): the report, every figure (PDF and PNG), every table (the MI and
    forking tables on each score) and the network's fork strips."""
    return [
        rules.split_dataset.output.split,
        rules.plot_contact_sheet.output.png,
        rules.train_classifier.output.accuracy,
        *expand(rules.sample_images.output.grid, model=MODELS),
        *expand(rules.sample_images.output.scores, model=MODELS),
        measured("fit_linear_probes").table,
        *for_scores(measured("estimate_mutual_information").table),
        *for_scores(measured("run_forking").table),
        for_score(measured("run_forking").strips, "network"),
        rules.compute_exact_filter.output.table,
        rules.make_report.output.html,
        rules.plot_probes.output.pdf,
        rules.plot_mutual_info.output.pdf,
        rules.plot_forking.output.pdf,
        rules.plot_agreement.output.pdf,
        rules.plot_samples_forks.output.pdf,
        rules.plot_training_loss.output.pdf,
    ]
