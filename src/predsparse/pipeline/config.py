"""Reading a pipeline config and checking it against `workflow/schemas/config.schema.yaml`.

A config arrives either as a YAML file (`predsparse plan config.yaml`) or as the dict Snakemake built from
`--configfile` and `--config` (common.smk). Either way the schema is checked first; a violation becomes a
`ConfigError` naming the study, the key and what is valid. Semantic checks (fan-outs valid for a net,
clustering feasible, ...) need the expansion and live in `predsparse.pipeline.plan`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from predsparse.errors import ConfigError

# The schema sits in the workflow folder of the checkout the package is installed from (editable
# install): the pipeline only runs from a checkout, since the Snakefile lives there too.
REPO_ROOT = Path(__file__).resolve().parents[3]
SCHEMA_PATH = REPO_ROOT / "workflow" / "schemas" / "config.schema.yaml"
DEFAULT_CONFIG = REPO_ROOT / "config.yaml"


class _UniqueKeyLoader(yaml.SafeLoader):
    """A SafeLoader that refuses a key given twice in one mapping (PyYAML silently keeps the last)."""


def _construct_unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False):
    first_line: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        if key in first_line:
            raise ConfigError(
                f"{key_node.start_mark.name}: key '{key}' is given twice (lines {first_line[key]} and {line}); "
                "each study, run setting and option must appear once"
            )
        first_line[key] = line
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping)


def read_yaml(path: str | Path) -> Any:
    """Parse a YAML file, refusing duplicate keys; a missing or malformed file is a ConfigError."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        with open(path) as fh:
            return yaml.load(fh, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {' '.join(str(exc).split())}") from None


def _schema() -> dict:
    if not SCHEMA_PATH.is_file():
        raise ConfigError(
            f"config schema {SCHEMA_PATH} not found: the pipeline runs from a checkout of predsparse "
            "(pip install -e .)"
        )
    return read_yaml(SCHEMA_PATH)


def _location(path: list) -> str:
    """['studies', 'fig3a_morse', 'patterns', 1, 'fanouts'] -> "study 'fig3a_morse': patterns[1].fanouts"."""
    where, key = "", ""
    rest = list(path)
    if len(rest) >= 2 and rest[0] == "studies":
        where = f"study '{rest[1]}': "
        rest = rest[2:]
    for part in rest:
        key += f"[{part}]" if isinstance(part, int) else (f".{part}" if key else str(part))
    return where + (f"key '{key}'" if key else "")


def _schema_node(schema: dict, path: list) -> dict:
    """The sub-schema that describes the value at `path` (for listing valid keys)."""
    node = schema
    for part in path:
        while "$ref" in node:
            node = schema["$defs"][node["$ref"].rsplit("/", 1)[1]]
        if isinstance(part, int):
            node = node.get("items", {})
        elif part in node.get("properties", {}):
            node = node["properties"][part]
        else:
            node = node.get("additionalProperties", {}) or {}
    while "$ref" in node:
        node = schema["$defs"][node["$ref"].rsplit("/", 1)[1]]
    return node


def typed_overrides(value: Any) -> Any:
    """Snakemake's `--config` values with their YAML types back: Snakemake types a top-level value
    (`epochs=3`) but leaves every nested one a string ('training={epochs: 3, lr: 1e-3}' gives '3' and
    '1e-3'). Each string is read as YAML, and one that YAML leaves a string but that spells a number
    ('1e-3', which YAML 1.1 reads as text) becomes that number."""
    if isinstance(value, dict):
        return {key: typed_overrides(v) for key, v in value.items()}
    if isinstance(value, list):
        return [typed_overrides(v) for v in value]
    if not isinstance(value, str):
        return value
    try:
        typed = yaml.safe_load(value)
    except yaml.YAMLError:
        return value
    if isinstance(typed, str):
        try:
            return float(typed)
        except ValueError:
            return typed
    return typed_overrides(typed) if isinstance(typed, (dict, list)) else typed


def _overridden(path: list, overrides: dict | None) -> bool:
    """Whether the value at `path` (or a value inside it) was set by `--config`."""
    node = overrides or {}
    for part in path:
        if not isinstance(node, dict):  # the override set a whole list or value that holds `path`
            return True
        if part not in node:
            return False
        node = node[part]
    return True


def check_schema(config: Any, source: str = "config", overrides: dict | None = None) -> None:
    """Validate `config` against the schema; the first problem (in document order) is a ConfigError.
    A problem in a value that `overrides` (the `--config` values) set is blamed on the override."""
    from jsonschema import Draft202012Validator

    schema = _schema()
    errors = sorted(
        Draft202012Validator(schema).iter_errors(config),
        key=lambda e: ([str(p) for p in e.absolute_path], e.validator != "additionalProperties"),
    )
    if not errors:
        return
    error = errors[0]
    path = list(error.absolute_path)
    if path and _overridden(path, overrides):
        source = "--config override"
    where = _location(path)
    prefix = f"{source}: {where}: " if where else f"{source}: "
    if "propertyNames" in error.schema_path:  # a study name (the only mapping whose keys are checked)
        raise ConfigError(f"{source}: study name {_short(error.instance)} is not valid: {_name_rule(error)}")
    if error.validator == "additionalProperties":
        node = _schema_node(schema, path)
        valid = sorted(node.get("properties", {}))
        unknown = sorted(set(error.instance) - set(valid))
        raise ConfigError(f"{prefix}unknown key(s) {unknown}; valid keys: {valid}")
    if error.validator == "required":
        raise ConfigError(f"{prefix}{error.message}")
    option = next((p for p in path[-2:] if p in ("cluster", "radices")), None)  # the key, or a list of them
    if option == "cluster" and (error.validator == "pattern" or _value_errors(error)):
        raise ConfigError(f"{prefix}{error.instance!r} is not a clustering; spell it 'J:f=C', 'J:b=C' or "
                          "'J:f=C,b=C' (e.g. '1:b=8'), or a list of them")
    if option == "radices" and (error.validator == "pattern" or _value_errors(error)):
        raise ConfigError(f"{prefix}{error.instance!r} is not a radices spelling; give integers separated by ',' "
                          "within a CSC layer and '/' between layers, e.g. '8,8/8,8', or a list of them")
    if error.validator == "oneOf":
        node = _schema_node(schema, path)
        refs = [alt["$ref"].rsplit("/", 1)[1] for alt in node.get("oneOf", []) if "$ref" in alt]
        description = _one_line(node.get("description") or (schema["$defs"][refs[0]].get("description", "")
                                                             if refs else ""))
        why = _value_errors(error)
        raise ConfigError(f"{prefix}{error.instance!r} is not valid" + (f": expected {description}" if description else "")
                          + (f"; {why}" if why else ""))
    if error.validator in ("pattern", "maxLength") and error.schema.get("pattern") == schema["$defs"]["path"]["pattern"]:
        raise ConfigError(f"{prefix}{_short(error.instance)} is not a usable folder path: {_PATH_RULE}")
    if error.validator in ("pattern", "maxLength"):
        raise ConfigError(f"{prefix}{_short(error.instance)} is not a valid name: {_name_rule(error)}")
    raise ConfigError(f"{prefix}{_one_line(error.message)}")


_PATH_RULE = ("at most 1024 characters among letters, digits, space and _ . / + , = @ : -, not starting with '-' "
              "(no quotes, ';', '$', '`', '|', '&', '<', '>' or newlines)")


def _name_rule(error) -> str:
    length = error.schema.get("maxLength", 64)
    found = f" (this one has {len(error.instance)})" if error.validator == "maxLength" else ""
    return (f"names are 1 to {length} characters{found}: letters, digits, '_', '.' and '-', starting with a letter "
            "or digit, with no space or newline")


def _short(value) -> str:
    """repr of a value, cut to 60 characters (a 300-character name need not be printed whole)."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _value_errors(error) -> str:
    """Why a value failed every alternative of a oneOf, from the alternative whose type it has: e.g.
    "at [0], 0 is less than the minimum of 1"; "" when it has the type of none of them."""
    found = [c for c in error.context if c.validator != "type"]
    if not found:
        return ""
    deepest = max(found, key=lambda c: len(c.relative_path))
    at = "".join(f"[{p}]" for p in deepest.relative_path)
    return (f"at {at}, " if at else "") + _one_line(deepest.message)
