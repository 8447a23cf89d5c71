"""The workflow's configuration typed by its JSON schema (``workflow/schemas/config.schema.yaml``).

:func:`apply_schema`

1. coerces command-line strings to the schema's types: ``snakemake --config 'training={steps: 30}'`` parses the
   nested value with YAML's base loader, so ``steps`` arrives as the string ``'30'``;
2. fills the schema's defaults (what ``snakemake.utils.validate(..., set_default=True)`` does);
3. validates against the schema, one short line per problem (key path, offending value, what is allowed)
   instead of jsonschema's dump of the whole schema and config.

The checks the schema cannot express (feature maps, sizes, the tau grid) are ``preflight.py``'s, which runs this
first. No Snakemake import: pure functions of dicts.
"""

from __future__ import annotations

import copy
import difflib
import os
from pathlib import Path
from typing import Any

import yaml


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


# --- the three together ---------------------------------------------------------------------------------------


def apply_schema(config: dict, schema_path: str | os.PathLike) -> list[str]:
    """Coerce ``config``'s strings to the schema's types and fill its defaults, in place; return the schema
    problems, one line each (none: ``config`` is valid and complete)."""
    schema = yaml.safe_load(Path(schema_path).read_text())
    config.update(coerce(config, schema))
    fill_defaults(config, schema)
    return schema_problems(config, schema)


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
    from .preflight import check_config  # preflight imports this module

    check_config(config, schema)
    return config
