"""Checking the workflow's configuration before any job runs.

:func:`check_config` is what ``workflow/rules/common.smk`` calls at parse time. It

1. coerces command-line strings to the schema's types: ``snakemake --config 'training={steps: 30}'`` parses the
   nested value with YAML's base loader, so ``steps`` arrives as the string ``'30'``;
2. fills the schema's defaults (what ``snakemake.utils.validate(..., set_default=True)`` does);
3. validates against the JSON schema, one short line per problem (key path, offending value, what is allowed)
   instead of jsonschema's dump of the whole schema and config;
4. runs the checks the schema cannot express but that need no job: feature-map names follow from the image
   resolution and ``score_model.ch_mult``; ``forking.strip_taus`` against the tau grid; the features, mutual
   information and split sizes against the dataset's size; ...

Every problem found is reported at once, in a :class:`ConfigError`. No Snakemake import: pure functions of
dicts (and, for ``dataset.source: path``, the header of the user's HDF5 file).
"""

from __future__ import annotations

import copy
import difflib
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import yaml

OFFICIAL_RESOLUTION = 64  # the official 3dshapes.h5 (dataset.source: download)
OFFICIAL_N_IMAGES = 480_000
FACTOR_KEYS = ("floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation")
PIXELS = "pixels"  # the baseline layer every features table has (not a network feature map)


class ConfigError(ValueError):
    """The configuration has problems; the message lists each (key, value, what is allowed)."""


# --- 1. coercion of command-line strings --------------------------------------------------------------------


def _types(schema: dict) -> list[str]:
    t = schema.get("type", [])
    return [t] if isinstance(t, str) else list(t)


def _fits(value: Any, types: list[str]) -> bool:
    for t in types:
        if t == "integer" and isinstance(value, int) and not isinstance(value, bool):
            return True
        if t == "number" and isinstance(value, (int, float)) and not isinstance(value, bool):
            return True
        if (t == "boolean" and isinstance(value, bool)) or (t == "null" and value is None):
            return True
        if (t == "string" and isinstance(value, str)) or (t == "array" and isinstance(value, list)):
            return True
        if t == "object" and isinstance(value, dict):
            return True
    return False


def _parse_scalar(text: str) -> Any:
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string; Python does not
        try:
            return float(text)
        except ValueError:
            return text
    return value


def coerce(value: Any, schema: dict) -> Any:
    """``value`` with strings converted to the type the schema asks for, where they parse as one.

    A string stays a string when the schema allows strings, except ``null``/``~`` where null is allowed.
    Numbers become strings where only strings are allowed (``--config run_name=2024``).
    """
    types = _types(schema)
    if isinstance(value, dict):
        props = schema.get("properties", {})
        return {k: coerce(v, props[k]) if k in props else v for k, v in value.items()}
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [coerce(v, schema["items"]) for v in value]
    if isinstance(value, str):
        if "enum" in schema and value not in schema["enum"]:
            parsed = _parse_scalar(value)
            return parsed if parsed in schema["enum"] else value
        if not types or ("string" in types and value not in ("null", "~")):
            return value
        parsed = _parse_scalar(value)
        if _fits(parsed, types):
            return parsed
        return value
    if types == ["string"] and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return value


# --- 2. defaults ---------------------------------------------------------------------------------------------


def fill_defaults(config: dict, schema: dict) -> None:
    """Set every missing key that has a schema default, recursively, in place."""
    for key, sub in schema.get("properties", {}).items():
        if key not in config and "default" in sub:
            config[key] = copy.deepcopy(sub["default"])
        if isinstance(config.get(key), dict):
            fill_defaults(config[key], sub)


# --- 3. schema validation with short messages ----------------------------------------------------------------


def key_path(path) -> str:
    """('training', 'steps') -> 'training.steps'; list indices as [i]."""
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "(top level)"


def describe(schema: dict) -> str:
    """What a schema allows, in a few words: 'an integer >= 1', 'one of: pc, em', 'a list of numbers'."""
    if "enum" in schema:
        return "one of: " + ", ".join(map(str, schema["enum"]))
    names = {
        "integer": "an integer",
        "number": "a number",
        "string": "a string",
        "boolean": "true or false",
        "null": "null",
        "array": "a list",
        "object": "a mapping",
    }
    parts = []
    for t in _types(schema):
        text = names.get(t, t)
        if t in ("integer", "number"):
            bounds = [
                f"{op} {schema[k]}"
                for k, op in (
                    ("minimum", ">="),
                    ("exclusiveMinimum", ">"),
                    ("maximum", "<="),
                    ("exclusiveMaximum", "<"),
                )
                if k in schema
            ]
            text += " " + " and ".join(bounds) if bounds else ""
        if t == "string" and "pattern" in schema:
            text += f" matching {schema['pattern']}"
        if t == "array" and isinstance(schema.get("items"), dict):
            text = "a list of " + describe(schema["items"]).replace("an integer", "integers").replace(
                "a number", "numbers"
            ).replace("a string", "strings")
            if schema.get("minItems"):
                text += f" (at least {schema['minItems']})"
        parts.append(text)
    return ", or ".join(parts) or "see the schema"


def _subschema(schema: dict, path) -> dict:
    for p in path:
        schema = schema.get("items", {}) if isinstance(p, int) else schema.get("properties", {}).get(p, {})
    return schema


def schema_problems(config: dict, schema: dict) -> list[str]:
    """One line per schema violation: key path, the offending value, what is allowed."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema)
    problems, seen = [], set()
    for err in sorted(validator.iter_errors(config), key=lambda e: [str(p) for p in e.absolute_path]):
        path = list(err.absolute_path)
        if err.validator == "additionalProperties":
            allowed = list(err.schema.get("properties", {}))
            for key in sorted(set(err.instance) - set(allowed)):
                where = key_path(path + [key])
                guess = difflib.get_close_matches(key, allowed, n=1)
                hint = f"; did you mean {key_path(path + [guess[0]])!r}?" if guess else ""
                problems.append(f"{where}: unknown key (allowed here: {', '.join(allowed)}){hint}")
            continue
        where = key_path(path)
        if where in seen:
            continue
        seen.add(where)
        if err.validator == "minItems":
            problems.append(f"{where} = {err.instance!r}: needs at least {err.validator_value} item(s)")
        else:
            problems.append(f"{where} = {err.instance!r}: allowed is {describe(_subschema(schema, path))}")
    return sorted(problems)


# --- 4. pre-flight checks that need no job -------------------------------------------------------------------


def feature_map_names(img_resolution: int, ch_mult: list[int]) -> list[str]:
    """The names :meth:`networks.NCSNpp.feature_names` returns, without building the network.

    One encoder map per resolution level (``enc_<side>``, the side halving between levels), the bottleneck,
    and one decoder map per level back up (``dec_<side>``).
    """
    sides = [img_resolution // 2**i for i in range(len(ch_mult))]
    return [f"enc_{s}" for s in sides] + ["bottleneck"] + [f"dec_{s}" for s in reversed(sides)]


def split_sizes(n_images: int, test_fraction: float) -> tuple[int, int]:
    """(train, test) image counts of :func:`shapes3d.make_split` for ``n_images``."""
    n_test = max(1, int(round(n_images * test_fraction)))
    return n_images - n_test, n_test


def dataset_shape(config: dict) -> tuple[int | None, int | None, str | None]:
    """(image side, number of images, problem) of the configured dataset, from config or the file's header."""
    ds = config["dataset"]
    if ds["source"] == "synthetic":
        syn = ds["synthetic"]
        return syn["resolution"], math.prod(syn["levels"][k] for k in FACTOR_KEYS), None
    if ds["source"] == "download":
        return OFFICIAL_RESOLUTION, OFFICIAL_N_IMAGES, None
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
            sides = [res // 2**i for i in range(levels)]
            bad = [a for a in net["attn_resolutions"] if a not in sides]
            if bad:
                problems.append(
                    f"score_model.attn_resolutions = {net['attn_resolutions']}: {bad} not a feature-map "
                    f"side of this network; allowed: {sides} (image side {res}, ch_mult {net['ch_mult']})"
                )
            names = feature_map_names(res, net["ch_mult"])
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
            const = [k for k in FACTOR_KEYS if config["dataset"]["synthetic"]["levels"][k] == 1]
            if const:
                warnings.append(
                    f"dataset.synthetic.levels: {', '.join(const)} rendered with 1 level: constant, "
                    "so not measurable (reported as such, left out of ranks and agreement)"
                )
    taus = config["taus"]
    if taus["start"] >= taus["stop"]:
        problems.append(f"taus.start = {taus['start']}, taus.stop = {taus['stop']}: start must be below stop")
    else:
        from .taus import tau_grid

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
    schema = yaml.safe_load(Path(schema_path).read_text())
    config.update(coerce(config, schema))
    fill_defaults(config, schema)
    problems = schema_problems(config, schema)
    warnings: list[str] = []
    if not problems:
        problems, warnings = preflight_problems(config)
    if problems:
        raise ConfigError(
            "invalid configuration:\n  " + "\n  ".join(problems) + "\n(every key is explained in config/config.yaml)"
        )
    return warnings


def merge_config(base: dict, override: dict) -> dict:
    """``base`` updated by ``override`` key by key, recursively (what ``snakemake --configfile`` does); lists and
    scalars are replaced. Returns a new dict."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_config(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_config(configfiles: list[str | os.PathLike] = (), root: str | os.PathLike | None = None) -> dict:
    """The workflow's config as a run sees it: ``config/config.yaml``, each of ``configfiles`` over it in order,
    checked by :func:`check_config` (defaults filled).

    Args:
        root: the checkout holding ``config/`` and ``workflow/schemas/`` (default: the one this package is in).

    Raises:
        ConfigError: a file is missing or is no YAML mapping, or the merged config has problems.
    """
    root = Path(root) if root is not None else Path(__file__).resolve().parents[2]
    schema = root / "workflow" / "schemas" / "config.schema.yaml"
    if not schema.is_file():
        raise ConfigError(f"{schema}: no such file; pass the checkout that holds config/ and workflow/ as root")
    config: dict = {}
    for path in [root / "config" / "config.yaml", *map(Path, configfiles)]:
        try:
            loaded = yaml.safe_load(Path(path).read_text())
        except (OSError, yaml.YAMLError) as err:
            raise ConfigError(f"{path}: cannot read the config file ({err})") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a YAML mapping of config keys, got {type(loaded).__name__}")
        config = merge_config(config, loaded)
    check_config(config, schema)
    return config


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
