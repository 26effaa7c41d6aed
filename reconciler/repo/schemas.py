"""The JSON Schemas of schema/ applied to documents, with messages a user can act on.

A compiled predicate answers "valid?" for every file; only an invalid document pays
for jsonschema (imported on first need) to say exactly what is wrong.
"""

from __future__ import annotations

import difflib
import functools
import json
from collections.abc import Iterator, Mapping, Sequence
from importlib import resources
from typing import TYPE_CHECKING, Any, Literal

from reconciler.repo.fastschema import Predicate, compile_schema

if TYPE_CHECKING:
    from jsonschema.exceptions import ValidationError as SchemaError
    from jsonschema.protocols import Validator

Kind = Literal["Project", "Installation", "Release"]
KINDS: tuple[Kind, ...] = ("Project", "Installation", "Release")
JsonPath = tuple[str | int, ...]

_DNS_LABEL = (
    "is not a DNS-1123 label: at most 63 characters of lowercase letters, digits and '-',"
    " starting and ending with a letter or digit"
)
_DNS_SUBDOMAIN = (
    "is not a DNS-1123 name: at most 253 characters of lowercase letters, digits, '-' and '.'"
)
_REPOSITORY = (
    "is not a chart repository URL; write oci://host[:port]/path or https://host/path"
    " (no trailing slash)"
)
# Why a value of a given field is rejected by pattern or length, and what to write instead.
_HINTS: dict[tuple[Kind, str], str] = {
    ("Release", "ref"): "is not a 40-character commit SHA; write the full SHA (git rev-parse)",
    ("Release", "version"): (
        "is not a SemVer 2 chart version; write e.g. 1.4.2 or 1.4.2-rc.1 (no leading v)"
    ),
    ("Release", "name"): (
        "is not a name Helm accepts for a release: at most 53 characters of lowercase"
        " letters, digits, '-' and '.', starting and ending with a letter or digit;"
        " rename the file and the name"
    ),
    ("Release", "project"): _DNS_LABEL,
    ("Release", "namespace"): _DNS_LABEL,
    ("Project", "name"): _DNS_LABEL + "; rename the file and the name",
    ("Project", "namespace"): _DNS_LABEL,
    ("Project", "dependsOn.*"): _DNS_LABEL,
    ("Project", "chart.repository"): _REPOSITORY,
    ("Project", "chart.name"): "is not a chart name: letters, digits, '.', '_' and '-'",
    ("Project", "chart.versionTemplate"): "must be 1 to 128 characters, e.g. 1.0.0-g{ref}",
    ("Project", "driftIgnore.*.paths.*"): (
        "is not a JSON pointer: write /spec/replicas (a '/' before each field, ~1 for a '/'"
        " inside a field name, ~0 for '~')"
    ),
    ("Project", "driftIgnore.*.kind"): "is not a kind: write e.g. Deployment, or * for every kind",
    ("Installation", "name"): _DNS_LABEL + "; rename the folder and the name",
    ("Installation", "chartRepository"): _REPOSITORY,
    ("Installation", "labels.*"): (
        "is not a Kubernetes label value: at most 63 characters of letters, digits,"
        " '-', '_' and '.', starting and ending with a letter or digit"
    ),
    ("Installation", "valuesFrom.namespace"): _DNS_LABEL,
    ("Installation", "valuesFrom.configMap"): _DNS_SUBDOMAIN,
    ("Installation", "valuesFrom.secret"): _DNS_SUBDOMAIN,
}
_WHERE = {
    "Project": "files under projects/",
    "Installation": "installations/<name>/installation.yaml",
    "Release": "files under installations/<name>/releases/",
}


@functools.cache
def schema_of(kind: Kind) -> Mapping[str, Any]:
    text = resources.files("reconciler").joinpath("schema", f"{kind.lower()}.schema.json")
    document: Mapping[str, Any] = json.loads(text.read_text(encoding="utf-8"))
    return document


@functools.cache
def _predicate(kind: Kind) -> Predicate:
    return compile_schema(schema_of(kind))


@functools.cache
def _validator(kind: Kind) -> Validator:
    from jsonschema import Draft202012Validator  # only invalid documents need it

    validator: Validator = Draft202012Validator(schema_of(kind))
    return validator


def is_valid(kind: Kind, document: Any) -> bool:
    return _predicate(kind)(document)


def errors(kind: Kind, document: Any) -> list[tuple[JsonPath, str]]:
    """Every schema violation of an invalid document: where, and a message naming the fix."""

    found: list[tuple[JsonPath, str]] = []
    for error in _validator(kind).iter_errors(document):
        found.extend(_explain(kind, error))
    return sorted(set(found), key=lambda item: [str(p) for p in item[0]])


def field_name(path: Sequence[str | int]) -> str:
    text = ""
    for step in path:
        text += f"[{step}]" if isinstance(step, int) else (f".{step}" if text else step)
    return text or "(top level)"


def _explain(kind: Kind, error: SchemaError) -> Iterator[tuple[JsonPath, str]]:
    path: JsonPath = tuple(error.absolute_path)
    name = field_name(path)
    keyword = str(error.validator)
    value: Any = error.validator_value
    instance: Any = error.instance
    schema: Mapping[str, Any] = error.schema if isinstance(error.schema, Mapping) else {}
    if keyword == "additionalProperties":
        allowed = sorted(schema.get("properties", {}))
        for extra in sorted(set(instance) - set(allowed)):
            yield (*path, extra), _unknown_field(name, extra, allowed, path)
    elif keyword == "required":
        for missing in value:
            if missing not in instance:
                where = "" if not path else f" in {name}"
                about = _first_sentence(schema.get("properties", {}).get(missing, {}))
                yield path, f'missing required field "{missing}"{where}: add it{about}'
    elif keyword == "oneOf" and not path and kind == "Release":
        has = "both" if "ref" in instance and "version" in instance else "neither"
        yield (
            path,
            f"a release needs exactly one of ref (a commit SHA) or version (a pinned chart"
            f" version), this one has {has}",
        )
    elif keyword == "type":
        yield path, f"{name}: expected {_article(value)}, got {_describe(instance)}"
    elif keyword == "const" and path == ("kind",):
        yield path, f'kind: "{instance}" must be "{value}" in {_WHERE[kind]}'
    elif keyword == "const":
        yield path, f'{name}: "{instance}" must be "{value}"'
    elif keyword == "enum":
        yield path, f"{name}: {_show(instance)} must be one of " + ", ".join(map(str, value))
    elif keyword in ("minimum", "maximum"):
        bound = "at least" if keyword == "minimum" else "at most"
        yield path, f"{name}: {_show(instance)} must be {bound} {value}"
    elif keyword == "uniqueItems":
        yield path, f"{name}: lists the same entry more than once; remove the repeats"
    elif keyword in ("pattern", "maxLength", "minLength"):
        hint = _hint(kind, path) or f"does not match {schema.get('pattern', keyword)}"
        yield path, f"{name}: {_show(instance)} {hint}"
    elif keyword == "propertyNames":
        yield path, f'{name}: "{instance}" is not a valid Kubernetes label key'
    else:
        yield path, f"{name}: {error.message}"


def _first_sentence(field: Mapping[str, Any]) -> str:
    description = str(field.get("description", ""))
    sentence = description.split(". ")[0].rstrip(".")
    return f" ({sentence[0].lower()}{sentence[1:]})" if sentence else ""


def _hint(kind: Kind, path: JsonPath) -> str | None:
    generic = ".".join("*" if isinstance(p, int) else p for p in path)
    parent = ".".join([*generic.split(".")[:-1], "*"])
    return _HINTS.get((kind, generic)) or _HINTS.get((kind, parent))


def _unknown_field(name: str, extra: str, allowed: list[str], path: JsonPath) -> str:
    where = f" in {name}" if path else ""
    close = difflib.get_close_matches(extra, allowed, n=1, cutoff=0.6)
    fix = f'did you mean "{close[0]}"?' if close else "allowed: " + ", ".join(allowed)
    return f'unknown field "{extra}"{where}; {fix}'


def _article(type_name: str | list[str]) -> str:
    names = [type_name] if isinstance(type_name, str) else type_name
    words = {"object": "a mapping", "array": "a list", "integer": "a whole number"}
    return " or ".join(words.get(n, f"a {n}") for n in names)


def _describe(instance: Any) -> str:
    if isinstance(instance, bool):
        return f"the boolean {str(instance).lower()}"
    if isinstance(instance, int | float):
        return f"the number {instance} (quote it to make it a string)"
    if instance is None:
        return "nothing (null)"
    if isinstance(instance, dict):
        return "a mapping"
    if isinstance(instance, list):
        return "a list"
    return f'the string "{instance}"'


def _show(instance: Any) -> str:
    text = json.dumps(instance, ensure_ascii=True)
    return text if len(text) <= 80 else text[:77] + "..."
