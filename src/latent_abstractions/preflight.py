"""Checking the workflow's configuration before any job runs.

:func:`check_config` is what ``workflow/rules/common.smk`` calls at parse time: the schema first (types, defaults,
one line per problem: :func:`config.apply_schema`), then the checks the schema cannot express but that need no
job: the feature-map names and attention sides against the image side and ``score_model.ch_mult``;
``forking.strip_taus`` against the tau grid; the features, mutual information and split sizes against the
dataset's size; ... Every problem found is reported at once, in a :class:`config.ConfigError`.

Each fact checked against comes from its owner: factor names and the official file's size from
``data.factors``, a synthetic file's size from the renderer's grid, the split sizes from ``data.split``, the
feature maps from ``model.feature_maps``, the tau grid from ``taus``. None of them imports torch, and neither does
this module, so that every Snakemake command (dry runs included) starts fast. No Snakemake import: pure functions
of dicts (and, for ``dataset.source: path``, the header of the user's HDF5 file).
"""

from __future__ import annotations

import os

import numpy as np

from .config import ConfigError, apply_schema
from .data.factors import FACTOR_NAMES, N_IMAGES_FULL, OFFICIAL_RESOLUTION
from .data.render import GridSpec
from .data.split import split_sizes
from .model.feature_maps import PIXELS, feature_map_names, level_sides
from .taus import tau_grid


def dataset_shape(config: dict) -> tuple[int | None, int | None, str | None]:
    """(image side, number of images, problem) of the configured dataset, from config or the file's header."""
    ds = config["dataset"]
    if ds["source"] == "synthetic":
        syn = ds["synthetic"]
        grid = GridSpec.from_counts(syn["resolution"], [syn["levels"][name] for name in FACTOR_NAMES])
        return grid.resolution, grid.n_images, None
    if ds["source"] == "download":
        return OFFICIAL_RESOLUTION, N_IMAGES_FULL, None
    path = ds["path"]
    if not path or not os.path.isfile(path):
        return None, None, f"dataset.path = {path!r}: dataset.source is 'path', so this must be an existing file"
    try:
        import h5py

        with h5py.File(path, "r") as f:
            shape = f["images"].shape
    except Exception as err:  # noqa: BLE001 - any reader problem is reported with the key
        return (
            None,
            None,
            (
                f"dataset.path = {path!r}: cannot read an 'images' dataset from it ({err}); "
                "expected an HDF5 file in the 3dshapes.h5 layout"
            ),
        )
    if len(shape) != 4:
        return None, None, f"dataset.path = {path!r}: 'images' has shape {shape}, expected (N, H, H, 3)"
    return int(shape[1]), int(shape[0]), None


def preflight_problems(config: dict) -> tuple[list[str], list[str]]:
    """(problems, warnings) of a schema-valid config that the schema cannot express."""
    problems, warnings = [], []
    run = str(config.get("run_name", ""))
    if run.startswith("."):  # the schema's pattern already keeps '/' out
        problems.append(
            f"run_name = {run!r}: the run's files go to results/<run_name>/, and a name starting with '.' is hidden "
            "or ('..') leaves results/ for the repository root; allowed: letters, digits, '_', '.', '-', not "
            "starting with '.'"
        )
    res, n_images, err = dataset_shape(config)
    if err:
        problems.append(err)
    net, feats = config["score_model"], config["features"]
    if res is not None:
        levels = len(net["ch_mult"])
        if res % 2 ** (levels - 1):
            problems.append(
                f"score_model.ch_mult = {net['ch_mult']}: {levels} resolution levels halve the image "
                f"{levels - 1} times, but the image side {res} is not divisible by {2 ** (levels - 1)}; "
                f"use at most {_max_levels(res)} levels"
            )
        else:
            sides = level_sides(res, levels)
            bad = [a for a in net["attn_resolutions"] if a not in sides]
            if bad:
                problems.append(
                    f"score_model.attn_resolutions = {net['attn_resolutions']}: {bad} not a feature-map "
                    f"side of this network; allowed: {sides} (image side {res}, ch_mult {net['ch_mult']})"
                )
            names = feature_map_names(res, levels)
            unknown = [name for name in feats["layers"] if name not in names]
            if unknown:
                extra = f" ('{PIXELS}' is always included as the baseline)" if PIXELS in unknown else ""
                problems.append(
                    f"features.layers = {feats['layers']}: unknown feature map(s) {unknown}{extra}; "
                    f"allowed: {', '.join(names)} (image side {res}, score_model.ch_mult {net['ch_mult']})"
                )
    if n_images is not None:
        n_train, n_test = split_sizes(n_images, config["dataset"]["test_fraction"])
        where = f"the dataset's {n_images} images split {n_train} train / {n_test} test"
        if n_train < 2:
            problems.append(
                f"dataset.test_fraction = {config['dataset']['test_fraction']}: {where}; training needs "
                "at least 2 train images"
            )
        for key, value, limit in (
            ("features.n_train", feats["n_train"], n_train),
            ("features.n_test", feats["n_test"], n_test),
            ("mutual_info.n_images", config["mutual_info"]["n_images"], n_test),
        ):
            if value > limit:
                problems.append(
                    f"{key} = {value}: more than the {limit} images available ({where}); allowed: 2..{limit}"
                )
        if config["dataset"]["source"] == "synthetic":
            const = [k for k in FACTOR_NAMES if config["dataset"]["synthetic"]["levels"][k] == 1]
            if const:
                warnings.append(
                    f"dataset.synthetic.levels: {', '.join(const)} rendered with 1 level: constant, "
                    "so not measurable (reported as such, left out of ranks and agreement)"
                )
    taus = config["taus"]
    if taus["start"] >= taus["stop"]:
        problems.append(f"taus.start = {taus['start']}, taus.stop = {taus['stop']}: start must be below stop")
    else:
        grid = tau_grid(taus["start"], taus["stop"], taus["n"]).tolist()
        snapped = {}
        for s in config["forking"]["strip_taus"]:
            if not taus["start"] <= s <= taus["stop"]:
                problems.append(
                    f"forking.strip_taus: {s} is outside the tau grid [{taus['start']}, {taus['stop']}]; "
                    f"allowed: values in that range (the nearest of taus {grid} is used)"
                )
                continue
            near = int(np.argmin(np.abs(np.asarray(grid) - s)))  # as forking.run_forking picks it
            if near in snapped:
                problems.append(
                    f"forking.strip_taus: {snapped[near]} and {s} both select the grid tau {grid[near]}; "
                    f"allowed: values nearest to distinct taus of {grid}"
                )
            snapped.setdefault(near, s)
        if config["tau_shards"] > taus["n"]:
            problems.append(
                f"tau_shards = {config['tau_shards']}: more shards than the {taus['n']} taus of the grid "
                f"(taus.n); allowed: 1..{taus['n']} (each shard measures at least one tau)"
            )
        intervals = taus["n"] - 1 if taus["start"] == 0 else taus["n"]  # as mutual_info.mi_curves splits [0, tau]
        if config["mutual_info"]["n_times"] < intervals:
            problems.append(
                f"mutual_info.n_times = {config['mutual_info']['n_times']}: fewer quadrature times than "
                f"the {intervals} intervals of the tau grid; allowed: at least {intervals} (one per "
                "interval)"
            )
    sde = config["sde"]
    if sde["sigma_max"] is not None and sde["sigma_max"] <= sde["sigma_min"]:
        problems.append(
            f"sde.sigma_max = {sde['sigma_max']}: must exceed sde.sigma_min = {sde['sigma_min']} "
            "(or be null: the largest pairwise distance in the training data)"
        )
    thresholds = config["report"]["thresholds"]
    if len(set(thresholds)) != len(thresholds):
        problems.append(f"report.thresholds = {thresholds}: values must be distinct")
    return problems, warnings


def _max_levels(res: int) -> int:
    k = 1
    while res % 2**k == 0:
        k += 1
    return k


# --- the entry point -------------------------------------------------------------------------------------------


def check_config(config: dict, schema_path: str | os.PathLike) -> list[str]:
    """Coerce, fill defaults, validate and pre-flight ``config`` in place; return warnings.

    Raises:
        ConfigError: listing every problem, one line each (key path, offending value, what is allowed).
    """
    problems = apply_schema(config, schema_path)
    warnings: list[str] = []
    if not problems:
        problems, warnings = preflight_problems(config)
    if problems:
        raise ConfigError(
            "invalid configuration:\n  " + "\n  ".join(problems) + "\n(every key is explained in config/config.yaml)"
        )
    return warnings


def check_config_or_exit(config: dict, schema_path: str | os.PathLike, error: type[Exception] = ConfigError) -> None:
    """:func:`check_config` for the Snakefile: warnings to stderr; problems raised as ``error`` (pass Snakemake's
    WorkflowError, which Snakemake prints without a traceback)."""
    import sys

    try:
        warnings = check_config(config, schema_path)
    except ConfigError as err:
        raise error(str(err)) from None
    for line in warnings:
        print(f"config warning: {line}", file=sys.stderr)
