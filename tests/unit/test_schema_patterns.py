"""Schema patterns mean the same in Python (jsonschema, fastschema) and in ECMA-262.

JSON Schema defines `pattern` with ECMA-262 semantics, where `$` matches only at the end;
Python's `$` also matches before a final newline, so "1.0.0\\n" passed a `...$` pattern in
the project's validators while every ECMA-based tool refused it.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from typing import Any

import pytest
import regress
from jsonschema import Draft202012Validator

from reconciler.repo import schemas
from reconciler.repo.fastschema import compile_schema
from reconciler.repo.schemas import KINDS, schema_of

SHA = "0123456789abcdef0123456789abcdef01234567"
VALID = {
    "Release": {
        "apiVersion": "reconciler/v1",
        "kind": "Release",
        "name": "api",
        "project": "api",
        "version": "1.0.0",
        "namespace": "shop",
    },
    "Project": {
        "apiVersion": "reconciler/v1",
        "kind": "Project",
        "name": "api",
        "namespace": "shop",
        "chart": {"repository": "oci://registry.example.com/charts", "name": "web"},
        "dependsOn": ["db"],
    },
    "Installation": {
        "apiVersion": "reconciler/v1",
        "kind": "Installation",
        "name": "prod",
        "labels": {"example.com/stage": "production"},
        "chartRepository": "https://charts.example.com",
        "valuesFrom": {"namespace": "reconciler", "configMap": "values", "secret": "secret"},
    },
}
# Each string field with a pattern, and a value it accepts.
FIELDS = [
    ("Release", ("name",), "api"),
    ("Release", ("project",), "api"),
    ("Release", ("version",), "1.0.0-rc.1+build.5"),
    ("Release", ("namespace",), "shop"),
    ("Project", ("name",), "api"),
    ("Project", ("namespace",), "shop"),
    ("Project", ("chart", "repository"), "oci://registry.example.com/charts"),
    ("Project", ("chart", "name"), "web"),
    ("Project", ("dependsOn", 0), "db"),
    ("Installation", ("name",), "prod"),
    ("Installation", ("chartRepository",), "https://charts.example.com"),
    ("Installation", ("valuesFrom", "namespace"), "reconciler"),
    ("Installation", ("valuesFrom", "configMap"), "values"),
    ("Installation", ("valuesFrom", "secret"), "secret"),
    ("Installation", ("labels", "example.com/stage"), "production"),
]


def patterns(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "pattern" and isinstance(value, str):
                yield value
            else:
                yield from patterns(value)
    elif isinstance(node, list):
        for item in node:
            yield from patterns(item)


def with_value(kind: str, path: tuple[str | int, ...], value: str) -> dict[str, Any]:
    document = copy.deepcopy(VALID[kind])
    target: Any = document
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return document


def test_the_examples_are_valid() -> None:
    for kind, document in VALID.items():
        assert schemas.is_valid(kind, document), list(schemas.errors(kind, document))


@pytest.mark.parametrize(("kind", "path", "good"), FIELDS, ids=lambda v: str(v))
@pytest.mark.parametrize("suffix", ["\n", "\r\n", "\n\n", " \n"], ids=repr)
def test_a_trailing_newline_is_refused_by_every_validator(
    kind: str, path: tuple[str | int, ...], good: str, suffix: str
) -> None:
    assert schemas.is_valid(kind, with_value(kind, path, good))
    bad = with_value(kind, path, good + suffix)
    assert not Draft202012Validator(schema_of(kind)).is_valid(bad)
    assert not compile_schema(schema_of(kind))(bad)
    assert not schemas.is_valid(kind, bad)


def test_a_ref_with_a_trailing_newline_is_refused() -> None:
    release = {k: v for k, v in VALID["Release"].items() if k != "version"}
    assert schemas.is_valid("Release", release | {"ref": SHA})
    assert not schemas.is_valid("Release", release | {"ref": SHA + "\n"})


PROBES = ["", "a", "api", "1.0.0", SHA, "oci://h/c", "https://h:5000/p", "x.y/z", "a-b", "A_b"]


@pytest.mark.parametrize("kind", KINDS)
def test_python_and_ecma_262_agree_on_every_pattern(kind: str) -> None:
    found = list(patterns(schema_of(kind)))
    assert found
    for pattern in found:
        ecma = regress.Regex(pattern)
        python = re.compile(pattern)
        for base in PROBES:
            for probe in (base, base + "\n", "\n" + base, base + "\r\n", base + "\n\n"):
                assert (ecma.find(probe) is not None) == (python.search(probe) is not None), (
                    pattern,
                    probe,
                )
